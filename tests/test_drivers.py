"""Batch and step drivers agree exactly; universes and delistings behave as DESIGN §3 says;
a paper-trading run survives a stop, a save and a reload in a new process."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import pitgrid as pg
from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Intents, Strategy

from strategies_for_tests import SHIPPED, VetoHook, market_with_everything

CONFIGS = [
    {"fees_bps": 10, "slippage_bps": 5, "fill": "close"},
    {"fees_bps": 10, "slippage_bps": 5, "fill": "next_open", "max_participation": 0.001,
     "unfilled": "carry", "lot_size": 1, "min_bars_between": 3},
]


def assert_same_run(a: pg.SimResult, b: pg.SimResult) -> None:
    assert np.array_equal(a.equity.values, b.equity.values)
    assert np.array_equal(a.positions.values, b.positions.values)
    assert np.array_equal(a.cash.values, b.cash.values)
    assert a.trades.equals(b.trades)
    assert a.unfilled.equals(b.unfilled)
    assert a.filtered.equals(b.filtered)


@pytest.fixture(scope="module")
def market() -> pg.MarketData:
    return market_with_everything()


@pytest.mark.parametrize("strategy", SHIPPED + [VetoHook(fast=5, slow=20)], ids=lambda s: s.name)
@pytest.mark.parametrize("config", CONFIGS, ids=["close", "next_open_capped"])
def test_batch_and_step_are_bit_identical(market, strategy, config):
    batch = pg.backtest(market, strategy, config)
    step = pg.StepDriver(market, strategy, config).run()
    assert batch.trades.height > 0
    assert_same_run(batch, step)


def test_hook_changes_decisions(market):
    plain = pg.backtest(market, VetoHook.__mro__[1](fast=5, slow=20))
    vetoed = pg.backtest(market, VetoHook(fast=5, slow=20))
    first = str(market.symbols[0])
    assert plain.trades.filter(pl.col("symbol") == first).height > 0
    assert vetoed.trades.filter(pl.col("symbol") == first).height == 0


def test_step_result_reports_the_cycle(market):
    driver = pg.StepDriver(market, SHIPPED[0], {"fill": "next_open"})
    results = [driver.step() for _ in range(60)]
    ordered = [r for r in results if r.orders]
    assert ordered, "some bar placed orders"
    r = ordered[0]
    nxt = results[r.t + 1]
    assert set(nxt.fills["symbol"].to_list()) <= set(r.orders)
    assert all(np.isfinite(x.equity) for x in results)


@dataclass(frozen=True, kw_only=True)
class HalfHalf(Strategy):
    weight: float = 0.5

    def features(self, data: FeatureData) -> dict:
        return {}

    def intents(self, data: FeatureData, f: dict) -> Intents:
        return Intents(weights=np.full((data.n_time, len(data.symbols)), self.weight))


def flat_market(n_time: int, prices: list[float]) -> tuple:
    ds = pg.synthetic_prices(n_time, len(prices), seed=0)
    for f in ("open", "high", "low", "close"):
        ds[f] = ds[f] * 0 + np.array(prices)
    return ds


def test_universe_change_mid_run_by_hand():
    import pandas as pd
    ds = flat_market(10, [10.0, 20.0])
    t = pd.DatetimeIndex(ds["time"].values)
    universes = pl.DataFrame({"universe_id": ["u", "u"], "symbol": ["S0000", "S0001"],
                              "start_date": [t[0], t[3]], "end_date": [t[6], None]})
    market = pg.MarketData(ds, universes=universes)
    res = pg.backtest(market, HalfHalf(universe="u"), {"fill": "close", "init_cash": 1000.0})
    pos = res.positions.values
    # A: member on bars 0..5, 0.5 * 1000 / 10 = 50 shares, sold when it leaves at bar 6
    assert pos[:6, 0].tolist() == [50.0] * 6 and pos[6:, 0].tolist() == [0.0] * 4
    # B: member from bar 3 on, 0.5 * 1000 / 20 = 25 shares
    assert pos[:3, 1].tolist() == [0.0] * 3 and pos[3:, 1].tolist() == [25.0] * 7
    assert res.equity.values.tolist() == [1000.0] * 10


def test_delisting_closes_out_at_last_valid_close_by_hand():
    ds = flat_market(8, [10.0, 20.0])
    valid = np.ones((8, 2), dtype=bool)
    valid[5:, 1] = False
    ds["valid"] = (("time", "symbol"), valid)
    ds["close"] = ds["close"].where(valid)
    market = pg.MarketData(ds)
    assert market.delist_bar.tolist() == [-1, 5]
    res = pg.backtest(market, HalfHalf(weight=0.4), {"fill": "close", "init_cash": 1000.0, "fees_bps": 100,
                                                   "min_order_value": 50.0})
    trades = res.trades.filter(pl.col("symbol") == "S0001")
    # bought at bar 0: target 0.4 * 1000 / 20 = 20 shares, fee 1% of 400 = 4
    first = trades.row(0, named=True)
    assert first["side"] == "buy" and first["shares"] == 20.0 and first["fees"] == pytest.approx(4.0)
    # rebalances below 50 of notional are not placed, so 20 shares stay until the data
    # end after bar 4; closed out at bar 5
    # at the last valid close, 20, paying 1% again
    out = trades.filter(pl.col("reason") == "delist").row(0, named=True)
    assert out["side"] == "sell" and out["shares"] == 20.0 and out["price"] == 20.0
    assert np.datetime64(out["time"], "ns") == ds["time"].values[5]
    assert out["fees"] == pytest.approx(4.0)
    assert res.positions.values[5:, 1].tolist() == [0.0] * 3


def test_paper_trading_stop_save_reload_in_new_process(tmp_path: Path, market):
    strategy = SHIPPED[0]
    config = {"fees_bps": 10, "fill": "next_open"}
    full = pg.StepDriver(market, strategy, config).run()
    driver = pg.StepDriver(market, strategy, config)
    driver.run(until=market.time[70])
    driver.save(tmp_path / "paper")
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import pitgrid as pg
        from strategies_for_tests import SHIPPED, market_with_everything
        market = market_with_everything()
        d = pg.StepDriver.load({str(tmp_path / 'paper')!r}, market, SHIPPED[0])
        assert d.t == 71, d.t
        res = d.run()
        res.trades.write_parquet({str(tmp_path / 'trades.parquet')!r})
        np.save({str(tmp_path / 'equity.npy')!r}, res.equity.values)
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    assert np.array_equal(np.load(tmp_path / "equity.npy"), full.equity.values)
    assert pl.read_parquet(tmp_path / "trades.parquet").equals(full.trades)


def test_load_refuses_another_strategy(tmp_path: Path, market):
    d = pg.StepDriver(market, SHIPPED[0])
    d.step()
    d.save(tmp_path / "s")
    with pytest.raises(ValueError, match="saved for"):
        pg.StepDriver.load(tmp_path / "s", market, SHIPPED[1])


def test_triggers_from_outside_step_through_to_each_time(market):
    strategy, config = SHIPPED[0], {"fill": "next_open"}
    full = pg.StepDriver(market, strategy, config).run()
    driver = pg.StepDriver(market, strategy, config)
    seen = []
    for trigger in (market.time[10], market.time[10], market.time[75], market.time[-1]):
        driver.run(triggers=[trigger])
        seen.append(driver.t)
    assert seen == [11, 11, 76, len(market.time)]
    assert_same_run(driver.result(), full)
