"""Helpers for a user's own test suite: assert that a strategy never looks ahead.

:func:`assert_causal` draws markets with hypothesis (gaps, a late listing, a
delisting, a split, a dividend, universe changes and events known after they
happen) and runs :func:`pitgrid.check_point_in_time` on each: the step driver audits
the batch run at every bar. hypothesis is needed (``pip install hypothesis``, part
of the ``test`` extra).

Example:
    >>> from pitgrid.testing import assert_causal                      # doctest: +SKIP
    >>> def test_my_strategy_is_causal():                              # doctest: +SKIP
    ...     assert_causal(MyStrategy(window=20), {"fees_bps": 5})
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData
from pitgrid.data.synthetic import synthetic_prices
from pitgrid.drivers.pit import check_point_in_time


def random_market(n_time: int, n_symbols: int, seed: int, *, universe: str | None = None,
                  event_fields: Sequence[str] = (), gap_rate: float = 0.02) -> MarketData:
    """A synthetic market with what real data has: random gaps, the last symbol listed late,
    the first delisted early, a 2:1 split, a dividend, membership of ``universe`` that
    changes, and events in ``event_fields`` published one to five bars after they happen.

    Example:
        >>> random_market(120, 4, seed=1, universe="u").universe_ids
        ['u']
    """
    rng = np.random.default_rng(seed)
    ds = synthetic_prices(n_time, n_symbols, seed=seed)
    prices = {f: ds[f].values.copy() for f in ("open", "high", "low", "close")}
    valid = rng.random((n_time, n_symbols)) >= gap_rate
    valid[: n_time // 3, -1] = False                       # a late listing
    if n_symbols > 1:
        valid[n_time - n_time // 5:, 0] = False           # a delisting
    split = np.ones((n_time, n_symbols))
    k = n_time // 2
    split[k, n_symbols // 2] = 2.0
    for a in prices.values():
        a[k:, n_symbols // 2] /= 2.0
        a[~valid] = np.nan
    dividend = np.zeros((n_time, n_symbols))
    dividend[n_time // 3, min(1, n_symbols - 1)] = 0.5
    dims = ("time", "symbol")
    ds = ds.assign(**{f: (dims, a) for f, a in prices.items()}, valid=(dims, valid),
                   split_ratio=(dims, split), dividend=(dims, dividend))
    symbols = [str(s) for s in ds["symbol"].values]
    times = pd.DatetimeIndex(ds["time"].values)
    universes = None
    if universe is not None:
        starts = rng.integers(0, n_time // 2, n_symbols)
        ends = [times[int(e)] if e < n_time else None for e in starts + rng.integers(n_time // 3, n_time, n_symbols)]
        universes = pl.DataFrame({"universe_id": [universe] * n_symbols, "symbol": symbols,
                                  "start_date": [times[int(s)] for s in starts], "end_date": ends})
    events = None
    if event_fields:
        n = 4 * n_time
        bar = rng.integers(0, n_time - 6, n)
        events = pl.DataFrame({
            "symbol": [symbols[i] for i in rng.integers(0, n_symbols, n)],
            "event_time": list(times[bar]),
            "knowledge_time": list(times[bar + rng.integers(1, 6, n)]),
            "field": [event_fields[i] for i in rng.integers(0, len(event_fields), n)],
            "value": rng.normal(0.3, 0.6, n),
        })
    return MarketData(ds, universes=universes, events=events)


def assert_causal(strategy: Strategy, config: Any = None, *, market: MarketData | None = None,
                  max_examples: int = 10, n_time: tuple[int, int] = (80, 240),
                  n_symbols: tuple[int, int] = (2, 8), event_fields: Sequence[str] = ()) -> None:
    """Raise ``AssertionError`` (the check's report) unless ``strategy`` decides only on what
    is known at each bar, on ``market`` or on ``max_examples`` markets hypothesis draws
    (sizes in ``n_time`` and ``n_symbols``; the strategy's universe and ``event_fields``
    are in each).
    """
    if market is not None:
        report = check_point_in_time(market, strategy, config)
        assert report.ok, str(report)
        return
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    # no shrinking: each example costs a batch run and a step driver in a fresh process,
    # and the first leak's report already names the bar, the symbol and the market's seed
    @settings(max_examples=max_examples, deadline=None, database=None,
              phases=(Phase.explicit, Phase.generate),
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(*n_time), st.integers(*n_symbols), st.integers(0, 2**32 - 1),
           st.sampled_from([0.0, 0.02, 0.1]))
    def check(T: int, S: int, seed: int, gaps: float) -> None:
        drawn = random_market(T, S, seed, universe=strategy.universe, event_fields=event_fields,
                              gap_rate=gaps)
        report = check_point_in_time(drawn, strategy, config)
        assert report.ok, f"{report} (market: {T} bars x {S} symbols, seed {seed}, gaps {gaps})"

    check()
