"""The results database: runs, fills, daily equity and metrics in SQL a person can query,
positions as zarr.

An embedded SQLite file by default (WAL mode, so readers never wait for a writer),
or a PostgreSQL database by URL (``pip install 'pitgrid[postgres]'``). The DDL uses
portable types only (TEXT, BIGINT, INTEGER, DOUBLE PRECISION, BOOLEAN; JSON kept
as TEXT), so one schema and one set of statements serve both (``results/sql.py``
holds the few differences). docs/database.md shows the tables and SQL to read them.

Each run is written in one transaction. What a person meets in SQL:

- metrics are columns of ``backtest_metrics``, one row per run and parameter set
  (``SELECT sharpe FROM backtest_metrics``); a metric without a column of its own
  (added after this schema) is in that row's ``extra_metrics`` JSON;
- a missing number (NaN) is NULL;
- times are ISO-8601 text: the date alone (``2021-04-19``) when every time of the
  run is a midnight (daily bars), else date and time at the finest unit the run
  needs (``2021-04-19T09:30:00``); exact for datetime64[ns] and sortable as text;
- daily equity rows are written for the parameter sets whose curve was kept;
- JSON texts (config, params, decisions) are strict JSON: NaN is ``null`` and an
  infinity ``1e999`` (json.loads and SQLite read it back as infinity).
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xarray as xr
import zarr

from pitgrid.engine.result import SimResult
from pitgrid.results.encoding import (
    METRIC_COLUMNS, METRICS_INSERT, equity_insert, equity_rows, iso_times, metric_rows,
    metrics_frame, metrics_schema, number, parse_times, time_unit, to_json)
from pitgrid.results.migrations import MIGRATIONS, Migration, current_version, migrate, now
from pitgrid.results.sql import Connection, Location

__all__ = ["METRIC_COLUMNS", "MIGRATIONS", "Migration", "ResultsDB", "StoredRun", "code_version",
           "drawdown", "initial_capital", "migrate"]

STATUS_COMPLETE = "complete"
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_TRADE_COLUMNS = ("time", "param", "symbol", "side", "shares", "price", "fees",
                  "slippage_cost", "reason")
_TRADE_OPTIONAL = ("regime", "decision")
_TRADE_FLOATS = ("shares", "price", "fees", "slippage_cost")
# what list_runs shows of the set a run is known by
_LISTED_METRICS = ("total_return", "annual_return", "sharpe", "max_drawdown", "trades")


@dataclass
class StoredRun:
    """A run read back from a :class:`ResultsDB`; numbers are exactly those written.

    ``equity``, ``drawdown``, ``long_exposure`` and ``short_exposure`` have the
    dims of the saved result (``time`` or ``param, time``), NaN for the sets of a
    grid whose curve was not kept; ``positions`` is None when the run kept none or
    its zarr store is gone. ``params`` has one dict per parameter set;
    ``best_param`` is the set a grid ranked best (0 for a single run);
    ``model_sha256`` the weights hash of a model run (else None). A ``decision``
    trade column comes back as JSON text.

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
    best_param: int = 0
    model_sha256: str | None = None

    def grid_table(self) -> pl.DataFrame:
        """Parameter values beside the metrics, one row per parameter set.

        Example:
            >>> table = run.grid_table()                   # doctest: +SKIP
            >>> table.select("fast", "slow", "sharpe")     # doctest: +SKIP
        """
        values = pl.DataFrame(self.params) if any(self.params) else pl.DataFrame()
        return pl.concat([values, self.metrics], how="horizontal")

    def plot(self, kind: str = "equity", *, param: int | list[int] | None = None) -> Any:
        """A plotly figure: ``kind`` "equity" or "drawdown"; ``param`` picks parameter sets."""
        from pitgrid.results.display import plot

        return plot(self, kind, param=param)

    def _repr_html_(self) -> str:
        from pitgrid.results.display import stored_run_html

        return stored_run_html(self)


class ResultsDB:
    """Backtest runs in SQL, with positions as zarr stores beside the database file.

    ``url_or_path`` is a file path, a ``sqlite:///path`` URL (``sqlite:////abs``
    for an absolute path), a ``postgresql://user@host:5432/dbname`` URL, or None for
    the default database (``PITGRID_DB``, else the nearest project file's, else
    ``pitgrid.db`` in the working directory; see ``results/default_db.py``). Positions go to
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
        model_sha256: str | None = None,
    ) -> str:
        """Store a simulation result in one transaction; return its run id (uuid4 hex).

        ``run_id`` stores it under that id, replacing the run of that id in the same
        transaction: a paper run that grows with each bar keeps one id.

        ``params`` labels each parameter set (default: the result's coordinates on
        its ``param`` axis). ``code_version`` defaults to :func:`code_version`.
        ``model_sha256`` (the weights hash of a model run) defaults to the
        result's ``extra["model_sha256"]``, else its ``config["model_sha256"]``.
        The set a grid ranked best is read from ``config["run"]["grid"]["best_param"]``
        (how run configs record it), else 0.
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
                              code_version=code_version or _code_version(),
                              model_sha256=model_sha256)
        conn = self._conn
        conn.begin_write()
        try:
            if replace:
                for table in ("backtest_trades", "backtest_daily_equity", "backtest_metrics",
                              "backtest_runs"):
                    conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
                self._arrays.remove(run_id)
            _insert_run(conn, run_id, rows.run)
            _insert_trades(conn, run_id, rows.trades)
            _insert_equity(conn, run_id, rows.equity)
            _insert_metrics(conn, run_id, rows.metrics)
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
            for table in ("backtest_trades", "backtest_daily_equity", "backtest_metrics"):
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
            "SELECT strategy, config, code_version, data_fingerprint, universe_id, status,"
            " optimistic, n_params, param_axis, created_at, best_param, model_sha256,"
            " metrics_schema FROM backtest_runs WHERE run_id = ?", (run_id,)).fetchone()
        if head is None:
            raise KeyError(f"no run {run_id!r} in {self.location}")
        (strategy, config, version, fingerprint, universe_id, status, optimistic, n_params,
         param_axis, created_at, best_param, model_sha256, schema) = head
        params, metrics = _load_metrics(self._conn, run_id, json.loads(schema))
        coords = _param_coords(params) if param_axis else None
        series = _load_equity(self._conn, run_id, n_params, coords)
        return StoredRun(
            run_id=run_id, strategy=strategy, config=json.loads(config), metrics=metrics,
            trades=_load_trades(self._conn, run_id),
            equity=series["equity"], drawdown=series["drawdown"],
            long_exposure=series["long"], short_exposure=series["short"],
            positions=self._arrays.load(run_id, coords),
            params=params, optimistic=bool(optimistic), data_fingerprint=fingerprint,
            code_version=version, universe_id=universe_id, status=status,
            created_at=datetime.fromisoformat(created_at), best_param=int(best_param),
            model_sha256=model_sha256,
        )

    def list_runs(self, strategy: str | None = None, status: str | None = None,
                  limit: int | None = None) -> pl.DataFrame:
        """Runs, newest first, one row each, with the parameters (``params``, JSON text) and
        the key metrics of the set each run is known by (a grid's best set).

        Example:
            >>> db.list_runs(strategy="sma20", limit=5)["sharpe"].to_list()  # doctest: +SKIP
        """
        heads = ("run_id", "strategy", "status", "created_at", "start_time", "end_time",
                 "universe_id", "data_fingerprint", "code_version", "optimistic", "n_params",
                 "best_param", "model_sha256")
        sql = (f"SELECT {', '.join('r.' + c for c in heads)}, m.params,"
               f" {', '.join('m.' + c for c in _LISTED_METRICS)} FROM backtest_runs r"
               " LEFT JOIN backtest_metrics m ON m.run_id = r.run_id AND m.param = r.best_param")
        where, args = [], []
        for column, value in (("strategy", strategy), ("status", status)):
            if value is not None:
                where.append(f"r.{column} = ?")
                args.append(value)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.created_at DESC, r.run_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = self._conn.execute(sql, args).fetchall()
        names = (*heads, "params", *_LISTED_METRICS)
        cols = dict(zip(names, [list(c) for c in zip(*rows)] if rows else [[] for _ in names]))
        frame = {
            "created_at": pl.Series([datetime.fromisoformat(c) for c in cols["created_at"]],
                                    dtype=pl.Datetime("us", "UTC")),
            "start_time": pl.Series(parse_times(cols["start_time"])),
            "end_time": pl.Series(parse_times(cols["end_time"])),
            "optimistic": pl.Series([bool(o) for o in cols["optimistic"]], dtype=pl.Boolean),
            "n_params": pl.Series(cols["n_params"], dtype=pl.Int64),
            "best_param": pl.Series(cols["best_param"], dtype=pl.Int64),
            **{m: pl.Series(np.array(cols[m], dtype=np.float64)) for m in _LISTED_METRICS},
        }
        return pl.DataFrame({n: frame[n] if n in frame else pl.Series(cols[n], dtype=pl.String)
                             for n in names})

    def schema_version(self) -> int:
        """The schema version this database is at.

        Example:
            >>> ResultsDB(tmp / "r.db").schema_version()   # doctest: +SKIP
            1
        """
        return current_version(self._conn)

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


# ---------------------------------------------------------------------- rows
@dataclass
class _RunRows:
    """Every row of one run, ready for executemany."""

    run: tuple
    trades: list[tuple]
    equity: list[tuple]
    metrics: list[tuple]

    @classmethod
    def build(cls, run_id: str, result: SimResult, *, strategy: str, data_fingerprint: str,
              universe_id: str | None, params: list[dict[str, Any]] | None,
              code_version: str, model_sha256: str | None) -> _RunRows:
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
        trades = result.trades
        unit = time_unit(result.equity["time"].values, trades["time"].to_numpy())
        times = iso_times(result.equity["time"].values, unit)
        best = result.config.get("run", {}).get("grid", {}).get("best_param", 0)
        if model_sha256 is None:
            model_sha256 = result.extra.get("model_sha256", result.config.get("model_sha256"))
        run = (strategy, to_json(result.config), code_version, data_fingerprint,
               times[0] if T else None, times[-1] if T else None, universe_id, STATUS_COMPLETE,
               bool(result.optimistic), P, "param" in result.equity.dims, now(), int(best),
               model_sha256, metrics_schema(result.metrics))
        dd = drawdown(equity, initial_capital(result))
        return cls(run, _trade_rows(trades, universe_id, unit),
                   equity_rows(times, equity, dd, long_, short),
                   metric_rows(result.metrics, params))


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


def _trade_rows(trades: pl.DataFrame, universe_id: str | None, unit: str) -> list[tuple]:
    missing = [c for c in _TRADE_COLUMNS if c not in trades.columns]
    unknown = [c for c in trades.columns if c not in _TRADE_COLUMNS + _TRADE_OPTIONAL]
    if missing or unknown:
        raise ValueError(f"trades columns do not match the backtest_trades table: missing "
                         f"{missing}, not stored {unknown}")
    n = trades.height
    cols = [iso_times(trades["time"].to_numpy(), unit),
            *(trades[c].to_list() if c not in _TRADE_FLOATS else map(number, trades[c].to_list())
              for c in _TRADE_COLUMNS[1:])]
    regime = trades["regime"].to_list() if "regime" in trades.columns else [None] * n
    decision = ([None if d is None else to_json(d) for d in trades["decision"].to_list()]
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
        " start_time, end_time, universe_id, status, optimistic, n_params, param_axis,"
        " created_at, best_param, model_sha256, metrics_schema)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (run_id, *row))


def _insert_trades(conn: Connection, run_id: str, rows: list[tuple]) -> None:
    conn.executemany(
        "INSERT INTO backtest_trades (run_id, trade_id, time, param, symbol, side, shares, price,"
        " fees, slippage_cost, reason, regime, universe_id, decision)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ((run_id, *r) for r in rows))


def _insert_equity(conn: Connection, run_id: str, rows: list[tuple]) -> None:
    conn.executemany(equity_insert(), ((run_id, *r) for r in rows))


def _insert_metrics(conn: Connection, run_id: str, rows: list[tuple]) -> None:
    conn.executemany(METRICS_INSERT, ((run_id, *r) for r in rows))


# ---------------------------------------------------------------------- loads
def _load_trades(conn: Connection, run_id: str) -> pl.DataFrame:
    rows = conn.execute(
        "SELECT time, param, symbol, side, shares, price, fees, slippage_cost, reason, regime,"
        " decision FROM backtest_trades WHERE run_id = ? ORDER BY trade_id", (run_id,)).fetchall()
    cols = dict(zip(_TRADE_COLUMNS + _TRADE_OPTIONAL,
                    [list(c) for c in zip(*rows)] if rows else [[] for _ in range(11)]))
    frame = {"time": pl.Series(parse_times(cols["time"])),
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


def _load_metrics(conn: Connection, run_id: str,
                  schema: dict[str, str]) -> tuple[list[dict[str, Any]], pl.DataFrame]:
    rows = conn.execute(
        f"SELECT param, params, {', '.join(METRIC_COLUMNS)}, extra_metrics FROM backtest_metrics"
        " WHERE run_id = ? ORDER BY param", (run_id,)).fetchall()
    return metrics_frame(schema, rows)


def _load_equity(conn: Connection, run_id: str, P: int,
                 coords: dict[str, Any] | None) -> dict[str, xr.DataArray]:
    """The curves of every set; a set without rows (its curve was not kept) is NaN."""
    rows = conn.execute(
        "SELECT param, time, equity, drawdown, long_exposure, short_exposure"
        " FROM backtest_daily_equity WHERE run_id = ? ORDER BY param, time", (run_id,)).fetchall()
    first = rows[0][0] if rows else 0
    time = parse_times([r[1] for r in rows if r[0] == first])
    T = len(time)
    arrays = {name: np.full((P, T), np.nan) for name in ("equity", "drawdown", "long", "short")}
    if rows:
        params, _, *values = zip(*rows)
        index = np.asarray(params).reshape(-1, T)[:, 0]
        for name, column in zip(arrays, values):
            arrays[name][index] = np.array(column, dtype=np.float64).reshape(-1, T)
    out = {}
    for name, values in arrays.items():
        if coords is None:
            out[name] = xr.DataArray(values[0], dims=("time",), coords={"time": time})
        else:
            out[name] = xr.DataArray(values, dims=("param", "time"),
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


# ---------------------------------------------------------------------- checks
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
