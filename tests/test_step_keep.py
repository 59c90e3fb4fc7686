"""StepDriver(keep=...): "equity" keeps no positions or account rows and changes nothing else,
in every driver path (whole runs, a late start, save and load, a hook strategy's backtest)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross

from strategies_for_tests import VetoHook


def _same_run(a: pg.SimResult, b: pg.SimResult) -> None:
    assert np.array_equal(a.equity.values, b.equity.values, equal_nan=True)
    assert a.metrics.equals(b.metrics)
    assert a.trades.equals(b.trades)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), fill=st.sampled_from(["close", "next_open"]),
       accounts=st.sampled_from(["per_symbol", "shared"]), start=st.integers(0, 60),
       momentum=st.booleans())
def test_equity_only_runs_agree_with_full_ones(seed, fill, accounts, start, momentum):
    market = pg.MarketData(pg.synthetic_prices(120, 5, seed=seed))
    strategy = (CrossSectionalMomentum(lookback=10, top=2, every=5) if momentum
                else MovingAverageCross(fast=3, slow=12))
    cfg = {"fill": fill, "accounts": accounts, "fees_bps": 5}
    t0 = market.time[start]
    full = pg.StepDriver(market, strategy, cfg, start=t0).run(progress=False)
    lean = pg.StepDriver(market, strategy, cfg, start=t0, keep="equity").run(progress=False)
    _same_run(full, lean)
    assert full.positions is not None and lean.positions is None


def test_an_equity_only_driver_saves_and_resumes_as_such(tmp_path):
    market = pg.MarketData(pg.synthetic_prices(150, 4, seed=3))
    strategy = MovingAverageCross(fast=4, slow=15)
    whole = pg.StepDriver(market, strategy, keep="equity").run(progress=False)
    d = pg.StepDriver(market, strategy, keep="equity")
    d.run(until=market.time[70], progress=False)
    resumed = pg.StepDriver.load(d.save(tmp_path / "s"), market, strategy)
    _same_run(whole, resumed.run(progress=False))
    assert resumed.result().positions is None


def test_a_hook_strategy_s_backtest_honours_keep():
    market = pg.MarketData(pg.synthetic_prices(120, 4, seed=5))
    hooked = VetoHook(fast=5, slow=20)
    full, lean = (pg.backtest(market, hooked, {"fill": "close"}, keep=k) for k in ("full", "equity"))
    _same_run(full, lean)
    assert full.positions is not None and lean.positions is None


def test_keep_is_validated():
    with pytest.raises(ValueError, match="keep='some'"):
        pg.StepDriver(pg.MarketData(pg.synthetic_prices(30, 2, seed=0)),
                      MovingAverageCross(fast=2, slow=5), keep="some")
