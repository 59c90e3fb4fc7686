"""Keep xarray from importing ``dask.array`` (and scipy with it) before anything uses dask.

xarray asks for dask's array type on every Variable it builds (``array_type("dask")``
in ``as_compatible_data``) and, with dask installed, imports ``dask.array`` to answer:
about half a second of a cold start, for a run that never touches dask. No object can
be a dask array before ``dask.array`` is imported, so until it is the answer is "no
type"; from then on, and for anything else xarray asks about dask (its module,
version, availability), the real answer, imported on demand. Likewise nothing is a
dask collection before dask is imported (``is_dask_collection``, asked when a store's
times are decoded).

Installed once by :mod:`pitgrid.data`; a later xarray that caches differently is left
alone (it then imports dask as before: slower, never wrong).
"""
from __future__ import annotations

import sys
from typing import Any


def install() -> bool:
    """Put the deferred dask entry in xarray's cache of duck-array modules; True if done.

    Example:
        >>> install() in (True, False)
        True
    """
    try:
        from xarray.namedarray import pycompat, utils
    except ImportError:
        return False
    asks = getattr(utils, "is_dask_collection", None)
    if callable(asks) and not getattr(asks, "deferred", False):
        def is_dask_collection(x: object) -> bool:
            return "dask" in sys.modules and asks(x)

        is_dask_collection.deferred = True  # type: ignore[attr-defined]
        utils.is_dask_collection = is_dask_collection
    cache = getattr(pycompat, "_cached_duck_array_modules", None)
    base = getattr(pycompat, "DuckArrayModule", None)
    if not isinstance(cache, dict) or base is None or "dask" in cache:
        return False

    class DeferredDask(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:  # imports nothing until asked
            self._real: Any = None

        def _resolved(self) -> Any:
            if self._real is None:
                self._real = base("dask")
            return self._real

        @property
        def type(self) -> tuple[type, ...]:
            return self._resolved().type if "dask.array" in sys.modules else ()

        @property
        def module(self) -> Any:
            return self._resolved().module

        @property
        def version(self) -> Any:
            return self._resolved().version

        @property
        def available(self) -> bool:
            return self._resolved().available

    cache["dask"] = DeferredDask()
    return True
