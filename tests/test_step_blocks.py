"""A run to a later bar advances a traced rule over blocks of bars: bit for bit the batch
run and the bar-by-bar run, whatever the blocks' edges."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid.strategies import EqualWeight
from strategies_for_tests import SHIPPED, market_with_everything

MARKET = market_with_everything()
SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _same_run(a: pg.SimResult, b: pg.SimResult, start: int) -> None:
    np.testing.assert_array_equal(np.asarray(a.equity.values), np.asarray(b.equity.values))
    assert a.trades.equals(b.trades) and a.unfilled.equals(b.unfilled)
    for name in ("entries", "exits", "weights"):  # decisions from the start (before: warm-up)
        x, y = getattr(a.extra["intents"], name), getattr(b.extra["intents"], name)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(np.asarray(x)[start:], np.asarray(y)[start:])


@pytest.mark.parametrize("strategy", [*SHIPPED, EqualWeight(universe="u", every=7)],
                         ids=lambda s: s.name)
@SETTINGS
@given(rows=st.integers(1, 60), stops=st.lists(st.integers(0, len(MARKET.time) - 1), max_size=3),
       start=st.integers(0, 40))
def test_blocks_of_any_size_are_the_batch_run(strategy, rows, stops, start):
    begin = MARKET.time[start]
    driver = pg.StepDriver(MARKET, strategy, start=begin)
    assert driver._traced, f"{strategy.name}'s rule traces: its runs go in blocks"
    driver._block_rows = rows
    # runs to a few times (blocks cut there), then a bar by bar, then to the end
    for t in sorted(set(stops)):
        if t >= driver.t:
            driver.run(until=MARKET.time[t], progress=False)
    if driver.t < len(MARKET.time):
        driver.step()
    res = driver.run(progress=False)
    _same_run(res, pg.backtest(MARKET, strategy, start=begin), start)
