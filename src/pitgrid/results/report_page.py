"""The page around a report's sections: tables that fit the page, figures, and the file itself.

plotly.js is written once per report folder (``plotly-<version>.min.js`` beside the
reports) and referenced relatively, so a folder of reports opens offline and each
page stays small. Files are written to a temporary name and renamed, so a crash
never leaves half a page.

Example:
    >>> page = frame_table(pl.DataFrame({"symbol": ["A"], "realized P&L": [12.5]}))
    >>> "<th>realized P&amp;L</th>" in page, "<td>12.50</td>" in page
    (True, True)
"""
from __future__ import annotations

import html
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from pitgrid.results.formatting import LABELS, fmt

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1150px; color: #222;
       padding: 0 12px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 28px; border-bottom: 1px solid #ddd; }
.banner { background: #c62828; color: #fff; font-weight: 700; font-size: 20px;
          padding: 10px 16px; margin: 12px 0; border-radius: 4px; }
table { border-collapse: collapse; margin: 0; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 9px; text-align: right; white-space: nowrap; }
td:first-child, th:first-child { text-align: left; }
th { background: #f3f3f3; position: sticky; top: 0; }
.scroll { max-height: 420px; max-width: 100%; overflow: auto; margin: 8px 0;
          display: inline-block; border: 1px solid #eee; }
.note { color: #555; font-size: 13px; max-width: 900px; }
pre { background: #f6f6f6; padding: 10px; font-size: 12px; overflow-x: auto; }
.tables { display: flex; gap: 32px; flex-wrap: wrap; align-items: flex-start; }
"""


def plotly_js_name() -> str:
    """The file name of plotly.js beside the reports; versioned so reports of another
    plotly never load a copy they were not drawn with."""
    return f"plotly-{get_plotlyjs_version()}.min.js"


def figure_html(fig: go.Figure) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=False,
                       config={"displaylogo": False, "responsive": True})


def table(rows: Iterable[tuple[Any, Any]]) -> str:
    """A two-column table of (name, text) pairs."""
    cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    return f"<table>{cells}</table>"


def frame_table(frame: pl.DataFrame) -> str:
    """A frame as a table in a box that scrolls past 420 px, its header kept in view."""
    head = "".join(f"<th>{html.escape(LABELS.get(c, c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c, v))}</td>"
                                    for c, v in zip(frame.columns, row)) + "</tr>"
                   for row in frame.iter_rows())
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def write_page(path: str | os.PathLike[str], title: str, body: list[str], *,
               plots: bool = True) -> Path:
    """Write the page (and plotly.js beside it when the page has figures); return its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    script = ""
    if plots:
        js = out.parent / plotly_js_name()
        if not js.exists():
            _atomic_write(js, get_plotlyjs())
        script = f'<script src="{html.escape(js.name)}" charset="utf-8"></script>'
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style>{script}</head>\n<body>"
            f"<h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n")
    _atomic_write(out, page)
    return out


def write_csv(path: Path, frame: pl.DataFrame) -> None:
    """A table beside a page, written whole or not at all; times as ISO dates for daily bars
    (``2021-04-19``), to the minute otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    times = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    daily = all((frame[c].drop_nulls().dt.truncate("1d") == frame[c].drop_nulls()).all()
                for c in times)
    shown = frame.with_columns(pl.col(times).dt.date() if daily else
                               pl.col(times).dt.strftime("%Y-%m-%dT%H:%M"))
    _atomic_write(path, shown.write_csv())


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
