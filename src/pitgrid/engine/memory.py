"""Estimate what a run will allocate and refuse, before allocating, one that cannot fit.

A 10,000-bar x 5,000-symbol backtest holds 400 MiB per float array of that shape,
and a run holds several (positions, per-account cash, features, intents), so a
run that does not fit would otherwise swap or be killed half-way. Each entry
point (``simulate``, ``backtest``, ``grid``, ``StepDriver``) calls one ``check_*``
function first; it adds up the large arrays the run will allocate and raises
:class:`InsufficientMemoryError` naming the estimate, the memory available and
what to change.

The estimate counts the arrays whose size is known from the shapes: market
arrays the core reads, intents, the core's state and outputs (by ``keep``), the
strategy's features (``FEATURE_ARRAYS`` float arrays of ``(time, symbol)``, an
assumption: strategies do not declare theirs; for a grid with a feature bank, the
bank rows its plan holds at once) and, for a store opened lazily, the market itself.
The trade tables are counted where ``simulate`` sees the
intents: at most one order per true entry or exit, or per weight (a rebalance
each bar); crossovers of ``cross=`` are not counted, and a driver's check, made
before its strategy has decided anything, leaves the tables to ``simulate``'s.

Available memory is the least of ``MemAvailable`` in ``/proc/meminfo`` and the
room left under the cgroup memory limits (v2 ``memory.max``, v1
``memory.limit_in_bytes``) of this process; where neither can be read (not
Linux), nothing is refused. ``PITGRID_MEMORY_LIMIT_MB`` replaces that measure
with a fixed number of MiB: the memory a run may allocate.

Example:
    >>> import pitgrid as pg
    >>> ds = pg.synthetic_prices(1000, 50, seed=0)
    >>> estimate_simulate(ds, P=1, keep_full=True).total > 1000 * 50 * 8
    True
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from pitgrid.data.market import _numpy_backed

ENV_LIMIT = "PITGRID_MEMORY_LIMIT_MB"

#: (time, symbol) float64 arrays assumed for a strategy's features and their adjusted inputs.
FEATURE_ARRAYS = 4

# where the kernel reports memory; module attributes so tests can point them at fixtures
_MEMINFO = Path("/proc/meminfo")
_PROC_CGROUP = Path("/proc/self/cgroup")
_CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 reports "no limit" as a huge page-aligned number rather than "max"
_NO_LIMIT = 1 << 60

_F8 = 8  # bytes of a float64
_LOG_ROW = 6 * 4 + 4 * 8  # the core's order log: 6 int32 and 4 float64 per row
_LOG_START = 4096  # rows the core's log starts with
# per recorded order at the peak: the core's log as it doubles (old and new copies), the
# copy take_log returns, and its row in the polars tables (measured: 200-230 bytes)
_ORDER_BYTES = 224


class InsufficientMemoryError(MemoryError):
    """A run refused before it allocated anything: its estimate exceeds the memory available.

    ``needed`` and ``available`` are bytes, ``source`` says where ``available``
    was read, ``parts`` is the estimate by array group.

    Example:
        >>> e = InsufficientMemoryError("backtest", 3 << 30, 1 << 30, "test", {"positions": 3 << 30},
        ...                             "pass keep='equity'")
        >>> str(e)
        "backtest needs about 3.0 GiB (positions 3.0 GiB) but 1.0 GiB is available (test): pass keep='equity'"
    """

    def __init__(self, what: str, needed: int, available: int, source: str,
                 parts: dict[str, int], advice: str) -> None:
        self.needed, self.available, self.source, self.parts = needed, available, source, parts
        largest = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
        detail = ", ".join(f"{name} {format_bytes(n)}" for name, n in largest if n > 0)
        super().__init__(f"{what} needs about {format_bytes(needed)} ({detail}) but "
                         f"{format_bytes(available)} is available ({source}): {advice}")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run will allocate, by array group.

    Example:
        >>> MemoryEstimate({"outputs": 10, "intents": 5}).total
        15
    """

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def __add__(self, other: MemoryEstimate) -> MemoryEstimate:
        merged = dict(self.parts)
        for name, n in other.parts.items():
            merged[name] = merged.get(name, 0) + n
        return MemoryEstimate(merged)


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it >= 1.

    Example:
        >>> format_bytes(4.2 * 2**30), format_bytes(512)
        ('4.2 GiB', '512 B')
    """
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


# ---------------------------------------------------------------------- available memory
def available_memory() -> tuple[int, str] | None:
    """``(bytes a run may allocate, where that was read)``, or None where it cannot be read.

    Example:
        >>> import os
        >>> os.environ["PITGRID_MEMORY_LIMIT_MB"] = "512"
        >>> available_memory()
        (536870912, 'PITGRID_MEMORY_LIMIT_MB=512')
        >>> del os.environ["PITGRID_MEMORY_LIMIT_MB"]
    """
    raw = os.environ.get(ENV_LIMIT, "").strip()
    if raw:
        try:
            mb = float(raw)
        except ValueError:
            mb = math.nan
        if not (math.isfinite(mb) and mb > 0):
            raise ValueError(f"{ENV_LIMIT}={raw!r} must be a positive number of MiB")
        return int(mb * 2**20), f"{ENV_LIMIT}={raw}"
    found = [m for m in (_meminfo_available(), _cgroup_available()) if m is not None]
    return min(found, key=lambda m: m[0]) if found else None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_value(path: Path, key: str) -> int:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _meminfo_available() -> tuple[int, str] | None:
    try:
        lines = _MEMINFO.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) * 1024, f"{_MEMINFO} MemAvailable"
    return None


def _cgroup_dirs() -> list[tuple[Path, str, str, str]]:
    """(directory, limit file, usage file, reclaimable-cache key) of each cgroup whose
    memory limit applies to this process: its own and every ancestor's."""
    try:
        lines = _PROC_CGROUP.read_text().splitlines()
    except OSError:
        lines = []
    v2_path = v1_path = "/"
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            v2_path = path or "/"
        elif "memory" in controllers.split(","):
            v1_path = path or "/"
    out = []
    for base, rel, files in ((_CGROUP_ROOT, v2_path, ("memory.max", "memory.current",
                                                      "inactive_file")),
                             (_CGROUP_ROOT / "memory", v1_path,
                              ("memory.limit_in_bytes", "memory.usage_in_bytes",
                               "total_inactive_file"))):
        parts = [p for p in rel.split("/") if p]
        # inside a container the process's own path is often not mounted: the root is its cgroup
        for depth in range(len(parts), -1, -1):
            out.append((base.joinpath(*parts[:depth]), *files))
    return out


def _cgroup_available() -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for directory, limit_name, usage_name, inactive_key in _cgroup_dirs():
        limit = _read_int(directory / limit_name)  # "max" (no limit) reads as None
        usage = _read_int(directory / usage_name)
        if limit is None or usage is None or limit >= _NO_LIMIT:
            continue
        # page cache counts as usage but the kernel drops it under pressure
        used = usage - _stat_value(directory / "memory.stat", inactive_key)
        room = max(limit - max(used, 0), 0)
        if best is None or room < best[0]:
            best = (room, f"cgroup limit {directory / limit_name}")
    return best


def ensure_fits(estimate: MemoryEstimate, what: str, advice: str) -> None:
    """Raise :class:`InsufficientMemoryError` when ``estimate`` exceeds the memory available.

    Example:
        >>> ensure_fits(MemoryEstimate({"outputs": 1024}), "a run", "use less")
    """
    avail = available_memory()
    if avail is not None and estimate.total > avail[0]:
        raise InsufficientMemoryError(what, estimate.total, avail[0], avail[1], estimate.parts,
                                      advice)


# ---------------------------------------------------------------------- estimates
def _dataset(market: Any) -> xr.Dataset:
    ds = getattr(market, "ds", market)
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"expected an xarray.Dataset or a MarketData, got {type(market).__name__}")
    return ds


def _shape(ds: xr.Dataset) -> tuple[int, int]:
    return int(ds.sizes.get("time", 0)), int(ds.sizes.get("symbol", 0))


def _lazy_bytes(ds: xr.Dataset) -> int:
    """What reading a lazily opened store into memory allocates (0 when it is in memory)."""
    return sum(v.size * v.dtype.itemsize for v in ds.data_vars.values() if not _numpy_backed(v))


def _copies_to(x: Any, dtype: Any) -> bool:
    """Whether turning ``x`` into a contiguous ``dtype`` array copies it; a lazily opened
    array is read as its own dtype, which is counted with the market store."""
    if isinstance(x, xr.DataArray):
        if not _numpy_backed(x):
            return x.dtype != dtype
        x = x.values
    return not (isinstance(x, np.ndarray) and x.dtype == dtype and x.flags.c_contiguous)


def _has_actions(market: Any, ds: xr.Dataset) -> bool:
    actions = getattr(market, "actions", None)
    if actions is not None and hasattr(actions, "height"):
        return actions.height > 0
    return "split_ratio" in ds.data_vars or "dividend" in ds.data_vars


def _market_arrays(market: Any, ds: xr.Dataset, next_open: bool) -> int:
    """What ``simulate.market_arrays`` allocates beyond the market itself."""
    T, S = _shape(ds)
    cells = T * S
    n = 2 * cells  # the valid mask and one temporary of it
    for name in ("close", "open" if next_open else None, "volume"):
        if name is not None and name in ds.data_vars and _copies_to(ds[name], np.float64):
            n += _F8 * cells
    if "volume" not in ds.data_vars:
        n += _F8 * cells  # zeros stand in for it
    if _has_actions(market, ds):
        n += 4 * _F8 * cells  # cleaned split and dividend arrays and their temporaries
    return n


def _n_params(entries: Any, exits: Any, weights: Any, cross: Any) -> int:
    if cross is not None:
        try:
            return max(1, len(cross[1]))
        except (TypeError, IndexError):
            return 1
    leading = [np.shape(x)[0] for x in (entries, exits, weights)
               if x is not None and len(np.shape(x)) == 3]
    return max(leading, default=1)


def _intent_bytes(cells: int, entries: Any, exits: Any, weights: Any, cross: Any) -> int:
    n = 0
    if weights is not None and _copies_to(weights, np.float64):
        n += _F8 * int(np.prod(np.shape(weights)))
    if cross is not None:
        try:
            bank = cross[0]
        except (TypeError, IndexError):
            return n
        if _copies_to(bank, np.float64):
            n += _F8 * int(np.prod(np.shape(bank)))
    for x in (entries, exits):
        if x is None and (entries is not None or exits is not None):
            n += cells  # a missing side is a zero mask
        elif x is not None and _copies_to(x, np.bool_):
            n += int(np.prod(np.shape(x)))
    return n


def _order_bound(entries: Any, exits: Any, weights: Any) -> int:
    """At most how many orders the intents can make: one per true signal, or per weight."""
    if weights is not None:
        return int(np.prod(np.shape(weights)))
    return sum(int(np.count_nonzero(np.asarray(x))) for x in (entries, exits) if x is not None)


def estimate_simulate(prices: Any, *, P: int, keep_full: bool, per_symbol: bool = False,
                      next_open: bool = True, record_trades: bool = True, entries: Any = None,
                      exits: Any = None, weights: Any = None, cross: Any = None
                      ) -> MemoryEstimate:
    """What one call of :func:`pitgrid.simulate` allocates for ``P`` parameter sets; the
    intents, when given, size the intent copies and (``record_trades``) the trade tables.

    Example:
        >>> import pitgrid as pg
        >>> ds = pg.synthetic_prices(1000, 50, seed=0)
        >>> full = estimate_simulate(ds, P=1, keep_full=True, per_symbol=True)
        >>> lean = estimate_simulate(ds, P=1, keep_full=False, per_symbol=True)
        >>> full.parts["positions and accounts"] > lean.parts["positions and accounts"]
        True
    """
    ds = _dataset(prices)
    T, S = _shape(ds)
    A = S if per_symbol else 1
    parts = {
        "market store": _lazy_bytes(ds),
        "market arrays": _market_arrays(prices, ds, next_open),
        "intents": _intent_bytes(T * S, entries, exits, weights, cross),
        # per set and bar: equity, long and short exposure, gross exposure and the metrics'
        # copies of the equity curve
        "equity curves": _F8 * P * T * 6,
        "positions and accounts": _F8 * P * T * (S + 2 * A) if keep_full else 0,
        "engine state": _F8 * P * (4 * S + 7 * A + 9)
        + _LOG_ROW * (_LOG_START + (3 * P * S + 1 if record_trades else 0)),
        "trade tables": _ORDER_BYTES * _order_bound(entries, exits, weights)
        if record_trades else 0,
    }
    return MemoryEstimate(parts)


def check_simulate(prices: Any, config: Any, *, keep: str, record_trades: bool,
                   entries: Any = None, exits: Any = None, weights: Any = None,
                   cross: Any = None) -> MemoryEstimate:
    """Refuse a :func:`pitgrid.simulate` call that cannot fit; ``config`` is its SimConfig.

    Example:
        >>> import pitgrid as pg
        >>> ds = pg.synthetic_prices(100, 4, seed=0)
        >>> check_simulate(ds, pg.SimConfig(), keep="auto", record_trades=True,
        ...                weights=ds["close"] * 0 + 0.1).total > 0
        True
    """
    ds = _dataset(prices)
    T, S = _shape(ds)
    P = _n_params(entries, exits, weights, cross)
    keep_full = keep == "full" or (keep == "auto" and P == 1)
    est = estimate_simulate(prices, P=P, keep_full=keep_full,
                            per_symbol=config.accounts == "per_symbol",
                            next_open=config.fill == "next_open", record_trades=record_trades,
                            entries=entries, exits=exits, weights=weights, cross=cross)
    advice = ("pass keep='equity' to keep only the equity curves, or " if keep_full else "")
    ensure_fits(est, f"simulate of {P} parameter set{'s' if P > 1 else ''} x {T} bars x {S} "
                     f"symbols (keep={keep!r})",
                advice + "run fewer parameter sets, symbols or bars at a time")
    return est


def _features(T: int, S: int) -> MemoryEstimate:
    # the strategy's features and intents: FEATURE_ARRAYS float arrays and two masks
    return MemoryEstimate({"features": _F8 * FEATURE_ARRAYS * T * S, "intents": 2 * T * S})


def check_backtest(market: Any, config: Any, *, keep: str) -> MemoryEstimate:
    """Refuse a batch :func:`pitgrid.backtest` that cannot fit: market, features, intents
    and the compiled run's outputs (``keep="full"`` holds positions and cash per bar).

    Example:
        >>> import pitgrid as pg
        >>> m = pg.MarketData(pg.synthetic_prices(100, 4, seed=0))
        >>> check_backtest(m, pg.SimConfig(), keep="full").total > 0
        True
    """
    ds = _dataset(market)
    T, S = _shape(ds)
    keep_full = keep in ("full", "auto")
    est = _features(T, S) + estimate_simulate(
        market, P=1, keep_full=keep_full, per_symbol=config.accounts == "per_symbol",
        next_open=config.fill == "next_open")
    advice = "pass keep='equity' to keep only the equity curve, or " if keep_full else ""
    ensure_fits(est, f"backtest of {T} bars x {S} symbols (keep={keep!r})",
                advice + "backtest fewer symbols or a shorter period")
    return est


def check_step(market: Any, config: Any) -> MemoryEstimate:
    """Refuse a :class:`pitgrid.StepDriver` that cannot fit: it keeps positions and cash per
    bar for the whole market, plus a (time, symbol) bank of each kind of intent.

    Example:
        >>> import pitgrid as pg
        >>> m = pg.MarketData(pg.synthetic_prices(100, 4, seed=0))
        >>> check_step(m, pg.SimConfig()).parts["intents"] == 100 * 4 * (2 + 8) + 2 * 100 * 4
        True
    """
    ds = _dataset(market)
    T, S = _shape(ds)
    est = _features(T, S) + MemoryEstimate({"intents": T * S * (2 + _F8)}) + estimate_simulate(
        market, P=1, keep_full=True, per_symbol=config.accounts == "per_symbol",
        next_open=config.fill == "next_open")
    ensure_fits(est, f"step driver over {T} bars x {S} symbols",
                "step through fewer symbols or a shorter period")
    return est


def grid_set_bytes(T: int, S: int, shared_bank: bool) -> int:
    """Bytes one parameter set of a grid chunk holds: its equity curve, exposures and metric
    copies and its state, plus, unless the strategy shares one bank across sets, its intents
    (8 bytes a cell: two signal masks, decided then stacked with the chunk's, take 4;
    weights take 16).

    Example:
        >>> grid_set_bytes(1000, 50, shared_bank=True) < grid_set_bytes(1000, 50, shared_bank=False)
        True
    """
    return _F8 * (6 * T + 11 * S) + (0 if shared_bank else _F8 * T * S)


def grid_row_bytes(T: int, S: int) -> int:
    """Bytes one row of a grid's feature bank holds: a ``(time, symbol)`` float64 array.

    Example:
        >>> grid_row_bytes(1000, 50)
        400000
    """
    return _F8 * T * S


def _grid_features(variants: Sequence[Any], bank_rows: int | None) -> int:
    """(time, symbol) float arrays a grid's features take at once: the bank rows held (all the
    distinct ones unless the plan says fewer) and the adjusted input they are computed from,
    or, without a bank, the feature sets ``features_for`` caches."""
    from pitgrid.drivers.grid_plan import bank_keys

    keys = bank_keys(variants)
    if keys is not None:
        return 1 + (len({k for ks in keys for k in ks}) if bank_rows is None else bank_rows)
    from pitgrid.drivers.common import _FEATURE_CACHE_SIZE

    n_sets = len({v.feature_key() for v in variants})
    return FEATURE_ARRAYS * min(n_sets, _FEATURE_CACHE_SIZE)


def check_grid(market: Any, config: Any, variants: Sequence[Any], *, chunk_sets: int,
               budget_mb: float, bank_rows: int | None = None) -> MemoryEstimate:
    """Refuse a :func:`pitgrid.grid` of ``variants`` (one strategy per parameter set) whose
    largest chunk (``chunk_sets`` sets, as the ``memory_budget_mb`` planner cut it) cannot
    fit with the market and the features (``bank_rows``: the feature-bank rows held at once,
    as the planner counted them; default every distinct row).

    Example:
        >>> import pitgrid as pg
        >>> from pitgrid.strategies import MovingAverageCross
        >>> m = pg.MarketData(pg.synthetic_prices(100, 4, seed=0))
        >>> sets = [MovingAverageCross(fast=f, slow=30) for f in (5, 10)]
        >>> est = check_grid(m, pg.SimConfig(), sets, chunk_sets=2, budget_mb=256)
        >>> est.parts["features"] == 8 * 100 * 4 * 4  # the close, fast 5 and 10, slow 30
        True
    """
    from pitgrid.drivers.grid_plan import bank_keys

    ds = _dataset(market)
    T, S = _shape(ds)
    chunk = chunk_sets * grid_set_bytes(T, S, bank_keys(variants) is not None)
    est = MemoryEstimate({
        "market store": _lazy_bytes(ds),
        "market arrays": _market_arrays(market, ds, config.fill == "next_open"),
        "features": _F8 * T * S * _grid_features(variants, bank_rows),
        "parameter sets": chunk,
    })
    ensure_fits(est, f"grid of {len(variants)} parameter sets over {T} bars x {S} symbols in "
                     f"chunks of up to {chunk_sets} (memory_budget_mb={budget_mb:g})",
                f"lower memory_budget_mb (a chunk takes {format_bytes(chunk)}), "
                "or run fewer symbols or a shorter period")
    return est
