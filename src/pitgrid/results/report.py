"""HTML reports of one run and of a parameter grid.

Each report is one self-contained file: plotly.js is embedded once, inline, so it
opens offline and can be archived or mailed beside the run it describes.
"""
from __future__ import annotations


import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from pitgrid.engine.benchmark import RELATIVE_METRICS
import polars as pl
import xarray as xr
from plotly.subplots import make_subplots

from pitgrid.engine.result import SimResult
from pitgrid.results.db import StoredRun, drawdown, initial_capital

__all__ = ["write_grid_report", "write_report"]

OPTIMISTIC_LABEL = "OPTIMISTIC FILLS: same-bar close"
ROLLING_SHARPE_BARS = 126
_GRID_TABLE_ROWS = 200
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HEADLINE = ("total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar",
             "max_drawdown", "max_drawdown_duration")
_TRADE_STATS = ("trades", "win_rate", "avg_win", "avg_loss", "profit_factor", "turnover",
                "exposure", "fills", "unfilled", "fees", "slippage")
_TAIL_STATS = ("var_95", "cvar_95", "var_99", "cvar_99", "tail_index")
_PERCENT = {"total_return", "annual_return", "volatility", "max_drawdown", "win_rate", "exposure",
            "var_95", "cvar_95", "var_99", "cvar_99"}
_COUNTS = {"trades", "fills", "unfilled"}
_MONEY = {"avg_win", "avg_loss", "fees", "slippage"}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1150px; color: #222; }
h1 { margin-bottom: 4px; } h2 { margin-top: 28px; border-bottom: 1px solid #ddd; }
.banner { background: #c62828; color: #fff; font-weight: 700; font-size: 20px;
          padding: 10px 16px; margin: 12px 0; border-radius: 4px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 10px; font-size: 12px; overflow-x: auto; }
.tables { display: flex; gap: 32px; flex-wrap: wrap; }
"""


def write_report(
    run: SimResult | StoredRun,
    path: str | os.PathLike[str],
    *,
    benchmark: Any = None,
    title: str = "pitgrid backtest",
    param: int | None = None,
) -> Path:
    """Write one self-contained HTML report of a run; return its path.

    Shows equity (against ``benchmark`` when given: a 1-D price or equity series,
    an xarray DataArray over ``time`` aligned by time, or any sequence as long as
    the equity, rescaled to start at the run's equity), drawdown, monthly
    returns, rolling Sharpe (126 bars), exposure and turnover, trade and tail
    statistics, the config and data fingerprint, and a red
    "OPTIMISTIC FILLS: same-bar close" banner when the fills were optimistic. A
    run with several parameter sets needs ``param``, the index of the one to show.

    Example:
        >>> import pitgrid as pg
        >>> ds = pg.synthetic_prices(300, 5, seed=0)
        >>> res = pg.simulate(ds, weights=ds["close"] * 0 + 0.2)
        >>> write_report(res, "report.html", benchmark=ds["close"].mean("symbol"))  # doctest: +SKIP
        PosixPath('report.html')
    """
    view = _RunView.of(run, param)
    stored = run.config.get("benchmark") if benchmark is None else None
    if stored:  # the benchmark the run was measured against, kept with it
        benchmark = np.asarray(stored["equity"], dtype=np.float64)
        if benchmark.shape != view.equity.shape:
            benchmark = None
    bench = _benchmark(benchmark, view)
    figures = [_equity_figure(view, bench), _drawdown_figure(view), _monthly_figure(view),
               _rolling_sharpe_figure(view), _exposure_figure(view)]
    body = [
        _banner(view.optimistic),
        "<h2>Run</h2>", _table(view.facts.items()),
        "<h2>Performance</h2>", _metric_table(view.metrics, _HEADLINE),
        *(_figure_html(fig, first=i == 0) for i, fig in enumerate(figures)),
        '<h2>Statistics</h2><div class="tables">',
        "<div><h3>Trades</h3>", _metric_table(view.metrics, _TRADE_STATS),
        _table(_fill_stats(view)), "</div>",
        "<div><h3>Tail</h3>", _metric_table(view.metrics, _TAIL_STATS), "</div>",
        *(["<div><h3>Against " + html.escape(str((view.config.get("benchmark") or {}).get(
            "name", "the benchmark"))) + "</h3>", _metric_table(view.metrics, RELATIVE_METRICS),
           "</div>"] if view.metrics.get("beta") is not None else []),
        "</div>",
        *_walkforward_html(view.config.get("walkforward")),
        *_sleeves_html(view.config.get("sleeves")),
        "<h2>Config</h2><pre>", html.escape(json.dumps(_shown_config(view.config), indent=2,
                                                       default=str)),
        "</pre>",
    ]
    return _write_page(path, title, body)


def write_grid_report(
    grid_table: pl.DataFrame,
    param_names: Sequence[str],
    metric: str,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    overfitting: Mapping[str, Any] | None = None,
) -> Path:
    """Write the surface of ``metric`` over a parameter grid to one HTML file.

    ``overfitting`` (``GridResult.overfitting.to_dict()``) adds how much of the best
    result is selection: the deflated Sharpe ratio and the probability of overfitting.

    Two parameters give a heatmap, one a line, any other number a table only.
    ``grid_table`` has one row per parameter set (for a stored run:
    :meth:`StoredRun.grid_table`). The best rows by ``metric`` follow as a table.

    Example:
        >>> table = run.grid_table()                       # doctest: +SKIP
        >>> write_grid_report(table, ["fast", "slow"], "sharpe", "grid.html")  # doctest: +SKIP
        PosixPath('grid.html')
    """
    names = list(param_names)
    missing = [c for c in [*names, metric] if c not in grid_table.columns]
    if missing:
        raise ValueError(f"grid_table has no column {missing}; it has {grid_table.columns}")
    if names and grid_table.select(names).is_duplicated().any():
        raise ValueError(f"{names} do not identify the rows of grid_table: some values repeat")
    figures = []
    if len(names) == 2:
        figures.append(_grid_heatmap(grid_table, names, metric))
    elif len(names) == 1:
        figures.append(_grid_line(grid_table, names[0], metric))
    ranked = grid_table.sort(pl.col(metric).fill_nan(None), descending=True, nulls_last=True)
    shown = ranked.head(_GRID_TABLE_ROWS).select([*names, metric] + [
        c for c in grid_table.columns if c not in (*names, metric)])
    caption = (f"{shown.height} of {grid_table.height} parameter sets, highest {metric} first")
    title = title or f"pitgrid grid: {metric}"
    body = [*(_figure_html(fig, first=i == 0) for i, fig in enumerate(figures)),
            *(_overfitting_html(overfitting) if overfitting else []),
            f"<h2>Parameter sets</h2><p>{html.escape(caption)}</p>", _frame_table(shown)]
    return _write_page(path, title, body)


def _overfitting_html(stats: Mapping[str, Any]) -> list[str]:
    def num(key: str, digits: int = 4) -> str:
        v = stats.get(key)
        return "n/a" if v is None else f"{v:.{digits}f}"

    rows = pl.DataFrame({
        "statistic": ["deflated Sharpe ratio", "probability of backtest overfitting",
                      "parameter sets tried", "best per-bar Sharpe", "luck alone (SR0, per bar)",
                      "CSCV blocks / combinations"],
        "value": [num("deflated_sharpe"), num("pbo"), str(stats.get("n_trials")), num("sharpe"),
                  num("sr0"), f"{stats.get('n_blocks')} / {stats.get('n_combinations')}"],
    })
    note = ("The deflated Sharpe ratio is the probability that the best set's true Sharpe ratio "
            "beats what the best of this many sets reaches by luck (Bailey and Lopez de Prado, "
            "2014); the probability of backtest overfitting is the share of in-sample/out-of-"
            "sample splits in which the in-sample winner ranks in the lower half out of sample "
            "(Bailey, Borwein, Lopez de Prado and Zhu, 2015).")
    return ["<h2>How much of it is selection</h2>", _frame_table(rows),
            f"<p>{html.escape(note)}</p>"]


# ---------------------------------------------------------------------- run data
@dataclass
class _RunView:
    """One parameter set of a run, as plain arrays."""

    times: np.ndarray
    equity: np.ndarray
    drawdown: np.ndarray
    long: np.ndarray
    short: np.ndarray
    initial: float | None
    trades: pl.DataFrame
    metrics: dict[str, Any]
    config: dict[str, Any]
    optimistic: bool
    facts: dict[str, str]

    @classmethod
    def of(cls, run: SimResult | StoredRun, param: int | None) -> _RunView:
        P = run.equity.sizes.get("param", 1)
        if param is None:
            if P > 1:
                raise ValueError(f"this run has {P} parameter sets: pass param= (0..{P - 1}) to "
                                 "pick one, or use write_grid_report for the whole grid")
            param = 0
        if not 0 <= param < P:
            raise ValueError(f"param={param} is out of range: the run has {P} parameter sets")

        def one(da: xr.DataArray) -> np.ndarray:
            return np.asarray(da.isel(param=param).values if "param" in da.dims else da.values,
                              dtype=np.float64)

        equity = one(run.equity)
        if not len(equity):
            raise ValueError("the run has no bars to report on")
        initial = initial_capital(run)
        stored_dd = getattr(run, "drawdown", None)  # a StoredRun has the drawdown it saved
        dd = one(stored_dd) if stored_dd is not None else drawdown(equity, initial)[0]
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
            "bars": f"{len(equity)} ({_day(run.equity['time'].values[0])} to "
                    f"{_day(run.equity['time'].values[-1])})",
        }
        params = getattr(run, "params", None)
        if params and params[param]:
            facts["parameters"] = json.dumps(params[param], default=str)
        return cls(
            times=run.equity["time"].values, equity=equity, drawdown=dd,
            long=one(run.long_exposure), short=one(run.short_exposure), initial=initial,
            trades=run.trades.filter(pl.col("param") == param),
            metrics=run.metrics.row(param, named=True) if run.metrics.height else {},
            config=run.config, optimistic=bool(run.optimistic), facts=facts,
        )

    def returns(self) -> np.ndarray:
        """Bar returns; the first counts from the initial capital (NaN when unknown)."""
        start = np.nan if self.initial is None else self.initial
        prev = np.concatenate([[start], self.equity[:-1]])
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.equity / prev - 1.0


def _day(time: np.datetime64) -> str:
    return str(time.astype("datetime64[D]"))


def _benchmark(benchmark: Any, view: _RunView) -> np.ndarray | None:
    """The benchmark on the run's bars, rescaled to the run's equity at its first valid bar."""
    if benchmark is None:
        return None
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


# ---------------------------------------------------------------------- figures
def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white",
                      margin={"l": 60, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"})
    return fig


def _equity_figure(view: _RunView, bench: np.ndarray | None) -> go.Figure:
    fig = go.Figure(go.Scatter(x=view.times, y=view.equity, name="equity",
                               line={"color": "#1f77b4"}))
    if bench is not None:
        fig.add_trace(go.Scatter(x=view.times, y=bench, name="benchmark (rescaled)",
                                 line={"color": "#888", "dash": "dot"}))
    return _layout(fig, "Equity" + (" against the benchmark" if bench is not None else ""))


def _drawdown_figure(view: _RunView) -> go.Figure:
    fig = go.Figure(go.Scatter(x=view.times, y=-view.drawdown, fill="tozeroy", name="drawdown",
                               line={"color": "#c62828"}))
    fig.update_yaxes(tickformat=".0%")
    return _layout(fig, "Drawdown", 280)


def _monthly_figure(view: _RunView) -> go.Figure:
    months = view.times.astype("datetime64[M]")
    last = np.flatnonzero(np.r_[months[1:] != months[:-1], True])
    month_end = view.equity[last]
    start = np.nan if view.initial is None else view.initial
    with np.errstate(invalid="ignore", divide="ignore"):
        rets = month_end / np.concatenate([[start], month_end[:-1]]) - 1.0
    index = months[last].astype(np.int64)  # months since 1970-01
    years = np.unique(index // 12 + 1970)
    z = np.full((len(years), 12), np.nan)
    z[np.searchsorted(years, index // 12 + 1970), index % 12] = rets
    text = [[f"{v:.1%}" if np.isfinite(v) else "" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=list(_MONTHS), y=[str(y) for y in years], text=text,
                               texttemplate="%{text}", colorscale="RdYlGn", zmid=0,
                               colorbar={"tickformat": ".0%"}, hoverongaps=False))
    fig.update_yaxes(autorange="reversed", type="category")
    return _layout(fig, "Monthly returns", 120 + 28 * len(years))


def _rolling_sharpe_figure(view: _RunView) -> go.Figure:
    r = view.returns()
    n = ROLLING_SHARPE_BARS
    out = np.full(len(r), np.nan)
    if len(r) >= n:
        windows = np.lib.stride_tricks.sliding_window_view(r, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[n - 1:] = (windows.mean(axis=1) / windows.std(axis=1, ddof=1)
                           * math.sqrt(float(view.config.get("bars_per_year", 252.0))))
    fig = go.Figure(go.Scatter(x=view.times, y=out, name="rolling Sharpe",
                               line={"color": "#6a3d9a"}))
    fig.add_hline(y=0, line={"color": "#999", "width": 1})
    return _layout(fig, f"Rolling Sharpe ({n} bars, annualised)", 300)


def _exposure_figure(view: _RunView) -> go.Figure:
    with np.errstate(invalid="ignore", divide="ignore"):
        long_, short = view.long / view.equity, view.short / view.equity
        turnover = _traded_notional(view) / view.equity
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        row_heights=[0.65, 0.35],
                        subplot_titles=("Exposure / equity", "Turnover per bar (traded / equity)"))
    for name, y, color in (("long", long_, "#2e7d32"), ("short", short, "#c62828"),
                           ("gross", long_ + short, "#333")):
        fig.add_trace(go.Scatter(x=view.times, y=y, name=name, line={"color": color}),
                      row=1, col=1)
    fig.add_trace(go.Bar(x=view.times, y=turnover, name="turnover", marker={"color": "#1f77b4"}),
                  row=2, col=1)
    fig.update_yaxes(tickformat=".0%")
    _layout(fig, "Exposure and turnover", 500)
    # room above the first panel's title for the legend
    fig.update_layout(margin={"t": 90}, legend={"y": 1.18})
    return fig


def _traded_notional(view: _RunView) -> np.ndarray:
    if not view.trades.height:
        return np.zeros(len(view.times))
    at = np.searchsorted(view.times, view.trades["time"].to_numpy())
    notional = (view.trades["shares"] * view.trades["price"]).abs().to_numpy()
    return np.bincount(at, weights=notional, minlength=len(view.times))[:len(view.times)]


def _grid_heatmap(grid: pl.DataFrame, names: list[str], metric: str) -> go.Figure:
    rows, cols = (sorted(grid[n].unique().to_list()) for n in names)
    z = np.full((len(rows), len(cols)), np.nan)
    r_at = {v: i for i, v in enumerate(rows)}
    c_at = {v: i for i, v in enumerate(cols)}
    for a, b, v in zip(grid[names[0]].to_list(), grid[names[1]].to_list(),
                       grid[metric].to_list()):
        z[r_at[a], c_at[b]] = np.nan if v is None else v
    fig = go.Figure(go.Heatmap(z=z, x=[str(c) for c in cols], y=[str(r) for r in rows],
                               colorscale="Viridis", colorbar={"title": metric},
                               hoverongaps=False))
    fig.update_xaxes(title=names[1], type="category")
    fig.update_yaxes(title=names[0], type="category")
    return _layout(fig, f"{metric} over {names[0]} and {names[1]}", 560)


def _grid_line(grid: pl.DataFrame, name: str, metric: str) -> go.Figure:
    ordered = grid.sort(name)
    fig = go.Figure(go.Scatter(x=ordered[name].to_list(), y=ordered[metric].to_list(),
                               mode="lines+markers", name=metric))
    fig.update_xaxes(title=name)
    fig.update_yaxes(title=metric)
    return _layout(fig, f"{metric} over {name}", 420)


# ---------------------------------------------------------------------- html
def _figure_html(fig: go.Figure, *, first: bool) -> str:
    # plotly.js goes inline with the first figure only: one copy per file, no CDN.
    return pio.to_html(fig, full_html=False, include_plotlyjs=True if first else False,
                       config={"displaylogo": False, "responsive": True})


def _shown_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as shown: the benchmark by name (its curve is the equity figure's line),
    the walk-forward windows in their own tables."""
    shown = dict(config)
    bench = config.get("benchmark")
    if isinstance(bench, Mapping):
        shown["benchmark"] = bench["name"]
    if config.get("sleeves"):
        shown["sleeves"] = [{k: v for k, v in s.items() if k != "metrics"} for s in config["sleeves"]]
    wf = config.get("walkforward")
    if isinstance(wf, Mapping):
        shown["walkforward"] = {k: v for k, v in wf.items() if k not in ("windows", "comparison")}
    return shown


def _sleeves_html(sleeves: Sequence[Mapping[str, Any]] | None) -> list[str]:
    if not sleeves:
        return []
    rows = pl.DataFrame([{"sleeve": s["name"], "share": f"{s['share']:.0%}",
                          "strategy": s.get("strategy"), **{k: _fmt_metric(k, v)
                                                            for k, v in s["metrics"].items()}}
                         for s in sleeves])
    return ["<h2>Sleeves</h2>", _frame_table(rows)]


def _fmt_metric(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if name in ("total_return", "annual_return", "max_drawdown"):
        return f"{value:.2%}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _walkforward_html(wf: Mapping[str, Any] | None) -> list[str]:
    if not wf:
        return []
    note = (f"Each test window trades the parameters with the best {wf.get('by')} on the "
            f"{'bars from the first' if wf.get('anchored') else str(wf.get('train')) + ' bars'} "
            "before it; the equity above is the test windows, out of sample, one after the other.")
    return ["<h2>Walk-forward: windows</h2>", f"<p>{html.escape(note)}</p>",
            _frame_table(pl.DataFrame(wf["windows"])),
            "<h2>In sample against out of sample</h2>",
            _frame_table(pl.DataFrame(wf["comparison"]))]


def _banner(optimistic: bool) -> str:
    return f'<div class="banner">{OPTIMISTIC_LABEL}</div>' if optimistic else ""


def _fmt(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if name in _PERCENT:
        return f"{value:.2%}"
    if name == "max_drawdown_duration":
        return f"{value:,.0f} bars"
    if name in _COUNTS:
        return f"{value:,.0f}"
    if name in _MONEY:
        return f"{value:,.2f}"
    return f"{value:,.3f}"


def _metric_table(metrics: dict[str, Any], names: Sequence[str]) -> str:
    return _table((n, _fmt(n, metrics.get(n))) for n in names)


def _fill_stats(view: _RunView) -> list[tuple[str, str]]:
    t = view.trades
    buys = int((t["side"] == "buy").sum()) if t.height else 0
    notional = float(_traded_notional(view).sum())
    return [("buys", f"{buys:,}"), ("sells", f"{t.height - buys:,}"),
            ("traded notional", f"{notional:,.2f}")]


def _table(rows: Any) -> str:
    cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    return f"<table>{cells}</table>"


def _frame_table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c, v))}</td>"
                                    for c, v in zip(frame.columns, row)) + "</tr>"
                   for row in frame.iter_rows())
    return f"<table><tr>{head}</tr>{body}</table>"


def _write_page(path: str | os.PathLike[str], title: str, body: list[str]) -> Path:
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>"
            f"<h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n")
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out
