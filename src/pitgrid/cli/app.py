"""The typer application every command module registers on.

Help is click's plain layout (``rich_markup_mode=None``): it reflows text to the
terminal, never cuts an option name, and prints ``[data]`` as written.

Example:
    >>> from pitgrid.cli.app import app
    >>> app.info.name is None
    True
"""
from __future__ import annotations

import typer

app = typer.Typer(
    help="pitgrid: a point-in-time-safe, vectorized backtesting engine.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
