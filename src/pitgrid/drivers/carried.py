"""Data a strategy brings along instead of reading it through what it is handed.

The point-in-time check compares a strategy's runs on the market it is handed. Data
that reach both runs another way come whole to each, so the runs agree whatever
they read in them: a signal passed in as a parameter, a notebook's global market, a
cache a notebook class or closure filled in an earlier run (cloudpickle ships the
code of a class defined in a notebook, a script's ``__main__`` or a function by
value, with the closures, class attributes and globals it reads), a market store
opened by path. :func:`carried_data` finds the first four in the strategy itself;
:func:`forbid_stores` makes the last fail in a run's process.
"""
from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

_DEPTH = 4  # containers inside containers, as deep as a cache usually nests


def carried_data(strategy: Any, n_time: int) -> str | None:
    """Where ``strategy`` carries market data, or None: a market, dataset or frame anywhere
    it brings along; an array with one row per bar (``n_time``) among its parameters or in
    the state of code shipped by value; arrays kept in a dict, list or set there (a cache).

    Example:
        >>> from pitgrid.strategies import MovingAverageCross
        >>> carried_data(MovingAverageCross(fast=5, slow=20), 100) is None
        True
    """
    if dataclasses.is_dataclass(strategy):
        params = {f.name: getattr(strategy, f.name) for f in dataclasses.fields(strategy)}
    else:
        params = dict(vars(strategy))
    for name, value in params.items():
        found = _data_in(value, n_time, False, 0)
        if found:
            return f"parameter {name!r}: {found}"
    seen: set[int] = set()
    for klass in type(strategy).__mro__:
        if klass is object or _by_reference(klass):
            continue
        for name, value in vars(klass).items():
            if name.startswith("__") and name.endswith("__"):
                continue
            found = _in_code(value, n_time, seen) if callable(value) or isinstance(
                value, (staticmethod, classmethod, property)) else _data_in(value, n_time, False, 0)
            if found:
                return f"{klass.__qualname__}.{name}: {found}"
    return None


def _by_reference(klass: type) -> bool:
    """Whether cloudpickle ships ``klass`` by name (importable), not by value."""
    try:
        from cloudpickle.cloudpickle import _should_pickle_by_reference
    except ImportError:  # an older or newer cloudpickle: its documented rule
        return klass.__module__ != "__main__" and "<locals>" not in klass.__qualname__
    return bool(_should_pickle_by_reference(klass))


def _in_code(value: Any, n_time: int, seen: set[int]) -> str | None:
    """Data in the closures and the globals read by a function shipped by value."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        return next((f for f in (_in_code(g, n_time, seen) for g in (value.fget, value.fset)
                                 if g is not None) if f), None)
    if not isinstance(value, types.FunctionType) or id(value) in seen:
        return None
    seen.add(id(value))
    for cell, name in zip(value.__closure__ or (), value.__code__.co_freevars):
        try:
            content = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        found = _in_code(content, n_time, seen) or _data_in(content, n_time, False, 0)
        if found:
            return f"closure variable {name!r}: {found}"
    by_value = value.__module__ == "__main__" or "<locals>" in value.__qualname__
    if by_value:
        for name in _names(value.__code__):
            if name in value.__globals__:
                content = value.__globals__[name]
                found = (_in_code(content, n_time, seen) if isinstance(content, types.FunctionType)
                         else _data_in(content, n_time, False, 0))
                if found:
                    return f"global {name!r}: {found}"
    return None


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _data_in(value: Any, n_time: int, in_cache: bool, depth: int) -> str | None:
    kind = _frame_kind(value)
    if kind:
        return f"a {kind}"
    if isinstance(value, np.ndarray):
        if in_cache and value.size > 1:
            return f"an array of shape {value.shape} kept in a {in_cache}"
        if value.ndim >= 1 and value.shape[0] == n_time and n_time > 1:
            return f"an array of shape {value.shape}, one row per bar"
        return None
    if depth >= _DEPTH:
        return None
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        return None
    cache = type(value).__name__ if isinstance(value, (dict, list, set)) else in_cache
    return next((f for f in (_data_in(v, n_time, cache, depth + 1) for v in items) if f), None)


def _frame_kind(value: Any) -> str | None:
    """The name of a market, dataset or frame type, by module so that none is imported."""
    module = type(value).__module__.split(".")[0]
    name = type(value).__name__
    if module == "pitgrid" and name in ("MarketData", "FeatureData"):
        return f"{name} (a market)"
    if module in ("xarray", "pandas", "polars") and name in ("Dataset", "DataArray", "DataFrame",
                                                             "Series", "LazyFrame"):
        return f"{module} {name}"
    return None


class ForbiddenRead(RuntimeError):
    """A read that a strategy under the point-in-time check may not make (not an OSError,
    so that no reader takes it for a missing file)."""


def forbid_stores() -> None:
    """From now on in this process, opening a file inside a market store fails: a strategy
    under the check reads the market it is handed, not a store by path."""
    known: dict[str, bool] = {}

    def is_store(folder: Path) -> bool:
        key = str(folder)
        if key not in known:
            known[key] = (folder / "_pitgrid" / "manifest.json").is_file()
        return known[key]

    skip = (sys.prefix, sys.base_prefix, "/proc/", "/sys/")

    def hook(event: str, args: tuple) -> None:
        if event != "open" or not isinstance(args[0], (str, Path)):
            return
        name = str(args[0])
        # the interpreter's own files and the system's are never a store: no path work
        if name.startswith(skip) or name.endswith((".py", ".pyc", ".so")):
            return
        path = Path(name)
        for folder in list(path.parents)[:6]:
            if is_store(folder):
                raise ForbiddenRead(f"{path}: a strategy under the point-in-time check may "
                                      "not read a market store by path (its data reach every "
                                      "run whole); read the market it is handed")

    sys.addaudithook(hook)
