"""The demo's moving-average runs size every entry at 1/N of equity, as a user would."""
from __future__ import annotations

import tomllib

import numpy as np
import pytest

import pitgrid as pg
from pitgrid.demo import run_demo
from pitgrid.results import ResultsDB


def entry_fractions(result, outcome) -> np.ndarray:
    """Each buy's shares at the decision bar's close, as a fraction of that bar's equity."""
    market = pg.open_market(result.store)
    with ResultsDB(str(result.db)) as db:
        run = db.load_run(outcome.run_id)
    times = market.time
    symbols = list(market.symbols)
    equity = run.equity.values if run.equity.ndim == 1 else run.equity.values[outcome.best_param or 0]
    buys = run.trades.filter(run.trades["side"] == "buy")
    fill = np.searchsorted(times, buys["time"].to_numpy())
    col = np.array([symbols.index(s) for s in buys["symbol"]])
    close = market["close"].values[fill - 1, col]  # next-open fills: decided on the bar before
    return buys["shares"].to_numpy() * close / equity[fill - 1]


def test_quick_demo_moving_average_runs_give_every_symbol_the_same_budget(tmp_path):
    result = run_demo(tmp_path / "demo", quick=True, progress=False, log=lambda s: None)
    n_symbols = len(pg.open_market(result.store).symbols)
    for path, outcome in zip(result.configs, result.outcomes):
        execution = tomllib.loads(path.read_text())["execution"]
        if outcome.strategy != "MovingAverageCross":
            assert "size" not in execution  # momentum holds equal weights of its own
            continue
        assert execution["size"] == "percent" and execution["size_value"] == pytest.approx(1 / n_symbols)
        fractions = entry_fractions(result, outcome)
        assert len(fractions) > 20
        np.testing.assert_allclose(fractions, 1 / n_symbols, rtol=1e-9)


@pytest.mark.slow
def test_real_data_demo_moving_average_is_a_sensible_run(shared_data, tmp_path):
    """Before 1/N sizing: about 1 %/yr and a 65 % drawdown, from all cash in the first entries."""
    result = run_demo(tmp_path / "demo", data=shared_data, progress=False, log=lambda s: None)
    ma = result.outcomes[0]
    assert ma.strategy == "MovingAverageCross"
    m = ma.metrics
    assert m["max_drawdown"] < 0.35 and m["annual_return"] > 0.02, m
    assert 0.2 < m["exposure"] < 0.9, m
