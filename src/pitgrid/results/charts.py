"""Plotly figures of one run: equity, drawdown, monthly returns, rolling Sharpe, exposure, holdings.

The same figures go into the HTML reports and come back from ``.plot()`` in a notebook.
Axes carry units (account currency, %, dates); long or wide-ranging equity curves
get a log axis. Times are sent as dates (``2021-04-19``) rather than nanosecond
strings, a third of the bytes in a report.

Example:
    >>> import pitgrid as pg
    >>> from pitgrid.results.run_view import RunView
    >>> ds = pg.synthetic_prices(60, 3, seed=0)
    >>> view = RunView.of(pg.simulate(ds, weights=ds["close"] * 0 + 0.3), None)
    >>> equity_figure(view.times, {"equity": view.equity}).layout.yaxis.type
    'linear'
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
import xarray as xr
from plotly.subplots import make_subplots

from pitgrid.results.run_view import RunView, log_scale

ROLLING_SHARPE_BARS = 126
CURRENCY = "account currency"
#: the holdings chart shows the largest positions by average weight, the rest as "other"
TOP_HOLDINGS = 10
#: charts other than equity and drawdown are thinned to about this many points (every k-th
#: bar; turnover summed over the k bars) and drawn from 32-bit floats: the page stays small
MAX_POINTS = 600
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def axis_times(times: np.ndarray) -> list[str]:
    """Times as short ISO text: dates for daily bars, minutes otherwise."""
    t = np.asarray(times, dtype="datetime64[ns]")
    days = t.astype("datetime64[D]")
    unit = "D" if (t == days).all() else "m"
    return np.datetime_as_string(t, unit=unit).tolist()


def thin_step(n: int) -> int:
    """Every how many bars a thinned chart draws a point."""
    return max(1, math.ceil(n / MAX_POINTS))


def _f4(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white",
                      margin={"l": 70, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"})
    return fig


def equity_figure(times: np.ndarray, curves: Mapping[str, np.ndarray],
                  benchmark: tuple[str, np.ndarray] | None = None, title: str = "Equity"
                  ) -> go.Figure:
    """Equity curves (and a benchmark's, dotted) in account currency, log axis when long."""
    x = axis_times(times)
    fig = go.Figure()
    for i, (name, y) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=x, y=y, name=name, line={"color": _COLORS[i % len(_COLORS)]}))
    if benchmark is not None:
        fig.add_trace(go.Scatter(x=x, y=benchmark[1], name=benchmark[0],
                                 line={"color": "#888", "dash": "dot"}))
    stacked = np.concatenate([np.asarray(c, dtype=np.float64) for c in curves.values()])
    log = log_scale(np.asarray(times), stacked)
    fig.update_yaxes(title=f"equity ({CURRENCY}{', log scale' if log else ''})",
                     type="log" if log else "linear", tickformat=",.0f")
    fig.update_xaxes(title="date")
    return layout(fig, title + (" against " + benchmark[0] if benchmark is not None else ""))


def drawdown_figure(times: np.ndarray, drawdowns: Mapping[str, np.ndarray]) -> go.Figure:
    """Drawdowns below the running peak, in % (one filled area per curve)."""
    x = axis_times(times)
    fig = go.Figure()
    for i, (name, dd) in enumerate(drawdowns.items()):
        color = "#c62828" if len(drawdowns) == 1 else _COLORS[i % len(_COLORS)]
        fig.add_trace(go.Scatter(x=x, y=-np.asarray(dd), name=name, line={"color": color},
                                 fill="tozeroy" if len(drawdowns) == 1 else None))
    fig.update_yaxes(tickformat=".0%", title="drawdown (% of peak equity)")
    fig.update_xaxes(title="date")
    return layout(fig, "Drawdown", 300)


def monthly_figure(view: RunView) -> go.Figure:
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
                               colorbar={"tickformat": ".0%", "title": "return"},
                               hoverongaps=False))
    fig.update_yaxes(autorange="reversed", type="category")
    return layout(fig, "Monthly returns (%)", 120 + 28 * len(years))


def rolling_sharpe_figure(view: RunView) -> go.Figure:
    r = view.returns()
    n = ROLLING_SHARPE_BARS
    out = np.full(len(r), np.nan)
    if len(r) >= n:
        windows = np.lib.stride_tricks.sliding_window_view(r, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[n - 1:] = (windows.mean(axis=1) / windows.std(axis=1, ddof=1)
                           * math.sqrt(float(view.config.get("bars_per_year", 252.0))))
    k = thin_step(len(r))
    fig = go.Figure(go.Scatter(x=axis_times(view.times[::k]), y=_f4(out[::k]),
                               name="rolling Sharpe", line={"color": "#6a3d9a"}))
    fig.add_hline(y=0, line={"color": "#999", "width": 1})
    fig.update_yaxes(title="Sharpe ratio (annualised)")
    fig.update_xaxes(title="date")
    return layout(fig, f"Rolling Sharpe ({n} bars)", 300)


def exposure_figure(view: RunView) -> go.Figure:
    k = thin_step(len(view.times))
    with np.errstate(invalid="ignore", divide="ignore"):
        long_, short = view.long / view.equity, view.short / view.equity
        turnover = np.add.reduceat(np.nan_to_num(traded_notional(view) / view.equity),
                                   np.arange(0, len(view.times), k))
    x = axis_times(view.times[::k])
    per = "bar" if k == 1 else f"{k} bars"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        row_heights=[0.65, 0.35],
                        subplot_titles=("Exposure (% of equity)",
                                        f"Turnover per {per} (% of equity)"))
    for name, y, color in (("long", long_, "#2e7d32"), ("short", short, "#c62828"),
                           ("gross", long_ + short, "#333")):
        fig.add_trace(go.Scatter(x=x, y=_f4(y[::k]), name=name, line={"color": color}),
                      row=1, col=1)
    fig.add_trace(go.Bar(x=x, y=_f4(turnover), name="turnover", marker={"color": "#1f77b4"}),
                  row=2, col=1)
    fig.update_yaxes(tickformat=".0%")
    fig.update_xaxes(title="date", row=2, col=1)
    layout(fig, "Exposure and turnover", 500)
    # room above the first panel's title for the legend
    fig.update_layout(margin={"t": 90}, legend={"y": 1.18})
    return fig


def traded_notional(view: RunView) -> np.ndarray:
    """Traded value per bar, in account currency."""
    if not view.trades.height:
        return np.zeros(len(view.times))
    at = np.searchsorted(view.times, view.trades["time"].to_numpy())
    notional = (view.trades["shares"] * view.trades["price"]).abs().to_numpy()
    return np.bincount(at, weights=notional, minlength=len(view.times))[:len(view.times)]


def holdings_figure(view: RunView, closes: xr.DataArray | None) -> go.Figure | None:
    """Holdings over time: how many symbols are held long and short and, when prices are
    known, the largest positions' share of equity above it (stacked, the rest as "other")."""
    if view.positions is None:
        return None
    shares = np.asarray(view.positions.values, dtype=np.float64)
    step = thin_step(len(view.times))
    x = axis_times(view.times[::step])
    rows = 1 if closes is None else 2
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        row_heights=[1.0] if rows == 1 else [0.65, 0.35],
                        subplot_titles=(None if rows == 1 else
                                        ("Largest positions (% of equity)", "Symbols held")))
    for name, held, color in (("long", shares > 0, "#2e7d32"), ("short", shares < 0, "#c62828")):
        fig.add_trace(go.Scatter(x=x, y=held.sum(axis=1)[::step].astype(np.int32), name=name,
                                 line={"color": color}), row=rows, col=1)
    fig.update_yaxes(title="symbols", rangemode="tozero", row=rows, col=1)
    fig.update_xaxes(title="date", row=rows, col=1)
    if closes is None:
        return layout(fig, "Holdings: how many symbols are held", 320)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.nan_to_num(shares * np.asarray(closes.values, dtype=np.float64))
        weight = value / view.equity[:, None]
    weight = _f4(np.nan_to_num(weight[::step]))
    order = np.argsort(-np.abs(weight).mean(axis=0), kind="stable")
    top = [j for j in order[:TOP_HOLDINGS] if np.abs(weight[:, j]).max() > 0]
    names = np.asarray(view.positions["symbol"].values).astype(str)
    for k, j in enumerate(top):
        fig.add_trace(go.Scatter(x=x, y=weight[:, j], name=names[j], stackgroup="one",
                                 line={"width": 0.5, "color": _COLORS[k % len(_COLORS)]}),
                      row=1, col=1)
    rest = np.delete(weight, top, axis=1).sum(axis=1)
    if np.abs(rest).max(initial=0.0) > 0:
        fig.add_trace(go.Scatter(x=x, y=rest, name="other", stackgroup="one",
                                 line={"width": 0.5, "color": "#bbb"}), row=1, col=1)
    fig.update_yaxes(tickformat=".0%", title="% of equity", row=1, col=1)
    layout(fig, f"Holdings over time (the largest {len(top)} by average weight)", 560)
    return fig.update_layout(legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1},
                             margin={"t": 80})
