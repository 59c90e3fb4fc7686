"""Runs as SQL rows a person can read, and back exactly: ISO times, strict JSON, NULL for
NaN, one column per metric.

The writer (``results/db.py``) and the migration of older databases
(``results/migrations.py``) both build their rows here, so a migrated run reads like
a new one.

Example:
    >>> import numpy as np
    >>> days = np.array(["2021-04-19", "2021-04-20"], dtype="datetime64[ns]")
    >>> iso_times(days, time_unit(days))
    ['2021-04-19', '2021-04-20']
    >>> to_json({"cap": float("inf"), "x": float("nan")})
    '{"cap":1e999,"x":null}'
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import polars as pl

# The metric columns of schema 2, frozen with it: a metric added to the engine later is
# kept in extra_metrics until a new migration gives it a column.
METRIC_COLUMNS = (
    "total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
    "max_drawdown_duration", "var_95", "cvar_95", "var_99", "cvar_99", "tail_index", "trades",
    "win_rate", "avg_win", "avg_loss", "profit_factor", "turnover", "fills", "unfilled", "fees",
    "slippage", "exposure", "benchmark_return", "alpha", "beta", "information_ratio",
    "tracking_error", "up_capture", "down_capture", "correlation")
METRIC_DTYPES = {str(d): d for d in (pl.Int64, pl.Int32, pl.UInt32, pl.UInt64, pl.Float64,
                                     pl.Float32, pl.Boolean, pl.String)}
_NUMERIC = {"Int64", "Int32", "UInt32", "UInt64", "Float64", "Float32"}

METRICS_INSERT = (f"INSERT INTO backtest_metrics (run_id, param, params,"
                  f" {', '.join(METRIC_COLUMNS)}, extra_metrics)"
                  f" VALUES ({', '.join(['?'] * (len(METRIC_COLUMNS) + 4))})")
EQUITY_COLUMNS = ("run_id", "param", "time", "equity", "drawdown", "long_exposure",
                  "short_exposure", "gross_exposure", "net_exposure")


def equity_insert(table: str = "backtest_daily_equity") -> str:
    """The INSERT of daily equity rows (the migration fills a new table under another name)."""
    return (f"INSERT INTO {table} ({', '.join(EQUITY_COLUMNS)})"
            f" VALUES ({', '.join(['?'] * len(EQUITY_COLUMNS))})")


# ---------------------------------------------------------------------- times
_NS = {"D": 86_400_000_000_000, "s": 1_000_000_000, "ms": 1_000_000, "us": 1_000}


def time_unit(*arrays: np.ndarray) -> str:
    """The coarsest unit that writes every time of ``arrays`` exactly: "D" when all are
    midnights (daily bars), else "s", "ms", "us" or "ns"."""
    ticks = np.concatenate([np.asarray(a).astype("datetime64[ns]").view(np.int64).ravel()
                            for a in arrays] or [np.empty(0, np.int64)])
    for unit, ns in _NS.items():
        if not np.any(ticks % ns):
            return unit
    return "ns"


def iso_times(times: np.ndarray, unit: str) -> list[str]:
    """ISO-8601 texts of ``times`` at ``unit`` (see :func:`time_unit`)."""
    exact = np.asarray(times).astype("datetime64[ns]").astype(f"datetime64[{unit}]")
    return np.datetime_as_string(exact, unit=unit).tolist()


def parse_times(texts: tuple | list) -> np.ndarray:
    """datetime64[ns] of ISO texts (a date alone, or date and time at any unit)."""
    return np.array(texts, dtype="datetime64[ns]")


# ---------------------------------------------------------------------- numbers and JSON
def number(value: Any) -> float | None:
    """A float for a DOUBLE PRECISION column: NaN and None become NULL."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


_INFINITY = {"\x00inf": "1e999", "\x00-inf": "-1e999"}


def to_json(obj: Any) -> str:
    """Strict JSON: NaN is null; an infinity is written 1e999, which json.loads and SQLite
    read back as infinity (PostgreSQL's ``numeric`` reads it as a huge number)."""
    try:
        return json.dumps(obj, allow_nan=False, separators=(",", ":"), default=_json_default)
    except ValueError:  # a non-finite float somewhere: spell it out and retry
        text = json.dumps(_finite(obj), allow_nan=False, separators=(",", ":"),
                          default=_json_default)
        for marker, literal in _INFINITY.items():
            text = text.replace(json.dumps(marker), literal)
        return text


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("\x00inf" if obj > 0 else "\x00-inf")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)) and not isinstance(obj, np.datetime64):
        return _finite(obj.tolist())
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.datetime64):
        return str(np.datetime_as_string(obj))
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} as JSON: {obj!r}")


# ---------------------------------------------------------------------- metrics
def metrics_schema(frame: pl.DataFrame) -> str:
    """The metrics frame's columns and dtypes, in order, as JSON (how it is read back)."""
    schema = {name: str(dtype) for name, dtype in frame.schema.items()}
    bad = {n: d for n, d in schema.items() if d not in METRIC_DTYPES}
    if bad:
        raise TypeError(f"metrics columns must be numeric, boolean or text, got {bad}")
    return to_json(schema)


def metric_rows(frame: pl.DataFrame, params: list[dict[str, Any]]) -> list[tuple]:
    """One row per parameter set: param, params JSON, the metric columns (NULL where the
    frame has none or NaN), and the other metrics as JSON (NULL when there are none)."""
    numeric = {n for n, d in frame.schema.items() if str(d) in _NUMERIC}
    rows = []
    for p, values in enumerate(frame.to_dicts()):
        extra = {n: v for n, v in values.items()
                 if n != "param" and not (n in METRIC_COLUMNS and n in numeric)}
        rows.append((p, to_json(params[p]),
                     *(number(values[n]) if n in numeric else None for n in METRIC_COLUMNS),
                     to_json(extra) if extra else None))
    return rows


def metrics_frame(schema: dict[str, str], rows: list[tuple]) -> tuple[list[dict[str, Any]],
                                                                      pl.DataFrame]:
    """The parameter sets and the metrics frame of :func:`metric_rows`' rows (ordered by
    param). A float metric's NULL reads back as NaN."""
    params = [json.loads(r[1]) for r in rows]
    columns = dict(zip(METRIC_COLUMNS, zip(*(r[2:-1] for r in rows)))) if rows else {}
    extras = [json.loads(r[-1]) if r[-1] is not None else {} for r in rows]
    data: dict[str, pl.Series] = {}
    for name, text in schema.items():
        dtype = METRIC_DTYPES[text]
        if name == "param":
            values: list[Any] = [r[0] for r in rows]
        elif name in columns and text in _NUMERIC:
            values = list(columns[name])
        else:
            values = [e.get(name) for e in extras]
        if dtype.is_float():
            data[name] = pl.Series(name, np.array(values, dtype=np.float64), dtype=dtype)
        else:
            data[name] = pl.Series(name, values, dtype=dtype, strict=False)
    return params, pl.DataFrame(data)


# ---------------------------------------------------------------------- daily equity
def equity_rows(times: list[str], equity: np.ndarray, drawdown: np.ndarray, long_: np.ndarray,
                short: np.ndarray) -> list[tuple]:
    """Daily rows (param, time, equity, drawdown, long, short, gross, net) of the sets whose
    curve was kept: a set with no equity at all (a grid keeps its best few) has none, unless
    no set has any (then every set's rows keep the time axis)."""
    kept = [p for p in range(equity.shape[0]) if not np.isnan(equity[p]).all()]
    rows = []
    for p in kept or range(equity.shape[0]):
        for t, e, d, lo, sh in zip(times, equity[p].tolist(), drawdown[p].tolist(),
                                   long_[p].tolist(), short[p].tolist()):
            rows.append((p, t, number(e), number(d), number(lo), number(sh), number(lo + sh),
                         number(lo - sh)))
    return rows
