"""Which results database a command reads, and finding a run in it.

The database is, in this order: ``--db``; for a run, its config's ``[outputs] db``;
then :func:`pitgrid.results.default_db.default_db` (``PITGRID_DB``, the nearest project
file, ``pitgrid.db``).

Example:
    >>> chosen_db(None)                                 # doctest: +SKIP
    '/home/me/research/results/pitgrid.db'
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pitgrid.cli.errors import usage_errors
from pitgrid.results.default_db import ENV, DefaultDB
from pitgrid.results.default_db import default_db as _default_db

if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.results.db import ResultsDB, StoredRun

DB_OPTION = typer.Option(
    "--db", help=f"Results database: a path, or a sqlite:/// or postgresql:// URL (default: "
                 f"${ENV}, else db in the nearest pitgrid.toml or [tool.pitgrid] of "
                 "pyproject.toml, else pitgrid.db).")


def default_db() -> DefaultDB:
    """The default database; an unreadable project file is one error line."""
    with usage_errors(ValueError):
        return _default_db()


def chosen_db(option: str | None) -> str:
    """``--db`` as given, else the default database."""
    return option if option is not None else default_db().location


@contextmanager
def open_db(option: str | None) -> Iterator[ResultsDB]:
    """The results database to read; one error line when it is missing or unreachable."""
    from pitgrid.results import ResultsDB

    db = chosen_db(option)
    with usage_errors():
        if "://" not in db and not Path(db).exists():
            found = default_db()
            how = ("--db" if option is not None else
                   f"the default from {found.source}" if found.source else "the default")
            raise FileNotFoundError(f"no results database at {db} ({how}; pass --db PATH or set "
                                    f"{ENV})")
        rdb = ResultsDB(db)
    try:
        yield rdb
    finally:
        rdb.close()


def load_run(rdb: ResultsDB, text: str) -> StoredRun:
    """A run by id or unique prefix (reports are named by the first 8 digits)."""
    with usage_errors():
        if len(text) != 32:
            matches = [r for r in rdb.list_runs()["run_id"].to_list() if r.startswith(text.lower())]
            if len(matches) != 1:
                found = "no run" if not matches else f"{len(matches)} runs"
                raise KeyError(f"{found} in {rdb.location} with an id starting {text!r}")
            text = matches[0]
        return rdb.load_run(text)


# ---------------------------------------------------------------------- grid runs
def is_grid(run: StoredRun) -> bool:
    return "param" in run.equity.dims


def grid_info(run: StoredRun) -> dict[str, Any]:
    return run.config.get("run", {}).get("grid", {})


def grid_by(run: StoredRun) -> str:
    return grid_info(run).get("by", "sharpe")


def grid_axes(run: StoredRun) -> list[str]:
    """The parameters that vary across the sets (saved with the run, else read off the sets)."""
    saved = grid_info(run).get("axes")
    if saved:
        return list(saved)
    keys = list(run.params[0]) if run.params else []
    return [k for k in keys if len({repr(p.get(k)) for p in run.params}) > 1]


def grid_frame(run: StoredRun) -> Any:
    """The grid table without parameters that are unset for every set (all null)."""
    table = run.grid_table()
    return table.select([c for c in table.columns if table[c].null_count() < table.height])


def check_param(run: StoredRun, index: int) -> int:
    """``index`` when that set of the run can be reported alone; ValueError otherwise."""
    count = len(run.params)
    if not 0 <= index < count:
        raise ValueError(f"--param {index} is out of range: the run has {count} parameter set(s)")
    equity = run.equity.isel(param=index) if is_grid(run) else run.equity
    if bool(equity.isnull().all()):
        keep = grid_info(run).get("keep", "few")
        raise ValueError(f"set {index}'s equity curve was not kept (the grid kept its best "
                         f"{keep}); "
                         "its metrics are in the grid report, or run it alone with `pitgrid run`")
    return index
