"""pitgrid.drivers"""
