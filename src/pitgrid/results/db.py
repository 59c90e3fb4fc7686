"""The results database: runs, fills, daily equity and grid metrics in SQL, positions as zarr.

An embedded SQLite file by default (WAL mode, so readers never wait for a writer),
or a PostgreSQL database by URL (``pip install 'pitgrid[postgres]'``). The DDL uses
portable types only (TEXT, BIGINT, INTEGER, DOUBLE PRECISION, BOOLEAN; JSON kept
as TEXT), so one schema and one set of statements serve both (``results/sql.py``
holds the few differences).

Each run is written in one transaction. Times are stored as ISO-8601 text with
nanoseconds ("2010-01-04T00:00:00.000000000"): exact for datetime64[ns], sortable
as text and readable in ad-hoc SQL. JSON texts write non-finite floats as
``{"$float": "nan"}`` so they stay strict JSON (PostgreSQL rejects bare NaN).
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xarray as xr
import zarr

from pitgrid.engine.result import SimResult
from pitgrid.results.sql import Connection, Location

__all__ = ["MIGRATIONS", "Migration", "ResultsDB", "StoredRun", "code_version", "drawdown",
           "initial_capital", "migrate"]

STATUS_COMPLETE = "complete"
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_TRADE_COLUMNS = ("time", "param", "symbol", "side", "shares", "price", "fees",
                  "slippage_cost", "reason")
_TRADE_OPTIONAL = ("regime", "decision")
_TRADE_FLOATS = ("shares", "price", "fees", "slippage_cost")
_METRIC_DTYPES = {str(d): d for d in (pl.Int64, pl.Int32, pl.UInt32, pl.UInt64, pl.Float64,
                                      pl.Float32, pl.Boolean, pl.String)}


@dataclass(frozen=True)
class Migration:
    """One schema step; ``statements`` run in one transaction with its version row."""

    version: int
    description: str
    statements: tuple[str, ...]


# Append new steps; never edit a released one (databases in the field have run it).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, trades, daily equity, grid metrics", (
        """CREATE TABLE backtest_runs (
            run_id TEXT PRIMARY KEY,
            strategy TEXT NOT NULL,
            config TEXT NOT NULL,
            code_version TEXT NOT NULL,
            data_fingerprint TEXT NOT NULL,
            start_time TEXT,
            end_time TEXT,
            universe_id TEXT,
            metrics TEXT NOT NULL,
            status TEXT NOT NULL,
            optimistic BOOLEAN NOT NULL,
            n_params INTEGER NOT NULL,
            param_axis BOOLEAN NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX ix_backtest_runs_strategy ON backtest_runs (strategy, created_at)",
        # The child tables' primary keys lead with run_id: they are the run_id indexes.
        """CREATE TABLE backtest_trades (
            run_id TEXT NOT NULL REFERENCES backtest_runs (run_id),
            trade_id BIGINT NOT NULL,
            time TEXT NOT NULL,
            param BIGINT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            shares DOUBLE PRECISION,
            price DOUBLE PRECISION,
            fees DOUBLE PRECISION,
            slippage_cost DOUBLE PRECISION,
            reason TEXT,
            regime TEXT,
            universe_id TEXT,
            decision TEXT,
            PRIMARY KEY (run_id, trade_id)
        )""",
        """CREATE TABLE backtest_daily_equity (
            run_id TEXT NOT NULL REFERENCES backtest_runs (run_id),
            param BIGINT NOT NULL,
            time TEXT NOT NULL,
            equity DOUBLE PRECISION,
            drawdown DOUBLE PRECISION,
            exposures TEXT NOT NULL,
            PRIMARY KEY (run_id, param, time)
        )""",
        """CREATE TABLE grid_metrics (
            run_id TEXT NOT NULL REFERENCES backtest_runs (run_id),
            param BIGINT NOT NULL,
            params TEXT NOT NULL,
            metrics TEXT NOT NULL,
            PRIMARY KEY (run_id, param)
        )""",
    )),
)

_SCHEMA_VERSION_DDL = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


@dataclass
class StoredRun:
    """A run read back from a :class:`ResultsDB`; numbers are exactly those written.

    ``equity``, ``drawdown``, ``long_exposure`` and ``short_exposure`` have the
    dims of the saved result (``time`` or ``param, time``); ``positions`` is None
    when the run kept none or its zarr store is gone. ``params`` has one dict per
    parameter set. A ``decision`` trade column comes back as JSON text.

    Example:
        >>> run = db.load_run(run_id)                      # doctest: +SKIP
        >>> run.metrics["sharpe"][0], run.trades.height     # doctest: +SKIP
    """

    run_id: str
    strategy: str
    config: dict[str, Any]
    metrics: pl.DataFrame
    trades: pl.DataFrame
    equity: xr.DataArray
    drawdown: xr.DataArray
    long_exposure: xr.DataArray
    short_exposure: xr.DataArray
    positions: xr.DataArray | None
    params: list[dict[str, Any]]
    optimistic: bool
    data_fingerprint: str
    code_version: str
    universe_id: str | None
    status: str
    created_at: datetime

    def grid_table(self) -> pl.DataFrame:
        """Parameter values beside the metrics, one row per parameter set.

        Example:
            >>> table = run.grid_table()                   # doctest: +SKIP
            >>> table.select("fast", "slow", "sharpe")     # doctest: +SKIP
        """
        values = pl.DataFrame(self.params) if any(self.params) else pl.DataFrame()
        return pl.concat([values, self.metrics], how="horizontal")


class ResultsDB:
    """Backtest runs in SQL, with positions as zarr stores beside the database file.

    ``url_or_path`` is a file path, a ``sqlite:///path`` URL (``sqlite:////abs``
    for an absolute path), a ``postgresql://user@host:5432/dbname`` URL, or None for
    ``pitgrid.db`` in the working directory. Positions go to
    ``<arrays>/<run_id>.zarr``: ``arrays``, else the ``PITGRID_ARRAYS`` environment
    variable (how the command line is pointed at them), else ``<db stem>_arrays``
    beside a SQLite file or ``pitgrid_arrays`` in the working directory for
    PostgreSQL. One instance per thread.

    Example:
        >>> import pitgrid as pg
        >>> from pitgrid.results import ResultsDB
        >>> ds = pg.synthetic_prices(60, 3, seed=0)
        >>> res = pg.simulate(ds, weights=ds["close"] * 0 + 0.3)
        >>> with ResultsDB("runs.db") as db:                   # doctest: +SKIP
        ...     run_id = db.save_run(res, strategy="flat30", data_fingerprint="synthetic:0")
        ...     db.load_run(run_id).equity.identical(res.equity)
        True
    """

    def __init__(self, url_or_path: str | os.PathLike[str] | None = None, *,
                 arrays: str | os.PathLike[str] | None = None) -> None:
        self.location = Location.parse(url_or_path)
        #: the SQLite file (None for PostgreSQL)
        self.path = Path(self.location.target) if self.location.kind == "sqlite" else None
        arrays = arrays if arrays is not None else os.environ.get("PITGRID_ARRAYS")
        if arrays:
            root = Path(arrays).resolve()
        elif self.path is not None:
            root = self.path.parent / f"{self.path.stem}_arrays"
        else:
            root = Path("pitgrid_arrays").resolve()
        self._arrays = _ArrayStore(root, self.location.name)
        self._conn = Connection(self.location)
        try:
            migrate(self._conn)
            self._remove_strays()
        except BaseException:
            self._conn.close()
            raise

    # ------------------------------------------------------------------ writing
    def save_run(
        self,
        result: SimResult,
        *,
        strategy: str,
        data_fingerprint: str,
        universe_id: str | None = None,
        params: list[dict[str, Any]] | None = None,
        code_version: str | None = None,
        run_id: str | None = None,
    ) -> str:
        """Store a simulation result in one transaction; return its run id (uuid4 hex).

        ``run_id`` stores it under that id, replacing the run of that id in the same
        transaction: a paper run that grows with each bar keeps one id.

        ``params`` labels each parameter set (default: the result's coordinates on
        its ``param`` axis). ``code_version`` defaults to :func:`code_version`.
        Positions, when the result kept them, go to the run's zarr store, which is
        in place before the commit and removed again if the transaction fails.

        Example:
            >>> run_id = db.save_run(res, strategy="sma20", data_fingerprint=fp)  # doctest: +SKIP
        """
        replace = run_id is not None
        if run_id is None:
            run_id = uuid.uuid4().hex
        _check_run_id(run_id)
        # Rows are built before taking the write lock, so it is held only for the inserts.
        rows = _RunRows.build(run_id, result, strategy=strategy, data_fingerprint=data_fingerprint,
                              universe_id=universe_id, params=params,
                              code_version=code_version or _code_version())
        conn = self._conn
        conn.begin_write()
        try:
            if replace:
                for table in ("backtest_trades", "backtest_daily_equity", "grid_metrics",
                              "backtest_runs"):
                    conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
                self._arrays.remove(run_id)
            _insert_run(conn, run_id, rows.run)
            _insert_trades(conn, run_id, rows.trades)
            _insert_equity(conn, run_id, rows.equity)
            _insert_grid(conn, run_id, rows.grid)
            if result.positions is not None:
                self._arrays.publish(run_id, result.positions)
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            finally:  # even when the rollback fails (a dropped connection), no stray store
                self._arrays.remove(run_id)
            raise
        return run_id

    def delete_run(self, run_id: str) -> None:
        """Delete a run, its rows and its zarr store; KeyError if there is no such run.

        Example:
            >>> db.delete_run(run_id)                      # doctest: +SKIP
        """
        _check_run_id(run_id)
        conn = self._conn
        conn.begin_write()
        try:
            for table in ("backtest_trades", "backtest_daily_equity", "grid_metrics"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            found = conn.execute("DELETE FROM backtest_runs WHERE run_id = ?", (run_id,)).rowcount
            if not found:
                raise KeyError(f"no run {run_id!r} in {self.location}")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        # After the commit: a crash here leaves a stray store, removed on the next open.
        self._arrays.remove(run_id)

    # ------------------------------------------------------------------ reading
    def load_run(self, run_id: str) -> StoredRun:
        """Read a run back; KeyError if there is no such run.

        Example:
            >>> run = db.load_run(run_id)                  # doctest: +SKIP
            >>> run.equity.dims                            # doctest: +SKIP
            ('time',)
        """
        _check_run_id(run_id)
        head = self._conn.execute(
            "SELECT strategy, config, code_version, data_fingerprint, universe_id, metrics, status,"
            " optimistic, n_params, param_axis, created_at FROM backtest_runs WHERE run_id = ?",
            (run_id,)).fetchone()
        if head is None:
            raise KeyError(f"no run {run_id!r} in {self.location}")
        (strategy, config, version, fingerprint, universe_id, metrics, status, optimistic,
         n_params, param_axis) = head[:10]
        params = [_from_json(p) for (p,) in self._conn.execute(
            "SELECT params FROM grid_metrics WHERE run_id = ? ORDER BY param", (run_id,))]
        coords = _param_coords(params) if param_axis else None
        series = _load_equity(self._conn, run_id, n_params, coords)
        return StoredRun(
            run_id=run_id, strategy=strategy, config=_from_json(config),
            metrics=_frame_from_json(_from_json(metrics)),
            trades=_load_trades(self._conn, run_id),
            equity=series["equity"], drawdown=series["drawdown"],
            long_exposure=series["long"], short_exposure=series["short"],
            positions=self._arrays.load(run_id, coords),
            params=params, optimistic=bool(optimistic), data_fingerprint=fingerprint,
            code_version=version, universe_id=universe_id, status=status,
            created_at=datetime.fromisoformat(head[10]),
        )

    def list_runs(self, strategy: str | None = None, status: str | None = None,
                  limit: int | None = None) -> pl.DataFrame:
        """Runs, newest first, one row each (no metrics: see :meth:`load_run`).

        Example:
            >>> db.list_runs(strategy="sma20", limit=5)["run_id"].to_list()  # doctest: +SKIP
        """
        sql = ("SELECT run_id, strategy, status, created_at, start_time, end_time, universe_id,"
               " data_fingerprint, code_version, optimistic, n_params FROM backtest_runs")
        where, args = [], []
        for column, value in (("strategy", strategy), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, run_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = self._conn.execute(sql, args).fetchall()
        cols = [list(c) for c in zip(*rows)] if rows else [[] for _ in range(11)]
        return pl.DataFrame({
            "run_id": pl.Series(cols[0], dtype=pl.String),
            "strategy": pl.Series(cols[1], dtype=pl.String),
            "status": pl.Series(cols[2], dtype=pl.String),
            "created_at": pl.Series([datetime.fromisoformat(c) for c in cols[3]],
                                    dtype=pl.Datetime("us", "UTC")),
            "start_time": pl.Series(_parse_times(cols[4])),
            "end_time": pl.Series(_parse_times(cols[5])),
            "universe_id": pl.Series(cols[6], dtype=pl.String),
            "data_fingerprint": pl.Series(cols[7], dtype=pl.String),
            "code_version": pl.Series(cols[8], dtype=pl.String),
            "optimistic": pl.Series([bool(o) for o in cols[9]], dtype=pl.Boolean),
            "n_params": pl.Series(cols[10], dtype=pl.Int64),
        })

    def schema_version(self) -> int:
        """The schema version this database is at.

        Example:
            >>> ResultsDB(tmp / "r.db").schema_version()   # doctest: +SKIP
            1
        """
        return _current_version(self._conn)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close the connection (a later call on this instance fails)."""
        self._conn.close()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remove_strays(self) -> None:
        """Remove array stores that no committed run owns: left by a writer killed mid-run."""
        if not self._arrays.strays(self._run_ids()):
            return
        # Stores are written only under the write lock, so if the lock is free at once no
        # writer is in flight and every stray is an orphan. If it is busy, leave them: the
        # writer will commit or roll back its own, and the next open sweeps what is left.
        if not self._conn.try_begin_write():
            return
        try:
            for path in self._arrays.strays(self._run_ids()):
                shutil.rmtree(path, ignore_errors=True)
        finally:
            self._conn.commit()

    def _run_ids(self) -> set[str]:
        return {r for (r,) in self._conn.execute("SELECT run_id FROM backtest_runs")}


# ---------------------------------------------------------------------- schema
def migrate(conn: Connection, migrations: tuple[Migration, ...] | None = None) -> int:
    """Apply the steps newer than the database's version, all in one transaction.

    Idempotent: an up-to-date database is only read, so opening one never waits
    for a writer. Returns the version reached.

    Example:
        >>> migrate(Connection(Location.parse("runs.db")))  # doctest: +SKIP
        1
    """
    steps = MIGRATIONS if migrations is None else migrations
    if [m.version for m in steps] != list(range(1, len(steps) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, ... in order")
    latest = len(steps)
    if _current_version(conn) == latest:
        return latest
    conn.begin_write()
    try:
        conn.execute(_SCHEMA_VERSION_DDL)
        current = _current_version(conn)  # again under the lock: another process may have won
        if current > latest:
            raise RuntimeError(f"results database schema is version {current}, newer than this "
                               f"pitgrid knows ({latest}): upgrade pitgrid to open it")
        for step in steps[current:]:
            for statement in step.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, description, applied_at)"
                         " VALUES (?, ?, ?)", (step.version, step.description, _now()))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return latest


def _current_version(conn: Connection) -> int:
    if not conn.has_table("schema_version"):
        return 0
    (version,) = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return version or 0


# ---------------------------------------------------------------------- rows
@dataclass
class _RunRows:
    """Every row of one run, ready for executemany."""

    run: tuple
    trades: list[tuple]
    equity: list[tuple]
    grid: list[tuple]

    @classmethod
    def build(cls, run_id: str, result: SimResult, *, strategy: str, data_fingerprint: str,
              universe_id: str | None, params: list[dict[str, Any]] | None,
              code_version: str) -> _RunRows:
        equity = _as_param_time(result.equity, "equity")
        long_ = _as_param_time(result.long_exposure, "long_exposure")
        short = _as_param_time(result.short_exposure, "short_exposure")
        P, T = equity.shape
        if long_.shape != (P, T) or short.shape != (P, T):
            raise ValueError(f"exposures must have the shape of equity {(P, T)}")
        if result.metrics.height != P:
            raise ValueError(f"metrics has {result.metrics.height} rows for {P} parameter sets")
        params = _params_of(result.equity, P) if params is None else list(params)
        if len(params) != P or not all(isinstance(p, dict) for p in params):
            raise ValueError(f"params must be a list of {P} dicts, one per parameter set")
        times = _iso(result.equity["time"].values)
        dd = drawdown(equity, initial_capital(result))
        run = (strategy, _to_json(result.config), code_version, data_fingerprint,
               times[0] if T else None, times[-1] if T else None, universe_id,
               _to_json(_frame_to_json(result.metrics)), STATUS_COMPLETE, bool(result.optimistic),
               P, "param" in result.equity.dims, _now())
        equity_rows = [
            (p, times[t], e, d, _exposures_json(lo, sh))
            for p in range(P)
            for t, e, d, lo, sh in zip(range(T), equity[p].tolist(), dd[p].tolist(),
                                       long_[p].tolist(), short[p].tolist())
        ]
        metric_rows = result.metrics.drop("param", strict=False).to_dicts()
        grid = [(p, _to_json(params[p]), _to_json(metric_rows[p])) for p in range(P)]
        return cls(run, _trade_rows(result.trades, universe_id), equity_rows, grid)


def _as_param_time(da: xr.DataArray, name: str) -> np.ndarray:
    if da.dims not in (("time",), ("param", "time")):
        raise ValueError(f"{name} must have dims (time,) or (param, time), got {da.dims}")
    return np.atleast_2d(np.asarray(da.values, dtype=np.float64))


def _params_of(equity: xr.DataArray, P: int) -> list[dict[str, Any]]:
    names = [n for n, c in equity.coords.items() if c.dims == ("param",) and n != "param"]
    return [{n: equity[n].values[p].item() for n in names} for p in range(P)]


def _param_coords(params: list[dict[str, Any]]) -> dict[str, Any]:
    """Coordinates of the param axis; per-set values become coordinates when all sets share keys."""
    coords: dict[str, Any] = {"param": np.arange(len(params))}
    keys = list(params[0]) if params else []
    if all(list(p) == keys for p in params):
        for k in keys:
            values = [p[k] for p in params]
            if all(isinstance(v, (int, float, str, bool)) for v in values):
                coords[k] = ("param", np.asarray(values))
    return coords


def _trade_rows(trades: pl.DataFrame, universe_id: str | None) -> list[tuple]:
    missing = [c for c in _TRADE_COLUMNS if c not in trades.columns]
    unknown = [c for c in trades.columns if c not in _TRADE_COLUMNS + _TRADE_OPTIONAL]
    if missing or unknown:
        raise ValueError(f"trades columns do not match the backtest_trades table: missing "
                         f"{missing}, not stored {unknown}")
    n = trades.height
    cols = [_iso(trades["time"].to_numpy())] + [trades[c].to_list() for c in _TRADE_COLUMNS[1:]]
    regime = trades["regime"].to_list() if "regime" in trades.columns else [None] * n
    decision = ([None if d is None else _to_json(d) for d in trades["decision"].to_list()]
                if "decision" in trades.columns else [None] * n)
    return [(i, *row, universe_id, dec)
            for i, row, dec in zip(range(n), zip(*cols, regime), decision)]


def initial_capital(run: SimResult | StoredRun) -> float | None:
    """Starting equity (``init_cash`` times the accounts), or None when the run does not say.

    Drawdowns and first returns count from it, as docs/metrics.md does.

    Example:
        >>> initial_capital(pg.simulate(ds, weights=w))    # doctest: +SKIP
        100000.0
    """
    cash = run.config.get("init_cash")
    account_equity = getattr(run, "account_equity", None)  # a StoredRun keeps no accounts
    if account_equity is not None:
        accounts = account_equity.sizes["account"]
    elif run.config.get("accounts", "shared") == "shared":
        accounts = 1
    else:
        return None
    return None if cash is None else float(cash) * accounts


def drawdown(equity: np.ndarray, initial: float | None = None) -> np.ndarray:
    """``1 - E[t] / max(E[..t])`` per row of ``equity`` (rows, time); peaks include ``initial``.

    Example:
        >>> drawdown(np.array([[100.0, 90.0, 120.0]]), 100.0).round(2).tolist()
        [[0.0, 0.1, 0.0]]
    """
    equity = np.atleast_2d(equity)
    start = np.full((equity.shape[0], 1), np.nan if initial is None else initial)
    # fmax skips NaN equity instead of letting one NaN poison every later peak
    peaks = np.fmax.accumulate(np.concatenate([start, equity], axis=1), axis=1)[:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - equity / peaks


# ---------------------------------------------------------------------- inserts
# Module functions, one per table, called in this order inside the run's transaction.
def _insert_run(conn: Connection, run_id: str, row: tuple) -> None:
    conn.execute(
        "INSERT INTO backtest_runs (run_id, strategy, config, code_version, data_fingerprint,"
        " start_time, end_time, universe_id, metrics, status, optimistic, n_params, param_axis,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (run_id, *row))


def _insert_trades(conn: Connection, run_id: str, rows: list[tuple]) -> None:
    conn.executemany(
        "INSERT INTO backtest_trades (run_id, trade_id, time, param, symbol, side, shares, price,"
        " fees, slippage_cost, reason, regime, universe_id, decision)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ((run_id, *r) for r in rows))


def _insert_equity(conn: Connection, run_id: str, rows: list[tuple]) -> None:
    conn.executemany(
        "INSERT INTO backtest_daily_equity (run_id, param, time, equity, drawdown, exposures)"
        " VALUES (?, ?, ?, ?, ?, ?)", ((run_id, *r) for r in rows))


def _insert_grid(conn: Connection, run_id: str, rows: list[tuple]) -> None:
    conn.executemany("INSERT INTO grid_metrics (run_id, param, params, metrics)"
                     " VALUES (?, ?, ?, ?)", ((run_id, *r) for r in rows))


# ---------------------------------------------------------------------- loads
def _load_trades(conn: Connection, run_id: str) -> pl.DataFrame:
    rows = conn.execute(
        "SELECT time, param, symbol, side, shares, price, fees, slippage_cost, reason, regime,"
        " decision FROM backtest_trades WHERE run_id = ? ORDER BY trade_id", (run_id,)).fetchall()
    cols = dict(zip(_TRADE_COLUMNS + _TRADE_OPTIONAL,
                    [list(c) for c in zip(*rows)] if rows else [[] for _ in range(11)]))
    frame = {"time": pl.Series(_parse_times(cols["time"])),
             "param": pl.Series(cols["param"], dtype=pl.Int64)}
    for name in ("symbol", "side"):
        frame[name] = pl.Series(cols[name], dtype=pl.String)
    for name in _TRADE_FLOATS:
        # SQLite stores NaN as NULL; the column held floats, so NULL reads back as NaN
        frame[name] = pl.Series(np.array(cols[name], dtype=np.float64))
    for name in ("reason",) + _TRADE_OPTIONAL:
        if name == "reason" or any(v is not None for v in cols[name]):
            frame[name] = pl.Series(cols[name], dtype=pl.String)
    return pl.DataFrame(frame)


def _load_equity(conn: Connection, run_id: str, P: int,
                 coords: dict[str, Any] | None) -> dict[str, xr.DataArray]:
    rows = conn.execute(
        "SELECT time, equity, drawdown, exposures FROM backtest_daily_equity WHERE run_id = ?"
        " ORDER BY param, time", (run_id,)).fetchall()
    T = len(rows) // P
    times, equity, dd, exposures = zip(*rows) if rows else ((), (), (), ())
    parsed = [_from_json(e) for e in exposures]
    arrays = {
        "equity": np.array(equity, dtype=np.float64),
        "drawdown": np.array(dd, dtype=np.float64),
        "long": np.array([e["long"] for e in parsed], dtype=np.float64),
        "short": np.array([e["short"] for e in parsed], dtype=np.float64),
    }
    time = _parse_times(times[:T])
    out = {}
    for name, values in arrays.items():
        if coords is None:
            out[name] = xr.DataArray(values, dims=("time",), coords={"time": time})
        else:
            out[name] = xr.DataArray(values.reshape(P, T), dims=("param", "time"),
                                     coords={"time": time, **coords})
    return out


# ---------------------------------------------------------------------- zarr
class _ArrayStore:
    """Per-run zarr stores in one folder beside the database, tagged with the database's name."""

    def __init__(self, root: Path, owner: str) -> None:
        self.root = root
        self.owner = owner

    def path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.zarr"

    def _tmp(self, run_id: str) -> Path:
        return self.root / f".tmp-{self.owner}-{run_id}.zarr"

    def publish(self, run_id: str, positions: xr.DataArray) -> None:
        """Write to a temp folder, flush it to disk, then rename it into place."""
        if "time" not in positions.dims or "symbol" not in positions.dims:
            raise ValueError(f"positions must have time and symbol dims, got {positions.dims}")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp(run_id)
        attrs = {"database": self.owner, "run_id": run_id, "dims": list(positions.dims),
                 "symbols": positions["symbol"].values.tolist()}
        group = zarr.open_group(tmp, mode="w", attributes=attrs)
        group.create_array("positions", data=np.asarray(positions.values))
        group.create_array("time", data=positions["time"].values.astype("datetime64[ns]")
                           .view(np.int64))
        # Durable before the commit that points at it: a power cut must not leave a
        # committed run with a half-written store.
        _fsync_tree(tmp)
        os.replace(tmp, self.path(run_id))
        _fsync(self.root)

    def load(self, run_id: str, param_coords: dict[str, Any] | None) -> xr.DataArray | None:
        path = self.path(run_id)
        if not path.exists():
            return None
        group = zarr.open_group(path, mode="r")
        attrs = group.attrs.asdict()
        coords: dict[str, Any] = {"time": group["time"][...].view("datetime64[ns]"),
                                  "symbol": np.array(attrs["symbols"], dtype=str)}
        if "param" in attrs["dims"] and param_coords is not None:
            coords.update(param_coords)
        return xr.DataArray(group["positions"][...], dims=tuple(attrs["dims"]), coords=coords)

    def remove(self, run_id: str) -> None:
        for path in (self._tmp(run_id), self.path(run_id)):
            shutil.rmtree(path, ignore_errors=True)

    def strays(self, committed: set[str]) -> list[Path]:
        """Temp folders, and finished stores of this database whose run is not committed."""
        if not self.root.is_dir():
            return []
        out = []
        for path in self.root.iterdir():
            if path.name.startswith(f".tmp-{self.owner}-"):
                out.append(path)
            elif (path.suffix == ".zarr" and _RUN_ID.fullmatch(path.stem)
                  and path.stem not in committed and self._owns(path)):
                out.append(path)
        return out

    def _owns(self, path: Path) -> bool:
        # Another database with the same stem (runs.db, runs.sqlite) shares the folder.
        try:
            meta = json.loads((path / "zarr.json").read_text())
        except (OSError, ValueError):
            return False
        return meta.get("attributes", {}).get("database") == self.owner


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))


# ---------------------------------------------------------------------- encoding
def _iso(times: np.ndarray) -> list[str]:
    return np.datetime_as_string(np.asarray(times).astype("datetime64[ns]"), unit="ns").tolist()


def _parse_times(texts: tuple | list) -> np.ndarray:
    return np.array(texts, dtype="datetime64[ns]")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _to_json(obj: Any) -> str:
    try:
        return json.dumps(obj, allow_nan=False, separators=(",", ":"), default=_json_default)
    except ValueError:  # a non-finite float somewhere: tag them and retry
        return json.dumps(_tag_nonfinite(obj), allow_nan=False, separators=(",", ":"),
                          default=_json_default)


def _exposures_json(long_: float, short: float) -> str:
    return _to_json({"long": long_, "short": short, "gross": long_ + short, "net": long_ - short})


def _tag_nonfinite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"$float": str(float(obj))}
    if isinstance(obj, dict):
        return {k: _tag_nonfinite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_tag_nonfinite(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)) and not isinstance(obj, np.datetime64):
        return _tag_nonfinite(obj.tolist())
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.datetime64):
        return str(np.datetime_as_string(obj, unit="ns"))
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} as JSON: {obj!r}")


def _untag(obj: dict[str, Any]) -> Any:
    return float(obj["$float"]) if obj.keys() == {"$float"} else obj


def _from_json(text: str) -> Any:
    return json.loads(text, object_hook=_untag)


def _frame_to_json(frame: pl.DataFrame) -> dict[str, Any]:
    schema = {name: str(dtype) for name, dtype in frame.schema.items()}
    bad = {n: d for n, d in schema.items() if d not in _METRIC_DTYPES}
    if bad:
        raise TypeError(f"metrics columns must be numeric, boolean or text, got {bad}")
    return {"schema": schema, "rows": frame.to_dicts()}


def _frame_from_json(obj: dict[str, Any]) -> pl.DataFrame:
    schema = {name: _METRIC_DTYPES[d] for name, d in obj["schema"].items()}
    return pl.DataFrame(obj["rows"], schema=schema)


def _check_run_id(run_id: str) -> None:
    # Run ids name zarr folders: anything but 32 hex digits could point outside the store.
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise KeyError(f"{run_id!r} is not a run id (32 hex digits)")


def code_version() -> str:
    """pitgrid's ``__version__``, plus ``+g<git short hash>`` when run from a git checkout.

    Example:
        >>> code_version()                                 # doctest: +SKIP
        '0.1.0+g8e41c15'
    """
    return _code_version()


@functools.cache  # git runs once per process
def _code_version() -> str:
    from pitgrid import __version__

    package = Path(__file__).resolve().parent.parent
    try:
        # Only when the package itself is tracked: a venv inside some other repo must not
        # stamp runs with that repo's hash.
        tracked = subprocess.run(["git", "-C", str(package), "ls-files", "--error-unmatch",
                                  "__init__.py"], capture_output=True, timeout=5)
        if tracked.returncode != 0:
            return __version__
        head = subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return __version__
    return f"{__version__}+g{head.stdout.strip()}" if head.returncode == 0 else __version__
