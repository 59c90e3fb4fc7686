"""Where the results database is when nobody says: ``PITGRID_DB``, else the nearest project
file, else ``pitgrid.db`` in the working folder.

A project file is a ``pitgrid.toml`` with ``db = "..."``, or a ``pyproject.toml`` with
``[tool.pitgrid]`` and ``db = "..."``, in the working folder or the nearest folder above
it that has one; a relative path is read from that file's folder. ``ResultsDB()`` and
every command line reader use it, so a project's runs meet in one database.

Example:
    >>> default_db()                                    # doctest: +SKIP
    DefaultDB(location='/home/me/research/results/pitgrid.db', source='/home/me/research/pitgrid.toml')
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ENV", "DefaultDB", "default_db"]

ENV = "PITGRID_DB"
_PROJECT_FILES = (("pitgrid.toml", ()), ("pyproject.toml", ("tool", "pitgrid")))


@dataclass(frozen=True)
class DefaultDB:
    """A database location (path or URL) and where it was found: ``PITGRID_DB``, a project
    file's path, or None for the built-in ``pitgrid.db``."""

    location: str
    source: str | None


def default_db(start: str | os.PathLike[str] | None = None) -> DefaultDB:
    """The database to use when none is given, looking for project files from ``start``
    (default: the working folder) up. ValueError for a project file that cannot be read."""
    if os.environ.get(ENV):
        return DefaultDB(_resolved(os.environ[ENV], Path.cwd()), ENV)
    folder = Path(start or Path.cwd()).resolve()
    for where in (folder, *folder.parents):
        for name, keys in _PROJECT_FILES:
            found = _project_db(where / name, keys)
            if found is not None:
                return DefaultDB(_resolved(found, where), str(where / name))
    return DefaultDB(str(Path("pitgrid.db").resolve()), None)


def _project_db(path: Path, keys: tuple[str, ...]) -> str | None:
    """The file's ``db`` (under ``keys``), or None when the file or the key is not there."""
    if not path.is_file():
        return None
    try:
        table: Any = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the project file: {exc}") from None
    for key in keys:
        table = table.get(key, {}) if isinstance(table, dict) else {}
    db = table.get("db") if isinstance(table, dict) else None
    if db is not None and not isinstance(db, str):
        raise ValueError(f"{path}: db must be a path or URL text, got {db!r}")
    return db


def _resolved(text: str, base: Path) -> str:
    return text if "://" in text else str((base / Path(text).expanduser()).resolve())
