"""Walk-forward optimisation: each window's choice is the train window's grid winner, the test
runs chain their capital, nothing after a window is read; from Python and from a config."""
from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import pitgrid as pg
from pitgrid.cli import app
from pitgrid.strategies import MovingAverageCross

PARAMS = {"fast": [3, 5, 8], "slow": [20, 40]}
COSTS = {"fees_bps": 5}


@pytest.fixture(scope="module")
def market():
    return pg.MarketData(pg.synthetic_prices(520, 6, seed=12))


def test_each_window_trades_the_winner_of_its_train_window(market):
    wf = pg.walkforward(market, MovingAverageCross(), PARAMS, train=200, test=80, config=COSTS,
                        progress=False)
    t = market.time
    assert wf.windows.height == 4
    capital = 100_000.0
    for i, row in enumerate(wf.windows.iter_rows(named=True)):
        s = 200 + 80 * i
        e = min(s + 80, 520) - 1
        at = lambda k: np.datetime64(row[k], "ns")  # noqa: E731
        assert at("train_start") == t[s - 200] and at("test_start") == t[s] and at("test_end") == t[e]
        g = pg.grid(market, MovingAverageCross(), PARAMS, config=COSTS, start=t[s - 200],
                    end=t[s - 1], progress=False)
        best = g.params[int(np.nanargmax(g.table["sharpe"].to_numpy()))]
        assert wf.params[i] == best
        one = pg.backtest(market, MovingAverageCross(**best), {**COSTS, "init_cash": capital},
                          start=t[s], end=t[e])
        np.testing.assert_array_equal(wf.equity.sel(time=slice(t[s], t[e])).values, one.equity.values)
        capital = float(one.equity.values[-1])
    assert wf.equity["time"].values[0] == t[200] and len(wf.equity) == 320
    assert wf.result.trades.height > 0
    assert set(wf.comparison["sample"]) == {"out_of_sample", "in_sample_mean"}


def test_anchored_windows_train_from_the_first_bar_and_nothing_later_is_read(market):
    wf = pg.walkforward(market, MovingAverageCross(), PARAMS, train=200, test=80, anchored=True,
                        config=COSTS, progress=False)
    assert (wf.windows["train_start"].to_numpy().astype("datetime64[ns]") == market.time[0]).all()
    cut = market.truncate(market.time[359])  # the end of the second test window
    early = pg.walkforward(cut, MovingAverageCross(), PARAMS, train=200, test=80, anchored=True,
                           config=COSTS, progress=False)
    assert early.params == wf.params[:2]
    np.testing.assert_array_equal(early.equity.values, wf.equity.values[:160])


def test_a_benchmark_measures_the_stitched_run_and_changes_no_choice(market):
    from pitgrid.engine.benchmark import benchmark_equity, relative_metrics, returns_of

    plain = pg.walkforward(market, MovingAverageCross(), PARAMS, train=200, test=80,
                           config=COSTS, progress=False)
    wf = pg.walkforward(market, MovingAverageCross(), PARAMS, train=200, test=80, config=COSTS,
                        progress=False, benchmark="S0001")
    assert wf.params == plain.params and wf.windows.equals(plain.windows)
    assert wf.comparison.equals(plain.comparison)
    np.testing.assert_array_equal(wf.equity.values, plain.equity.values)
    # the benchmark over the test windows' bars only, from the first window's capital
    times = plain.equity["time"].values
    name, curve = benchmark_equity(market, "S0001", times, 100_000.0)
    want = relative_metrics(returns_of(plain.equity.values, 100_000.0),
                            returns_of(curve, 100_000.0))
    assert name == "S0001" and np.isfinite(want["beta"])
    for key, value in want.items():
        assert wf.result.metrics[key][0] == pytest.approx(value, rel=1e-12, nan_ok=True)
    np.testing.assert_array_equal(wf.result.extra["benchmark"].values, curve)
    assert "beta" not in plain.result.metrics.columns


def test_pitgrid_walkforward_from_a_config(tmp_path):
    config = tmp_path / "wf.toml"
    config.write_text(f"""
[data]
synthetic = {{ n_time = 500, n_symbols = 5 }}
[strategy]
name = "ma_cross"
params = {{ fast = [3, 5], slow = [20, 40] }}
[walkforward]
train = 200
test = 100
[outputs]
db = "{tmp_path / 'r.db'}"
reports = "{tmp_path / 'rep'}"
""")
    out = CliRunner().invoke(app, ["walkforward", str(config), "--no-progress"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "walk-forward, out of sample (3 windows)" in text and "OOS sharpe" in text
    with pg.ResultsDB(tmp_path / "r.db") as db:
        run = db.load_run(db.list_runs()["run_id"][0])
    assert len(run.config["walkforward"]["windows"]) == 3
    page = next((tmp_path / "rep").glob("*walkforward*.html")).read_text()
    assert "<h2>Walk-forward: windows</h2>" in page and "out of sample" in page
    assert "beta" not in run.metrics.columns or run.metrics["beta"].null_count() == 1

    out = CliRunner().invoke(app, ["walkforward", str(config), "--no-progress",
                                   "--benchmark", "S0002"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "beta" in out.output and "benchmark_return" in out.output
    with pg.ResultsDB(tmp_path / "r.db") as db:
        run = db.load_run(db.list_runs()["run_id"][0])
    assert run.config["run"]["benchmark"] == "S0002" and np.isfinite(run.metrics["beta"][0])
    assert run.config["benchmark"]["name"] == "S0002"
    bad = CliRunner().invoke(app, ["walkforward", str(config), "--no-progress",
                                   "--benchmark", "NOPE"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "--benchmark 'NOPE' is not a symbol" in bad.output
