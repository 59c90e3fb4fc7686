"""The command line: run -> runs -> show -> compare -> report round trip, exit codes, the demo."""
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pitgrid.cli import app
from pitgrid.results import ResultsDB

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# wide enough that rich does not fold ids and paths
runner = CliRunner(env={"COLUMNS": "250"})

CONFIG = """\
[data]
synthetic = {{ n_time = 300, n_symbols = 8, seed = 3 }}
[strategy]
name = "ma_cross"
params = {{ fast = {fast}, slow = {slow} }}
[costs]
fees_bps = 10
slippage_bps = 5
[outputs]
db = "out/runs.db"
reports = "out/reports"
keep = 2
"""


def invoke(*args: str, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A single run and a grid run in one database."""
    tmp = tmp_path_factory.mktemp("cli")
    single = tmp / "single.toml"
    single.write_text(CONFIG.format(fast=5, slow=20))
    grid = tmp / "grid.toml"
    grid.write_text(CONFIG.format(fast="[3, 5]", slow="[20, 40]"))
    out_single = invoke("run", single).output
    out_grid = invoke("grid", grid, "--no-progress").output
    db = tmp / "out" / "runs.db"
    with ResultsDB(db) as rdb:
        runs = rdb.list_runs()
    ids = dict(zip(runs["n_params"].to_list(), runs["run_id"].to_list()))
    return {"tmp": tmp, "db": db, "single": ids[1], "grid": ids[4], "single_toml": single,
            "grid_toml": grid, "out_single": out_single, "out_grid": out_grid}


def test_run_and_grid_save_report_and_print(saved):
    assert saved["single"] in saved["out_single"] and "sharpe" in saved["out_single"]
    assert "grid report:" in saved["out_grid"] and "top 4 of 4 sets by sharpe" in saved["out_grid"]
    reports = sorted(p.name for p in (saved["tmp"] / "out" / "reports").glob("*.html"))
    assert reports == sorted([f"MovingAverageCross-{saved['single'][:8]}.html",
                              f"MovingAverageCross-grid-{saved['grid'][:8]}.html",
                              f"MovingAverageCross-best-{saved['grid'][:8]}.html"])
    with ResultsDB(saved["db"]) as rdb:
        grid = rdb.load_run(saved["grid"])
    # the whole table is stored; curves are kept for the best `keep` sets only
    assert grid.grid_table().height == 4 and grid.params[0]["fast"] == 3
    kept = (~grid.equity.isnull().all("time")).sum().item()
    best = grid.config["run"]["grid"]["best_param"]
    assert kept == 2 and grid.trades["param"].unique().to_list() == [best]


def test_runs_show_compare_report_round_trip(saved):
    db = saved["db"]
    listed = invoke("runs", "--db", db).output
    assert saved["single"][:8] in listed and saved["grid"][:8] in listed
    assert saved["grid"][:8] not in invoke("runs", "--db", db, "--strategy", "Nope").output

    shown = invoke("show", saved["single"][:8], "--db", db).output
    assert saved["single"] in shown and "fast=5, slow=20" in shown and "fees_bps=10.0" in shown
    assert "max_drawdown" in shown and str(saved["single_toml"]) in shown
    assert "4 sets" in invoke("show", saved["grid"], "--db", db).output

    compared = invoke("compare", saved["single"], saved["grid"][:10], "--db", db).output
    assert saved["single"][:8] in compared and saved["grid"][:8] in compared and "sortino" in compared

    html = saved["tmp"] / "again" / "single.html"
    invoke("report", saved["single"], "-o", html, "--db", db)
    assert html.read_text().startswith("<!DOCTYPE html>")
    invoke("report", saved["grid"], "-o", saved["tmp"] / "grid.html", "--db", db)
    assert "Parameter sets" in (saved["tmp"] / "grid.html").read_text()


@pytest.mark.parametrize("args, message", [
    (["show", "ffff"], "no run"),
    (["report", "0" * 32, "-o", "x.html"], "no run"),
    (["show", "ffff", "--db", "missing.db"], "no results database"),
])
def test_unknown_runs_are_usage_errors(saved, args, message):
    args = args if "--db" in args else [*args, "--db", saved["db"]]
    assert message in invoke(*args, code=2).output


def test_report_refuses_a_grid_set_whose_curve_was_not_kept(saved):
    with ResultsDB(saved["db"]) as rdb:
        run = rdb.load_run(saved["grid"])
    dropped = int(np.argmax(run.equity.isnull().all("time").values))
    out = invoke("report", saved["grid"], "-o", saved["tmp"] / "x.html", "--param", dropped,
                 "--db", saved["db"], code=2).output
    assert "was not kept" in out


def test_bad_config_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.format(fast=5, slow=20) + '[execution]\nfill = "tomorrow"\n')
    out = invoke("run", bad, code=2).output
    assert "execution.fill" in out and "'next_open', 'close'" in out and "Traceback" not in out


def test_run_refuses_a_grid_and_grid_refuses_a_single_run(saved):
    assert "pitgrid grid" in invoke("run", saved["grid_toml"], code=2).output
    assert "pitgrid run" in invoke("grid", saved["single_toml"], code=2).output


def test_examples_run_from_the_command_line(tmp_path):
    db, reports = tmp_path / "ex.db", tmp_path / "reports"
    invoke("run", EXAMPLES / "ma_cross.toml", "--db", db, "--reports", reports)
    invoke("grid", EXAMPLES / "momentum_grid.toml", "--db", db, "--reports", reports, "--no-progress")
    with ResultsDB(db) as rdb:
        assert sorted(rdb.list_runs()["n_params"].to_list()) == [1, 6]
    assert len(list(reports.glob("*.html"))) == 3


def test_demo_quick_writes_the_database_and_reports(tmp_path):
    out = tmp_path / "demo"
    text = invoke("demo", "--quick", "--out", out, "--no-progress").output
    assert "pitgrid demo: 3 runs" in text
    with ResultsDB(out / "pitgrid.db") as rdb:
        runs = rdb.list_runs()
    assert sorted(runs["strategy"].to_list()) == ["CrossSectionalMomentum", "MovingAverageCross",
                                                  "MovingAverageCross"]
    assert len(list((out / "reports").glob("*.html"))) == 4  # 2 runs, the grid and its best set
    assert (out / "prices.csv").exists() and (out / "prices.zarr").is_dir()
    # the configs it wrote rerun as they are, into the same database
    invoke("run", out / "configs" / "ma_cross.toml")
    with ResultsDB(out / "pitgrid.db") as rdb:
        assert rdb.list_runs().height == 4


def test_demo_data_folder_without_prices_is_a_usage_error(tmp_path):
    assert "prices.csv.gz" in invoke("demo", "--data", tmp_path, "--out", tmp_path / "o", code=2).output


def test_demo_data_folder_that_does_not_exist_names_the_file_and_the_layout(tmp_path):
    text = " ".join(invoke("demo", "--data", tmp_path / "shared" / "data", "--out", tmp_path / "o",
                           code=2).output.split())
    assert "is not a folder" in text and "prices.csv.gz is missing" in text
    assert "time,symbol,open,high,low,close,volume" in text and "Traceback" not in text
