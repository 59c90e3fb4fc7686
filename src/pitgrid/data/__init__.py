"""Data: synthetic prices, ingest and validation, the zarr store, MarketData and point-in-time views."""
from pitgrid.data.deferred_dask import install as _defer_dask

_defer_dask()
