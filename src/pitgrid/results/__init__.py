"""pitgrid.results"""
