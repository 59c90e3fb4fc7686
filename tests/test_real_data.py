"""The real sample (../shared/data): results a quant checks by eye, kept in the slow tests."""
from __future__ import annotations

import numpy as np
import pytest

import pitgrid as pg
from pitgrid.cycle.data import FeatureData
from pitgrid.strategies import CrossSectionalMomentum

pytestmark = pytest.mark.slow


def test_momentum_top_50_in_the_sp500_holds_50_members_and_stays_invested(real_market):
    lookback, top, every = 126, 50, 21
    strategy = CrossSectionalMomentum(lookback=lookback, top=top, every=every, universe="sp500")
    res = pg.backtest(real_market, strategy, {"fees_bps": 5})
    member = real_market.universe_mask("sp500").values
    close = real_market["close"].values
    # members with a full lookback: the momentum needs both ends of the window
    ready = member[lookback:] & np.isfinite(close[lookback:]) & np.isfinite(close[:-lookback])
    first = lookback + int(np.argmax(ready.sum(axis=1) >= top))
    held = res.positions.values > 0
    fills = np.array([t + 1 for t in range(first, len(close) - 1) if t % every == 0])
    assert len(fills) > 200
    data = FeatureData(real_market)
    chosen = strategy.intents(data, strategy.features(data)).weights[fills - 1] > 0
    assert (chosen.sum(axis=1) == top).all()
    assert not (chosen & ~member[fills - 1]).any()
    # a name in a gap on the decision bar or the fill bar cannot trade: it stays as it was
    valid = real_market["valid"].values
    tradable = valid[fills - 1] & valid[fills]
    np.testing.assert_array_equal(held[fills] & tradable, chosen & tradable)
    assert (held[fills] & ~tradable).sum() <= 0.001 * held[fills].sum()
    invested = res.long_exposure.values[fills[0]:] / res.equity.values[fills[0]:]
    assert invested.min() >= 0.95, f"least invested: {invested.min():.3f}"


def test_no_false_alarm_on_the_real_sample_with_events(real_market):
    import sys
    from pathlib import Path

    import polars as pl

    from pitgrid.strategies import EventDriven, MovingAverageCross, RSIMeanReversion

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from custom_strategy import Breakout

    rng = np.random.default_rng(0)
    times = real_market.time
    n = 20_000
    bar = rng.integers(0, len(times) - 6, n)
    events = pl.DataFrame({
        "symbol": rng.choice(np.asarray(real_market.symbols), n).tolist(),
        "event_time": times[bar], "knowledge_time": times[bar + rng.integers(1, 6, n)],
        "field": "sentiment", "value": rng.normal(0.3, 0.6, n)})
    market = pg.MarketData(real_market.ds, universes=real_market.universes, events=events,
                           actions=real_market.actions)
    for strategy in (MovingAverageCross(fast=50, slow=200, universe="sp500"),
                     CrossSectionalMomentum(lookback=126, top=50, every=21, universe="sp500"),
                     RSIMeanReversion(window=14, low=30, high=70),
                     EventDriven(field="sentiment", enter_above=0.8, exit_below=0.0),
                     Breakout(window=55, exit_window=20)):
        report = pg.check_point_in_time(market, strategy, {"fees_bps": 5})
        assert report.ok, f"{strategy.name}: {report}"
