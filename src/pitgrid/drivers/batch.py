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
             config: SimConfig | dict[str, Any] | None = None, *, keep: str = "full") -> SimResult:
    """Run ``strategy`` over every bar of ``market`` with the batch engine.

    Features and decisions are computed once for all bars with causal kernels;
    orders, fills and accounting run in one call of the compiled core, the same
    step that :class:`pitgrid.StepDriver` calls bar by bar. A strategy with an
    ``on_step`` hook runs through the step driver.

    Example:
        >>> import pitgrid as pg
        >>> from pitgrid.strategies import MovingAverageCross
        >>> market = pg.MarketData(pg.synthetic_prices(300, 5, seed=0))
        >>> res = pg.backtest(market, MovingAverageCross(fast=5, slow=20), {"fill": "close"})
        >>> res.optimistic
        True
    """
    market = as_market(market)
    cfg, size_value = resolve_settings(strategy, config)
    if strategy.has_hook:
        from pitgrid.drivers.step import StepDriver

        return StepDriver(market.load(), strategy, cfg).run()
    check_backtest(market, cfg, keep=keep)  # before the market is read and anything allocated
    market = market.load()
    notes: dict[str, Any] = {}
    intents = decide(market, strategy, FeatureData(market), notes)
    res = simulate(market, entries=intents.entries, exits=intents.exits, weights=intents.weights,
                   size_value=size_value, keep=keep, **cfg.to_dict())
    res.extra.update(strategy=strategy.describe(), intents=intents, **notes)
    return res
