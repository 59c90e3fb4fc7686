"""The point-in-time harness: truncating or scrambling the future must not change the past.

Users run it on their own strategies; the test suite runs it on every shipped
strategy and on planted leaks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData, TimeLike
from pitgrid.drivers.batch import backtest
from pitgrid.drivers.common import as_market
from pitgrid.engine.config import SimConfig
from pitgrid.engine.result import SimResult

_SCRAMBLED_FIELDS = ("open", "high", "low", "close", "volume", "valid", "split_ratio", "dividend")


@dataclass
class Difference:
    """The first thing at or before ``cutoff`` that changed when the data after it did."""

    cutoff: np.datetime64
    how: str  # "truncated" or "scrambled"
    what: str  # "decision", "order", "fill" or "equity"
    time: np.datetime64
    symbol: str | None
    detail: str


@dataclass
class PointInTimeReport:
    """Outcome of :func:`check_point_in_time`: ``ok`` when nothing before a cutoff moved."""

    cutoffs: list[np.datetime64]
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def __str__(self) -> str:
        if self.ok:
            return f"point-in-time: ok at {len(self.cutoffs)} cutoffs"
        d = self.differences[0]
        return (f"point-in-time LEAK: with data {d.how} after {d.cutoff}, the {d.what} at "
                f"{d.time} ({d.symbol}) changed: {d.detail}")


def check_point_in_time(market: MarketData | xr.Dataset, strategy: Strategy,
                        config: SimConfig | dict[str, Any] | None = None, *,
                        cutoffs: Any = 5, seed: int = 0) -> PointInTimeReport:
    """Run on the full data, then on data truncated and scrambled after each cutoff ``c``;
    report the first decision, order, fill or equity at or before ``c`` that differs.

    ``cutoffs`` is a number of evenly spaced bars or a list of times. Scrambling
    permutes the bars after ``c`` (prices, volumes, validity, corporate actions) and
    the values of events not yet known at ``c``.

    Example:
        >>> import pitgrid as pg
        >>> from pitgrid.strategies import MovingAverageCross
        >>> market = pg.MarketData(pg.synthetic_prices(120, 4, seed=0))
        >>> pg.check_point_in_time(market, MovingAverageCross(fast=5, slow=20), cutoffs=2).ok
        True
    """
    market = as_market(market).load()
    times = market.time
    if isinstance(cutoffs, int):
        picks = np.linspace(len(times) // 4, len(times) - 2, cutoffs).astype(int)
        cuts = [times[i] for i in sorted(set(picks))]
    else:
        cuts = [times[market.index_of(c)] for c in cutoffs]
    report = PointInTimeReport(cuts)
    full = backtest(market, strategy, config)
    rng = np.random.default_rng(seed)
    for c in cuts:
        for how, other in (("truncated", market.truncate(c)), ("scrambled", _scrambled(market, c, rng))):
            diff = _first_difference(full, backtest(other, strategy, config), c, market)
            if diff is not None:
                report.differences.append(Difference(c, how, *diff))
                return report
    return report


def _scrambled(market: MarketData, c: TimeLike, rng: np.random.Generator) -> MarketData:
    i = market.index_of(c)
    ds = market.ds.copy(deep=True)
    T = len(market.time)
    if i + 1 < T:
        perm = i + 1 + rng.permutation(T - i - 1)
        order = np.concatenate([np.arange(i + 1), perm])
        for name in _SCRAMBLED_FIELDS:
            if name in ds:
                ds[name] = ds[name].copy(data=np.asarray(ds[name].values)[order])
    events = market.events
    if events.height:
        when = np.datetime64(market.time[i], "ns")
        late = (events["knowledge_time"].to_numpy().astype("datetime64[ns]") > when)
        values = events["value"].to_numpy().copy()
        values[late] = rng.permutation(values[late]) * rng.uniform(0.5, 2.0, late.sum()) - rng.normal(0, 1, late.sum())
        events = events.with_columns(pl.Series("value", values))
    return MarketData(ds, universes=market.universes if market.universes.height else None,
                      events=events if events.height else None,
                      regimes=market.regimes if market.regimes.height else None)


def _first_difference(full: SimResult, other: SimResult, c: np.datetime64, market: MarketData
                      ) -> tuple[str, np.datetime64, str | None, str] | None:
    i = market.index_of(c)
    a, b = full.extra["intents"], other.extra["intents"]
    for name in ("entries", "exits", "weights"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            continue
        x, y = np.asarray(x)[: i + 1], np.asarray(y)[: i + 1]
        same = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y
        if not same.all():
            t, s = np.argwhere(~same)[0]
            return ("decision", market.time[t], str(market.symbols[s]),
                    f"{name} {x[t, s]!r} -> {y[t, s]!r}")
    for what, ta, tb in (("fill", full.trades, other.trades), ("order", full.filtered, other.filtered),
                         ("order", full.unfilled, other.unfilled)):
        ta = ta.filter(pl.col("time") <= c)
        tb = tb.filter(pl.col("time") <= c)
        if not ta.equals(tb):
            n = min(ta.height, tb.height)
            k = next((j for j in range(n) if ta.row(j) != tb.row(j)), n)
            row = ta.row(k, named=True) if k < ta.height else tb.row(k, named=True)
            return (what, np.datetime64(row["time"]), row["symbol"],
                    f"{ta.row(k) if k < ta.height else None} -> {tb.row(k) if k < tb.height else None}")
    ea = full.equity.values[..., : i + 1]
    eb = other.equity.values[..., : i + 1]
    if not np.array_equal(ea, eb):
        t = int(np.argmax(ea != eb))
        return ("equity", market.time[t], None, f"{ea[t]!r} -> {eb[t]!r}")
    return None
