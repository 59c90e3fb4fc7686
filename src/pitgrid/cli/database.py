"""Which results database a command reads, and finding a run in it.

The database is, in this order: ``--db``; for a run, its config's ``[outputs] db``;
the ``PITGRID_DB`` environment variable; the nearest project file up from the working
folder (a ``pitgrid.toml`` with ``db = "..."``, or a ``pyproject.toml`` with
``[tool.pitgrid] db = "..."``; a relative path is read from the file's folder); else
``pitgrid.db`` in the working folder.

Example:
    >>> default_db()                                    # doctest: +SKIP
    DefaultDB(location='/home/me/research/results.db', source='/home/me/research/pitgrid.toml')
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pitgrid.cli.errors import usage_errors

if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.results.db import ResultsDB, StoredRun

ENV = "PITGRID_DB"
DB_OPTION = typer.Option(
    "--db", help=f"Results database: a path, or a sqlite:/// or postgresql:// URL (default: "
                 f"${ENV}, else db in the nearest pitgrid.toml or [tool.pitgrid] of "
                 "pyproject.toml, else pitgrid.db).")


@dataclass(frozen=True)
class DefaultDB:
    """A database location and where it was found (``None``: the built-in default)."""

    location: str
    source: str | None


def default_db(start: Path | None = None) -> DefaultDB:
    """The database a command uses when not told (see the module docs)."""
    if os.environ.get(ENV):
        return DefaultDB(_resolved(os.environ[ENV], Path.cwd()), ENV)
    folder = (start or Path.cwd()).resolve()
    for where in (folder, *folder.parents):
        for name, keys in (("pitgrid.toml", ()), ("pyproject.toml", ("tool", "pitgrid"))):
            found = _project_db(where / name, keys)
            if found is not None:
                return DefaultDB(_resolved(found, where), str(where / name))
    return DefaultDB(str(Path("pitgrid.db").resolve()), None)


def _project_db(path: Path, keys: tuple[str, ...]) -> str | None:
    if not path.is_file():
        return None
    with usage_errors(ValueError, OSError):  # a TOMLDecodeError is a ValueError
        table: Any = tomllib.loads(path.read_text())
        for key in keys:
            table = table.get(key, {}) if isinstance(table, dict) else {}
        db = table.get("db") if isinstance(table, dict) else None
        if db is not None and not isinstance(db, str):
            raise ValueError(f"{path}: db must be a path or URL text, got {db!r}")
    return db


def _resolved(text: str, base: Path) -> str:
    return text if "://" in text else str((base / Path(text).expanduser()).resolve())


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
