"""pitgrid.cycle"""
