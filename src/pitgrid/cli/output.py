"""What the command line prints: tables that fit the terminal (80 columns included), numbers
as a person reads them, and CSV or JSON for programs.

Names that come from data, files or the database are printed as they are, never read
as console markup (they go into ``Text``). Numbers read as in the reports
(``results/formatting.py``).

Example:
    >>> fmt("max_drawdown", 0.1234), fmt("sharpe", float("nan"))
    ('12.34%', 'n/a')
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

# one way to write a metric, shared with the reports and the notebook display
from pitgrid.results.formatting import fmt

out = Console()
err = Console(stderr=True)

#: short headers for narrow tables
SHORT = {"total_return": "return", "annual_return": "CAGR", "max_drawdown": "max dd",
         "volatility": "vol", "win_rate": "win rate"}


class Format(str, Enum):
    """``--format``: a table for people, CSV or JSON for programs."""

    table = "table"
    csv = "csv"
    json = "json"


FORMAT_OPTION = typer.Option("--format", help="table (for people), csv or json (for programs).")


def prob(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)


def day(value: Any) -> str:
    return "-" if value is None else str(np.datetime64(value, "D"))


def iso(value: Any) -> str | None:
    """A time as the database writes it: the date alone at midnight, else date and time."""
    if value is None:
        return None
    text = value.isoformat()
    return text.removesuffix("T00:00:00")


# ---------------------------------------------------------------------- tables
@dataclass(frozen=True)
class Column:
    """A table column: ``key`` into each row, its header, right-justified for numbers;
    ``wrap`` lets long text fold onto more lines instead of widening the table."""

    key: str
    header: str
    numeric: bool = False
    wrap: bool = False


def fitted_table(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]], *, title: str = "",
                 optional: Sequence[str] = (), show_header: bool = True) -> Table:
    """A table of ``rows`` that fits the console: the ``optional`` column keys are left out,
    last first, while it is wider; then wrapping columns fold. Cells are text, never markup."""
    keep = [c.key for c in columns]
    drop = list(optional)
    while True:
        table = Table(title=escape(title) if title else None, title_justify="left",
                      box=box.SIMPLE_HEAD, show_header=show_header, pad_edge=False)
        shown = [c for c in columns if c.key in keep]
        for c in shown:
            table.add_column(Text(c.header), justify="right" if c.numeric else "left",
                             no_wrap=not c.wrap, overflow="fold")
        for row in rows:
            table.add_row(*(row[c.key] if isinstance(row[c.key], Text) else Text(str(row[c.key]))
                            for c in shown))
        # measured without the console's limit, which would clamp the table's width to it
        natural = Measurement.get(out, out.options.update_width(10**6), table).maximum
        if not drop or natural <= out.width:
            return table
        keep.remove(drop.pop())


def print_pairs(pairs: Sequence[tuple[str, Any]], title: str) -> None:
    """Label and value, one pair a line; long values fold under their own column."""
    rows = [{"k": k, "v": v} for k, v in pairs]
    out.print(fitted_table([Column("k", ""), Column("v", "", wrap=True)], rows, title=title,
                           show_header=False))


def print_paths(rows: Sequence[tuple[str, Any]]) -> None:
    for label, path in rows:
        out.print(escape(f"{label + ':':<12} {path}"), highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------- csv and json
def emit(records: Sequence[Mapping[str, Any]], form: Format,
         columns: Sequence[str] = ()) -> None:
    """``records`` as CSV (one row each; nested values as JSON text, missing numbers empty;
    the header has ``columns`` even without records) or as a JSON list (missing numbers null)."""
    clean = [{k: _plain(v) for k, v in r.items()} for r in records]
    if form is Format.json:
        typer.echo(json.dumps(clean, indent=2))
        return
    names = list(dict.fromkeys([*columns, *(k for r in clean for k in r)]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in clean:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v
                         for k, v in r.items()})
    typer.echo(buffer.getvalue(), nl=False)


def emit_json(obj: Mapping[str, Any]) -> None:
    """One JSON object (missing numbers null, times ISO text)."""
    typer.echo(json.dumps(_plain(obj), indent=2))


def _plain(value: Any) -> Any:
    """JSON-ready: NaN and infinities None, numpy scalars Python, times ISO text."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.datetime64):
        return str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


# the metrics a grid's table shows beside its ranking metric
_GRID_METRICS = ("sharpe", "annual_return", "max_drawdown", "trades")


def print_grid_table(frame: Any, axes: Sequence[str], by: str, top: int) -> None:
    """The best ``top`` sets of a grid by ``by``: its axes, then the metrics."""
    import polars as pl

    ranked = frame.sort(pl.col(by).fill_nan(None), descending=True, nulls_last=True).head(top)
    metrics = [m for m in dict.fromkeys([by, *_GRID_METRICS]) if m in frame.columns]
    columns = [*(Column(a, a, numeric=True, wrap=True) for a in axes),
               *(Column(m, SHORT.get(m, m), numeric=True) for m in metrics)]
    rows = [{c: fmt(c, row[c]) for c in [*axes, *metrics]} for row in ranked.iter_rows(named=True)]
    title = f"top {ranked.height} of {frame.height} sets by {by}"
    out.print(fitted_table(columns, rows, title=title, optional=metrics[1:]))
