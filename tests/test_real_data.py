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
