"""A store's fields read on first use, each once, then kept in memory read-only.

``MarketData.load()`` of a lazily opened store used to read every field (OHLCV, the
validity mask, splits, dividends) although a run reads what its strategy and settings
need: a moving-average cross at close fills reads the close and little else, so on
W1's store most of a cold start's reading was for fields nobody looked at.

xarray's own cache (``MemoryCachedArray``) is not shared between shallow copies of a
Dataset (each copy reads the store again) and hands out writable arrays, so a field
here is a small explicitly-indexed array of xarray's kind that owns its values: the
first read loads the whole field, freezes it and keeps it; every copy, slice and later
read uses those values.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from xarray.core.indexing import (ExplicitlyIndexedNDArrayMixin, MemoryCachedArray,
                                  NumpyIndexingAdapter)


class ReadOnce(ExplicitlyIndexedNDArrayMixin):
    """A lazily read field (``source``: xarray's lazy array over the store) read on first use.

    Example:
        >>> import numpy as np
        >>> f = ReadOnce(NumpyIndexingAdapter(np.arange(6.0).reshape(2, 3)))
        >>> f.shape, f.get_duck_array().flags.writeable
        ((2, 3), False)
    """

    __slots__ = ("array", "_values")

    def __init__(self, source: Any) -> None:
        self.array = source  # shape and dtype come from it without reading
        self._values: np.ndarray | None = None

    def get_duck_array(self) -> np.ndarray:
        if self._values is None:
            values = np.asarray(self.array.get_duck_array())
            values.flags.writeable = False
            self._values = values
        return self._values

    async def async_get_duck_array(self) -> np.ndarray:
        return self.get_duck_array()

    def _read(self) -> NumpyIndexingAdapter:
        return NumpyIndexingAdapter(self.get_duck_array())

    def __getitem__(self, indexer: Any) -> Any:
        return self._read()[indexer]

    def _oindex_get(self, indexer: Any) -> Any:
        return self._read().oindex[indexer]

    def _vindex_get(self, indexer: Any) -> Any:
        return self._read().vindex[indexer]

    def transpose(self, order: Any) -> np.ndarray:
        return self.get_duck_array().transpose(order)

    def __setitem__(self, indexer: Any, value: Any) -> None:
        raise ValueError("a market's arrays are read-only")

    def _oindex_set(self, indexer: Any, value: Any) -> None:
        self.__setitem__(indexer, value)

    def _vindex_set(self, indexer: Any, value: Any) -> None:
        self.__setitem__(indexer, value)


def settled(ds: xr.Dataset) -> bool:
    """Whether every field is in memory or read on first use (nothing left to load)."""
    return all(isinstance(v.variable._data, (np.ndarray, ReadOnce)) for v in ds.data_vars.values())


def read_on_first_use(ds: xr.Dataset) -> tuple[xr.Dataset, list[str]]:
    """``ds`` with every field xarray reads lazily from a store wrapped in :class:`ReadOnce`;
    returns it and the names of the fields still to load (dask, or numpy not yet frozen)."""
    lazy = {name: var.variable for name, var in ds.data_vars.items()
            if isinstance(var.variable._data, MemoryCachedArray)}
    fields = {name: xr.Variable(v.dims, ReadOnce(v._data.array), v.attrs, v.encoding, fastpath=True)
              for name, v in lazy.items()}
    rest = [name for name, var in ds.data_vars.items()
            if name not in lazy and not isinstance(var.variable._data, ReadOnce)]
    return ds.assign(fields), rest
