"""Sleeves: several strategies in one account, each with its share of the capital.

Each sleeve runs its own strategy with its own settings (costs, sizing, risk gates) in
its own compiled core, on the same market and the same bars; the account's equity is
the sum of the sleeves'. Every ``rebalance_every`` bars, after the close, cash moves
between the sleeves toward their shares of the account's equity: a sleeve above its
share gives up cash, as far as its cash goes (its positions are not sold for it), and
the sleeves below their share receive it in proportion to what they lack. A transfer
shifts the sleeve's reference equity, peak and previous equity with its cash, so its
sizing and its drawdown and daily-loss stops see capital, not a gain or a loss.

A single sleeve with all the capital is the plain run, bit for bit.

Example:
    >>> import pitgrid as pg
    >>> from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross
    >>> market = pg.MarketData(pg.synthetic_prices(300, 6, seed=0))
    >>> book = pg.sleeves(market, [pg.Sleeve(MovingAverageCross(fast=5, slow=20), 0.6),
    ...                            pg.Sleeve(CrossSectionalMomentum(lookback=20, top=2), 0.4)],
    ...                   rebalance_every=21)
    >>> sorted(book.sleeves), book.equity.dims
    (['CrossSectionalMomentum', 'MovingAverageCross'], ('time',))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData
from pitgrid.drivers.common import as_market, decide, resolve_settings
from pitgrid.engine.codes import INTENT_SIGNALS, INTENT_WEIGHTS
from pitgrid.engine.metrics import compute_metrics
from pitgrid.engine.result import SimResult
from pitgrid.engine.simulate import (allocate_outputs, build_result, make_core, market_arrays,
                                     run_core, size_values)


@dataclass(frozen=True)
class Sleeve:
    """One strategy, its share of the account (0 < share <= 1) and its own settings."""

    strategy: Strategy
    share: float
    settings: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.strategy.name


@dataclass
class SleevesResult:
    """The account (``equity``, ``metrics``, its ``capital``) and each sleeve's own run
    (``sleeves``)."""

    equity: xr.DataArray
    metrics: pl.DataFrame
    sleeves: dict[str, SimResult]
    shares: dict[str, float]
    capital: float


def sleeves(market: MarketData | xr.Dataset, book: list[Sleeve], *,
            config: dict[str, Any] | None = None, rebalance_every: int | None = None) -> SleevesResult:
    """Run ``book`` (sleeves whose shares sum to at most 1) in one account; see the module docs.

    ``config`` holds the settings every sleeve shares (its own ``settings`` override them);
    ``init_cash`` there is the account's capital.
    """
    if not book:
        raise ValueError("sleeves needs at least one Sleeve")
    labels = [s.label for s in book]
    if len(set(labels)) != len(labels):
        raise ValueError(f"sleeve names must differ, got {labels}: give each a name")
    shares = np.array([s.share for s in book], dtype=np.float64)
    if not ((shares > 0).all() and shares.sum() <= 1 + 1e-12):
        raise ValueError(f"shares must be > 0 and sum to at most 1, got {shares.tolist()}")
    if rebalance_every is not None and rebalance_every < 1:
        raise ValueError(f"rebalance_every must be >= 1, got {rebalance_every}")
    market = as_market(market).load()
    ds = market.ds
    capital = float(resolve_settings(book[0].strategy, config)[0].init_cash)
    data = FeatureData(market)
    delist = np.ascontiguousarray(market.delist_bar, dtype=np.int64)
    runs = []
    for sleeve, share in zip(book, shares):
        cfg, size_value = resolve_settings(sleeve.strategy, {**(config or {}), **sleeve.settings,
                                                              "init_cash": capital * share})
        if cfg.accounts != "shared":
            raise ValueError(f"sleeve {sleeve.label}: sleeves move cash within one account; "
                             "accounts must be 'shared'")
        intents = decide(market, sleeve.strategy, data)
        arrays = market_arrays(ds, cfg, market.facts)
        T, S = arrays["close"].shape
        if intents.kind == "weights":
            mode = INTENT_WEIGHTS
            bank = np.ascontiguousarray(np.asarray(intents.weights, dtype=np.float64)[None])
            rows = (_NO_BOOL, _NO_BOOL, bank, _IDX, _IDX)
        else:
            mode = INTENT_SIGNALS
            zeros = np.zeros((T, S), dtype=bool)
            ent = np.ascontiguousarray(np.asarray(intents.entries if intents.entries is not None
                                                  else zeros, dtype=bool)[None]).view(np.uint8)
            ext = np.ascontiguousarray(np.asarray(intents.exits if intents.exits is not None
                                                  else zeros, dtype=bool)[None]).view(np.uint8)
            rows = (ent, ext, _NO_BANK, _IDX, _IDX)
        core = make_core(cfg, 1, S, mode, size_values(cfg, size_value, 1))
        runs.append((sleeve, cfg, core, arrays, rows, allocate_outputs(1, T, S, core.A, True)))
    T = len(market.time)
    stops = list(range(rebalance_every, T, rebalance_every)) if rebalance_every else []
    t0 = 0
    for t1 in [*stops, T]:
        for _, _, core, arrays, rows, out in runs:
            run_core(core, arrays, delist, rows, out, t0, t1)
        if t1 < T:
            _rebalance(runs, shares, t1 - 1)
        t0 = t1
    results = {}
    for sleeve, cfg, core, _, _, out in runs:
        res = build_result(core, cfg, ds, out, core.take_log(), None, False, True)
        res.extra.update(strategy=sleeve.strategy.describe(), share=float(sleeve.share))
        results[sleeve.label] = res
    equity = sum((r.equity for r in results.values()), start=xr.zeros_like(
        next(iter(results.values())).equity)) + capital * (1 - shares.sum())
    metrics = compute_metrics(np.asarray(equity.values)[None], np.array([capital]),
                              bars_per_year=runs[0][1].bars_per_year)
    return SleevesResult(equity, metrics, results, dict(zip(labels, shares.tolist())), capital)


def _rebalance(runs: list, shares: np.ndarray, t: int) -> None:
    """Move cash toward each sleeve's share of the equity at the close of bar ``t``."""
    equity = np.array([out["equity"][0, t] for *_, out in runs])
    gap = shares / shares.sum() * equity.sum() - equity  # > 0: below its share
    states = [core.state for _, _, core, *_ in runs]
    cash = np.array([st["cash"][0, 0] for st in states])
    give = np.minimum(np.maximum(-gap, 0.0), np.maximum(cash, 0.0))
    need = np.maximum(gap, 0.0)
    moved = give.sum()
    if moved <= 0 or need.sum() <= 0:
        return
    delta = need / need.sum() * moved - give
    for st, d in zip(states, delta):
        for key in ("cash", "eref", "peak", "prev_eq"):
            st[key][0, 0] += d


_IDX = np.zeros(1, dtype=np.int64)
_NO_BOOL = np.zeros((1, 1, 1), dtype=np.uint8)
_NO_BANK = np.zeros((1, 1, 1))
