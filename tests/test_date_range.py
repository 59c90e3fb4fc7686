"""Date ranges: features warm up before start, nothing trades before it, nothing after end is
read, and results and metrics cover start..end, in every driver, grids and configs."""
from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import pitgrid as pg
from pitgrid.cli import app
from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross

from strategies_for_tests import VetoHook, market_with_everything
from test_drivers import assert_same_run


@pytest.fixture(scope="module")
def market():
    return market_with_everything(n_time=220, n_symbols=6)


@pytest.mark.parametrize("strategy", [MovingAverageCross(fast=5, slow=30),
                                      CrossSectionalMomentum(lookback=20, top=2, every=5, universe="u"),
                                      VetoHook(fast=5, slow=30)], ids=lambda s: s.name)
def test_a_window_trades_only_inside_and_step_equals_batch(market, strategy):
    start, end = market.time[60], market.time[180]
    cfg = {"fees_bps": 5}
    batch = pg.backtest(market, strategy, cfg, start=start, end=end)
    assert batch.equity["time"].values[0] == start and batch.equity["time"].values[-1] == end
    assert batch.trades.height > 0
    assert batch.trades["time"].min() >= start.astype("datetime64[us]").item()
    step = pg.StepDriver(market, strategy, cfg, start=start, end=end).run()
    assert_same_run(batch, step)
    # features warmed up before start: a 30-bar average can cross on the first bar of the window
    whole = pg.backtest(market, strategy, cfg)
    assert not np.array_equal(whole.equity.values[60:181], batch.equity.values)  # capital starts at 60
    # nothing after end is read: the cut market gives the same run
    cut = pg.backtest(market.truncate(end), strategy, cfg, start=start)
    assert_same_run(batch, cut)
    # metrics are those of the window's equity
    m = pg.compute_metrics(batch.equity.values[None], np.array([100_000.0]))
    assert batch.metrics["total_return"][0] == pytest.approx(m["total_return"][0])


def test_a_grid_over_a_window_equals_the_windowed_backtests(market):
    start, end = market.time[50], market.time[200]
    g = pg.grid(market, MovingAverageCross(), {"fast": [3, 5], "slow": [20, 30]}, keep=4,
                config={"fees_bps": 5}, start=start, end=end, progress=False)
    for i, p in enumerate(g.params):
        one = pg.backtest(market, MovingAverageCross(**p), {"fees_bps": 5}, start=start, end=end)
        assert g.table["sharpe"][i] == pytest.approx(one.metrics["sharpe"][0], rel=1e-12)
        np.testing.assert_array_equal(g.equity.sel(param=i).values, one.equity.values)


def test_a_window_from_a_config(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f"""
[data]
synthetic = {{ n_time = 300, n_symbols = 5 }}
start = 2010-06-01
end = "2010-12-31"
[strategy]
name = "ma_cross"
[outputs]
db = "{tmp_path / 'r.db'}"
reports = "{tmp_path / 'rep'}"
""")
    assert CliRunner().invoke(app, ["run", str(config)]).exit_code == 0
    with pg.ResultsDB(tmp_path / "r.db") as db:
        run = db.load_run(db.list_runs()["run_id"][0])
    times = run.equity["time"].values
    assert times[0] >= np.datetime64("2010-06-01") and times[-1] <= np.datetime64("2010-12-31")
    assert run.config["run"]["data"]["start"].startswith("2010-06-01")
