"""Stops, limit orders and short signals through both drivers and grids.

The step driver calls the same compiled step as the batch driver bar by bar, so a
strategy with ATR stops, short signals and limit entries gives the same fills to
the last bit; a grid over stop levels runs them on the parameter axis in one pass
and equals the runs one by one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

import pitgrid as pg
import pitgrid.kernels as K
from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Intents, Strategy
from pitgrid.strategies import MovingAverageCross

from strategies_for_tests import market_with_everything
from test_drivers import assert_same_run


@dataclass(frozen=True, kw_only=True)
class LongShortAtr(Strategy):
    """Long on the cross above, short on the cross below; ATR stops; entries as limits."""

    fast: int = 5
    slow: int = 20
    stop_atr: float = 2.0
    limit_entries: bool = False
    feature_params: ClassVar[tuple[str, ...]] = ("fast", "slow")
    intent_rows: ClassVar[int | None] = 2

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        close = data.adjusted("close")   # as known at each bar: in that bar's units
        return {"fast": K.sma(close, self.fast), "slow": K.sma(close, self.slow),
                "atr": K.atr(data.adjusted("high"), data.adjusted("low"), close, 14),
                "close": close}

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        up = K.crossover(f["fast"], f["slow"])
        down = K.crossunder(f["fast"], f["slow"])
        orders = {"sl_stop": np.full_like(f["atr"], self.stop_atr), "stop_unit": f["atr"],
                  "tp_stop": np.full_like(f["atr"], 2 * self.stop_atr)}
        if self.limit_entries:
            orders["entry_limit"] = np.where(up, f["close"] * 0.995, f["close"] * 1.005)
        return Intents(entries=up, exits=down, short_entries=down, short_exits=up, orders=orders)

    def settings(self) -> dict:
        return {"allow_short": True, "accounts": "per_symbol", "order_ttl": 2}


CONFIGS = [
    {"fees_bps": 10, "slippage_bps": 5, "fill": "close", "borrow_bps": 50},
    {"fees_bps": 10, "slippage_bps": 5, "fill": "next_open", "max_participation": 0.01,
     "unfilled": "carry", "lot_size": 1, "sl_trail": 0.04, "time_stop": 15},
]


@pytest.fixture(scope="module")
def market() -> pg.MarketData:
    return market_with_everything()


@pytest.mark.parametrize("limit_entries", [False, True])
@pytest.mark.parametrize("config", CONFIGS, ids=["close", "next_open_capped"])
def test_batch_and_step_agree_with_stops_and_shorts(market, config, limit_entries):
    strategy = LongShortAtr(limit_entries=limit_entries)
    batch = pg.backtest(market, strategy, config)
    step = pg.StepDriver(market, strategy, config).run()
    reasons = set(batch.trades["reason"].to_list())
    assert reasons & {"stop_loss", "take_profit", "trailing_stop", "time_stop"}
    assert (batch.positions.values < 0).any(), "no short position was opened"
    if limit_entries:
        assert "limit" in reasons
    assert_same_run(batch, step)


def test_step_driver_resumes_with_stop_state(market, tmp_path):
    strategy, config = LongShortAtr(), CONFIGS[1]
    whole = pg.StepDriver(market, strategy, config).run()
    first = pg.StepDriver(market, strategy, config)
    first.run(until=market.time[80])
    first.save(tmp_path / "d")
    resumed = pg.StepDriver.load(tmp_path / "d", market, strategy).run()
    assert_same_run(whole, resumed)


def test_grid_over_stop_levels_is_one_pass_equal_to_separate_runs(market):
    strategy = MovingAverageCross(fast=5, slow=20)
    params = {"sl_stop": [0.0, 0.02, 0.05], "tp_stop": [0.0, 0.04, 0.1]}
    config = {"fees_bps": 10, "fill": "next_open", "accounts": "per_symbol"}
    g = pg.grid(market, strategy, params, config=config, progress=False)
    assert g.info["chunks"] == 1
    for row in g.table.iter_rows(named=True):
        alone = pg.backtest(market, strategy, {**config, "sl_stop": row["sl_stop"],
                                               "tp_stop": row["tp_stop"]})
        assert alone.metrics["total_return"][0] == row["total_return"]
        assert alone.metrics["fills"][0] == row["fills"]


def test_hundred_point_stop_grid_in_one_call_equals_hundred_runs():
    ds = pg.synthetic_prices(300, 8, seed=3)
    close = np.ascontiguousarray(ds["close"].values)
    fast, slow = K.sma(close, 5), K.sma(close, 20)
    entries, exits = K.crossover(fast, slow), K.crossunder(fast, slow)
    sl = np.repeat(np.linspace(0.01, 0.10, 10), 10)
    tp = np.tile(np.linspace(0.02, 0.20, 10), 10)
    kw = dict(entries=entries, exits=exits, fill="next_open", fees_bps=10, slippage_bps=5,
              accounts="per_symbol")
    together = pg.simulate(ds, sl_stop=sl, tp_stop=tp, keep="equity", record_trades=False, **kw)
    assert together.equity.dims == ("param", "time")
    for p in range(100):
        alone = pg.simulate(ds, sl_stop=float(sl[p]), tp_stop=float(tp[p]), **kw)
        assert np.array_equal(together.equity.values[p], alone.equity.values), p
        assert together.metrics["fills"][p] == alone.metrics["fills"][0]


@dataclass(frozen=True, kw_only=True)
class LateShorts(Strategy):
    """Gives short signals only from bar 50 on: the step driver fixed its fields at bar 0."""

    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        return {"close": data.adjusted("close")}

    def intents(self, data, f):
        flat = np.zeros(f["close"].shape, dtype=bool)
        if data.bars[-1] < 50:
            return Intents(entries=flat, exits=flat)
        return Intents(entries=flat, exits=flat, short_entries=flat, short_exits=flat)


def test_a_short_or_order_field_that_appears_late_is_refused_not_dropped(market):
    driver = pg.StepDriver(market, LateShorts(), {"allow_short": True})
    with pytest.raises(ValueError, match="bar 50: .*short_entries, short_exits"):
        driver.run(progress=False)
