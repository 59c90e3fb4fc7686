"""How the command line fails: one line and exit 2 for the user's problem, the traceback
and exit 1 for a run that broke.

Example:
    >>> from pitgrid.cli.errors import usage_errors
    >>> with usage_errors():                       # doctest: +SKIP
    ...     raise ValueError("prices.csv, line 5: open outside [low, high]")
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.markup import escape

from pitgrid.cli.output import err

# ConnectionError: a results database that refuses the connection (the URL is the config's)
USAGE_ERRORS = (ValueError, KeyError, FileNotFoundError, NotImplementedError, ImportError,
                ConnectionError)


@contextmanager
def usage_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Config and data problems (``kinds``, default: the usual ones): the message without a
    traceback, exit code 2."""
    try:
        yield
    except kinds or USAGE_ERRORS as exc:
        # IngestError and RunConfigError are ValueErrors; a KeyError's str() adds quotes
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        fail_usage(str(message))


@contextmanager
def run_failures(what: str) -> Iterator[None]:
    """A run that started and failed: its traceback (likely a bug worth reporting), exit code 1.
    A results database that cannot be reached is the config's problem: one line, exit code 2."""
    try:
        yield
    except typer.Exit:
        raise
    except ConnectionError as exc:
        fail_usage(str(exc))
    except Exception as exc:
        err.print_exception(max_frames=8)
        err.print(f"[bold red]{what} failed:[/] {type(exc).__name__}: {escape(str(exc))}",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def check_benchmark(symbol: str, market: Any, where: str) -> None:
    """``--benchmark SYMBOL`` must name a symbol of ``market`` (``where``: its data, in words)."""
    symbols = [str(s) for s in market.symbols]
    if symbol not in symbols:
        fail_usage(f"--benchmark {symbol!r} is not a symbol of {where} "
                   f"({len(symbols)} symbols, e.g. {', '.join(symbols[:3])})")


def fail_usage(message: str) -> NoReturn:
    """Print ``message`` as one error line and exit 2."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)
