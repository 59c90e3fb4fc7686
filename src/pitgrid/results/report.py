"""HTML reports of one run and of a parameter grid.

A report opens offline: plotly.js is written once per report folder beside the
pages (``plotly-<version>.min.js``) and each page references it, so a page holds
only its own data and stays well under 1.5 MB even for decades of daily bars.
"""
from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pitgrid.engine.result import SimResult
from pitgrid.results import charts
from pitgrid.results import report_sections as sections
from pitgrid.results.formatting import LOWER_IS_BETTER
from pitgrid.results.grid_heatmap import grid_figure
from pitgrid.results.ledger import dividends_received, fill_pnl, trips_with_dividends
from pitgrid.results.report_page import (figure_html, frame_table, note, table, write_csv,
                                          write_page)
from pitgrid.results.run_view import RunView, align_benchmark, closes, dividend_cash, marks

__all__ = ["write_grid_report", "write_report"]

OPTIMISTIC_LABEL = "OPTIMISTIC FILLS: same-bar close"
_GRID_TABLE_ROWS = 200


def write_report(
    run: SimResult | Any,
    path: str | os.PathLike[str],
    *,
    benchmark: Any = None,
    title: str = "pitgrid backtest",
    param: int | None = None,
    market: Any = None,
) -> Path:
    """Write the HTML report of one run (a SimResult or a stored run); return its path.

    Shows equity (log axis for long or wide-ranging curves) against the benchmark
    the run was measured against (``backtest(benchmark=...)``, a config's
    ``[benchmark]``) or ``benchmark`` (a 1-D series: a DataArray over ``time`` is
    aligned by time, any other sequence must be as long as the equity; rescaled to
    the run's starting equity; a symbol or a strategy with ``market``, as in
    :func:`pitgrid.backtest`) with both sets of statistics; drawdown, monthly
    returns, rolling Sharpe, exposure and turnover, holdings over time and at the
    end, profit and loss by symbol, exits by reason, round trips and the fills (the
    latest 500 of each in the page, all in ``<name>.round_trips.csv`` and
    ``<name>.trades.csv`` beside it), trade and tail statistics, the config and
    data fingerprint, and a red "OPTIMISTIC FILLS: same-bar close" banner when the
    fills were optimistic.
    ``market`` (the MarketData or Dataset the run traded) values holdings, marks
    open positions at their last close and credits each symbol its dividends. A run
    with several parameter sets needs ``param``, the index of the one to show.

    Example:
        >>> import pitgrid as pg
        >>> ds = pg.synthetic_prices(300, 5, seed=0)
        >>> res = pg.simulate(ds, weights=ds["close"] * 0 + 0.2, keep="full")
        >>> write_report(res, "out/report.html", market=ds)  # doctest: +SKIP
        PosixPath('out/report.html')
    """
    view = RunView.of(run, param)
    bench = view.stored_benchmark() if benchmark is None else _benchmark(benchmark, view, market)
    prices = closes(market, view) if market is not None else None
    last = marks(market, view) if market is not None else None
    ledger = fill_pnl(view.trades, view.positions)
    cash = dividend_cash(market, view) if market is not None else None
    paid, trips = None, ledger.trips
    if cash is not None:
        names = np.asarray(view.positions["symbol"].values).astype(str)
        paid = dividends_received(cash, names)
        trips = trips_with_dividends(trips, cash, view.times, names)
    out = Path(path)
    csv = out.with_name(out.stem + ".trades.csv")
    trips_csv = out.with_name(out.stem + ".round_trips.csv")
    fills = sections.trade_list(view, ledger)
    figures = [charts.equity_figure(view.times, {"equity": view.equity}, bench),
               charts.drawdown_figure(view.times, {"drawdown": view.drawdown}),
               charts.monthly_figure(view), charts.rolling_sharpe_figure(view),
               charts.exposure_figure(view)]
    holdings = charts.holdings_figure(view, prices)
    body = [
        _banner(view.optimistic),
        "<h2>Run</h2>", table(view.facts.items()),
        "<h2>Performance</h2>", sections.metric_table(view.metrics, sections.HEADLINE),
        *map(figure_html, figures),
        *sections.benchmark_html(view, bench, measured=benchmark is None),
        '<h2>Statistics</h2><div class="tables">',
        "<div><h3>Trades</h3>", sections.metric_table(view.metrics, sections.TRADE_STATS),
        "</div>", "<div><h3>Tail</h3>", sections.metric_table(view.metrics, sections.TAIL_STATS),
        "</div></div>",
        "<h2>Holdings</h2>",
        *([figure_html(holdings)] if holdings is not None else
          [note("The run kept no positions (keep=\"full\" keeps them).")]),
        *sections.holdings_html(view, ledger, last),
        *sections.symbol_pnl_html(view, ledger, last, paid),
        *sections.exits_html(view, ledger),
        *sections.round_trips_html(trips, trips_csv.name, cash is not None),
        *sections.trade_list_html(fills, csv.name),
        *sections.walkforward_html(view.config.get("walkforward")),
        *sections.sleeves_html(view.config.get("sleeves")),
        sections.shown_config(view.config),
    ]
    write_csv(csv, fills)
    write_csv(trips_csv, trips)
    return write_page(out, title, body)


def write_grid_report(
    grid_table: pl.DataFrame,
    param_names: Sequence[str],
    metric: str,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    overfitting: Mapping[str, Any] | None = None,
    axes: Sequence[str] | None = None,
) -> Path:
    """Write the surface of ``metric`` over a parameter grid to one HTML file.

    Any number of parameters: two of them (``axes``, else the two with the most
    values) span a heatmap with the value in each cell, the others are chosen in a
    dropdown (first entry: the best over them); one parameter gives a line.
    ``grid_table`` has one row per parameter set (for a stored run:
    :meth:`StoredRun.grid_table`); the best rows by ``metric`` follow in a scrolling
    table. ``overfitting`` (``GridResult.overfitting.to_dict()``) adds how much of
    the best result is selection: the deflated Sharpe ratio and the probability of
    overfitting.

    Example:
        >>> table = run.grid_table()                       # doctest: +SKIP
        >>> write_grid_report(table, ["fast", "slow", "size"], "sharpe",
        ...                   "grid.html")                   # doctest: +SKIP
        PosixPath('grid.html')
    """
    names = list(param_names)
    missing = [c for c in [*names, metric] if c not in grid_table.columns]
    if missing:
        raise ValueError(f"grid_table has no column {missing}; it has {grid_table.columns}")
    if names and grid_table.select(names).is_duplicated().any():
        raise ValueError(f"{names} do not identify the rows of grid_table: some values repeat")
    fig = grid_figure(grid_table, names, metric, axes)
    ranked = grid_table.sort(pl.col(metric).fill_nan(None), nulls_last=True,
                             descending=metric not in LOWER_IS_BETTER)
    shown = ranked.head(_GRID_TABLE_ROWS).select([*names, metric] + [
        c for c in grid_table.columns if c not in (*names, metric)])
    caption = (f"{shown.height} of {grid_table.height} parameter sets, "
               f"{'lowest' if metric in LOWER_IS_BETTER else 'highest'} {metric} first")
    body = [*([figure_html(fig)] if fig is not None else []),
            *(sections.overfitting_html(overfitting) if overfitting else []),
            f"<h2>Parameter sets</h2><p>{html.escape(caption)}</p>", frame_table(shown)]
    return write_page(path, title or f"pitgrid grid: {metric}", body, plots=fig is not None)


def _benchmark(benchmark: Any, view: RunView, market: Any) -> tuple[str, np.ndarray]:
    """A symbol or strategy through the engine's benchmark (needs the market); a series
    rescaled to the run's equity."""
    from pitgrid.cycle.strategy import Strategy

    if not isinstance(benchmark, (str, Strategy)):
        return "benchmark (rescaled)", align_benchmark(benchmark, view)
    if market is None:
        raise ValueError(f"benchmark={benchmark!r} names a symbol or strategy: pass market= (the "
                         "market the run traded) as well")
    from pitgrid.drivers.common import as_market
    from pitgrid.engine.benchmark import benchmark_equity

    start = view.initial if view.initial is not None else float(view.equity[0])
    return benchmark_equity(as_market(market), benchmark, view.times, start, view.config)


def _banner(optimistic: bool) -> str:
    return f'<div class="banner">{OPTIMISTIC_LABEL}</div>' if optimistic else ""
