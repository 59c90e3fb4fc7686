"""How results look in a notebook: an HTML summary with a small equity picture, and plotly figures.

``SimResult``, ``GridResult`` and stored runs delegate their ``_repr_html_``,
``plot`` and (for SimResult) ``summary`` here. The small picture is an inline SVG
line, so a notebook shows it without JavaScript; ``plot`` returns a plotly Figure.

Example:
    >>> import pitgrid as pg
    >>> ds = pg.synthetic_prices(60, 3, seed=0)
    >>> res = pg.simulate(ds, weights=ds["close"] * 0 + 0.3)
    >>> "<svg" in result_html(res), plot(res, "drawdown").layout.title.text
    (True, 'Drawdown')
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from pitgrid.results.formatting import KEY_METRICS, LOWER_IS_BETTER, fmt, label

#: parameter sets drawn in one notebook picture or plot before the rest are left out
MAX_CURVES = 10


def summary(res: Any) -> pl.DataFrame:
    """A run's key metrics, one row per parameter set, with the fill assumption spelled out.

    Eight columns (``param``, total and annual return, Sharpe, max drawdown, trades,
    exposure, ``fill``) so it prints whole; every metric is in ``res.metrics``.
    """
    fill = "close (optimistic)" if res.optimistic else str(res.config.get("fill", ""))
    cols = [c for c in ("param", *KEY_METRICS) if c in res.metrics.columns]
    return res.metrics.select(cols).with_columns(pl.lit(fill).alias("fill"))


def sparkline(values: np.ndarray, width: int = 240, height: int = 48,
              color: str = "#1f77b4") -> str:
    """An inline SVG line of ``values`` (NaN bars left out), scaled to the box."""
    y = np.asarray(values, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(y))
    if len(ok) < 2:
        return f'<svg width="{width}" height="{height}"></svg>'
    step = max(1, len(ok) // width)  # about one point per pixel
    ok = ok[::step]
    lo, hi = y[ok].min(), y[ok].max()
    span = hi - lo if hi > lo else 1.0
    xs = 1 + (width - 2) * ok / max(len(y) - 1, 1)
    ys = 1 + (height - 2) * (1 - (y[ok] - lo) / span)
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs, ys))
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg"><polyline fill="none" stroke="{color}" '
            f'stroke-width="1.5" points="{points}"/></svg>')


def _metrics_table(frame: pl.DataFrame, first: Sequence[str]) -> str:
    cols = [c for c in first if c in frame.columns] + [c for c in KEY_METRICS if c in frame.columns]
    head = "".join(f"<th>{html.escape(label(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c, row[c]))}</td>" for c in cols)
                   + "</tr>" for row in frame.iter_rows(named=True))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _curves(equity: Any) -> list[np.ndarray]:
    values = np.asarray(equity.values, dtype=np.float64)
    return [values] if values.ndim == 1 else list(values[:MAX_CURVES])


def _box(title: str, facts: str, picture: str, table: str, warning: str = "") -> str:
    warn = (f'<div style="background:#c62828;color:#fff;font-weight:700;padding:2px 8px">'
            f"{html.escape(warning)}</div>" if warning else "")
    return (f'<div class="pitgrid"><b>{html.escape(title)}</b> '
            f'<span style="color:#555">{html.escape(facts)}</span>{warn}'
            f"<div>{picture}</div>{table}</div>")


def _span(equity: Any) -> str:
    t = equity["time"].values
    if not len(t):
        return "no bars"
    return f"{len(t)} bars, {np.datetime64(t[0], 'D')} to {np.datetime64(t[-1], 'D')}"


def result_html(res: Any) -> str:
    """A SimResult: bars and fills, a line per parameter set (up to 10) and its key metrics."""
    P = res.equity.sizes.get("param", 1)
    facts = (f"{_span(res.equity)}; {P} parameter set{'s' * (P > 1)}; "
             f"fills: {summary(res)['fill'][0]}")
    picture = "".join(sparkline(c) for c in _curves(res.equity))
    shown = res.metrics.head(MAX_CURVES) if P > 1 else res.metrics
    more = f"<p>{P - MAX_CURVES} more parameter sets in .metrics</p>" if P > MAX_CURVES else ""
    warning = "OPTIMISTIC FILLS: same-bar close" if res.optimistic else ""
    return _box("SimResult", facts, picture,
                _metrics_table(shown, ("param",) if P > 1 else ()) + more, warning)


def stored_run_html(run: Any) -> str:
    """A stored run: its id, strategy and date, its equity line and key metrics."""
    facts = (f"{run.strategy}, saved {run.created_at:%Y-%m-%d %H:%M}; {_span(run.equity)}; "
             f"data {run.data_fingerprint[:19]}")
    P = run.equity.sizes.get("param", 1)
    table = run.grid_table().head(MAX_CURVES) if P > 1 else run.metrics
    params = [k for k in table.columns if k not in run.metrics.columns]
    warning = "OPTIMISTIC FILLS: same-bar close" if run.optimistic else ""
    return _box(f"run {run.run_id}", facts, "".join(sparkline(c) for c in _curves(run.equity)),
                _metrics_table(table, params), warning)


def grid_html(g: Any, by: str = "sharpe") -> str:
    """A grid: how many sets and parameters, the kept curves and the five best sets."""
    names = sorted({k for p in g.params for k in p})
    facts = (f"{g.table.height} parameter sets over {', '.join(names) or 'no parameters'}"
             f"{' (partial: cancelled)' if g.partial else ''}")
    if g.overfitting is not None:
        stats = g.overfitting.to_dict()
        facts += (f"; deflated Sharpe {fmt('x', stats.get('deflated_sharpe'))}, "
                  f"PBO {fmt('x', stats.get('pbo'))}")
    picture = "".join(sparkline(c) for c in _curves(g.equity)) if g.equity is not None else ""
    best = (g.table.sort(pl.col(by).fill_nan(None), descending=by not in LOWER_IS_BETTER,
                         nulls_last=True).head(5) if by in g.table.columns else g.table.head(5))
    return _box("GridResult", facts, picture, f"<p>best by {html.escape(by)}:</p>"
                + _metrics_table(best, names))


def plot(res: Any, kind: str = "equity", *, param: int | Sequence[int] | None = None) -> Any:
    """A plotly figure of a SimResult or stored run: ``kind`` is "equity" (with the benchmark
    the run was measured against, dotted) or "drawdown".

    ``param`` picks parameter sets (default: all, up to 10).
    """
    from pitgrid.results import charts
    from pitgrid.results.db import drawdown, initial_capital

    curves = _labelled(res.equity, param)
    if kind == "equity":
        stored = res.config.get("benchmark")
        bench = None
        if isinstance(stored, dict) and len(stored.get("equity", ())) == res.equity.sizes["time"]:
            bench = (str(stored["name"]), np.asarray(stored["equity"], dtype=np.float64))
        return charts.equity_figure(res.equity["time"].values, curves, bench)
    if kind == "drawdown":
        initial = initial_capital(res)
        return charts.drawdown_figure(res.equity["time"].values,
                                      {k: drawdown(v, initial)[0] for k, v in curves.items()})
    raise ValueError(f"kind={kind!r}: choose 'equity' or 'drawdown'")


def plot_grid(g: Any, kind: str = "heatmap", *, metric: str = "sharpe",
              axes: Sequence[str] | None = None) -> Any:
    """A plotly figure of a GridResult: ``kind`` "heatmap" (``metric`` over ``axes``, the
    other parameters as a selector), "equity" or "drawdown" (the kept curves)."""
    from pitgrid.results import charts
    from pitgrid.results.db import drawdown
    from pitgrid.results.grid_heatmap import grid_figure

    if kind == "heatmap":
        if metric not in g.table.columns:
            raise ValueError(f"metric={metric!r} is not a column of the grid's table")
        names = sorted({k for p in g.params for k in p})
        fig = grid_figure(g.table, names, metric, axes)
        if fig is None:
            raise ValueError("a grid without parameters has no heatmap")
        return fig
    if kind not in ("equity", "drawdown"):
        raise ValueError(f"kind={kind!r}: choose 'heatmap', 'equity' or 'drawdown'")
    if g.equity is None:
        raise ValueError("the grid kept no equity curves: run pg.grid(..., keep=5) to keep some")
    curves = _labelled(g.equity, None)
    times = g.equity["time"].values
    if kind == "equity":
        return charts.equity_figure(times, curves, title="Equity of the kept sets")
    return charts.drawdown_figure(times, {k: drawdown(v, None)[0] for k, v in curves.items()})


def _labelled(equity: Any, param: int | Sequence[int] | None) -> dict[str, np.ndarray]:
    """Curves by a readable name: the parameter values when the coords have them."""
    if "param" not in equity.dims:
        return {"equity": np.asarray(equity.values, dtype=np.float64)}
    chosen = (list(range(min(equity.sizes["param"], MAX_CURVES))) if param is None else
              [param] if isinstance(param, int) else list(param))
    extra = [c for c in equity.coords
             if c not in ("param", "time") and equity[c].dims == ("param",)]
    out = {}
    for i in chosen:
        one = equity.isel(param=i)
        name = ", ".join(f"{c}={one[c].item()}" for c in extra) or f"param {one['param'].item()}"
        out[name] = np.asarray(one.values, dtype=np.float64)
    return out
