"""What the SQLite and PostgreSQL results tests share: a run to store, a run held inside
its write transaction, a run written as schema 1 wrote it (to migrate), and the SQL of
docs/database.md."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr

import pitgrid as pg
from pitgrid.results import db as rdb
from pitgrid.results.db import ResultsDB


def sma_run() -> pg.SimResult:
    """A small 20-bar moving-average run with fills, fees and kept positions."""
    ds = pg.synthetic_prices(300, 8, seed=0)
    c = ds["close"]
    mean = c.rolling(time=20).mean()
    return pg.simulate(ds, entries=c > mean, exits=c < mean, fees_bps=10, keep="full")


@contextmanager
def run_being_written(monkeypatch, open_db: Callable[[], ResultsDB], result,
                      strategy: str) -> Iterator[None]:
    """Yield while another thread's ``save_run(result)`` sits inside its transaction (rows
    inserted, not committed); on exit let it commit and check that it succeeded."""
    inside, release = threading.Event(), threading.Event()
    original = rdb._insert_equity

    def held(*args):
        original(*args)
        inside.set()
        assert release.wait(30)

    monkeypatch.setattr(rdb, "_insert_equity", held)
    errors: list[BaseException] = []

    def write():
        try:
            with open_db() as writer:
                writer.save_run(result, strategy=strategy, data_fingerprint="fp")
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert inside.wait(30)
        yield
    finally:
        release.set()
        thread.join(30)
    assert not errors


# ---------------------------------------------------------------------- schema 1
def _v1_json(obj) -> str:
    """JSON as schema 1 wrote it: non-finite floats tagged {"$float": "nan"}."""
    def tag(o):
        if isinstance(o, float) and not math.isfinite(o):
            return {"$float": str(o)}
        if isinstance(o, dict):
            return {k: tag(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [tag(v) for v in o]
        return o
    return json.dumps(tag(obj), allow_nan=False, separators=(",", ":"))


def write_v1_run(conn, run_id: str, result, *, strategy: str, params: list[dict]) -> None:
    """Store ``result`` as pitgrid wrote runs before schema 2 (schema 1's tables must exist):
    metrics as a serialised frame, nanosecond times, exposures as JSON, daily rows of every
    set (NaN where a grid kept no curve)."""
    from pitgrid.results.db import drawdown, initial_capital

    def ns(times) -> list[str]:
        return np.datetime_as_string(np.asarray(times).astype("datetime64[ns]"), unit="ns").tolist()

    equity = np.atleast_2d(result.equity.values)
    long_ = np.atleast_2d(result.long_exposure.values)
    short = np.atleast_2d(result.short_exposure.values)
    dd = drawdown(equity, initial_capital(result))
    times = ns(result.equity["time"].values)
    P = equity.shape[0]
    schema = {n: str(d) for n, d in result.metrics.schema.items()}
    conn.begin_write()
    conn.execute(
        "INSERT INTO backtest_runs (run_id, strategy, config, code_version, data_fingerprint,"
        " start_time, end_time, universe_id, metrics, status, optimistic, n_params, param_axis,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, strategy, _v1_json(result.config), "0.1.0", "fp", times[0], times[-1], "u",
         _v1_json({"schema": schema, "rows": result.metrics.to_dicts()}), "complete",
         bool(result.optimistic), P, "param" in result.equity.dims,
         "2026-01-02T03:04:05.000006+00:00"))
    t = result.trades
    conn.executemany(
        "INSERT INTO backtest_trades (run_id, trade_id, time, param, symbol, side, shares, price,"
        " fees, slippage_cost, reason, regime, universe_id, decision)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, i, tm, p, s, sd, sh, pr, f, sl, r, None, "u", None)
         for i, (tm, p, s, sd, sh, pr, f, sl, r) in enumerate(zip(
             ns(t["time"].to_numpy()), t["param"].to_list(), t["symbol"].to_list(),
             t["side"].to_list(), t["shares"].to_list(), t["price"].to_list(),
             t["fees"].to_list(), t["slippage_cost"].to_list(), t["reason"].to_list()))])
    conn.executemany(
        "INSERT INTO backtest_daily_equity (run_id, param, time, equity, drawdown, exposures)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(run_id, p, times[i], float(equity[p, i]), float(dd[p, i]),
          _v1_json({"long": float(long_[p, i]), "short": float(short[p, i]),
                    "gross": float(long_[p, i] + short[p, i]),
                    "net": float(long_[p, i] - short[p, i])}))
         for p in range(P) for i in range(len(times))])
    rows = result.metrics.drop("param").to_dicts()
    conn.executemany("INSERT INTO grid_metrics (run_id, param, params, metrics) VALUES (?, ?, ?, ?)",
                     [(run_id, p, _v1_json(params[p]), _v1_json(rows[p])) for p in range(P)])
    conn.commit()


# ---------------------------------------------------------------------- docs/database.md
DOC = Path(__file__).resolve().parents[1] / "docs" / "database.md"


def doc_queries(dialect: str = "") -> list[str]:
    """The statements of the page's ```sql blocks (```sql postgresql for ``dialect``)."""
    blocks = re.findall(r"```sql" + (f" {dialect}" if dialect else "") + r"\n(.*?)```",
                        DOC.read_text(), flags=re.S)
    return [q.strip() for block in blocks for q in block.split(";") if q.strip()]


def grid_run() -> pg.SimResult:
    ds = pg.synthetic_prices(300, 6, seed=2)
    c = ds["close"]
    sets = [(5, 20), (10, 20), (5, 40)]
    entries = xr.concat([c.rolling(time=f).mean() > c.rolling(time=s).mean() for f, s in sets],
                        dim="param").assign_coords(fast=("param", [f for f, _ in sets]),
                                                   slow=("param", [s for _, s in sets]))
    res = pg.simulate(ds, entries=entries, exits=~entries)
    return dataclasses.replace(res, config={**res.config, "run": {"grid": {"best_param": 1}}})
