"""Data: synthetic prices, ingest and validation, the zarr store, MarketData and point-in-time views."""
