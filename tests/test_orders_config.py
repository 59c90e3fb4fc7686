"""Stops and targets from run configs ([exits]): a scalar is a setting of the run, a list of
stop levels a grid axis on the core's parameter axis; the fills keep their exit reasons in
the database and the reports."""
from __future__ import annotations

import pytest

import pitgrid as pg
from pitgrid.runconfig import RunConfigError, load_run_config, run_backtest, run_grid
from pitgrid.strategies import MovingAverageCross

CONFIG = """
[data]
synthetic = {{ n_time = 300, n_symbols = 8, seed = 3 }}
[strategy]
name = "ma_cross"
params = {{ fast = 5, slow = {slow} }}
[execution]
fill = "next_open"
[exits]
{exits}
[outputs]
db = "{db}"
reports = "{reports}"
"""


def _config(tmp_path, exits: str, slow: str = "20"):
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(exits=exits, slow=slow, db=tmp_path / "r.db",
                                  reports=tmp_path / "reports"))
    return load_run_config(path)


def test_exits_from_a_config_are_the_runs_settings(tmp_path):
    cfg = _config(tmp_path, "sl_stop = 0.03\ntp_stop = 0.08")
    outcome = run_backtest(cfg, progress=False)
    market = cfg.open_market()
    direct = pg.backtest(market, MovingAverageCross(fast=5, slow=20),
                         {"fill": "next_open", "sl_stop": 0.03, "tp_stop": 0.08})
    with pg.ResultsDB(tmp_path / "r.db") as db:
        stored = db.load_run(outcome.run_id)
    assert stored.trades["reason"].to_list() == direct.trades["reason"].to_list()
    assert {"stop_loss", "take_profit"} <= set(direct.trades["reason"].to_list())
    assert "stop_loss" in outcome.report.read_text()


def test_a_list_of_stop_levels_is_a_grid_axis(tmp_path):
    cfg = _config(tmp_path, "sl_stop = [0.03, 0.06]\ntp_stop = 0.1", slow="[20, 40]")
    assert cfg.is_grid and cfg.axes() == {"slow": [20, 40], "sl_stop": [0.03, 0.06]}
    outcome = run_grid(cfg, progress=False)
    market = cfg.open_market()
    for row in outcome.table.iter_rows(named=True):
        alone = pg.backtest(market, MovingAverageCross(fast=5, slow=row["slow"]),
                            {"fill": "next_open", "sl_stop": row["sl_stop"], "tp_stop": 0.1})
        assert alone.metrics["sharpe"][0] == pytest.approx(row["sharpe"], rel=1e-12, abs=1e-12)
    assert set(outcome.params) >= {"slow", "sl_stop"}


def test_bad_exits_name_their_key(tmp_path):
    with pytest.raises(RunConfigError, match="exits.sl_stop"):
        _config(tmp_path, "sl_stop = -0.1")
    with pytest.raises(RunConfigError, match="exits.time_stop"):
        _config(tmp_path, "time_stop = [3, -1]")
    with pytest.raises(RunConfigError, match="belongs in \\[exits\\]"):
        path = tmp_path / "bad.toml"
        path.write_text(CONFIG.format(exits="", slow="20", db=tmp_path / "r.db",
                                      reports=tmp_path / "rep") + "[risk]\nsl_stop = 0.05\n")
        load_run_config(path)


def test_the_stops_example_loads_as_a_grid_over_stop_levels():
    from pathlib import Path

    cfg = load_run_config(Path(__file__).resolve().parents[1] / "examples" / "stops_grid.toml")
    assert cfg.axes() == {"slow": [50, 100], "sl_stop": [0.03, 0.05, 0.08]}
    assert cfg.settings["tp_stop"] == 0.15 and cfg.settings["sl_stop"] == 0.03
