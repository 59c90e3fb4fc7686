"""Overfitting statistics: the deflated Sharpe ratio against the paper's numerical example, PBO
against a slow reference of CSCV, and both as a grid reports them."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid.engine.overfitting import (block_moments, deflated_sharpe, expected_max_sharpe,
                                        overfitting, pbo_cscv)
from pitgrid.strategies import MovingAverageCross


def test_deflated_sharpe_matches_the_papers_numerical_example():
    # Bailey and Lopez de Prado (2014): SR 2.5 annualised, 5 years of daily returns (1250),
    # 100 trials with annualised variance 1/2, skewness -3, kurtosis 10: SR0 = 0.1132 per
    # bar and DSR = 0.9004
    assert expected_max_sharpe(100, 0.5 / 250) == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe(2.5 / math.sqrt(250), 1250, -3.0, 10.0, n_trials=100, variance=0.5 / 250)
    assert dsr == pytest.approx(0.9004, abs=5e-4)
    # more trials or a fatter left tail deflate more
    assert deflated_sharpe(2.5 / math.sqrt(250), 1250, -3.0, 10.0, n_trials=1000,
                           variance=0.5 / 250) < dsr
    assert deflated_sharpe(2.5 / math.sqrt(250), 1250, -5.0, 10.0, n_trials=100,
                           variance=0.5 / 250) < dsr


def _ref_pbo(returns: np.ndarray, S: int) -> float:
    """CSCV as the paper writes it, on the returns matrix itself (bars, sets)."""
    T, N = returns.shape
    edges = np.linspace(0, T, S + 1).round().astype(int)
    blocks = [returns[edges[b]: edges[b + 1]] for b in range(S)]

    def sharpe(x):
        return np.array([x[:, n].mean() / x[:, n].std() if x[:, n].std() > 0 else np.nan
                         for n in range(N)])

    logits = []
    for train in itertools.combinations(range(S), S // 2):
        ins = sharpe(np.concatenate([blocks[b] for b in train]))
        out = sharpe(np.concatenate([blocks[b] for b in range(S) if b not in train]))
        best = int(np.nanargmax(ins))
        others = np.where(np.isfinite(out), out, -np.inf)
        rank = 1 + np.sum(others < others[best]) + 0.5 * (np.sum(others == others[best]) - 1)
        w = rank / (N + 1)
        logits.append(math.log(w / (1 - w)))
    return float(np.mean(np.array(logits) <= 0))


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 12), st.sampled_from([2, 4, 6, 8]), st.integers(0, 2**32 - 1))
def test_pbo_from_block_moments_equals_cscv_on_the_returns(n_sets, S, seed):
    rng = np.random.default_rng(seed)
    T = rng.integers(3 * S, 200)
    returns = rng.normal(0.0005, 0.01, (T, n_sets)) + rng.normal(0, 0.002, n_sets)
    got, n = pbo_cscv(block_moments(returns.T, S))
    assert n == math.comb(S, S // 2)
    assert got == pytest.approx(_ref_pbo(returns, S), abs=1e-12)


def test_pbo_of_noise_is_high_and_of_real_skill_near_zero():
    # with no skill the in-sample winner is as likely as not (more: the halves share one
    # total) to land in the lower half out of sample
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, (40, 2000))
    assert pbo_cscv(block_moments(noise, 10))[0] > 0.4
    skill = noise.copy()
    skill[7] += 0.003
    assert pbo_cscv(block_moments(skill, 10))[0] < 0.05
    stats = overfitting(block_moments(skill, 10))
    assert stats.best == 7 and stats.deflated_sharpe > 0.99
    assert overfitting(block_moments(noise, 10)).deflated_sharpe < 0.9


def test_a_grid_reports_both_for_its_sets():
    market = pg.MarketData(pg.synthetic_prices(400, 6, seed=3))
    params = {"fast": [3, 5, 8], "slow": [20, 40]}
    g = pg.grid(market, MovingAverageCross(), params, config={"fees_bps": 5}, progress=False)
    returns = []
    for p in g.params:
        eq = pg.backtest(market, MovingAverageCross(**p), {"fees_bps": 5}).equity.values
        returns.append(np.diff(np.concatenate([[100_000.0], eq])) / np.concatenate([[100_000.0], eq[:-1]]))
    want = overfitting(block_moments(np.array(returns), 16))
    got = g.overfitting
    assert got.n_trials == 6 and got.best == want.best
    assert got.pbo == pytest.approx(want.pbo) and got.deflated_sharpe == pytest.approx(want.deflated_sharpe)


def test_a_grid_config_shows_them_in_the_cli_the_database_and_the_report(tmp_path):
    from typer.testing import CliRunner

    from pitgrid.cli import app

    config = tmp_path / "grid.toml"
    config.write_text(f"""
[data]
synthetic = {{ n_time = 300, n_symbols = 5 }}
[strategy]
name = "ma_cross"
params = {{ fast = [3, 5], slow = [20, 40] }}
[outputs]
db = "{tmp_path / 'r.db'}"
reports = "{tmp_path / 'rep'}"
""")
    runner = CliRunner()
    out = runner.invoke(app, ["grid", str(config), "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "deflated sharpe" in out.output and "PBO" in out.output
    with pg.ResultsDB(tmp_path / "r.db") as db:
        run_id = db.list_runs()["run_id"][0]
        stored = db.load_run(run_id)
    stats = stored.config["overfitting"]
    assert stats["n_trials"] == 4 and 0.0 <= stats["pbo"] <= 1.0
    shown = runner.invoke(app, ["show", run_id, "--db", str(tmp_path / "r.db")])
    assert "deflated sharpe" in shown.output
    page = next((tmp_path / "rep").glob("*grid*.html")).read_text()
    assert "How much of it is selection" in page and "probability of backtest overfitting" in page
