"""The batch driver: stages that need only data up to t run for all t at once, then one compiled pass."""
from __future__ import annotations

from typing import Any

import xarray as xr

from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData
from pitgrid.drivers.common import as_market, decide, resolve_settings
from pitgrid.engine.config import SimConfig
from pitgrid.engine.memory import check_backtest
from pitgrid.engine.result import SimResult
from pitgrid.engine.simulate import simulate


def backtest(market: MarketData | xr.Dataset, strategy: Strategy,
             config: SimConfig | dict[str, Any] | None = None, *, keep: str = "full",
             audit: bool = False, start: Any = None, end: Any = None,
             benchmark: Any = None) -> SimResult:
    """Run ``strategy`` over every bar of ``market`` with the batch engine.

    Features and decisions are computed once for all bars with causal kernels;
    orders, fills and accounting run in one call of the compiled core, the same
    step that :class:`pitgrid.StepDriver` calls bar by bar. A strategy with an
    ``on_step`` hook runs through the step driver.

    ``start`` and ``end`` (times, inclusive) bound the run: the market is cut after
    ``end`` (nothing later is read), features warm up on the bars before ``start``,
    nothing trades before it, and the result and its metrics cover ``start..end``.

    ``benchmark`` (a symbol of the market, a 1-D series over its bars, or a strategy
    run on the same market and settings) adds alpha, beta, information ratio, tracking
    error, up and down capture, correlation and the benchmark's return to the metrics
    (:mod:`pitgrid.engine.benchmark`); its curve is kept with the run for the report.

    ``audit=True`` also runs :func:`pitgrid.check_point_in_time` (the step driver
    audits this run at every bar): the outcome is ``result.config["audit"]``, kept with
    the run in the database and shown in its report, and the report object is
    ``result.extra["audit"]``.

    Example:
        >>> import pitgrid as pg
        >>> from pitgrid.strategies import MovingAverageCross
        >>> market = pg.MarketData(pg.synthetic_prices(300, 5, seed=0))
        >>> res = pg.backtest(market, MovingAverageCross(fast=5, slow=20), {"fill": "close"})
        >>> res.optimistic
        True
    """
    market = as_market(market)
    if end is not None:
        market = market.truncate(end)
    cfg, size_value = resolve_settings(strategy, config)
    if strategy.has_hook:
        from pitgrid.drivers.step import StepDriver

        res = StepDriver(market.load(), strategy, cfg, start=start, keep=keep).run()
        res = _against(res, market, benchmark, config) if benchmark is not None else res
        return _audited(res, market, strategy, config) if audit else res
    check_backtest(market, cfg, keep=keep)  # before the market is read and anything allocated
    market = market.load()
    notes: dict[str, Any] = {}
    intents = decide(market, strategy, FeatureData(market), notes)
    res = simulate(market, entries=intents.entries, exits=intents.exits, weights=intents.weights,
                   short_entries=intents.short_entries, short_exits=intents.short_exits,
                   size_value=size_value, keep=keep, start=start,
                   **{**cfg.to_dict(), **(intents.orders or {})})
    res.extra.update(strategy=strategy.describe(), intents=intents, **notes)
    res = _against(res, market, benchmark, config) if benchmark is not None else res
    return _audited(res, market, strategy, config) if audit else res


def _against(res: SimResult, market: MarketData, benchmark: Any, config: Any) -> SimResult:
    """The run's metrics against ``benchmark``, and the benchmark's curve kept with it."""
    import dataclasses

    import polars as pl

    from pitgrid.engine.benchmark import benchmark_equity, relative_metrics, returns_of

    initial = float(res.config["init_cash"])
    times = res.equity["time"].values
    name, curve = benchmark_equity(market, benchmark, times, initial, config)
    rel = relative_metrics(returns_of(res.equity.values, initial), returns_of(curve, initial),
                           float(res.config["bars_per_year"]))
    metrics = res.metrics.with_columns(pl.lit(v, dtype=pl.Float64).alias(k) for k, v in rel.items())
    res = dataclasses.replace(res, metrics=metrics, config={
        **res.config, "benchmark": {"name": name, "equity": [float(x) for x in curve]}})
    res.extra["benchmark"] = xr.DataArray(curve, dims=("time",), coords={"time": times}, name=name)
    return res


def _audited(res: SimResult, market: MarketData, strategy: Strategy, config: Any) -> SimResult:
    import dataclasses

    from pitgrid.drivers.pit import check_point_in_time

    report = check_point_in_time(market, strategy, config)
    res = dataclasses.replace(res, config={**res.config, "audit": str(report)})
    res.extra["audit"] = report
    return res
