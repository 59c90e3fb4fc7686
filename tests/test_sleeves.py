"""Sleeves: several strategies in one account; one sleeve with all the capital is the plain run."""
from __future__ import annotations

import numpy as np
import pytest

import pitgrid as pg
from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross, RSIMeanReversion

from strategies_for_tests import market_with_everything
from test_drivers import assert_same_run

COSTS = {"fees_bps": 5, "slippage_bps": 2}


@pytest.fixture(scope="module")
def market():
    return market_with_everything(n_time=240, n_symbols=6)


def test_one_sleeve_with_all_the_capital_is_the_plain_run(market):
    strategy = CrossSectionalMomentum(lookback=20, top=2, every=5, universe="u")
    book = pg.sleeves(market, [pg.Sleeve(strategy, 1.0)], config=COSTS, rebalance_every=10)
    assert_same_run(book.sleeves[strategy.name], pg.backtest(market, strategy, COSTS))
    np.testing.assert_array_equal(book.equity.values, pg.backtest(market, strategy, COSTS).equity.values)


def test_without_rebalancing_each_sleeve_is_its_own_run_and_the_account_their_sum(market):
    a, b = MovingAverageCross(fast=5, slow=20), RSIMeanReversion(window=10, low=40, high=60)
    book = pg.sleeves(market, [pg.Sleeve(a, 0.7, {"max_positions": 2}), pg.Sleeve(b, 0.3)],
                      config=COSTS)
    ra = pg.backtest(market, a, {**COSTS, "max_positions": 2, "init_cash": 70_000.0})
    rb = pg.backtest(market, b, {**COSTS, "init_cash": 30_000.0})
    assert_same_run(book.sleeves[a.name], ra)
    assert_same_run(book.sleeves[b.name], rb)
    np.testing.assert_allclose(book.equity.values, ra.equity.values + rb.equity.values, rtol=1e-15)


def test_rebalancing_moves_cash_toward_the_shares_and_creates_none(market):
    a = CrossSectionalMomentum(lookback=20, top=3, every=5, universe="u")
    b = MovingAverageCross(fast=5, slow=20)
    book = pg.sleeves(market, [pg.Sleeve(a, 0.5), pg.Sleeve(b, 0.5)], config=COSTS,
                      rebalance_every=40)
    free = pg.sleeves(market, [pg.Sleeve(a, 0.5), pg.Sleeve(b, 0.5)], config=COSTS)
    ea, eb = (book.sleeves[n].equity.values for n in (a.name, b.name))
    fa, fb = (free.sleeves[n].equity.values for n in (a.name, b.name))
    np.testing.assert_array_equal(ea[:40], fa[:40])   # identical up to the first rebalance
    drift = lambda x, y: np.abs(x / (x + y) - 0.5)   # noqa: E731
    assert drift(ea, eb)[-1] <= drift(fa, fb)[-1] + 1e-12
    assert book.equity.values[39] == pytest.approx(ea[39] + eb[39], rel=1e-15)


def test_shares_and_names_are_checked(market):
    s = MovingAverageCross(fast=5, slow=20)
    with pytest.raises(ValueError, match="sum to at most 1"):
        pg.sleeves(market, [pg.Sleeve(s, 0.7, name="a"), pg.Sleeve(s, 0.5, name="b")])
    with pytest.raises(ValueError, match="names must differ"):
        pg.sleeves(market, [pg.Sleeve(s, 0.5), pg.Sleeve(s, 0.5)])


def test_a_portfolio_config_runs_the_sleeves_into_the_database_and_report(tmp_path):
    from typer.testing import CliRunner

    from pitgrid.cli import app

    config = tmp_path / "book.toml"
    config.write_text(f"""
[data]
synthetic = {{ n_time = 300, n_symbols = 6 }}
[costs]
fees_bps = 5
[portfolio]
rebalance_every = 21
sleeves = [
  {{ strategy = "ma_cross", params = {{ fast = 5, slow = 20 }}, share = 0.6, name = "trend", max_positions = 3 }},
  {{ strategy = "momentum", params = {{ lookback = 20, top = 2 }}, share = 0.4 }},
]
[outputs]
db = "{tmp_path / 'r.db'}"
reports = "{tmp_path / 'rep'}"
""")
    out = CliRunner().invoke(app, ["run", str(config)])
    assert out.exit_code == 0, out.output
    with pg.ResultsDB(tmp_path / "r.db") as db:
        run = db.load_run(db.list_runs()["run_id"][0])
    assert [s["name"] for s in run.config["sleeves"]] == ["trend", "CrossSectionalMomentum"]
    market = pg.MarketData(pg.synthetic_prices(300, 6, seed=0))
    book = pg.sleeves(market, [pg.Sleeve(MovingAverageCross(fast=5, slow=20), 0.6,
                                         {"max_positions": 3}, name="trend"),
                               pg.Sleeve(CrossSectionalMomentum(lookback=20, top=2), 0.4)],
                      config={"fees_bps": 5}, rebalance_every=21)
    np.testing.assert_allclose(run.equity.values.ravel(), book.equity.values, rtol=1e-12)
    page = next((tmp_path / "rep").glob("portfolio*.html")).read_text()
    assert "<h2>Sleeves</h2>" in page and "trend" in page
