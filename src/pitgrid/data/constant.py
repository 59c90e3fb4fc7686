"""Fields that hold one value in every cell, allocated on first read.

A market built from bars alone has no split and no dividend: its ``split_ratio`` is 1
and its ``dividend`` 0 everywhere. Filling two ``(time, symbol)`` float arrays that a
run then never reads (the market knows it has no action) costs more than the rest of
building the market: the memory is fresh, so the kernel zeroes every page first. Such a
field is a :class:`~pitgrid.data.read_once.ReadOnce` field, as a loaded store's fields
are, so every reader treats it alike: the first read fills it, freezes it and keeps it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from pitgrid.data.read_once import ReadOnce


class Constant:
    """The source of a constant field: its shape, dtype and value, filled when asked.

    Example:
        >>> c = Constant((2, 3), 1.0)
        >>> c.shape, c.dtype, c.get_duck_array().sum()
        ((2, 3), dtype('float64'), np.float64(6.0))
    """

    __slots__ = ("shape", "dtype", "value")

    def __init__(self, shape: tuple[int, ...], value: Any, dtype: Any = np.float64) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.value = value

    def get_duck_array(self) -> np.ndarray:
        return np.full(self.shape, self.value, dtype=self.dtype)


def constant_field(dims: tuple[str, ...], shape: tuple[int, ...], value: Any,
                   dtype: Any = np.float64) -> xr.Variable:
    """A read-only field of ``value`` everywhere, allocated when first read.

    Example:
        >>> v = constant_field(("time", "symbol"), (2, 2), 0.0)
        >>> v.values.tolist(), v.values.flags.writeable
        ([[0.0, 0.0], [0.0, 0.0]], False)
    """
    return xr.Variable(dims, ReadOnce(Constant(shape, value, dtype)), fastpath=True)
