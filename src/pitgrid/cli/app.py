"""The typer application every command module registers on.

Help is click's plain layout (``rich_markup_mode=None``): it reflows text to the
terminal, never cuts an option name, and prints ``[data]`` as written.

Example:
    >>> from pitgrid.cli.app import app
    >>> app.info.name is None
    True
"""
from __future__ import annotations

import atexit
import gc
import os

import typer

# The command line owns its process, so it may skip what a library must not: what the
# libraries' imports made is frozen already (pitgrid.frozen_imports), and freezing the
# rest at exit skips the interpreter's last collections over the command's own objects
# too; garbage left in reference cycles is left to the operating system. A program that
# imports pitgrid keeps Python's own exit. PITGRID_EXIT_GC=1 keeps every collection.
if os.environ.get("PITGRID_EXIT_GC") != "1":
    atexit.register(gc.freeze)

app = typer.Typer(
    help="pitgrid: a point-in-time-safe, vectorized backtesting engine.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
