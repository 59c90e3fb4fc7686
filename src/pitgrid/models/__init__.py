"""pitgrid.models"""
