"""One parameter set of a run (a SimResult or a stored run) as the plain arrays reports draw.

Example:
    >>> import pitgrid as pg
    >>> ds = pg.synthetic_prices(60, 3, seed=0)
    >>> view = RunView.of(pg.simulate(ds, weights=ds["close"] * 0 + 0.3), None)
    >>> len(view.equity), view.param
    (60, 0)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.engine.result import SimResult
from pitgrid.results.db import StoredRun, drawdown, initial_capital

#: equity curves longer than this, or ranging wider than LOG_RANGE, get a log axis
LOG_YEARS = 5.0
LOG_RANGE = 3.0


@dataclass
class RunView:
    """One parameter set of a run, as plain arrays; ``positions`` only when the run kept them."""

    times: np.ndarray
    equity: np.ndarray
    drawdown: np.ndarray
    long: np.ndarray
    short: np.ndarray
    initial: float | None
    trades: pl.DataFrame
    positions: xr.DataArray | None
    metrics: dict[str, Any]
    config: dict[str, Any]
    optimistic: bool
    facts: dict[str, str]
    param: int

    @classmethod
    def of(cls, run: SimResult | StoredRun, param: int | None) -> RunView:
        P = run.equity.sizes.get("param", 1)
        if param is None:
            if P > 1:
                raise ValueError(f"this run has {P} parameter sets: pass param= (0..{P - 1}) to "
                                 "pick one, or use write_grid_report for the whole grid")
            param = 0
        if not 0 <= param < P:
            raise ValueError(f"param={param} is out of range: the run has {P} parameter sets")

        def one(da: xr.DataArray) -> np.ndarray:
            return np.asarray(pick(da).values, dtype=np.float64)

        def pick(da: xr.DataArray) -> xr.DataArray:
            return da.isel(param=param) if "param" in da.dims else da

        equity = one(run.equity)
        if not len(equity):
            raise ValueError("the run has no bars to report on")
        initial = initial_capital(run)
        stored_dd = getattr(run, "drawdown", None)  # a StoredRun has the drawdown it saved
        dd = one(stored_dd) if stored_dd is not None else drawdown(equity, initial)[0]
        times = run.equity["time"].values
        facts = {
            "run id": getattr(run, "run_id", None) or "not saved",
            "strategy": getattr(run, "strategy", None) or "n/a",
            "data fingerprint": getattr(run, "data_fingerprint", None) or "not recorded "
                                "(ResultsDB.save_run records one)",
            "code version": getattr(run, "code_version", None) or "n/a",
            "universe": getattr(run, "universe_id", None) or "n/a",
            "parameter set": f"{param} of {P}",
            "fills": "same-bar close (optimistic)" if run.optimistic
                     else str(run.config.get("fill", "n/a")),
            "point-in-time audit": str(run.config.get("audit", "not run (audit = true in "
                                                           "[outputs], or pitgrid check)")),
            "bars": f"{len(equity)} ({day(times[0])} to {day(times[-1])})",
        }
        params = getattr(run, "params", None)
        if params and params[param]:
            facts["parameters"] = json.dumps(params[param], default=str)
        positions = getattr(run, "positions", None)
        return cls(
            times=times, equity=equity, drawdown=dd,
            long=one(run.long_exposure), short=one(run.short_exposure), initial=initial,
            trades=run.trades.filter(pl.col("param") == param),
            positions=None if positions is None else pick(positions),
            metrics=run.metrics.row(param, named=True) if run.metrics.height else {},
            config=run.config, optimistic=bool(run.optimistic), facts=facts, param=param,
        )

    def returns(self) -> np.ndarray:
        """Bar returns; the first counts from the initial capital (NaN when unknown)."""
        start = np.nan if self.initial is None else self.initial
        prev = np.concatenate([[start], self.equity[:-1]])
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.equity / prev - 1.0

    def stored_benchmark(self) -> tuple[str, np.ndarray] | None:
        """The benchmark the run was measured against (``backtest(benchmark=...)``), if kept."""
        stored = self.config.get("benchmark")
        if not isinstance(stored, dict) or "equity" not in stored:
            return None
        curve = np.asarray(stored["equity"], dtype=np.float64)
        if curve.shape != self.equity.shape:
            return None
        return str(stored.get("name", "benchmark")), curve


def day(time: np.datetime64) -> str:
    return str(np.datetime64(time, "D"))


def log_scale(times: np.ndarray, equity: np.ndarray) -> bool:
    """Long or wide-ranging curves read better on a log axis (positive values only)."""
    finite = equity[np.isfinite(equity)]
    if len(times) < 2 or not len(finite) or finite.min() <= 0:
        return False
    years = (times[-1] - times[0]) / np.timedelta64(1, "D") / 365.25
    return bool(years > LOG_YEARS or finite.max() / finite.min() > LOG_RANGE)


def align_benchmark(benchmark: Any, view: RunView) -> np.ndarray:
    """A benchmark on the run's bars, rescaled to the run's equity at its first valid bar.

    ``benchmark`` is a DataArray over ``time`` (aligned by time) or any sequence as long
    as the equity.
    """
    if isinstance(benchmark, xr.DataArray):
        if benchmark.dims != ("time",):
            raise ValueError(f"benchmark must be 1-D over time, got dims {benchmark.dims}")
        values = np.asarray(benchmark.reindex(time=view.times).values, dtype=np.float64)
    else:
        values = np.asarray(benchmark, dtype=np.float64)
        if values.shape != view.equity.shape:
            raise ValueError(f"benchmark has shape {values.shape} but the equity has "
                             f"{view.equity.shape}; pass a DataArray over time to align by time")
    valid = np.flatnonzero(np.isfinite(values) & (values != 0) & np.isfinite(view.equity))
    if not len(valid):
        raise ValueError("benchmark has no finite, non-zero value on the run's bars")
    first = valid[0]
    return values / values[first] * view.equity[first]


def closes(market: Any, view: RunView) -> xr.DataArray:
    """The market's as-traded closes on the run's bars, carried over gaps (for marking holdings)."""
    close = market["close"].ffill("time").reindex(time=view.times)
    if view.positions is None:
        return close
    return close.reindex(symbol=view.positions["symbol"].values)


def marks(market: Any, view: RunView) -> dict[str, float]:
    """Each symbol's last known close at the run's last bar."""
    last = closes(market, view).isel(time=-1)
    return {str(s): float(v) for s, v in zip(last["symbol"].values, last.values) if np.isfinite(v)}


def dividend_cash(market: Any, view: RunView) -> np.ndarray | None:
    """Dividends paid to each holding on each bar (None without positions or dividends)."""
    from pitgrid.results import ledger

    fields = market.fields if hasattr(market, "fields") else list(market.data_vars)
    if view.positions is None or "dividend" not in fields:
        return None
    on_bars = {"time": view.times, "symbol": view.positions["symbol"].values}
    div = market["dividend"].reindex(on_bars).fillna(0.0).values
    split = (market["split_ratio"].reindex(on_bars).fillna(1.0).values
             if "split_ratio" in fields else np.ones_like(div))
    return ledger.dividend_cash(view.positions.values, split, div)
