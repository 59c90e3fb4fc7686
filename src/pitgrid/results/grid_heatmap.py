"""A metric over a parameter grid of any number of parameters, as one plotly figure.

Two parameters (chosen, or by default the two with the most values) span a heatmap
with the metric's value in each cell; every other parameter is a selector: a
dropdown whose first entry shows the best value over the other parameters (the
smallest for metrics where less is better, such as max_drawdown) and whose
next entries show each combination of their values. One parameter gives a line.

Example:
    >>> import polars as pl
    >>> table = pl.DataFrame({"fast": [5, 5, 10, 10], "slow": [50, 100, 50, 100],
    ...                       "sharpe": [0.1, 0.4, 0.3, 0.2]})
    >>> fig = grid_figure(table, ["fast", "slow"], "sharpe")
    >>> fig.data[0].type, fig.data[0].z.shape
    ('heatmap', (2, 2))
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import polars as pl

from pitgrid.results.charts import layout
from pitgrid.results.formatting import LOWER_IS_BETTER, PERCENT, label

#: more combinations of the other parameters than this and only "best over them" is drawn
MAX_SELECTOR = 120
#: cells beyond this count lose their printed values (they would not be legible)
MAX_CELL_TEXT = 625


def heatmap_axes(table: pl.DataFrame, names: Sequence[str],
                 axes: Sequence[str] | None = None) -> tuple[str, str]:
    """The (rows, columns) parameters: ``axes`` when given, else the two with the most values."""
    if axes is not None:
        axes = tuple(axes)
        bad = [a for a in axes if a not in names]
        if len(axes) != 2 or len(set(axes)) != 2 or bad:
            raise ValueError(f"axes must name two different parameters of {list(names)}, got "
                             f"{list(axes)}")
        return axes[0], axes[1]
    ranked = sorted(names, key=lambda n: -table[n].n_unique())  # stable: ties keep their order
    return ranked[0], ranked[1]


def grid_figure(table: pl.DataFrame, names: Sequence[str], metric: str,
                axes: Sequence[str] | None = None) -> go.Figure | None:
    """The figure of ``metric`` over the grid (None for a grid of no parameters)."""
    names = list(names)
    if not names:
        return None
    if len(names) == 1:
        return _line(table, names[0], metric)
    rows_name, cols_name = heatmap_axes(table, names, axes)
    others = [n for n in names if n not in (rows_name, cols_name)]
    rows, cols = (_values(table, n) for n in (rows_name, cols_name))
    values = pl.col(metric).fill_nan(None)
    best = values.min() if metric in LOWER_IS_BETTER else values.max()
    views = [("best over " + ", ".join(others) if others else metric,
              table.group_by(rows_name, cols_name).agg(best))]
    combos = list(itertools.product(*(_values(table, n) for n in others)))
    if others and len(combos) <= MAX_SELECTOR:
        for combo in combos:
            sel = table.filter(pl.all_horizontal(pl.col(n) == v for n, v in zip(others, combo)))
            if sel.height:
                views.append((", ".join(f"{n}={v}" for n, v in zip(others, combo)), sel))
    show_text = len(rows) * len(cols) <= MAX_CELL_TEXT
    fmt = ".1%" if metric in PERCENT else ".2f"
    fig = go.Figure()
    for i, (_, part) in enumerate(views):
        z = _surface(part, rows_name, cols_name, metric, rows, cols)
        fig.add_trace(go.Heatmap(
            z=z, x=[str(c) for c in cols], y=[str(r) for r in rows], visible=i == 0,
            colorscale="Viridis", colorbar={"title": label(metric), "tickformat": fmt},
            texttemplate=f"%{{z:{fmt}}}" if show_text else None, hoverongaps=False,
            hovertemplate=f"{rows_name}=%{{y}}<br>{cols_name}=%{{x}}<br>{metric}=%{{z:{fmt}}}"
                          "<extra></extra>"))
    fig.update_xaxes(title=cols_name, type="category")
    fig.update_yaxes(title=rows_name, type="category")
    title = f"{label(metric)} over {rows_name} and {cols_name}"
    if len(views) > 1:
        fig.update_layout(updatemenus=[{
            "buttons": [{"label": name, "method": "update",
                         "args": [{"visible": [j == i for j in range(len(views))]}]}
                        for i, (name, _) in enumerate(views)],
            "direction": "down", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom",
            "showactive": True}])
        title += " (choose the other parameters above)"
    elif others:
        title += f" (best over {', '.join(others)}: {len(combos)} combinations)"
    layout(fig, title, max(420, 160 + 34 * len(rows)))
    return fig.update_layout(margin={"t": 110})


def _values(table: pl.DataFrame, name: str) -> list:
    return sorted(table[name].drop_nulls().unique().to_list())


def _surface(part: pl.DataFrame, rows_name: str, cols_name: str, metric: str,
             rows: list, cols: list) -> np.ndarray:
    z = np.full((len(rows), len(cols)), np.nan)
    r_at = {v: i for i, v in enumerate(rows)}
    c_at = {v: i for i, v in enumerate(cols)}
    for a, b, v in zip(part[rows_name].to_list(), part[cols_name].to_list(),
                       part[metric].to_list()):
        if a in r_at and b in c_at and v is not None:
            z[r_at[a], c_at[b]] = v
    return z


def _line(table: pl.DataFrame, name: str, metric: str) -> go.Figure:
    ordered = table.sort(name)
    fig = go.Figure(go.Scatter(x=ordered[name].to_list(), y=ordered[metric].to_list(),
                               mode="lines+markers", name=metric))
    fig.update_xaxes(title=name)
    fig.update_yaxes(title=label(metric), tickformat=".1%" if metric in PERCENT else None)
    return layout(fig, f"{label(metric)} over {name}", 420)
