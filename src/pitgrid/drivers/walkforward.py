"""Walk-forward optimisation: choose parameters on past bars, trade them on the next ones.

The bars from ``train`` on are cut into test windows of ``test`` bars. For each, a
grid over ``params`` runs on the train window before it (the ``train`` bars just
before, or every bar from the first with ``anchored=True``) in one compiled pass;
the best set by ``by`` is then backtested on the test window alone. Features warm up
on all the bars before a window (as ``backtest(start=...)`` does) and nothing after a
window is read, so each choice uses only what was known when it was made.

The out-of-sample equity is the test windows' returns compounded one after the
other: each window starts flat with the capital the previous one ended with (the
positions of one window are not carried into the next, whose parameters differ).

Example:
    >>> import pitgrid as pg
    >>> from pitgrid.strategies import MovingAverageCross
    >>> market = pg.MarketData(pg.synthetic_prices(600, 5, seed=0))
    >>> wf = pg.walkforward(market, MovingAverageCross(), {"fast": [5, 10], "slow": [30, 60]},
    ...                     train=250, test=100, progress=False)
    >>> wf.windows.height, wf.equity.dims, wf.comparison["sample"].to_list()
    (4, ('time',), ['out_of_sample', 'in_sample_mean'])
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData
from pitgrid.drivers.batch import _against, backtest
from pitgrid.drivers.common import as_market, resolve_settings
from pitgrid.drivers.grid import grid
from pitgrid.engine.config import SimConfig
from pitgrid.engine.metrics import compute_metrics
from pitgrid.engine.result import SimResult


@dataclass
class WalkForwardResult:
    """``windows``: one row per test window (its train and test bars, the chosen
    parameters, the in-sample and out-of-sample value of ``by``); ``result``: the
    stitched out-of-sample run (equity, positions, trades, metrics) as a
    :class:`pitgrid.SimResult`; ``comparison``: its metrics beside the in-sample
    winners' (their mean over windows)."""

    windows: pl.DataFrame
    result: SimResult
    comparison: pl.DataFrame
    by: str
    params: list[dict[str, Any]]

    @property
    def equity(self) -> xr.DataArray:
        return self.result.equity


def walkforward(market: MarketData | xr.Dataset, strategy: Strategy,
                params: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]], *,
                train: int, test: int, anchored: bool = False, by: str = "sharpe",
                config: SimConfig | dict[str, Any] | None = None,
                progress: bool = True, benchmark: Any = None) -> WalkForwardResult:
    """Walk-forward optimisation of ``strategy`` over ``params`` (see the module docs).

    ``train`` and ``test`` are numbers of bars; ``by`` a metric (higher is better).
    ``benchmark`` (as in :func:`pitgrid.backtest`: a symbol, a series or a strategy)
    measures the stitched out-of-sample run against it over the test windows' bars;
    the choice in each window does not see it.
    """
    from tqdm.auto import tqdm

    if train < 2 or test < 1:
        raise ValueError(f"need train >= 2 and test >= 1 bars, got train={train}, test={test}")
    market = as_market(market).load()
    times = market.time
    T = len(times)
    if train + 1 > T:
        raise ValueError(f"train={train} leaves no bar to test on ({T} bars)")
    cfg, size_value = resolve_settings(strategy, config)
    settings = cfg.to_dict() | ({} if size_value is None else {"size_value": size_value})
    capital = float(cfg.init_cash)
    rows, runs, chosen, in_sample = [], [], [], []
    for s in tqdm(range(train, T, test), desc="walk-forward", unit="window",
                  disable=None if progress else True):  # None: shown on a terminal only
        e = min(s + test, T) - 1
        t0 = 0 if anchored else s - train
        g = grid(market, strategy, params, config=config, by=by, start=times[t0],
                 end=times[s - 1], progress=False)
        scores = g.table[by].to_numpy().astype(np.float64)
        best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
        picked = g.params[best]
        # each window starts flat with the capital the one before ended with
        run = backtest(market, dataclasses.replace(strategy, **picked),
                       {**settings, "init_cash": capital}, start=times[s], end=times[e])
        capital = float(run.equity.values[-1])
        runs.append(run)
        chosen.append(picked)
        in_sample.append(g.table.row(best, named=True))
        when = lambda i: times[i].astype("datetime64[us]").item()  # noqa: E731
        rows.append({"train_start": when(t0), "train_end": when(s - 1), "test_start": when(s),
                     "test_end": when(e), **{f"param_{k}": v for k, v in picked.items()},
                     f"in_sample_{by}": float(scores[best]),
                     f"out_of_sample_{by}": float(run.metrics[by][0])})
    result = _stitched(runs, cfg)
    ins = pl.DataFrame(in_sample).select(result.metrics.columns).mean()
    comparison = pl.concat([result.metrics.with_columns(pl.lit("out_of_sample").alias("sample")),
                            ins.with_columns(pl.lit("in_sample_mean").alias("sample"))],
                           how="vertical_relaxed").select("sample", *result.metrics.columns)
    # after the comparison: the in-sample winners were not measured against the benchmark
    result = _against(result, market, benchmark, config) if benchmark is not None else result
    return WalkForwardResult(pl.DataFrame(rows), result, comparison, by, chosen)


def _stitched(runs: list[SimResult], cfg: SimConfig) -> SimResult:
    """The test windows' runs one after the other, as one run from the first window's capital."""
    def cat(name: str) -> xr.DataArray | None:
        arrays = [getattr(r, name) for r in runs]
        return None if any(a is None for a in arrays) else xr.concat(arrays, dim="time")

    def rows(name: str) -> pl.DataFrame:
        return pl.concat([getattr(r, name) for r in runs], how="vertical_relaxed")

    equity = cat("equity")
    trade_stats = ("trades", "fills", "unfilled", "fees", "slippage")
    counts = {k: float(sum(r.metrics[k][0] for r in runs)) for k in trade_stats
              if all(k in r.metrics.columns for r in runs)}
    metrics = compute_metrics(np.asarray(equity.values)[None], np.array([float(cfg.init_cash)]),
                              bars_per_year=cfg.bars_per_year).with_columns(
        pl.lit(v).alias(k) for k, v in counts.items())
    first = runs[0]
    return SimResult(equity=equity, long_exposure=cat("long_exposure"),
                     short_exposure=cat("short_exposure"), trades=rows("trades"),
                     unfilled=rows("unfilled"), filtered=rows("filtered"), metrics=metrics,
                     config={**first.config, "init_cash": float(cfg.init_cash)},
                     optimistic=first.optimistic, account_equity=cat("account_equity"),
                     cash=cat("cash"), positions=cat("positions"))
