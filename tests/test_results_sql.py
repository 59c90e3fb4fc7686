"""The results database as a person queries it: metrics as columns, NULL for NaN, ISO times,
daily rows of kept sets only, the model's weights hash, and schema 1 databases migrated."""
import dataclasses
import json
import sqlite3

import numpy as np
import polars as pl
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import pitgrid as pg
from pitgrid.results.db import MIGRATIONS, ResultsDB, migrate
from pitgrid.results.encoding import iso_times, parse_times, time_unit, to_json
from pitgrid.results.sql import Connection, Location
from results_helpers import sma_run, write_v1_run

SHA = "ab" * 32


@pytest.fixture(scope="module")
def result():
    return sma_run()


@pytest.fixture(scope="module")
def sparse_grid():
    """Four sets of which two kept their curves (as a grid with keep=2 stores them)."""
    ds = pg.synthetic_prices(120, 5, seed=4)
    c = ds["close"]
    windows = [3, 5, 10, 20]
    entries = xr.concat([c > c.rolling(time=w).mean() for w in windows], dim="param")
    entries = entries.assign_coords(window=("param", windows))
    res = pg.simulate(ds, entries=entries, exits=~entries, fill="close")
    dropped = np.array([False, True, False, True])[:, None]
    blank = {name: getattr(res, name).where(~dropped) for name in
             ("equity", "long_exposure", "short_exposure")}
    config = {**res.config, "run": {"grid": {"best_param": 2}}}
    return dataclasses.replace(res, **blank, config=config)


def _sql(path, query, args=()):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def test_metrics_are_columns_and_nan_is_null(tmp_path, result):
    metrics = result.metrics.with_columns(pl.lit(float("nan")).alias("sortino"))
    res = dataclasses.replace(result, metrics=metrics)
    path = tmp_path / "r.db"
    with ResultsDB(path) as db:
        run_id = db.save_run(res, strategy="sma20", data_fingerprint="fp")
        run = db.load_run(run_id)
    assert_frame_equal(run.metrics, metrics, check_exact=True)
    [(sharpe, sortino, trades, extra)] = _sql(
        path, "SELECT sharpe, sortino, trades, extra_metrics FROM backtest_metrics WHERE run_id = ?",
        (run_id,))
    assert (sharpe, sortino, trades, extra) == (metrics["sharpe"][0], None, metrics["trades"][0], None)
    dump = "\n".join(sqlite3.connect(path).iterdump())
    assert "$float" not in dump and "T00:00:00" not in dump


def test_a_metric_without_a_column_is_kept_in_extra_metrics(tmp_path, result):
    metrics = result.metrics.with_columns(pl.lit(1.5).alias("my_score"), pl.lit(True).alias("flag"),
                                          pl.lit(float("nan")).alias("odd"))
    res = dataclasses.replace(result, metrics=metrics)
    path = tmp_path / "r.db"
    with ResultsDB(path) as db:
        run = db.load_run(db.save_run(res, strategy="s", data_fingerprint="fp"))
    assert_frame_equal(run.metrics, metrics, check_exact=True)
    [(extra,)] = _sql(path, "SELECT extra_metrics FROM backtest_metrics")
    assert json.loads(extra) == {"my_score": 1.5, "flag": True, "odd": None}


def test_daily_bars_are_dates_and_intraday_bars_keep_their_time(tmp_path, result):
    intraday = result.equity["time"].values + np.timedelta64(9 * 3600 + 30 * 60, "s")
    shift = {name: getattr(result, name).assign_coords(time=intraday)
             for name in ("equity", "long_exposure", "short_exposure", "positions")}
    trades = result.trades.with_columns((pl.col("time") + pl.duration(hours=9, minutes=30))
                                        .cast(result.trades["time"].dtype))
    res = dataclasses.replace(result, **shift, trades=trades)
    path = tmp_path / "r.db"
    with ResultsDB(path) as db:
        daily = db.save_run(result, strategy="daily", data_fingerprint="fp")
        minutes = db.save_run(res, strategy="intraday", data_fingerprint="fp")
        xr.testing.assert_identical(db.load_run(minutes).equity, res.equity)
        assert_frame_equal(db.load_run(minutes).trades, trades, check_exact=True)
    day = str(result.equity["time"].values[0])[:10]
    assert _sql(path, "SELECT start_time FROM backtest_runs WHERE run_id = ?", (daily,)) == [(day,)]
    assert _sql(path, "SELECT start_time FROM backtest_runs WHERE run_id = ?",
                (minutes,)) == [(f"{day}T09:30:00",)]
    [(first_trade,)] = _sql(path, "SELECT MIN(time) FROM backtest_trades WHERE run_id = ?", (daily,))
    assert len(first_trade) == 10
    # what a person types: a date range on the text column
    (n,) = _sql(path, "SELECT COUNT(*) FROM backtest_daily_equity WHERE run_id = ? AND time >= ?",
                (daily, day))[0]
    assert n == result.equity.sizes["time"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-2**62, 2**62), min_size=1, max_size=20),
       st.sampled_from([86_400 * 10**9, 10**9, 10**6, 10**3, 1]))
def test_iso_times_are_exact_and_as_short_as_the_times_allow(ticks, step):
    times = (np.array(ticks, dtype=np.int64) // step * step).view("datetime64[ns]")
    unit = time_unit(times)
    assert np.array_equal(parse_times(iso_times(times, unit)), times)
    # reference: the coarsest unit in which every time is whole
    whole = {"D": 86_400 * 10**9, "s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
    expected = next(u for u, ns in whole.items() if all(t % ns == 0 for t in times.view(np.int64)))
    assert unit == expected


def test_strict_json_for_non_finite_numbers():
    text = to_json({"cap": float("inf"), "floor": float("-inf"), "x": float("nan"), "n": [1.0]})
    assert json.loads(text) == {"cap": float("inf"), "floor": float("-inf"), "x": None, "n": [1.0]}
    assert sqlite3.connect(":memory:").execute("SELECT json_extract(?, '$.cap')", (text,)).fetchone() \
        == (float("inf"),)


def test_daily_rows_only_for_the_kept_sets(tmp_path, sparse_grid):
    path = tmp_path / "r.db"
    with ResultsDB(path) as db:
        run_id = db.save_run(sparse_grid, strategy="sma", data_fingerprint="fp")
        run = db.load_run(run_id)
        listed = db.list_runs()
    assert _sql(path, "SELECT DISTINCT param FROM backtest_daily_equity ORDER BY param") == [(0,), (2,)]
    assert _sql(path, "SELECT COUNT(*) FROM backtest_metrics") == [(4,)]
    for name in ("equity", "long_exposure", "short_exposure"):
        xr.testing.assert_identical(getattr(run, name), getattr(sparse_grid, name))
    assert run.best_param == 2
    assert listed["sharpe"][0] == sparse_grid.metrics["sharpe"][2]
    assert json.loads(listed["params"][0]) == {"window": 10}


def test_the_model_weights_hash_is_stored_with_the_run(tmp_path, result):
    path = tmp_path / "r.db"
    with ResultsDB(path) as db:
        from_extra = db.save_run(dataclasses.replace(result, extra={"model_sha256": SHA}),
                                 strategy="model", data_fingerprint="fp")
        given_ = db.save_run(result, strategy="model", data_fingerprint="fp", model_sha256="cd" * 32)
        plain = db.save_run(result, strategy="sma", data_fingerprint="fp")
        # where run configs put it (runconfig: config["model_sha256"] of a model strategy)
        from_config = db.save_run(dataclasses.replace(result, config={**result.config,
                                                                      "model_sha256": "ef" * 32}),
                                  strategy="model", data_fingerprint="fp")
        assert db.load_run(from_extra).model_sha256 == SHA
        assert db.load_run(plain).model_sha256 is None
        listed = dict(zip(*db.list_runs()[["run_id", "model_sha256"]]))
    assert listed == {from_extra: SHA, given_: "cd" * 32, plain: None, from_config: "ef" * 32}
    assert _sql(path, "SELECT COUNT(*) FROM backtest_runs WHERE model_sha256 IS NOT NULL") == [(3,)]


# ---------------------------------------------------------------------- schema 1
def _v1_database(path, runs):
    """A database at schema 1 holding ``runs`` (result, params) as pitgrid wrote them then."""
    conn = Connection(Location.parse(path))
    migrate(conn, MIGRATIONS[:1])
    ids = []
    for i, (res, params) in enumerate(runs):
        ids.append(f"{i:032x}")
        write_v1_run(conn, ids[-1], res, strategy=f"s{i}", params=params)
    conn.close()
    return ids


def test_a_schema_1_database_is_migrated_with_its_runs_intact(tmp_path, result, sparse_grid):
    nan_metric = dataclasses.replace(
        result, metrics=result.metrics.with_columns(pl.lit(float("nan")).alias("calmar")))
    path = tmp_path / "old.db"
    ids = _v1_database(path, [(nan_metric, [{"fast": 5}]),
                              (sparse_grid, [{"window": w} for w in (3, 5, 10, 20)])])
    before = _sql(path, "SELECT COUNT(*) FROM backtest_daily_equity")[0][0]
    with ResultsDB(path) as db:
        assert db.schema_version() == len(MIGRATIONS)
        single, grid = db.load_run(ids[0]), db.load_run(ids[1])
        listed = db.list_runs()
    for run, res in ((single, nan_metric), (grid, sparse_grid)):
        assert_frame_equal(run.metrics, res.metrics, check_exact=True)
        assert_frame_equal(run.trades, res.trades, check_exact=True)
        for name in ("equity", "long_exposure", "short_exposure"):
            xr.testing.assert_identical(getattr(run, name), getattr(res, name))
        assert run.config == res.config
    assert single.params == [{"fast": 5}] and grid.best_param == 2
    assert single.created_at.isoformat() == "2026-01-02T03:04:05.000006+00:00"
    assert listed.height == 2 and listed["sharpe"].is_not_null().all()
    # the SQL a person writes now works on the old runs too
    assert _sql(path, "SELECT calmar FROM backtest_metrics WHERE run_id = ?", (ids[0],)) == [(None,)]
    after = _sql(path, "SELECT COUNT(*) FROM backtest_daily_equity")[0][0]
    T = result.equity.sizes["time"]
    assert before == T + 4 * sparse_grid.equity.sizes["time"] and after == T + 2 * sparse_grid.equity.sizes["time"]
    dump = "\n".join(sqlite3.connect(path).iterdump())
    assert "$float" not in dump and ".000000000" not in dump
    assert {name for (name,) in _sql(path, "SELECT name FROM sqlite_master WHERE type = 'table'")} == {
        "schema_version", "backtest_runs", "backtest_trades", "backtest_daily_equity",
        "backtest_metrics"}


def test_a_failing_migration_leaves_the_schema_1_database_as_it_was(tmp_path, result, monkeypatch):
    from pitgrid.results import migrations

    path = tmp_path / "old.db"
    _v1_database(path, [(result, [{}])])
    dump = list(sqlite3.connect(path).iterdump())

    def broken(conn):
        raise OSError("disk full")

    monkeypatch.setattr(migrations, "_rewrite_v1_rows", broken)
    with pytest.raises(OSError, match="disk full"):
        ResultsDB(path)
    assert list(sqlite3.connect(path).iterdump()) == dump
