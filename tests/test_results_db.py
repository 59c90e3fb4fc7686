"""The results database: exact round trips, SQL a person can write, crash atomicity,
concurrent readers, migrations (schema 1 databases included)."""
import dataclasses
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import xarray as xr
from polars.testing import assert_frame_equal

import pitgrid as pg
from pitgrid.results import db as rdb
from pitgrid.results.db import MIGRATIONS, Migration, ResultsDB, migrate
from pitgrid.results.sql import Connection, Location
from results_helpers import run_being_written, sma_run, write_v1_run

TABLES = ("backtest_runs", "backtest_trades", "backtest_daily_equity", "backtest_metrics")


@pytest.fixture(scope="module")
def result():
    return sma_run()


@pytest.fixture(scope="module")
def grid_result():
    ds = pg.synthetic_prices(200, 6, seed=1)
    c = ds["close"]
    windows = [5, 10, 20]
    entries = xr.concat([c > c.rolling(time=w).mean() for w in windows], dim="param")
    entries = entries.assign_coords(window=("param", windows))
    return pg.simulate(ds, entries=entries, exits=~entries, fill="close", keep="full")


def assert_same(run, res):
    assert_frame_equal(run.metrics, res.metrics, check_exact=True)
    assert_frame_equal(run.trades, res.trades, check_exact=True)
    for name in ("equity", "long_exposure", "short_exposure", "positions"):
        xr.testing.assert_identical(getattr(run, name), getattr(res, name))
    assert run.config == res.config
    assert run.optimistic == res.optimistic


def test_run_round_trips_exactly(tmp_path, result):
    with ResultsDB(tmp_path / "runs.db") as db:
        run_id = db.save_run(result, strategy="sma20", data_fingerprint="synthetic:0",
                             universe_id="all8")
        run = db.load_run(run_id)
    assert_same(run, result)
    assert run.equity.dtype == np.float64 and run.equity["time"].dtype == "datetime64[ns]"
    assert run.config["max_participation"] == float("inf")  # non-finite JSON survives
    assert (run.strategy, run.data_fingerprint, run.universe_id) == ("sma20", "synthetic:0", "all8")
    assert run.code_version.startswith(pg.__version__)
    # drawdowns count from the initial capital, as the max_drawdown metric does
    assert float(run.drawdown.max()) == pytest.approx(result.metrics["max_drawdown"][0], rel=1e-12)


def test_grid_run_round_trips_with_its_parameters(tmp_path, grid_result):
    with ResultsDB(tmp_path / "runs.db") as db:
        run = db.load_run(db.save_run(grid_result, strategy="sma", data_fingerprint="fp"))
    assert_same(run, grid_result)
    assert run.params == [{"window": 5}, {"window": 10}, {"window": 20}]
    table = run.grid_table()
    assert table["window"].to_list() == [5, 10, 20] and "sharpe" in table.columns


def test_nan_numbers_come_back_as_nan(tmp_path, result):
    trades = result.trades.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(float("nan")).otherwise(pl.col("price"))
        .alias("price"))
    equity = result.equity.copy(data=np.where(np.arange(result.equity.size) == 5, np.nan,
                                              result.equity.values))
    res = dataclasses.replace(result, trades=trades, equity=equity)
    with ResultsDB(tmp_path / "runs.db") as db:
        run = db.load_run(db.save_run(res, strategy="s", data_fingerprint="fp"))
    assert_same(run, res)


def test_missing_zarr_store_still_loads(tmp_path, result):
    with ResultsDB(tmp_path / "runs.db") as db:
        run_id = db.save_run(result, strategy="s", data_fingerprint="fp")
        store = tmp_path / "runs_arrays" / f"{run_id}.zarr"
        assert store.is_dir()
        shutil.rmtree(store)
        run = db.load_run(run_id)
    assert run.positions is None
    xr.testing.assert_identical(run.equity, result.equity)


def test_list_filter_and_delete(tmp_path, result):
    db = ResultsDB(f"sqlite:///{tmp_path}/runs.db")
    a = db.save_run(result, strategy="a", data_fingerprint="fp")
    b = db.save_run(result, strategy="b", data_fingerprint="fp")
    runs = db.list_runs()
    assert runs["run_id"].to_list() == [b, a]  # newest first
    assert runs.schema["start_time"] == pl.Datetime("ns") and not runs["optimistic"].any()
    assert db.list_runs(strategy="a")["run_id"].to_list() == [a]
    assert db.list_runs(status="complete", limit=1).height == 1
    db.delete_run(a)
    assert db.list_runs()["run_id"].to_list() == [b]
    assert not (tmp_path / "runs_arrays" / f"{a}.zarr").exists()
    for table in TABLES:
        count = db._conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (a,))
        assert count.fetchone() == (0,)
    with pytest.raises(KeyError, match="no run"):
        db.load_run(a)
    with pytest.raises(KeyError, match="no run"):
        db.delete_run(a)
    with pytest.raises(KeyError, match="not a run id"):
        db.load_run("../etc")
    db.close()


def test_locations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with ResultsDB() as db:
        assert db.path == tmp_path / "pitgrid.db"
    with pytest.raises(ValueError, match="names no database"):
        ResultsDB("postgresql://user@host")
    with pytest.raises(ValueError, match="unsupported database URL"):
        ResultsDB("mysql://host/db")
    with pytest.raises(ValueError, match="must be a file"):
        ResultsDB(":memory:")


# ---------------------------------------------------------------------- crash safety
CHILD = r"""
import sys, time
import pitgrid as pg
from pitgrid.results import db as rdb

ds = pg.synthetic_prices(400, 30, seed=2)
c = ds["close"]
mean = c.rolling(time=10).mean()
res = pg.simulate(ds, entries=c > mean, exits=c < mean, keep="full")
db = rdb.ResultsDB(sys.argv[1])
print("SAVED", db.save_run(res, strategy="first", data_fingerprint="fp"), flush=True)

owner, name = (rdb, "_insert_trades") if sys.argv[2] == "trades" else (rdb._ArrayStore, "publish")
original = getattr(owner, name)

def pause_after(*args):
    original(*args)
    print("PAUSED", flush=True)
    time.sleep(600)

setattr(owner, name, pause_after)
db.save_run(res, strategy="second", data_fingerprint="fp")
"""


def _read_until(proc, prefix, seen):
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            return line.split()
    raise AssertionError(f"child exited before {prefix}:\n{''.join(seen)}")


@pytest.mark.parametrize("point", ["trades", "arrays"])
def test_sigkill_mid_run_leaves_no_trace(tmp_path, point):
    """Killed inside the run's transaction (after its trades, or after its zarr store is in
    place), the run vanishes whole; the database opens and lists the earlier run."""
    path = tmp_path / "runs.db"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), point],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    guard = threading.Timer(120, proc.kill)
    guard.start()
    seen: list[str] = []
    try:
        first = _read_until(proc, "SAVED", seen)[1]
        _read_until(proc, "PAUSED", seen)
        arrays = tmp_path / "runs_arrays"
        stores = sorted(p.name for p in arrays.iterdir())
        # A reader in another process, while the write transaction is held: sees the
        # committed run only, and leaves the in-flight store alone.
        with ResultsDB(path) as reader:
            assert reader.list_runs()["run_id"].to_list() == [first]
        assert sorted(p.name for p in arrays.iterdir()) == stores
        if point == "arrays":
            assert len([s for s in stores if s.endswith(".zarr")]) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        guard.cancel()
        proc.kill()
        proc.stdout.close()

    with ResultsDB(path) as db:
        assert db.list_runs()["run_id"].to_list() == [first]
        assert db._conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for table in TABLES:
            n = db._conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id <> ?",
                                 (first,)).fetchone()[0]
            assert n == 0, f"{table} keeps {n} rows of the killed run"
        assert db.load_run(first).positions is not None
    assert [p.name for p in (tmp_path / "runs_arrays").iterdir()] == [f"{first}.zarr"]


def test_readers_work_while_a_run_is_written(tmp_path, result, monkeypatch):
    path = tmp_path / "runs.db"
    with ResultsDB(path) as db:
        first = db.save_run(result, strategy="first", data_fingerprint="fp")
    with run_being_written(monkeypatch, lambda: ResultsDB(path), result, "second"):
        with ResultsDB(path) as reader:
            for _ in range(3):
                assert reader.list_runs()["run_id"].to_list() == [first]
            assert reader.load_run(first).trades.height == result.trades.height
    with ResultsDB(path) as db:
        assert db.list_runs()["strategy"].to_list() == ["second", "first"]


def test_failed_write_rolls_back_rows_and_arrays(tmp_path, result, monkeypatch):
    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(rdb, "_insert_metrics", broken)
    with ResultsDB(tmp_path / "runs.db") as db:
        with pytest.raises(OSError, match="disk full"):
            db.save_run(result, strategy="s", data_fingerprint="fp")
        assert db.list_runs().height == 0
        assert db._conn.execute("SELECT COUNT(*) FROM backtest_trades").fetchone() == (0,)
    arrays = tmp_path / "runs_arrays"
    assert not arrays.exists() or not any(arrays.iterdir())


# ---------------------------------------------------------------------- schema
def _versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    finally:
        conn.close()


def test_schema_version_and_idempotent_migrations(tmp_path):
    path = tmp_path / "runs.db"
    ResultsDB(path).close()
    ResultsDB(path).close()
    n = len(MIGRATIONS)
    assert _versions(path) == list(range(1, n + 1))
    conn = Connection(Location.parse(path))
    assert migrate(conn) == n

    # a later step is applied once; re-running would fail on CREATE TABLE
    later = Migration(n + 1, "run notes", ("CREATE TABLE run_notes (run_id TEXT NOT NULL, note TEXT)",))
    assert migrate(conn, MIGRATIONS + (later,)) == n + 1
    assert migrate(conn, MIGRATIONS + (later,)) == n + 1
    assert _versions(path) == list(range(1, n + 2))

    # a failing step leaves no half-applied schema, Python steps included
    def moved(c):
        c.execute("CREATE TABLE half (a TEXT)")

    broken = Migration(n + 2, "broken", (moved, "THIS IS NOT SQL"))
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, MIGRATIONS + (later, broken))
    assert _versions(path) == list(range(1, n + 2))
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None

    with pytest.raises(ValueError, match="numbered"):
        migrate(conn, (later,))
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this pitgrid"):
        ResultsDB(path)


def test_database_is_in_wal_mode(tmp_path):
    with ResultsDB(tmp_path / "runs.db") as db:
        assert db._conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_database_urls_are_parsed_and_never_printed_with_passwords():
    from pitgrid.results.sql import mask_url
    from pitgrid.runconfig import run_config_from_dict

    a = Location.parse("postgresql://me:secret@host-a:5432/research")
    b = Location.parse("postgresql+psycopg://me@host-b/research")
    assert (a.kind, a.target) == ("postgresql", "postgresql://me:secret@host-a:5432/research")
    assert a.name != b.name  # two servers' databases of one name never share array stores
    assert "research" in Location.parse("postgresql:///research?host=/run/pg").name
    assert "secret" not in str(a) and "secret" not in mask_url(a.target + "?password=secret")
    assert mask_url("postgresql://me@host/db") == "postgresql://me@host/db"
    cfg = run_config_from_dict({"data": {"synthetic": {"n_time": 30, "n_symbols": 2}},
                                "strategy": {"name": "ma_cross"},
                                "outputs": {"db": "postgresql://me:secret@host/db"}})
    assert "secret" not in str(cfg.describe())


def test_array_stores_go_where_they_are_told(tmp_path, result, monkeypatch):
    with ResultsDB(tmp_path / "runs.db", arrays=tmp_path / "given") as db:
        a = db.save_run(result, strategy="a", data_fingerprint="fp")
    monkeypatch.setenv("PITGRID_ARRAYS", str(tmp_path / "from_env"))
    with ResultsDB(tmp_path / "runs.db") as db:
        b = db.save_run(result, strategy="b", data_fingerprint="fp")
        assert db.load_run(b).positions is not None
    assert (tmp_path / "given" / f"{a}.zarr").is_dir()
    assert (tmp_path / "from_env" / f"{b}.zarr").is_dir()
    assert not (tmp_path / "runs_arrays").exists()
