"""The same results schema and statements on PostgreSQL (a throwaway server from pgserver)."""
import os

import numpy as np
import pytest
import xarray as xr
from polars.testing import assert_frame_equal

from pitgrid.results import db as rdb
from pitgrid.results.db import ResultsDB
from results_helpers import run_being_written, sma_run


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    # pgserver keeps runtime files under XDG_RUNTIME_DIR; a CI shell may not set it
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    server.psql("CREATE DATABASE pitgrid_results;")
    yield server.get_uri("pitgrid_results")
    server.cleanup()


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

    monkeypatch.setattr(rdb, "_insert_grid", broken)
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
