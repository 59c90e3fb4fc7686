"""Robustness runs: deterministic paths, path 0 is the market itself, shocks hit equity."""
import numpy as np

import pitgrid as pg
from pitgrid.drivers.robustness import bootstrap_paths
from dataclasses import dataclass

from pitgrid.cycle.strategy import Intents, Strategy
from pitgrid.strategies import MovingAverageCross


@dataclass(frozen=True, kw_only=True)
class BuyAndHold(Strategy):
    """Equal weights bought on the first bar, never rebalanced."""

    def features(self, data):
        return {}

    def intents(self, data, f):
        w = np.full((data.n_time, len(data.symbols)), np.nan)
        w[0] = 0.99 / len(data.symbols)
        return Intents(weights=w)


def test_paths_are_reproducible_and_path_zero_is_the_market():
    market = pg.MarketData(pg.synthetic_prices(120, 5, seed=2))
    a = list(bootstrap_paths(market, 3, block=10, seed=4))
    b = list(bootstrap_paths(market, 3, block=10, seed=4))
    np.testing.assert_allclose(a[0].ds["close"].values, market.ds["close"].values, rtol=1e-12)
    for x, y in zip(a, b):
        assert np.array_equal(x.ds["close"].values, y.ds["close"].values)
    assert not np.array_equal(a[1].ds["close"].values, a[2].ds["close"].values)
    assert (a[1].ds["high"].values >= a[1].ds["low"].values).all()


def test_metrics_per_path_equal_backtests_on_those_paths():
    market = pg.MarketData(pg.synthetic_prices(150, 6, seed=5))
    strategy = MovingAverageCross(fast=5, slow=20)
    r = pg.robustness(market, strategy, {"fill": "close"}, n_paths=3, block=8, seed=9, progress=False)
    for i, m in enumerate(bootstrap_paths(market, 3, block=8, seed=9)):
        single = pg.backtest(m, strategy, {"fill": "close"}).metrics
        assert r.table.row(i, named=True)["total_return"] == single["total_return"][0]
    assert r.summary().filter(r.summary()["stat"] == "worst")["total_return"][0] == r.table["total_return"].min()


def test_a_crash_shock_lowers_a_long_portfolio():
    market = pg.MarketData(pg.synthetic_prices(100, 6, seed=1))
    strategy = BuyAndHold()
    base = pg.robustness(market, strategy, {"fill": "close"}, n_paths=1, progress=False)
    hit = pg.robustness(market, strategy, {"fill": "close"}, n_paths=1, progress=False,
                        shocks={market.time[50]: -0.3})
    b, h = base.table["total_return"][0], hit.table["total_return"][0]
    # 99% invested from bar 0 and never rebalanced: the shock takes 30% of the invested part
    assert h < b
    np.testing.assert_allclose(h - b, -0.3 * (1 + b - 0.01), rtol=0.01)
