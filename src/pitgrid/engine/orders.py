"""Orders beyond the market: short signals, stops and limit/stop order levels as core inputs.

:func:`order_arrays` checks and shapes what :func:`pitgrid.simulate` is given (scalars,
``(param,)`` vectors, ``(time, symbol)`` or ``(param, time, symbol)`` arrays) into the
broadcastable arrays ``Core.bind_orders`` holds; docs/simulation.md (step B2) is the
contract.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from pitgrid._core import Core
from pitgrid.engine.codes import INTENT_SIGNALS
from pitgrid.engine.config import SimConfig


STOP_SETTINGS = ("sl_stop", "tp_stop", "sl_trail", "time_stop")
_LEVELS = ("entry_limit", "entry_stop", "exit_limit", "exit_stop")


def orders_needed(config: SimConfig, arrays: dict[str, Any]) -> bool:
    """Whether a run reads bar ranges: a stop or a limit/stop order is given."""
    return any(getattr(config, k) for k in STOP_SETTINGS) or any(
        k in arrays for k in (*STOP_SETTINGS, *_LEVELS))


def _order_array(name: str, x: Any, T: int, S: int, dtype: Any) -> np.ndarray:
    """``x`` as (param or 1, time or 1, symbol or 1): a (param,) vector is one value per set."""
    arr = x.transpose(*[d for d in ("param", "time", "symbol") if d in x.dims]).values \
        if isinstance(x, xr.DataArray) else np.asarray(x)
    if arr.ndim == 1:
        arr = arr[:, None, None]
    elif arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] not in (1, T) or arr.shape[2] not in (1, S):
        raise ValueError(f"{name} must be a scalar, (param,), (time, symbol) = {(T, S)} or "
                         f"(param, time, symbol), got shape {np.shape(x)}")
    if dtype is bool:
        if arr.dtype == np.uint8 and arr.shape[1:] == (T, S) and arr.flags.c_contiguous:
            return arr   # held, not copied: a per-bar driver writes its rows in place
        full = np.broadcast_to(arr.astype(bool), (arr.shape[0], T, S))
        return np.ascontiguousarray(full).view(np.uint8)
    return np.ascontiguousarray(arr, dtype=np.float64)


def order_arrays(config: SimConfig, arrays: dict[str, Any], mode: int, P: int, T: int, S: int,
                 has_param: bool) -> tuple[dict[str, np.ndarray], int, bool]:
    """The core's order inputs (see ``Core.bind_orders``), the number of parameter sets, and
    whether there is a param axis. Empty when nothing goes beyond market orders."""
    if not arrays and not any(getattr(config, k) for k in STOP_SETTINGS):
        return {}, P, has_param
    shorts = "short_entries" in arrays or "short_exits" in arrays
    if shorts and mode != INTENT_SIGNALS:
        raise ValueError("short_entries/short_exits go with entries/exits, "
                         "not with weights or cross")
    if shorts and not config.allow_short:
        raise ValueError("short_entries/short_exits need allow_short=True")
    if mode != INTENT_SIGNALS and any(k in arrays for k in _LEVELS):
        raise ValueError(f"{', '.join(k for k in _LEVELS if k in arrays)}: limit and stop orders "
                         "go with entries/exits signals")
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        out[name] = _order_array(name, value, T, S, bool if name.startswith("short_") else float)
    for name in STOP_SETTINGS:
        if name not in out:
            out[name] = np.full((1, 1, 1), float(getattr(config, name)))
        v = out[name]
        if (v[np.isfinite(v)] < 0).any():
            raise ValueError(f"{name} has a negative value; stops are >= 0 (0 or NaN = off)")
    for entry, (lim, stp) in (("entry", _LEVELS[:2]), ("exit", _LEVELS[2:])):
        if lim in out and stp in out and (np.isfinite(out[lim]) & np.isfinite(out[stp])).any():
            raise ValueError(f"{lim} and {stp} are both set at one cell: a stop-limit {entry} "
                             "order is not supported; give one level per cell")
    for name in _LEVELS:
        out.setdefault(name, np.full((1, 1, 1), np.nan))
    if shorts:
        for name in ("short_entries", "short_exits"):
            out.setdefault(name, np.zeros((1, T, S), dtype=np.uint8))
    sets = {v.shape[0] for v in out.values()} - {1}
    if len(sets) > 1 or (sets and P > 1 and sets != {P}):
        raise ValueError(f"order arrays have {sorted(sets)} parameter sets and the intents {P}; "
                         "each must be 1 or the same number")
    has_param = has_param or bool(sets) or any(
        isinstance(v, xr.DataArray) and "param" in v.dims for v in arrays.values())
    out["unit"] = out.pop("stop_unit", np.full((1, 1, 1), np.nan))
    out["on"] = np.array(any(k in arrays for k in (*STOP_SETTINGS, *_LEVELS))
                         or any(getattr(config, k) for k in STOP_SETTINGS))
    out["levels"] = np.array(any(k in arrays for k in _LEVELS))
    if "stop_unit" in arrays:
        out["stop_unit"] = out["unit"]
    return out, max(P, *sets) if sets else P, has_param


def bind_orders(core: Core, data: dict[str, np.ndarray], orders: dict[str, np.ndarray]) -> None:
    """Hand the core the order arrays of :func:`order_arrays` (nothing when there are none)."""
    if not orders:
        return
    none = np.zeros((1, 1, 1), dtype=np.uint8)
    flat = np.zeros((1, 1))
    core.bind_orders(data.get("high", flat), data.get("low", flat),
                     orders.get("short_entries", none), orders.get("short_exits", none),
                     orders["sl_stop"], orders["tp_stop"], orders["sl_trail"], orders["time_stop"],
                     orders["unit"], orders["entry_limit"], orders["entry_stop"],
                     orders["exit_limit"], orders["exit_stop"])
