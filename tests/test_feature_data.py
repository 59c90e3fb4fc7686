"""What a strategy is handed: events known at each bar, and cross-sections over members only."""
from __future__ import annotations

import numpy as np
import polars as pl

import pitgrid as pg
from pitgrid.cycle.data import FeatureData

T, S = 12, 3
DS = pg.synthetic_prices(T, S, seed=1)
TIME = DS["time"].values
SYMBOLS = [str(s) for s in DS["symbol"].values]


def _tied_events(n_later: int) -> pl.DataFrame:
    """120 events of each symbol known at bar 2, about one of two earlier days (60 ties
    each), then ``n_later`` events known after bar 5, many of them tied too."""
    known = TIME[2]
    about = known - np.array([1, 2] * 60) * np.timedelta64(1, "D")
    rng = np.random.default_rng(0)
    later = TIME[6] + rng.integers(0, 4, n_later) * np.timedelta64(1, "D")
    return pl.DataFrame({
        "symbol": np.repeat(SYMBOLS, 120).tolist() + list(rng.choice(SYMBOLS, n_later)),
        "event_time": np.concatenate([np.tile(about, S), later]).astype("datetime64[ns]"),
        "knowledge_time": np.concatenate([[known] * 120 * S, later]).astype("datetime64[ns]"),
        "field": "score",
        "value": np.concatenate([np.arange(120.0 * S), rng.normal(size=n_later)]),
    })


def test_tied_events_resolve_by_input_order_whatever_comes_later():
    full = pg.MarketData(DS, events=_tied_events(200_000))
    cut = full.truncate(TIME[5])
    seen_full = FeatureData(full).events("score")[:6]
    seen_cut = FeatureData(cut).events("score")
    np.testing.assert_array_equal(seen_full, seen_cut)
    # the latest event_time (one day before), and of those the last row in the table
    assert seen_cut[2].tolist() == [120.0 * i + 118 for i in range(S)]


def test_a_later_knowledge_time_within_the_bar_wins_over_input_order():
    ev = pl.DataFrame({
        "symbol": [SYMBOLS[1]] * 2,
        "event_time": np.array([TIME[1]] * 2, "datetime64[ns]"),
        "knowledge_time": np.array([TIME[2] - np.timedelta64(1, "h"), TIME[2] - np.timedelta64(2, "h")],
                                   "datetime64[ns]"),
        "field": "score", "value": [10.0, 20.0],
    })
    seen = FeatureData(pg.MarketData(DS, events=ev)).events("score")
    assert seen[2, 1] == 10.0 and np.isnan(seen[1, 1]) and seen[-1, 1] == 10.0
