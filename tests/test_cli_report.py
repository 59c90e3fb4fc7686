"""`pitgrid report` of a saved run: with the market its config recorded (holdings valued,
dividends credited, as the run's own report), --data for a moved store, --benchmark and
--axes, and one line for what cannot be done."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import pitgrid as pg
from pitgrid.cli import app
from pitgrid.results import ResultsDB

runner = CliRunner(env={"COLUMNS": "250"})

CONFIG = """\
[data]
store = "{store}"
[strategy]
name = "ma_cross"
params = {{ fast = {fast}, slow = {slow} }}
[outputs]
db = "out/runs.db"
reports = "out/reports"
keep = 4
"""


def invoke(*args: object, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A store with dividends; a single run and a grid run of it, with their own reports."""
    tmp = tmp_path_factory.mktemp("report")
    bars = pg.long_bars(pg.synthetic_prices(300, 6, seed=4))
    every_60th = (pl.col("time").rank("dense").over("symbol") % 60) == 0
    bars = bars.with_columns(dividend_amount=pl.when(every_60th).then(0.4).otherwise(0.0))
    bars.write_csv(tmp / "prices.csv")
    pg.ingest(tmp / "prices.csv", tmp / "store", progress=False)
    (tmp / "single.toml").write_text(CONFIG.format(store="store", fast=5, slow=20))
    (tmp / "grid.toml").write_text(CONFIG.format(store="store", fast="[3, 5]", slow="[20, 40]"))
    invoke("run", tmp / "single.toml")
    invoke("grid", tmp / "grid.toml", "--no-progress")
    with ResultsDB(tmp / "out" / "runs.db") as rdb:
        runs = rdb.list_runs()
    ids = dict(zip(runs["n_params"].to_list(), runs["run_id"].to_list()))
    return {"tmp": tmp, "db": tmp / "out" / "runs.db", "single": ids[1], "grid": ids[4]}


def trips(page: Path) -> pl.DataFrame:
    return pl.read_csv(page.with_name(page.stem + ".round_trips.csv"))


def test_the_report_finds_the_recorded_store_and_matches_the_runs_own(saved):
    tmp, run_id = saved["tmp"], saved["single"]
    own = tmp / "out" / "reports" / f"MovingAverageCross-{run_id[:8]}.html"
    page = tmp / "again" / "single.html"
    out = invoke("report", run_id[:8], "-o", page, "--db", saved["db"])
    assert "note:" not in out
    text = page.read_text()
    assert "dividends: shares held on each ex-date" in text and "dividends need market=" not in text
    # the same ledger as the report the run wrote with its market
    assert trips(page).equals(trips(own)) and "dividends" in trips(page).columns
    assert trips(page)["dividends"].sum() > 0


def test_a_moved_store_is_a_note_and_data_finds_it(saved, tmp_path):
    moved = tmp_path / "moved"
    shutil.move(saved["tmp"] / "store", moved)
    try:
        page = tmp_path / "gone.html"
        result = runner.invoke(app, ["report", saved["single"], "-o", str(page),
                                     "--db", str(saved["db"])])
        assert result.exit_code == 0, result.output
        notes = [line for line in result.output.splitlines() if line.startswith("note:")]
        assert len(notes) == 1 and "store" in notes[0] and "--data STORE" in notes[0]
        assert "dividends need market=" in page.read_text()
        assert "dividends" not in trips(page).columns

        again = tmp_path / "found.html"
        assert "note:" not in invoke("report", saved["single"], "-o", again, "--db",
                                     saved["db"], "--data", moved)
        assert trips(again).equals(trips(saved["tmp"] / "again" / "single.html"))
        # --store is the same option; a folder that is no store is one error line
        bad = invoke("report", saved["single"], "-o", again, "--db", saved["db"],
                     "--store", tmp_path, code=2)
        assert "is not a pitgrid store" in bad and len(bad.strip().splitlines()) == 1
        assert "--data STORE" in invoke("report", saved["single"], "-o", again, "--db",
                                         saved["db"], "--benchmark", "S0001", code=2)
    finally:
        shutil.move(moved, saved["tmp"] / "store")


def test_a_changed_store_is_used_with_a_note(saved, tmp_path):
    copy = tmp_path / "grown"
    shutil.copytree(saved["tmp"] / "store", copy)
    later = pg.long_bars(pg.synthetic_prices(320, 6, seed=4)).filter(
        pl.col("time") > pg.open_market(copy).time[-1].astype("datetime64[us]").item())
    later.write_csv(tmp_path / "later.csv")
    pg.ingest(tmp_path / "later.csv", copy, append=True, progress=False)
    out = invoke("report", saved["single"], "-o", tmp_path / "r.html", "--db", saved["db"],
                 "--data", copy)
    assert "has changed since the run" in " ".join(out.split())
    assert trips(tmp_path / "r.html").equals(trips(saved["tmp"] / "again" / "single.html"))


def test_benchmark_is_passed_to_the_report(saved, tmp_path):
    page = tmp_path / "bench.html"
    invoke("report", saved["single"], "-o", page, "--db", saved["db"], "--benchmark", "S0002")
    text = page.read_text()
    assert "<h2>Against S0002</h2>" in text
    with ResultsDB(saved["db"]) as rdb:
        run = rdb.load_run(saved["single"])
    market = pg.open_market(saved["tmp"] / "store")
    # its column is the symbol's own total return (dividends reinvested) over the run's bars
    close = market["close"].sel(symbol="S0002", time=run.equity["time"].values).values
    paid = market["dividend"].sel(symbol="S0002", time=run.equity["time"].values).values
    growth = np.prod((close[1:] + paid[1:]) / close[:-1])
    table = text.split("<h2>Against S0002</h2>")[1].split("</table>")[0]
    total = table.split("</tr>")[1]  # the first row under the header: total return
    assert f"{growth - 1:.2%}" in total
    bad = invoke("report", saved["single"], "-o", page, "--db", saved["db"], "--benchmark",
                 "NOPE", code=2)
    assert "--benchmark 'NOPE' is not a symbol" in bad and len(bad.strip().splitlines()) == 1
    # a grid report has no benchmark: its best set's report does
    assert "--param N" in invoke("report", saved["grid"], "-o", page, "--db", saved["db"],
                                 "--benchmark", "S0002", code=2)
    with ResultsDB(saved["db"]) as rdb:
        best = rdb.load_run(saved["grid"]).best_param
    invoke("report", saved["grid"], "-o", page, "--db", saved["db"], "--param", best,
           "--benchmark", "S0002")
    assert "<h2>Against S0002</h2>" in page.read_text()


def test_axes_choose_the_heatmap_of_a_grid_report(saved, tmp_path):
    def heatmap_titles(page: Path) -> tuple[str, str]:
        text = page.read_text()
        x, y = (re.search(rf'"{a}":{{"title":{{"text":"([^"]+)"', text) for a in ("xaxis", "yaxis"))
        return x.group(1), y.group(1)

    chosen = tmp_path / "axes.html"
    invoke("report", saved["grid"], "-o", chosen, "--db", saved["db"], "--axes", "slow,fast")
    flipped = tmp_path / "flipped.html"
    invoke("report", saved["grid"], "-o", flipped, "--db", saved["db"], "--axes", "fast, slow")
    assert heatmap_titles(chosen) == ("fast", "slow")
    assert heatmap_titles(flipped) == ("slow", "fast")
    bad = invoke("report", saved["grid"], "-o", chosen, "--db", saved["db"], "--axes",
                 "fast,nope", code=2)
    assert "axes must name two different parameters" in bad and len(bad.strip().splitlines()) == 1
    assert "for a grid run" in invoke("report", saved["single"], "-o", chosen, "--db",
                                      saved["db"], "--axes", "fast,slow", code=2)
