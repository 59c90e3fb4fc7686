"""``pitgrid.simulate``: order intents over (time, symbol) in, fills and accounts out.

The Python face of the compiled step core: it validates and aligns inputs, runs
``Core.run`` over every bar in one call (no Python per bar or per parameter set)
and labels the outputs.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Literal

import numpy as np
import polars as pl
import xarray as xr

from pitgrid._core import Core
from pitgrid.data.market import MarketData, delist_bars
from pitgrid.engine.codes import (INTENT_CROSS, INTENT_SIGNALS, INTENT_WEIGHTS, KIND_FILL,
                                  KIND_FILTERED, KIND_UNFILLED, REASONS, SIZE_RULES)
from pitgrid.engine.config import SimConfig
from pitgrid.engine.journal import Journal
from pitgrid.engine.memory import check_simulate
from pitgrid.engine.metrics import compute_metrics
from pitgrid.engine.orders import STOP_SETTINGS, bind_orders, order_arrays, orders_needed
from pitgrid.engine.result import LazyTable, SimResult

Keep = Literal["auto", "full", "equity"]


def simulate(
    prices: Any,
    *,
    entries: Any = None,
    exits: Any = None,
    short_entries: Any = None,
    short_exits: Any = None,
    weights: Any = None,
    cross: tuple[Any, Any, Any] | None = None,
    size_value: Any = None,
    keep: Keep = "auto",
    delist_bar: np.ndarray | None = None,
    param_coords: dict[str, Any] | None = None,
    record_trades: bool = True,
    start: Any = None,
    end: Any = None,
    stop_after: Any = None,
    sl_stop: Any = None,
    tp_stop: Any = None,
    sl_trail: Any = None,
    time_stop: Any = None,
    stop_unit: Any = None,
    entry_limit: Any = None,
    entry_stop: Any = None,
    exit_limit: Any = None,
    exit_stop: Any = None,
    **settings: Any,
) -> SimResult:
    """Simulate order intents on a universe with the compiled core.

    Say what to trade with exactly one of: ``entries``/``exits`` (bool signals,
    sized by ``size`` and ``size_value``), ``weights`` (target weights of account
    equity, NaN = leave as is), or ``cross=(bank, fast, slow)`` (enter when
    ``bank[fast[p]]`` crosses above ``bank[slow[p]]``, exit on the cross below).
    Each intent is ``(time, symbol)`` or ``(param, time, symbol)``; the parameter
    axis runs inside one compiled call. ``settings`` are the fields of
    :class:`SimConfig` (``fill``, ``fees_bps``, ``slippage_bps``, ``accounts``,
    ``size``, ...); docs/simulation.md is the exact contract.

    ``record_trades=False`` counts fills and refusals in the metrics without
    listing them (the tables come back empty): what a grid needs.

    ``short_entries``/``short_exits`` (bool, with ``allow_short=True``) open and
    close short positions beside ``entries``/``exits``. Per-position exits
    ``sl_stop``, ``tp_stop``, ``sl_trail`` (fractions of the entry price, or multiples
    of ``stop_unit``, e.g. an ATR array) and ``time_stop`` (bars held) are each a
    scalar, a ``(time, symbol)`` array read at the bar the entry was decided, a
    ``(param,)`` vector (a grid over stop levels, one compiled pass) or a ``(param,
    time, symbol)`` array; 0 or NaN is off. ``entry_limit``/``entry_stop`` and
    ``exit_limit``/``exit_stop`` (price levels per ``(time, symbol)``, NaN = market)
    turn that bar's signal into a limit or stop order, live from the next bar for
    ``order_ttl`` bars. Fills inside a bar follow docs/simulation.md step B2; their
    reasons in ``trades`` are "stop_loss", "take_profit", "trailing_stop",
    "time_stop", "limit" and "stop".

    ``start`` and ``end`` (times, inclusive) bound the run: nothing trades before
    ``start`` (intents there may still read the bars before it, as features warming
    up do), nothing after ``end`` is read, and the result and its metrics cover
    ``start..end`` only. A delisting after ``end`` is not known at ``end``.

    ``stop_after`` (a time) stops the compiled loop after that bar with every later bar
    still in its arrays, unread: how the point-in-time check shows that nothing up to a
    bar reads the bars after it (outputs after it stay unwritten).

    ``prices`` is an xarray Dataset with dims (time, symbol) and at least
    ``close`` (``open`` for next-open fills; ``volume`` for a volume cap or
    impact; optional ``valid``, ``split_ratio``, ``dividend``), or a MarketData.

    Example:
        >>> import pitgrid as pg
        >>> ds = pg.synthetic_prices(100, 4, seed=0)
        >>> c = ds["close"]
        >>> res = pg.simulate(ds, entries=c > c.shift(time=1), exits=c < c.shift(time=1),
        ...                   fill="close", fees_bps=10, accounts="per_symbol")
        >>> res.equity.dims
        ('time',)
    """
    given = {"sl_stop": sl_stop, "tp_stop": tp_stop, "sl_trail": sl_trail, "time_stop": time_stop,
             "stop_unit": stop_unit, "entry_limit": entry_limit, "entry_stop": entry_stop,
             "exit_limit": exit_limit, "exit_stop": exit_stop,
             "short_entries": short_entries, "short_exits": short_exits}
    # a scalar stop is a setting of the run; an array of them is an input beside the intents
    for name in STOP_SETTINGS:
        if given[name] is not None and np.ndim(given[name]) == 0:
            v = float(given.pop(name))
            if not np.isfinite(v):
                v = 0.0
            settings[name] = int(v) if name == "time_stop" and v.is_integer() else v
    config = SimConfig(**settings)
    check_simulate(prices, config, keep=keep, record_trades=record_trades, entries=entries,
                   exits=exits, weights=weights, cross=cross)
    ds, market_delist = _dataset(prices)
    arrays = {k: v for k, v in given.items() if v is not None}
    data = market_arrays(ds, config, prices.facts if isinstance(prices, MarketData) else None,
                         orders=orders_needed(config, arrays))
    T, S = data["close"].shape
    if delist_bar is None:
        delist_bar = market_delist if market_delist is not None else delist_bars(data["valid"].view(bool))
    delist_bar = np.ascontiguousarray(delist_bar, dtype=np.int64)
    if delist_bar.shape != (S,):
        raise ValueError(f"delist_bar must have one entry per symbol ({S}), got shape {delist_bar.shape}")

    mode, intents, P, has_param, coords = _intents(ds, entries, exits, weights, cross, T, S)
    orders, P, has_param = order_arrays(config, arrays, mode, P, T, S, has_param)
    if P > 1 and len(intents[3]) == 1:
        intents = (*intents[:3], np.zeros(P, np.int64), np.zeros(P, np.int64))
    if param_coords is not None:
        coords = param_coords
    first, last = bar_window(ds["time"].values, start, end)
    if last < T - 1:
        ds, data, intents, delist_bar = _until(ds, data, intents, delist_bar, last)
        orders = {k: np.ascontiguousarray(v[:, : last + 1]) if v.ndim == 3 and v.shape[1] > 1 else v
                  for k, v in orders.items()}
        T = last + 1
    sv = size_values(config, size_value, P)
    keep_full = keep == "full" or (keep == "auto" and P == 1)
    if keep not in ("auto", "full", "equity"):
        raise ValueError(f"keep={keep!r} is not one of 'auto', 'full', 'equity'")

    core = make_core(config, P, S, mode, sv, record_trades, orders=orders)
    # sized for the run at the start rather than doubled (and copied) a dozen times; with
    # the room a bar keeps free (run_core's), so the log is not doubled for the last bars
    signals = _signal_count(mode, intents, P)
    if record_trades:
        core.ensure_log_room(signals + core.log_rows_per_bar)
    # positions and accounts are journaled and rebuilt when first read (engine/journal.py)
    out = allocate_outputs(P, T, S, core.A, False)
    if keep_full:
        core.start_journal(2 * signals + core.journal_rows_per_bar + 4096)
    stop = T if stop_after is None else min(T, bar_window(ds["time"].values, None, stop_after)[1] + 1)
    run_core(core, data, delist_bar, intents, out, first, stop, orders)
    li, lf = core.take_log()
    journal = None
    if keep_full:
        rows, values, begin = core.take_journal()
        journal = Journal(rows, values, begin, core.A == core.S and config.accounts == "per_symbol",
                          first, stop, first, data["close"], data["valid"], data["split"],
                          data["has_action"])
    if first:
        ds, out, li = cut_from(ds, out, li, first, bool(out["keep"]))
    return build_result(core, config, ds, out, (li, lf), coords, has_param, keep_full, journal)


def bar_window(times: np.ndarray, start: Any, end: Any) -> tuple[int, int]:
    """The first and last bar of ``start..end`` (times, inclusive; None: the data's ends)."""
    times = np.asarray(times, "datetime64[ns]")
    first = 0 if start is None else int(np.searchsorted(times, np.datetime64(start, "ns"), "left"))
    last = len(times) - 1 if end is None else int(np.searchsorted(times, np.datetime64(end, "ns"),
                                                                   "right")) - 1
    if not 0 <= first <= last < len(times):
        raise ValueError(f"start={start!r}, end={end!r} leave no bar of the data "
                         f"({times[0] if len(times) else None} .. {times[-1] if len(times) else None})")
    return first, last


def _until(ds: xr.Dataset, data: dict[str, np.ndarray], intents: tuple, delist_bar: np.ndarray,
           last: int) -> tuple[xr.Dataset, dict[str, np.ndarray], tuple, np.ndarray]:
    """Everything cut after bar ``last``: what a run that ends there may read."""
    n = last + 1
    cut = {k: (np.ascontiguousarray(v[:n]) if v.shape[0] > 1 or k == "has_action" else v)
           for k, v in data.items()}
    ent, ext, bank, ia, ib = intents
    ent, ext = (np.ascontiguousarray(a[:, :n]) if a.shape[1] > 1 else a for a in (ent, ext))
    bank = np.ascontiguousarray(bank[:, :n]) if bank.shape[1] > 1 else bank
    delist = np.where(delist_bar <= last, delist_bar, -1).astype(np.int64)
    return ds.isel(time=slice(0, n)), cut, (ent, ext, bank, ia, ib), delist


def cut_from(ds: xr.Dataset, out: dict[str, np.ndarray], log_i: np.ndarray, first: int,
          keep_full: bool) -> tuple[xr.Dataset, dict[str, np.ndarray], np.ndarray]:
    """The outputs from bar ``first`` on, and the log's bars counted from there."""
    cut = {}
    for k, v in out.items():
        if k == "keep" or (v.ndim == 3 and not keep_full):
            cut[k] = v
        else:
            cut[k] = np.ascontiguousarray(v[:, first:])
    log_i = log_i.copy()
    log_i[:, 0] -= first
    return ds.isel(time=slice(first, None)), cut, log_i


def _signal_count(mode: int, intents: tuple, P: int) -> int:
    """About how many orders a signals run places (each signal at most one, mostly one
    fill), capped at 4M; 0 for other intents. What the order log and journal start with."""
    if mode != INTENT_SIGNALS:
        return 0
    ent, ext = intents[0], intents[1]
    n = np.count_nonzero(ent) * (P // ent.shape[0]) + np.count_nonzero(ext) * (P // ext.shape[0])
    return int(min(n, 1 << 22))


def make_core(config: SimConfig, P: int, S: int, mode: int, size_value: np.ndarray,
              record_log: bool = True, orders: dict[str, np.ndarray] | None = None) -> Core:
    """The compiled core for a configuration: the one place settings reach it.

    ``orders`` (from :func:`~pitgrid.engine.orders.order_arrays`) switches on what goes
    beyond market orders; without it, the config's scalar stops do. The core keeps them
    for :func:`run_core` to bind."""
    if orders is None:
        orders = order_arrays(config, {}, mode, P, 1, S, False)[0]
    core = Core(
        P, S, per_symbol=config.accounts == "per_symbol", fill_close=config.fill == "close",
        intent_mode=mode, size_mode=SIZE_RULES[config.size], size_value=size_value,
        init_cash=config.init_cash, fees_bps=config.fees_bps, slippage_bps=config.slippage_bps,
        spread_bps=config.spread_bps, impact_k=config.impact_k,
        commission_per_share=config.commission_per_share, min_commission=config.min_commission,
        max_participation=config.max_participation, carry=config.unfilled == "carry",
        lot_size=config.lot_size, min_order_value=config.min_order_value,
        allow_short=config.allow_short, max_leverage=config.max_leverage,
        borrow_bps=config.borrow_bps, bars_per_year=config.bars_per_year,
        min_bars_between=config.min_bars_between, max_positions=config.max_positions,
        max_trades_per_bar=config.max_trades_per_bar, daily_loss_stop=config.daily_loss_stop,
        max_drawdown_stop=config.max_drawdown_stop, cooldown_losses=config.cooldown_losses,
        cooldown_bars=config.cooldown_bars, record_log=record_log,
        orders=bool(orders.get("on", False)), levels=bool(orders.get("levels", False)),
        shorts="short_entries" in orders,
        stop_first=config.stop_first, stop_unit="stop_unit" in orders, order_ttl=config.order_ttl,
        trail_close=config.trail_on == "close",
    )
    core.order_inputs = orders
    return core


# ---------------------------------------------------------------------- inputs
def _dataset(prices: Any) -> tuple[xr.Dataset, np.ndarray | None]:
    if isinstance(prices, xr.Dataset):
        return prices, None
    ds = getattr(prices, "ds", None)
    if isinstance(ds, xr.Dataset):
        return ds, getattr(prices, "delist_bar", None)
    raise TypeError(f"prices must be an xarray.Dataset or a MarketData, got {type(prices).__name__}")


def _field(ds: xr.Dataset, name: str, why: str) -> np.ndarray:
    if name not in ds.data_vars:
        raise ValueError(f"prices has no {name!r} field, which {why} needs")
    da = ds[name]
    if da.dims != ("time", "symbol"):
        raise ValueError(f"prices[{name!r}] must have dims ('time', 'symbol'), got {da.dims}")
    return np.ascontiguousarray(da.values, dtype=np.float64)


def market_arrays(ds: xr.Dataset, config: SimConfig, facts: dict[str, bool] | None = None,
                  orders: bool = False) -> dict[str, np.ndarray]:
    """Contiguous float64 / uint8 arrays the core reads, with their defaults.

    ``facts`` (a market's :attr:`~pitgrid.MarketData.facts`, recorded at ingest) spares
    the passes over every cell that would find what they state: no gap, no action.
    ``orders``: stops or limit/stop orders are on, which read each bar's open, high and
    low (a missing open is the close, a missing high or low the larger or smaller of
    open and close).
    """
    orders = orders or orders_needed(config, {})
    close = _field(ds, "close", "every simulation")
    T, S = close.shape
    gapless = facts is not None and facts["gapless"]
    valid = np.ones((T, S), dtype=bool) if gapless else np.isfinite(close)
    if config.fill == "next_open":
        open_ = _field(ds, "open", "fill='next_open'")
        if not gapless:
            valid &= np.isfinite(open_)
    elif (orders or config.lot_size > 0) and "open" in ds.data_vars:
        # close fills never read the open, but cash in lieu after a split is paid at it
        open_ = _field(ds, "open", "")
    else:
        open_ = close
    if "volume" in ds.data_vars:
        volume = _field(ds, "volume", "a volume cap")
    elif np.isfinite(config.max_participation) or config.impact_k > 0:
        raise ValueError("prices has no 'volume' field, which max_participation or impact_k needs")
    else:
        volume = np.zeros((T, S))
    if "valid" in ds.data_vars and not gapless:
        valid &= np.asarray(ds["valid"].values, dtype=bool)
    actions = facts is None or facts["has_actions"]
    split = _field(ds, "split_ratio", "") if actions and "split_ratio" in ds.data_vars else None
    div = _field(ds, "dividend", "") if actions and "dividend" in ds.data_vars else None
    # a raw value other than 1 (split) or 0 (dividend), NaN included, may be an action
    maybe = np.zeros(T, dtype=bool)
    if split is not None:
        maybe |= (split != 1.0).any(axis=1)
    if div is not None:
        maybe |= (div != 0.0).any(axis=1)
    if maybe.any():
        split = np.ones((T, S)) if split is None else split
        split = np.ascontiguousarray(np.where(np.isfinite(split) & (split > 0), split, 1.0))
        div = np.zeros((T, S)) if div is None else div
        div = np.ascontiguousarray(np.where(np.isfinite(div), div, 0.0))
        has_action = ((split != 1.0) | (div != 0.0)).any(axis=1)
    else:
        # the core reads actions only on bars flagged in has_action, so placeholders do
        split, div, has_action = np.ones((1, 1)), np.zeros((1, 1)), np.zeros(T, dtype=bool)
    out = {
        "open": open_, "close": close, "volume": volume,
        "valid": np.ascontiguousarray(valid).view(np.uint8),
        "split": split, "dividend": div,
        "has_action": has_action.astype(np.uint8),
    }
    if orders:
        o = _filled(open_, lambda: close)
        for name, pick in (("high", np.fmax), ("low", np.fmin)):
            x = _field(ds, name, "") if name in ds.data_vars else np.full((T, S), np.nan)
            out[name] = _filled(x, lambda: pick(o, close))
        out["open"] = o
    return out


def _filled(x: np.ndarray, fallback: Any) -> np.ndarray:
    """``x`` with its non-finite cells taken from ``fallback()`` (computed only when needed)."""
    bad = ~np.isfinite(x)
    return np.ascontiguousarray(np.where(bad, fallback(), x) if bad.any() else x)


def _as_array(name: str, x: Any, ds: xr.Dataset, T: int, S: int, dtype: Any
              ) -> tuple[np.ndarray, dict[str, Any] | None]:
    coords = None
    if isinstance(x, xr.DataArray):
        dims = x.dims
        if dims not in (("time", "symbol"), ("param", "time", "symbol")):
            raise ValueError(f"{name} must have dims (time, symbol) or (param, time, symbol), got {dims}")
        for dim in ("time", "symbol"):
            if dim in x.coords and dim in ds.coords and not np.array_equal(x[dim].values, ds[dim].values):
                raise ValueError(f"{name} is not aligned with prices on {dim!r}: coordinates differ")
        if "param" in dims:
            coords = {k: v.values for k, v in x.coords.items() if v.dims == ("param",)}
        arr = x.values
    else:
        arr = np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (T, S):
        raise ValueError(f"{name} must be (time, symbol) = {(T, S)} or (param, time, symbol), "
                         f"got shape {np.shape(x)}")
    if dtype is bool:
        if arr.dtype != bool:
            if not np.isin(arr[~np.isnan(arr)] if arr.dtype.kind == "f" else arr, [0, 1]).all():
                raise ValueError(f"{name} must be boolean")
            arr = np.nan_to_num(arr).astype(bool) if arr.dtype.kind == "f" else arr.astype(bool)
        return np.ascontiguousarray(arr).view(np.uint8), coords
    return np.ascontiguousarray(arr, dtype=np.float64), coords


def _intents(ds, entries, exits, weights, cross, T, S):
    given = [n for n, v in (("entries/exits", entries if entries is not None else exits),
                            ("weights", weights), ("cross", cross)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of entries/exits, weights or cross; got {given or 'none'}")
    no_bool = np.zeros((1, 1, 1), dtype=np.uint8)
    no_bank = np.zeros((1, 1, 1))
    if weights is not None:
        bank, coords = _as_array("weights", weights, ds, T, S, float)
        P = bank.shape[0]
        idx = np.arange(P, dtype=np.int64)
        return INTENT_WEIGHTS, (no_bool, no_bool, bank, idx, idx), P, bank.shape[0] > 1 or _has_param(weights), coords
    if cross is not None:
        bank, fast, slow = cross
        bank = np.ascontiguousarray(bank, dtype=np.float64)
        fast = np.ascontiguousarray(fast, dtype=np.int64)
        slow = np.ascontiguousarray(slow, dtype=np.int64)
        if bank.ndim != 3 or bank.shape[1:] != (T, S):
            raise ValueError(f"cross bank must be (k, time, symbol) with (time, symbol) = {(T, S)}")
        if fast.shape != slow.shape or fast.ndim != 1:
            raise ValueError("cross fast and slow indices must be 1-D of equal length")
        if len(fast) and (min(fast.min(), slow.min()) < 0 or max(fast.max(), slow.max()) >= bank.shape[0]):
            raise ValueError(f"cross indices must lie in [0, {bank.shape[0]})")
        return INTENT_CROSS, (no_bool, no_bool, bank, fast, slow), len(fast), True, None
    zeros = np.zeros((T, S), dtype=bool)
    ent, coords_e = _as_array("entries", entries if entries is not None else zeros, ds, T, S, bool)
    ext, coords_x = _as_array("exits", exits if exits is not None else zeros, ds, T, S, bool)
    P = max(ent.shape[0], ext.shape[0])
    for name, arr in (("entries", ent), ("exits", ext)):
        if arr.shape[0] not in (1, P):
            raise ValueError(f"{name} has {arr.shape[0]} parameter sets, expected 1 or {P}")
    ia = np.zeros(P, dtype=np.int64) if ent.shape[0] == 1 else np.arange(P, dtype=np.int64)
    ib = np.zeros(P, dtype=np.int64) if ext.shape[0] == 1 else np.arange(P, dtype=np.int64)
    has_param = P > 1 or _has_param(entries) or _has_param(exits)
    return INTENT_SIGNALS, (ent, ext, no_bank, ia, ib), P, has_param, coords_e or coords_x


def _has_param(x: Any) -> bool:
    return x is not None and np.ndim(x) == 3


def size_values(config: SimConfig, size_value: Any, P: int) -> np.ndarray:
    if config.size == "all":
        return np.full(P, np.nan)
    if size_value is None:
        raise ValueError(f"size={config.size!r} needs size_value (a number, or one per parameter set)")
    sv = np.broadcast_to(np.asarray(size_value, dtype=np.float64), (P,)).copy()
    if not (np.isfinite(sv).all() and (sv > 0).all()):
        raise ValueError(f"size_value must be finite and > 0, got {size_value!r}")
    return sv


# ---------------------------------------------------------------------- running
def allocate_outputs(P: int, T: int, S: int, A: int, keep_full: bool) -> dict[str, np.ndarray]:
    """Output arrays the core writes row by row; (param, time, symbol) only when kept."""
    shape_full = (P, T, S) if keep_full else (1, 1, 1)
    shape_acct = (P, T, A) if keep_full else (1, 1, 1)
    return {
        "equity": np.full((P, T), np.nan), "long": np.zeros((P, T)), "short": np.zeros((P, T)),
        "cash": np.full(shape_acct, np.nan), "account_equity": np.full(shape_acct, np.nan),
        "shares": np.zeros(shape_full), "keep": np.array(keep_full),
    }


def run_core(core: Core, data: dict[str, np.ndarray], delist_bar: np.ndarray,
             intents: tuple, out: dict[str, np.ndarray], t0: int, t1: int,
             orders: dict[str, np.ndarray] | None = None) -> None:
    """Run bars [t0, t1) in compiled code, growing the order log when it fills up."""
    ent, ext, bank, ia, ib = intents
    T = data["close"].shape[0]
    has_delist = np.zeros(T, dtype=np.uint8)
    has_delist[delist_bar[(delist_bar >= 0) & (delist_bar < T)]] = 1
    bind_orders(core, data, core.order_inputs if orders is None else orders)
    need = core.log_rows_per_bar
    t = t0
    while t < t1:
        # each grows (doubling) when a bar might not fit, which is why the run stopped
        core.ensure_log_room(need)
        core.ensure_journal_room()
        t = core.run(t, t1, data["open"], data["close"], data["volume"], data["valid"],
                     data["split"], data["dividend"], data["has_action"], delist_bar, has_delist,
                     ent, ext, bank, ia, ib, out["equity"], out["long"], out["short"],
                     bool(out["keep"]), out["cash"], out["account_equity"], out["shares"])


def log_tables(log: tuple[np.ndarray, np.ndarray], times: np.ndarray, symbols: np.ndarray
               ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Turn the core's order log into the trades, unfilled and filtered tables."""
    return tuple(log_frame(log, times, symbols, kind)  # type: ignore[return-value]
                 for kind in (KIND_FILL, KIND_UNFILLED, KIND_FILTERED))


def log_frame(log: tuple[np.ndarray, np.ndarray], times: np.ndarray, symbols: np.ndarray,
              kind: int) -> pl.DataFrame:
    """One table of the core's order log: the rows of ``kind`` (fills, unfilled, filtered)."""
    li, lf = log
    mask = li[:, 3] == kind
    # strings by gathering from short polars Series: numpy string arrays convert slowly
    cols: dict[str, Any] = {
        "time": pl.Series(times[li[mask, 0]]),
        "param": li[mask, 1].astype(np.int64),
        "symbol": pl.Series(np.asarray(symbols).astype(str)).gather(li[mask, 2]),
    }
    if kind == KIND_FILL:
        cols["side"] = pl.Series(["sell", "buy"]).gather((li[mask, 5] > 0).astype(np.int64))
        cols["shares"] = np.abs(lf[mask, 0])
        cols["price"] = lf[mask, 1]
        cols["fees"] = lf[mask, 2]
        cols["slippage_cost"] = lf[mask, 3]
    else:
        cols["shares"] = lf[mask, 0]
    cols["reason"] = pl.Series([REASONS[i] for i in range(len(REASONS))]).gather(li[mask, 4])
    return pl.DataFrame(cols)


class Labels:
    """Labels the outputs of a run as xarray: time and symbol from its Dataset (their
    indexes reused, not rebuilt), the parameter coordinates; picklable, so a lazily
    built output can be labelled in another process."""

    def __init__(self, ds: xr.Dataset, P: int, coords: dict[str, Any] | None, has_param: bool):
        self.time_coords = ds["time"].coords
        self.axis = {"time": ds["time"].variable, "symbol": ds["symbol"].variable}
        self.has_param = has_param
        self.param: dict[str, Any] = {"param": np.arange(P)}
        for name, values in (coords or {}).items():
            if name != "param":
                self.param[name] = ("param", np.asarray(values))

    def __call__(self, arr: np.ndarray, dims: tuple[str, ...], last: np.ndarray | None = None
                 ) -> xr.DataArray:
        if not self.has_param:
            arr, dims = arr[0], dims[1:]
            if dims == ("time",):  # the common case, a coordinates object: half the cost
                return xr.DataArray(arr, dims=dims, coords=self.time_coords)
        c: dict[str, Any] = {d: self.axis[d] for d in dims if d in self.axis}
        if self.has_param:
            c.update(self.param)
        if last is not None and dims[-1] not in self.axis:
            c[dims[-1]] = last
        return xr.DataArray(arr, dims=dims, coords=c)


def _kept(labels: Labels, journal: Journal, name: str, dims: tuple[str, ...],
          last: np.ndarray | None) -> xr.DataArray:
    """One kept output of a journaled run, labelled: what a result builds on first read."""
    return labels(journal.array(name), dims, last)


def _metrics(equity: np.ndarray, initial: np.ndarray, bars_per_year: float, stats: np.ndarray,
             gross: np.ndarray) -> pl.DataFrame:
    """A run's metrics table, one row per parameter set: what a result builds on first read."""
    metrics = compute_metrics(equity, initial, bars_per_year=bars_per_year, stats=stats,
                              gross=gross)
    return metrics.insert_column(0, pl.Series("param", np.arange(len(equity))))


def build_result(core: Core, config: SimConfig, ds: xr.Dataset, out: dict[str, np.ndarray],
                 log: tuple[np.ndarray, np.ndarray], coords: dict[str, Any] | None,
                 has_param: bool, keep_full: bool, journal: Journal | None = None) -> SimResult:
    """Label the outputs of a finished run (``out`` from :func:`allocate_outputs`); the
    trade tables are built from ``log`` when first read, and so are the positions and
    accounts from ``journal`` when the core did not write them into ``out``."""
    times = ds["time"].values
    symbols = ds["symbol"].values
    P = core.P
    label = Labels(ds, P, coords, has_param)
    accounts = symbols if core.A == core.S and config.accounts == "per_symbol" else np.array(["all"])
    initial = np.full(P, config.init_cash * core.A)
    # of the run as it is now: a step driver goes on writing into ``out`` and the core
    metrics = LazyTable(partial(_metrics, out["equity"].copy(), initial, config.bars_per_year,
                                core.stats_arr.copy(), out["long"] + out["short"]))
    trades, unfilled, filtered = (LazyTable(partial(log_frame, log, times, symbols, kind))
                                  for kind in (KIND_FILL, KIND_UNFILLED, KIND_FILTERED))
    res = SimResult(
        equity=label(out["equity"], ("param", "time")),
        long_exposure=label(out["long"], ("param", "time")),
        short_exposure=label(out["short"], ("param", "time")),
        trades=trades,
        unfilled=unfilled,
        metrics=metrics,
        config={**config.to_dict(), "optimistic": config.optimistic},
        optimistic=config.optimistic,
        filtered=filtered,
    )
    # the core's own order log (the tables are views of it): for exact comparisons
    res.extra["order_log"] = log
    if config.max_drawdown_stop > 0:
        halted = core.state["halted"]
        res.halted_at = label(np.where(halted > 0, halted - 1, -1).astype(np.int64),
                              ("param", "account"), accounts)
    if keep_full:
        kept = {"account_equity": ("account_equity", ("param", "time", "account"), accounts),
                "cash": ("cash", ("param", "time", "account"), accounts),
                "positions": ("shares", ("param", "time", "symbol"), None)}
        for attr, (name, dims, last) in kept.items():
            if bool(out["keep"]) or journal is None:  # the core wrote them bar by bar
                setattr(res, attr, label(out[name], dims, last))
            else:
                setattr(res, attr, LazyTable(partial(_kept, label, journal, name, dims, last)))
    return res
