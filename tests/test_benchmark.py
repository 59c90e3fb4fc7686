"""Benchmark-relative metrics: equal to empyrical's on the same returns, and a benchmark given
as a symbol, a series or a strategy, from Python and from a config, in the report."""
from __future__ import annotations

import empyrical
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import pitgrid as pg
from pitgrid.cli import app
from pitgrid.engine.benchmark import relative_metrics, returns_of
from pitgrid.strategies import EqualWeight, MovingAverageCross


@settings(max_examples=60, deadline=None)
@given(st.integers(20, 400), st.integers(0, 2**32 - 1), st.floats(-1.5, 2.5))
def test_relative_metrics_equal_empyricals(n, seed, true_beta):
    rng = np.random.default_rng(seed)
    b = rng.normal(0.0003, 0.01, n)
    r = true_beta * b + rng.normal(0.0002, 0.006, n)
    got = relative_metrics(r, b, 252.0)
    alpha, beta = empyrical.alpha_beta(r, b, annualization=252)
    assert got["beta"] == pytest.approx(beta, rel=1e-9)
    assert got["alpha"] == pytest.approx(alpha, rel=1e-9, abs=1e-12)
    assert got["up_capture"] == pytest.approx(empyrical.up_capture(r, b), rel=1e-9)
    assert got["down_capture"] == pytest.approx(empyrical.down_capture(r, b),
                                                rel=1e-9)
    assert got["information_ratio"] == pytest.approx(empyrical.excess_sharpe(r, b) * np.sqrt(252),
                                                     rel=1e-9)
    assert got["tracking_error"] == pytest.approx(np.std(r - b, ddof=1) * np.sqrt(252), rel=1e-12)
    assert got["correlation"] == pytest.approx(np.corrcoef(r, b)[0, 1], rel=1e-12)


@pytest.fixture(scope="module")
def market():
    return pg.MarketData(pg.synthetic_prices(300, 6, seed=8))


def test_a_benchmark_as_symbol_series_or_strategy(market, tmp_path):
    strategy = MovingAverageCross(fast=5, slow=20)
    res = pg.backtest(market, strategy, {"fees_bps": 5}, benchmark="S0002")
    close = market["close"].values[:, 2]
    want = relative_metrics(returns_of(res.equity.values, 100_000.0),
                            np.concatenate([[0.0], close[1:] / close[:-1] - 1]), 252.0)
    for k, v in want.items():
        assert res.metrics[k][0] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    series = pg.backtest(market, strategy, {"fees_bps": 5}, benchmark=market["close"][:, 2])
    assert series.metrics["beta"][0] == pytest.approx(res.metrics["beta"][0], rel=1e-12)
    ew = pg.backtest(market, strategy, {"fees_bps": 5}, benchmark=EqualWeight(every=10))
    plain = pg.backtest(market, EqualWeight(every=10), {"fees_bps": 5})
    np.testing.assert_allclose(ew.extra["benchmark"].values, plain.equity.values)
    page = pg.write_report(ew, tmp_path / "r.html").read_text()
    assert "<h2>Against EqualWeight</h2>" in page and '"name":"EqualWeight"' in page  # the line


def test_a_benchmark_from_a_config_reaches_the_cli_database_and_report(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f"""
[data]
synthetic = {{ n_time = 300, n_symbols = 5 }}
[strategy]
name = "ma_cross"
[benchmark]
strategy = "equal_weight"
params = {{ every = 21 }}
[outputs]
db = "{tmp_path / 'r.db'}"
reports = "{tmp_path / 'rep'}"
""")
    out = CliRunner().invoke(app, ["run", str(config)])
    assert out.exit_code == 0, out.output
    assert "beta" in out.output and "information_ratio" in out.output
    with pg.ResultsDB(tmp_path / "r.db") as db:
        run = db.load_run(db.list_runs()["run_id"][0])
    assert np.isfinite(run.metrics["beta"][0]) and run.config["benchmark"]["name"] == "EqualWeight"
    page = next((tmp_path / "rep").glob("*.html")).read_text()
    assert "Against EqualWeight" in page
