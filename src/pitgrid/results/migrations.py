"""The results database's schema, step by step, and the migration of databases written by
earlier versions.

A database records the steps it has run in ``schema_version``; opening it runs the
newer ones in one transaction, so it is either migrated whole or left as it was.

Example:
    >>> from pitgrid.results.sql import Connection, Location
    >>> migrate(Connection(Location.parse("runs.db")))  # doctest: +SKIP
    2
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import polars as pl

from pitgrid.results.encoding import (
    METRIC_COLUMNS, METRIC_DTYPES, METRICS_INSERT, equity_insert, equity_rows, iso_times,
    metric_rows, metrics_schema, parse_times, time_unit, to_json)
from pitgrid.results.sql import Connection

__all__ = ["MIGRATIONS", "Migration", "current_version", "migrate"]


@dataclass(frozen=True)
class Migration:
    """One schema step; ``statements`` run in order, in one transaction with its version row.
    A statement is SQL text, or a function of the connection that moves rows (data that SQL
    alone cannot convert portably, such as JSON written by an earlier version)."""

    version: int
    description: str
    statements: tuple[str | Callable[[Connection], None], ...]


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
    Migration(2, "metrics and exposures as columns, daily rows of kept sets only, ISO dates, "
                 "plain JSON, the model's weights hash", (
        "CREATE TABLE backtest_metrics (\n"
        "    run_id TEXT NOT NULL REFERENCES backtest_runs (run_id),\n"
        "    param BIGINT NOT NULL,\n"
        "    params TEXT NOT NULL,\n"
        + "".join(f"    {name} DOUBLE PRECISION,\n" for name in METRIC_COLUMNS) +
        "    extra_metrics TEXT,\n"
        "    PRIMARY KEY (run_id, param)\n"
        ")",
        """CREATE TABLE backtest_daily_equity_v2 (
            run_id TEXT NOT NULL REFERENCES backtest_runs (run_id),
            param BIGINT NOT NULL,
            time TEXT NOT NULL,
            equity DOUBLE PRECISION,
            drawdown DOUBLE PRECISION,
            long_exposure DOUBLE PRECISION,
            short_exposure DOUBLE PRECISION,
            gross_exposure DOUBLE PRECISION,
            net_exposure DOUBLE PRECISION,
            PRIMARY KEY (run_id, param, time)
        )""",
        "ALTER TABLE backtest_runs ADD COLUMN best_param INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE backtest_runs ADD COLUMN model_sha256 TEXT",
        "ALTER TABLE backtest_runs ADD COLUMN metrics_schema TEXT",
        # looked up when the step runs: the function is defined further down
        lambda conn: _rewrite_v1_rows(conn),
        "DROP TABLE grid_metrics",
        "DROP TABLE backtest_daily_equity",
        "ALTER TABLE backtest_daily_equity_v2 RENAME TO backtest_daily_equity",
        "ALTER TABLE backtest_runs DROP COLUMN metrics",
    )),
)

_SCHEMA_VERSION_DDL = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""




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
    if current_version(conn) == latest:
        return latest
    conn.begin_write()
    try:
        conn.execute(_SCHEMA_VERSION_DDL)
        current = current_version(conn)  # again under the lock: another process may have won
        if current > latest:
            raise RuntimeError(f"results database schema is version {current}, newer than this "
                               f"pitgrid knows ({latest}): upgrade pitgrid to open it")
        for step in steps[current:]:
            for statement in step.statements:
                if callable(statement):
                    statement(conn)
                else:
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, description, applied_at)"
                         " VALUES (?, ?, ?)", (step.version, step.description, now()))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return latest


def current_version(conn: Connection) -> int:
    """The last step this database has run (0 for a new one)."""
    if not conn.has_table("schema_version"):
        return 0
    (version,) = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return version or 0


def now() -> str:
    """The current UTC time as ISO text, to the microsecond."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# ---------------------------------------------------------------------- step 2's rows
def _rewrite_v1_rows(conn: Connection) -> None:
    """Schema 1's rows in schema 2's form, run by run: JSON metrics become columns,
    exposures columns, nanosecond times ISO texts, tagged non-finite JSON plain JSON,
    and the daily rows of grid sets whose curve was not kept are dropped."""
    runs = conn.execute("SELECT run_id, config, metrics, n_params FROM backtest_runs").fetchall()
    for run_id, config, metrics, n_params in runs:
        equity = conn.execute(
            "SELECT time, equity, drawdown, exposures FROM backtest_daily_equity WHERE run_id = ?"
            " ORDER BY param, time", (run_id,)).fetchall()
        trades = conn.execute("SELECT trade_id, time, decision FROM backtest_trades"
                              " WHERE run_id = ?", (run_id,)).fetchall()
        T = len(equity) // n_params
        times = parse_times([row[0] for row in equity[:T]])
        unit = time_unit(times, parse_times([row[1] for row in trades]))
        texts = iso_times(times, unit)

        def curve(values: list[Any]) -> np.ndarray:
            return np.array(values, dtype=np.float64).reshape(n_params, T)

        exposures = [_v1_json(row[3]) for row in equity]
        conn.executemany(equity_insert("backtest_daily_equity_v2"), (
            (run_id, *row) for row in equity_rows(
                texts, curve([row[1] for row in equity]), curve([row[2] for row in equity]),
                curve([e["long"] for e in exposures]), curve([e["short"] for e in exposures]))))

        frame = _v1_frame(_v1_json(metrics))
        params = [_v1_json(p) for (p,) in conn.execute(
            "SELECT params FROM grid_metrics WHERE run_id = ? ORDER BY param", (run_id,))]
        conn.executemany(METRICS_INSERT, ((run_id, *row) for row in metric_rows(frame, params)))

        settings = _v1_json(config)
        best = settings.get("run", {}).get("grid", {}).get("best_param", 0)
        conn.execute("UPDATE backtest_runs SET config = ?, start_time = ?, end_time = ?,"
                     " best_param = ?, metrics_schema = ? WHERE run_id = ?",
                     (to_json(settings), texts[0] if texts else None,
                      texts[-1] if texts else None, int(best), metrics_schema(frame), run_id))
        trade_times = iso_times(parse_times([row[1] for row in trades]), unit)
        conn.executemany(
            "UPDATE backtest_trades SET time = ?, decision = ? WHERE run_id = ? AND trade_id = ?",
            ((text, None if decision is None else to_json(_v1_json(decision)), run_id, trade_id)
             for (trade_id, _, decision), text in zip(trades, trade_times)))


def _v1_json(text: str) -> Any:
    """JSON as schema 1 wrote it: non-finite floats tagged ``{"$float": "nan"}``."""
    def untag(obj: dict[str, Any]) -> Any:
        return float(obj["$float"]) if obj.keys() == {"$float"} else obj

    return json.loads(text, object_hook=untag)


def _v1_frame(obj: dict[str, Any]) -> pl.DataFrame:
    """Schema 1's metrics: a frame serialised as its schema and rows."""
    schema = {name: METRIC_DTYPES[d] for name, d in obj["schema"].items()}
    return pl.DataFrame(obj["rows"], schema=schema)
