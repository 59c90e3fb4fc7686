"""Markets and strategies shared by the driver and point-in-time tests, including planted leaks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import polars as pl

import pitgrid as pg
from pitgrid import kernels as K
from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Intents, Strategy
from pitgrid.strategies import (CrossSectionalMomentum, EventDriven, MovingAverageCross,
                                RSIMeanReversion)


def market_with_everything(n_time: int = 160, n_symbols: int = 6, seed: int = 0) -> pg.MarketData:
    """Synthetic bars with a gap, a delisting, a 2:1 split, a dividend, a universe and events."""
    ds = pg.synthetic_prices(n_time, n_symbols, seed=seed)
    rng = np.random.default_rng(seed)
    close = ds["close"].values.copy()
    opens, highs, lows = (ds[f].values.copy() for f in ("open", "high", "low"))
    split = np.ones_like(close)
    k = n_time * 2 // 3
    split[k, 1] = 2.0
    for a in (close, opens, highs, lows):
        a[k:, 1] /= 2.0
    div = np.zeros_like(close)
    div[n_time // 2, 2] = 0.8
    valid = np.ones_like(close, dtype=bool)
    valid[40:43, 3] = False                      # a gap
    valid[n_time - 30:, 4] = False               # a delisting
    for a in (close, opens, highs, lows):
        a[~valid] = np.nan
    ds = ds.assign(close=(ds["close"].dims, close), open=(ds["close"].dims, opens),
                   high=(ds["close"].dims, highs), low=(ds["close"].dims, lows),
                   valid=(ds["close"].dims, valid), split_ratio=(ds["close"].dims, split),
                   dividend=(ds["close"].dims, div))
    symbols = [str(s) for s in ds["symbol"].values]
    times = pd.DatetimeIndex(ds["time"].values)
    universes = pl.DataFrame({
        "universe_id": ["u"] * n_symbols,
        "symbol": symbols,
        "start_date": [times[0]] * (n_symbols - 1) + [times[30]],
        "end_date": [None] * (n_symbols - 2) + [times[100], None],
    })
    n_ev = 60
    ev_bar = rng.integers(0, n_time - 5, n_ev)
    events = pl.DataFrame({
        "symbol": [symbols[i] for i in rng.integers(0, n_symbols, n_ev)],
        "event_time": list(times[ev_bar]),
        "knowledge_time": list(times[ev_bar + rng.integers(1, 5, n_ev)]),
        "field": ["sentiment"] * n_ev,
        "value": rng.normal(0.3, 0.6, n_ev),
    })
    return pg.MarketData(ds, universes=universes, events=events)


SHIPPED = [
    MovingAverageCross(fast=5, slow=20),
    RSIMeanReversion(window=10, low=40, high=60),
    CrossSectionalMomentum(lookback=20, top=2, every=5, universe="u"),
    EventDriven(field="sentiment", enter_above=0.5, exit_below=0.0),
]


@dataclass(frozen=True, kw_only=True)
class CentredAverage(Strategy):
    """LEAK: a centred rolling mean reads bars after t."""

    window: int = 9
    feature_params: ClassVar[tuple[str, ...]] = ("window",)

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        close = pd.DataFrame(data.adjusted("close"))
        return {"mean": close.rolling(self.window, center=True, min_periods=1).mean().to_numpy()}

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        close = data.adjusted("close")
        return Intents(entries=K.crossover(close, f["mean"]), exits=K.crossunder(close, f["mean"]))


@dataclass(frozen=True, kw_only=True)
class EventTimeReader(EventDriven):
    """LEAK: reads events at their event time instead of their knowledge time."""

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        return {"signal": data.events(self.field, by="event_time")}


@dataclass(frozen=True, kw_only=True)
class BackAdjustedLevel(Strategy):
    """LEAK: back-adjusts the whole history with every split in the data, then trades a price level."""

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        factor = data.split_factor
        back = data.raw("close") * factor / factor[-1]
        # the level is the first as-traded close: a fixed dollar level, known from bar 0
        return {"back": back, "level": np.broadcast_to(data.raw("close")[0], back.shape)}

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        return Intents(entries=f["back"] < 0.8 * f["level"], exits=f["back"] > f["level"])


@dataclass(frozen=True, kw_only=True)
class VetoHook(MovingAverageCross):
    """A per-step Python hook: never enter the first symbol."""

    def on_step(self, t: int, data: FeatureData, intents: Intents) -> Intents:
        entries = intents.entries.copy()
        entries[:, 0] = False
        return Intents(entries=entries, exits=intents.exits)
