"""What the command line prints: tables readable at 80 columns, help that cuts nothing,
CSV and JSON a program can parse, the default database, and --benchmark."""
from __future__ import annotations

import csv
import io
import json
import math

import pytest
import typer
from typer.testing import CliRunner

from pitgrid.cli import app
from pitgrid.results import ResultsDB

CONFIG = """\
[data]
synthetic = {{ n_time = 260, n_symbols = 6, seed = 5 }}
[strategy]
name = "ma_cross"
params = {{ fast = {fast}, slow = {slow} }}
[outputs]
{db}reports = "reports"
keep = 2
"""
COMMANDS = ["ingest", "info", "run", "grid", "walkforward", "check", "paper", "demo", "runs",
            "show", "compare", "report"]


def invoke(*args, code: int = 0, columns: int = 80, env: dict | None = None):
    runner = CliRunner(env={"COLUMNS": str(columns), **(env or {})})
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def config(tmp_path, name: str, fast, slow, db: str | None = '"out/runs.db"'):
    path = tmp_path / f"{name}.toml"
    path.write_text(CONFIG.format(fast=fast, slow=slow, db=f"db = {db}\n" if db else ""))
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Two single runs of one strategy that differ in a parameter, and a grid."""
    tmp = tmp_path_factory.mktemp("cli80")
    outputs = {"a": invoke("run", config(tmp, "a", 5, 20)),
               "b": invoke("run", config(tmp, "b", 10, 20)),
               "grid": invoke("grid", config(tmp, "g", "[3, 5]", "[20, 40]"), "--no-progress")}
    db = tmp / "out" / "runs.db"
    with ResultsDB(db) as rdb:
        runs = {r["run_id"]: rdb.load_run(r["run_id"]) for r in rdb.list_runs().iter_rows(named=True)}
    return {"tmp": tmp, "db": db, "runs": runs, "outputs": outputs}


def assert_fits(text: str, width: int = 80) -> None:
    wide = [line for line in text.splitlines() if len(line.rstrip()) > width]
    assert not wide, "\n".join(wide)
    assert "…" not in text, text


def test_tables_are_readable_at_80_columns(saved):
    db, runs = saved["db"], saved["runs"]
    single = sorted(r for r in runs if len(runs[r].params) == 1)
    grid = next(r for r in runs if len(runs[r].params) > 1)
    for text in saved["outputs"].values():
        assert_fits(text.split("report:")[0])  # paths below may be longer than the terminal
    listed = invoke("runs", "--db", db)
    assert_fits(listed)
    for header in ("return", "CAGR", "sharpe", "max dd"):
        assert header in listed
    # two runs of one strategy differ visibly: their parameters and metrics are on their lines
    lines = listed.splitlines()
    for run_id in single:
        at = next(i for i, line in enumerate(lines) if run_id[:8] in line)
        run = runs[run_id]
        assert f"fast={run.params[0]['fast']}, slow=20" in lines[at + 1]
        assert f"{run.metrics['sharpe'][0]:.3f}" in lines[at]
    assert "best of 4: " in listed
    for args in (["show", single[0]], ["show", grid], ["compare", *single, grid]):
        text = invoke(*args, "--db", db)
        assert_fits(text)
        assert "max_drawdown" in text  # metric names whole, never max_dr...
    # the same listing is wider where the terminal is
    assert "created (UTC)" in invoke("runs", "--db", db, columns=200)
    assert "created (UTC)" not in listed


def test_compare_puts_runs_side_by_side_as_far_as_they_fit(saved):
    ids = list(saved["runs"]) * 3  # nine columns do not fit in 80
    text = invoke("compare", *ids, "--db", saved["db"])
    assert_fits(text)
    assert text.count("total_return") >= 2


def test_help_cuts_no_command_and_no_option_name():
    top = invoke("--help")
    assert_fits(top)
    listing = top.split("Commands:")[1]
    assert "..." not in listing and all(f"  {name} " in listing for name in COMMANDS)
    command = typer.main.get_command(app)
    for name in COMMANDS:
        text = invoke(name, "--help")
        assert_fits(text)
        words = {w.strip(",") for w in text.split()}
        for param in command.commands[name].params:
            for flag in param.opts + param.secondary_opts:
                if flag.startswith("-"):
                    assert flag in words, f"{name}: {flag} missing in\n{text}"
    assert "[data]" in invoke("paper", "--help")  # brackets are text, not markup


def _csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _same(a, b) -> bool:
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        return a in (None, "") and (b is None or math.isnan(b))
    return float(a) == pytest.approx(float(b), rel=1e-15)


def test_runs_as_csv_and_json(saved):
    db, runs = saved["db"], saved["runs"]
    as_json = json.loads(invoke("runs", "--db", db, "--format", "json"))
    as_csv = _csv(invoke("runs", "--db", db, "--format", "csv"))
    assert [r["run_id"] for r in as_json] == [r["run_id"] for r in as_csv]
    assert sorted(r["run_id"] for r in as_json) == sorted(runs)
    for j, c in zip(as_json, as_csv):
        run = runs[j["run_id"]]
        assert j["params"] == run.params[run.best_param] == json.loads(c["params"])
        for name in ("total_return", "sharpe", "max_drawdown", "trades"):
            expected = run.metrics[name][run.best_param]
            assert _same(j[name], expected) and _same(c[name], expected)
        assert j["sets"] == len(run.params) and j["fill"] == "next_open"
        assert j["start"] == str(run.equity["time"].values[0])[:10]


def test_show_and_compare_as_csv_and_json(saved):
    db, runs = saved["db"], saved["runs"]
    grid = next(r for r in runs if len(runs[r].params) > 1)
    run = runs[grid]
    shown = json.loads(invoke("show", grid[:8], "--db", db, "--format", "json"))
    assert shown["run_id"] == grid and shown["best_param"] == run.best_param
    assert shown["params"] == run.params[run.best_param]
    assert all(_same(shown["metrics"][k], run.metrics[k][run.best_param])
               for k in ("sharpe", "calmar", "fees"))
    assert len(shown["grid"]["sets"]) == 4 and shown["grid"]["axes"] == ["fast", "slow"]
    rows = _csv(invoke("show", grid, "--db", db, "--format", "csv"))
    assert [(int(r["fast"]), int(r["slow"])) for r in rows] == [(p["fast"], p["slow"]) for p in run.params]
    assert all(_same(r["sharpe"], s) for r, s in zip(rows, run.metrics["sharpe"].to_list()))

    ids = sorted(runs)
    compared = json.loads(invoke("compare", *ids, "--db", db, "--format", "json"))
    flat = _csv(invoke("compare", *ids, "--db", db, "--format", "csv"))
    assert [r["run_id"] for r in compared] == [r["run_id"] for r in flat] == ids
    for j, c in zip(compared, flat):
        r = runs[j["run_id"]]
        for name in ("annual_return", "sortino", "exposure"):
            assert _same(j[name], r.metrics[name][r.best_param])
            assert _same(c[name], r.metrics[name][r.best_param])


def test_the_default_database_comes_from_the_environment_or_the_project_file(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "configs" / "deep").mkdir(parents=True)
    (project / "pitgrid.toml").write_text('db = "results/team.db"\n')
    monkeypatch.delenv("PITGRID_DB", raising=False)
    monkeypatch.chdir(project / "configs" / "deep")
    # a config without [outputs] db writes where the project says, and the readers find it
    out = invoke("run", config(project / "configs", "p", 5, 20, db=None))
    team = project / "results" / "team.db"
    assert str(team) in out.replace("\n", "")
    with ResultsDB(team) as rdb:
        (run_id,) = rdb.list_runs()["run_id"].to_list()
    assert run_id[:8] in invoke("runs")
    assert run_id in invoke("show", run_id[:6])

    # PITGRID_DB comes first; a config that names its database keeps it
    elsewhere = tmp_path / "env.db"
    assert f"no results database at {elsewhere}" in invoke("runs", code=2,
                                                             env={"PITGRID_DB": str(elsewhere)})
    invoke("run", config(project / "configs", "q", 5, 20, db=None), env={"PITGRID_DB": str(elsewhere)})
    invoke("run", config(project / "configs", "r", 5, 20, db='"own.db"'), env={"PITGRID_DB": str(elsewhere)})
    with ResultsDB(elsewhere) as rdb:
        assert rdb.list_runs().height == 1
    assert (project / "configs" / "own.db").exists()

    # a pyproject.toml's [tool.pitgrid] when there is no pitgrid.toml
    (project / "pitgrid.toml").unlink()
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.pitgrid]\ndb = "results/team.db"\n')
    assert run_id[:8] in invoke("runs")
    (project / "pyproject.toml").unlink()
    line = invoke("runs", code=2)
    assert "no results database at" in line and "PITGRID_DB" in line and "Traceback" not in line


def test_benchmark_from_the_command_line(tmp_path):
    out = invoke("run", config(tmp_path, "b", 5, 20), "--benchmark", "S0001", columns=200)
    assert "beta" in out and "benchmark_return" in out
    with ResultsDB(tmp_path / "out" / "runs.db") as rdb:
        run = rdb.load_run(rdb.list_runs()["run_id"][0])
    assert math.isfinite(run.metrics["beta"][0]) and run.config["run"]["benchmark"] == "S0001"
    bad = invoke("run", config(tmp_path, "b", 5, 20), "--benchmark", "NOPE", code=2, columns=200)
    assert "--benchmark 'NOPE' is not a symbol" in bad and len(bad.strip().splitlines()) == 1


def test_resultsdb_without_a_location_uses_the_same_default(tmp_path, monkeypatch):
    from pitgrid.results.default_db import default_db

    monkeypatch.delenv("PITGRID_DB", raising=False)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert default_db().source is None
    with ResultsDB() as db:
        assert db.path == tmp_path / "sub" / "pitgrid.db"
    (tmp_path / "pyproject.toml").write_text("[tool.pitgrid]\ndb = 'shared/team.db'\n")
    (tmp_path / "shared").mkdir()
    with ResultsDB() as db:
        assert db.path == tmp_path / "shared" / "team.db"
    monkeypatch.setenv("PITGRID_DB", "sqlite:///env.db")
    with ResultsDB() as db:
        assert db.path == tmp_path / "sub" / "env.db"
    monkeypatch.delenv("PITGRID_DB")
    (tmp_path / "pyproject.toml").write_text("[tool.pitgrid]\ndb = 3\n")
    assert "db must be a path" in " ".join(invoke("runs", code=2).split())


def test_an_empty_listing_is_still_parseable(tmp_path):
    ResultsDB(tmp_path / "empty.db").close()
    assert json.loads(invoke("runs", "--db", tmp_path / "empty.db", "--format", "json")) == []
    header = invoke("runs", "--db", tmp_path / "empty.db", "--format", "csv").splitlines()
    assert header[0].startswith("run_id,created_at,strategy,params,") and len(header) == 1
