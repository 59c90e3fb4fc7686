"""A run's pieces added up into the one SimResult the database stores: a portfolio's sleeves
into its account, a grid's sets into one result with the best set in full.

Example:
    >>> res = grid_as_result(g, single, best, ["fast"], config)      # doctest: +SKIP
    >>> res.equity.dims                                               # doctest: +SKIP
    ('param', 'time')
"""
from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.engine.result import SimResult


def account_result(book: Any, config: dict[str, Any]) -> SimResult:
    """The sleeves' runs added up into the account's: equity, cash, positions, exposures, fills;
    ``config`` is added to the first sleeve's config (the run's description)."""
    runs = list(book.sleeves.values())

    def total(name: str) -> Any:
        arrays = [getattr(r, name) for r in runs]
        return None if any(a is None for a in arrays) else sum(arrays[1:], start=arrays[0])

    def rows(name: str) -> pl.DataFrame:
        return pl.concat([getattr(r, name) for r in runs], how="vertical_relaxed").sort(
            "time", maintain_order=True)

    counts = {k: float(sum(r.metrics[k][0] for r in runs))
              for k in ("trades", "fills", "unfilled", "fees", "slippage")}
    metrics = book.metrics.with_columns(pl.lit(v).alias(k) for k, v in counts.items())
    sleeves = [{"name": n, "share": book.shares[n], **r.extra["strategy"],
                "metrics": {k: r.metrics[k][0] for k in ("total_return", "annual_return", "sharpe",
                                                          "max_drawdown", "trades")}}
               for n, r in book.sleeves.items()]
    first = runs[0]
    return SimResult(equity=book.equity, long_exposure=total("long_exposure"),
                     short_exposure=total("short_exposure"), trades=rows("trades"),
                     unfilled=rows("unfilled"), filtered=rows("filtered"), metrics=metrics,
                     config={**first.config, "init_cash": book.capital, **config,
                             "sleeves": sleeves},
                     optimistic=first.optimistic, account_equity=total("account_equity"),
                     cash=total("cash"), positions=total("positions"))


def grid_as_result(g: Any, single: SimResult, best: int, axes: list[str],
                   config: dict[str, Any]) -> SimResult:
    """One SimResult over every grid set: metrics for all, curves where kept, the best set in full."""
    P = g.table.height
    times = single.equity["time"].values
    equity, long_, short = (np.full((P, len(times)), np.nan) for _ in range(3))
    if g.equity is not None:
        equity[g.equity["param"].values] = g.equity.values
    equity[best] = single.equity.values
    long_[best] = single.long_exposure.values
    short[best] = single.short_exposure.values

    def label(values: np.ndarray) -> xr.DataArray:
        return xr.DataArray(values, dims=("param", "time"), coords={"param": np.arange(P), "time": times})

    metrics = g.table.drop(axes).insert_column(0, pl.Series("param", np.arange(P)))
    trades = single.trades.with_columns(pl.lit(best, dtype=single.trades["param"].dtype).alias("param"))
    return SimResult(equity=label(equity), long_exposure=label(long_), short_exposure=label(short),
                     trades=trades, unfilled=single.unfilled, metrics=metrics, config=config,
                     optimistic=single.optimistic)
