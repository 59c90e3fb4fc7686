"""Causal numba kernels over (time, symbol) arrays, importable as ``pitgrid.kernels``."""
