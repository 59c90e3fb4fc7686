"""Benchmark-relative metrics: how a run did against a symbol, a series or another strategy.

The benchmark's bar returns ``b`` are set against the run's ``r`` (both from the
run's first bar; the first return is against the initial capital):

| metric | formula (``bpy`` bars per year) |
|---|---|
| beta | ``cov(r, b) / var(b)`` |
| alpha | ``(1 + mean(r - beta b))^bpy - 1`` (annualised, risk-free rate 0) |
| tracking_error | ``std(r - b, ddof=1) sqrt(bpy)`` |
| information_ratio | ``mean(r - b) / std(r - b, ddof=1) sqrt(bpy)`` |
| up_capture, down_capture | annual return of ``r`` over the bars where ``b > 0`` (``b < 0``) divided by that of ``b`` |
| correlation | Pearson correlation of ``r`` and ``b`` |
| benchmark_return | total return of the benchmark over the run |

These follow empyrical's definitions (``alpha_beta``, ``up_capture``,
``down_capture``; the information ratio is empyrical's ``excess_sharpe``
annualised) and are checked against it in the tests.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

RELATIVE_METRICS = ("alpha", "beta", "information_ratio", "tracking_error", "up_capture",
                    "down_capture", "correlation", "benchmark_return")


def returns_of(equity: np.ndarray, initial: float) -> np.ndarray:
    """Bar returns of an equity curve, the first against ``initial``."""
    e = np.asarray(equity, dtype=np.float64)
    prev = np.concatenate([[initial], e[:-1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        return e / prev - 1.0


def relative_metrics(r: np.ndarray, b: np.ndarray, bars_per_year: float = 252.0) -> dict[str, float]:
    """The metrics of the module docs for returns ``r`` against benchmark returns ``b``.

    Example:
        >>> r = np.array([0.01, -0.02, 0.015, 0.0, 0.01])
        >>> round(relative_metrics(r, r)["beta"], 12), round(relative_metrics(r, r)["correlation"], 12)
        (1.0, 1.0)
    """
    r, b = np.asarray(r, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(r) & np.isfinite(b)
    r, b = r[ok], b[ok]
    out = dict.fromkeys(RELATIVE_METRICS, np.nan)
    if len(r) < 2:
        return out
    var_b = np.var(b, ddof=1)
    beta = np.cov(r, b, ddof=1)[0, 1] / var_b if var_b > 0 else np.nan
    active = r - b
    te = np.std(active, ddof=1)
    out.update(
        beta=beta,
        alpha=(1 + np.mean(r - beta * b)) ** bars_per_year - 1 if np.isfinite(beta) else np.nan,
        tracking_error=te * np.sqrt(bars_per_year),
        information_ratio=np.mean(active) / te * np.sqrt(bars_per_year) if te > 0 else np.nan,
        up_capture=_capture(r, b, b > 0, bars_per_year),
        down_capture=_capture(r, b, b < 0, bars_per_year),
        correlation=np.corrcoef(r, b)[0, 1] if np.std(r) > 0 and np.std(b) > 0 else np.nan,
        benchmark_return=float(np.prod(1 + b) - 1),
    )
    return {k: float(v) for k, v in out.items()}


def _capture(r: np.ndarray, b: np.ndarray, sel: np.ndarray, bpy: float) -> float:
    if not sel.any():
        return np.nan
    ann = lambda x: np.prod(1 + x) ** (bpy / len(x)) - 1  # noqa: E731
    denom = ann(b[sel])
    return float(ann(r[sel]) / denom) if denom != 0 else np.nan


def benchmark_equity(market: Any, benchmark: Any, times: np.ndarray, initial: float,
                     config: Any = None) -> tuple[str, np.ndarray]:
    """The benchmark as an equity curve on ``times`` starting from ``initial``; and its name.

    ``benchmark``: a symbol of the market (its split-adjusted close with dividends
    reinvested), a 1-D series of prices or values over the market's bars (an
    ``xarray.DataArray`` over ``time``, or an array the length of the market), or a
    :class:`pitgrid.Strategy` backtested on the same market and settings.
    """
    from pitgrid.cycle.data import FeatureData
    from pitgrid.cycle.strategy import Strategy

    all_times = np.asarray(market.time)
    if isinstance(benchmark, Strategy):
        from pitgrid.drivers.batch import backtest

        res = backtest(market, benchmark, config, start=times[0], end=times[-1])
        return benchmark.name, np.asarray(res.equity.values, dtype=np.float64) * initial / res.config["init_cash"]
    if isinstance(benchmark, str):
        symbols = [str(s) for s in market.symbols]
        if benchmark not in symbols:
            raise ValueError(f"benchmark {benchmark!r} is not a symbol of the market")
        j = symbols.index(benchmark)
        data = FeatureData(market)
        close = np.asarray(data.adjusted("close")[:, j])
        div = np.asarray(data.raw("dividend")[:, j]) * np.asarray(data.split_factor[:, j]) \
            if "dividend" in market.fields else np.zeros(len(close))
        prev = np.concatenate([[np.nan], close[:-1]])
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(np.isfinite(close) & np.isfinite(prev), (close + div) / prev - 1.0, 0.0)
        level = np.cumprod(1.0 + r)
        name = benchmark
    else:
        if isinstance(benchmark, xr.DataArray):
            if benchmark.dims != ("time",):
                raise ValueError(f"a benchmark series must be 1-D over time, got dims {benchmark.dims}")
            level = np.asarray(benchmark.reindex(time=all_times).values, dtype=np.float64)
            name = str(benchmark.name or "benchmark")
        else:
            level = np.asarray(benchmark, dtype=np.float64)
            name = "benchmark"
            if level.shape != all_times.shape:
                raise ValueError(f"a benchmark series needs one value per bar ({len(all_times)}), "
                                 f"got shape {level.shape}")
    sel = np.isin(all_times, times)
    level = level[sel]
    # a bar without a value holds the last one (a gap, a holiday of the benchmark)
    idx = np.where(np.isfinite(level), np.arange(len(level)), 0)
    level = level[np.maximum.accumulate(idx)]
    first = np.flatnonzero(np.isfinite(level) & (level != 0))
    if not len(first):
        raise ValueError(f"benchmark {name!r} has no finite value in the run's bars")
    base = level[first[0]]
    # before its first value the benchmark holds the initial capital
    return name, np.where(np.arange(len(level)) < first[0], 1.0, level / base) * initial
