"""The same results schema and statements on PostgreSQL (a throwaway server from pgserver)."""
import dataclasses
import os

import numpy as np
import polars as pl
import pytest
import xarray as xr
from polars.testing import assert_frame_equal

from pitgrid.results import db as rdb
from pitgrid.results.db import ResultsDB
from pitgrid.results.sql import Connection, Location
from results_helpers import doc_queries, grid_run, run_being_written, sma_run, write_v1_run


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # pgserver keeps runtime files under XDG_RUNTIME_DIR; a CI shell may not set it
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def postgres_url(server):
    server.psql("CREATE DATABASE pitgrid_results;")
    return server.get_uri("pitgrid_results")


@pytest.fixture(scope="module")
def result():
    return sma_run()


def test_run_round_trips_exactly_on_postgres(postgres_url, result, tmp_path):
    with ResultsDB(postgres_url, arrays=tmp_path / "arrays") as db:
        assert db.schema_version() == len(rdb.MIGRATIONS)
        run_id = db.save_run(result, strategy="sma20", data_fingerprint="fp", universe_id="all8")
        run = db.load_run(run_id)
        assert db.list_runs(strategy="sma20")["run_id"].to_list() == [run_id]
    assert_frame_equal(run.metrics, result.metrics, check_exact=True)
    assert_frame_equal(run.trades, result.trades, check_exact=True)
    for name in ("equity", "long_exposure", "short_exposure", "positions"):
        xr.testing.assert_identical(getattr(run, name), getattr(result, name))
    assert run.config == result.config and run.universe_id == "all8"
    with ResultsDB(postgres_url, arrays=tmp_path / "arrays") as db:  # reopening migrates nothing
        db.delete_run(run_id)
        with pytest.raises(KeyError, match="no run"):
            db.load_run(run_id)
    assert not (tmp_path / "arrays" / f"{run_id}.zarr").exists()


def test_failed_write_leaves_nothing_on_postgres(postgres_url, result, tmp_path, monkeypatch):
    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(rdb, "_insert_metrics", broken)
    with ResultsDB(postgres_url, arrays=tmp_path / "arrays") as db:
        before = db.list_runs().height
        with pytest.raises(OSError, match="disk full"):
            db.save_run(result, strategy="broken", data_fingerprint="fp")
        assert db.list_runs().height == before
        (n,) = db._conn.execute("SELECT COUNT(*) FROM backtest_trades WHERE run_id NOT IN "
                                "(SELECT run_id FROM backtest_runs)").fetchone()
        assert n == 0


def test_writers_take_turns_and_readers_do_not_wait_on_postgres(postgres_url, result, tmp_path,
                                                                monkeypatch):
    arrays = tmp_path / "arrays"
    with run_being_written(monkeypatch, lambda: ResultsDB(postgres_url, arrays=arrays), result,
                           "held"):
        with ResultsDB(postgres_url, arrays=arrays) as reader:
            assert "held" not in reader.list_runs()["strategy"].to_list()
            # the lock is busy: the stray sweep must not take the writer's store
            assert not reader._conn.try_begin_write()
    with ResultsDB(postgres_url, arrays=arrays) as db:
        runs = db.list_runs(strategy="held")
        assert runs.height == 1
        assert np.array_equal(db.load_run(runs["run_id"][0]).positions.values,
                              result.positions.values)


def test_a_writer_that_times_out_on_the_lock_leaves_a_usable_connection(postgres_url, tmp_path,
                                                                       monkeypatch):
    from pitgrid.results import sql

    with ResultsDB(postgres_url, arrays=tmp_path) as holder, \
            ResultsDB(postgres_url, arrays=tmp_path) as waiter:
        holder._conn.begin_write()
        monkeypatch.setattr(sql, "_BUSY_TIMEOUT_S", 0.2)
        with pytest.raises(Exception, match="lock"):
            waiter._conn.begin_write()
        assert not waiter._conn.in_transaction
        assert waiter._conn.execute("SELECT 1").fetchone() == (1,)  # still answers
        holder._conn.rollback()
        waiter._conn.begin_write()  # and takes the lock once it is free
        waiter._conn.rollback()


def test_metrics_are_columns_and_nan_is_null_on_postgres(postgres_url, result, tmp_path):
    res = dataclasses.replace(result, metrics=result.metrics.with_columns(
        pl.lit(float("nan")).alias("sortino")))
    with ResultsDB(postgres_url, arrays=tmp_path / "arrays") as db:
        run_id = db.save_run(res, strategy="nan", data_fingerprint="fp")
        assert_frame_equal(db.load_run(run_id).metrics, res.metrics, check_exact=True)
        row = db._conn.execute("SELECT sharpe, sortino FROM backtest_metrics WHERE run_id = ?",
                               (run_id,)).fetchone()
        (start,) = db._conn.execute("SELECT start_time FROM backtest_runs WHERE run_id = ?",
                                    (run_id,)).fetchone()
    assert row == (res.metrics["sharpe"][0], None)
    assert start == str(result.equity["time"].values[0])[:10]


def test_a_schema_1_database_is_migrated_on_postgres(server, result, tmp_path):
    server.psql("CREATE DATABASE pitgrid_v1;")
    url = server.get_uri("pitgrid_v1")
    conn = Connection(Location.parse(url))
    rdb.migrate(conn, rdb.MIGRATIONS[:1])
    write_v1_run(conn, "0" * 32, result, strategy="old", params=[{"fast": 5}])
    conn.close()
    with ResultsDB(url, arrays=tmp_path / "arrays") as db:
        assert db.schema_version() == len(rdb.MIGRATIONS)
        run = db.load_run("0" * 32)
        (sharpe,) = db._conn.execute("SELECT sharpe FROM backtest_metrics").fetchone()
    assert_frame_equal(run.metrics, result.metrics, check_exact=True)
    assert_frame_equal(run.trades, result.trades, check_exact=True)
    xr.testing.assert_identical(run.equity, result.equity)
    assert run.params == [{"fast": 5}] and sharpe == result.metrics["sharpe"][0]


def test_the_database_pages_postgresql_queries_run(postgres_url, tmp_path):
    queries = doc_queries("postgresql")
    assert queries
    with ResultsDB(postgres_url, arrays=tmp_path / "arrays") as db:
        db.save_run(grid_run(), strategy="MovingAverageCross", data_fingerprint="fp")
        for query in queries:
            assert db._conn.execute(query).fetchall(), query
