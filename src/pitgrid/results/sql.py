"""One connection to the results database, SQLite or PostgreSQL, with their few differences here.

The results code writes portable SQL with ``?`` placeholders and explicit
transactions. What differs between the two engines is only: how to connect, the
placeholder style, how a writer takes the database-wide write lock (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), and how to
ask whether a table exists.
"""
from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

_BUSY_TIMEOUT_S = 30.0
# The advisory lock every pitgrid writer of one PostgreSQL database takes ("pitgrid" in hex).
_PG_WRITE_LOCK = 0x70697467726964


@dataclass(frozen=True)
class Location:
    """Where a results database lives: ``kind`` is "sqlite" or "postgresql"; ``target`` is
    the SQLite file or the PostgreSQL connection URL; ``name`` tags the database's array
    stores (the file name; for PostgreSQL host, port and database, so two servers'
    databases of one name never share a tag)."""

    kind: str
    target: str
    name: str

    @classmethod
    def parse(cls, url_or_path: str | os.PathLike[str] | None) -> Location:
        """A file path, ``sqlite:///relative.db``, ``sqlite:////abs.db``, a PostgreSQL URL
        (``postgresql://user@host:5432/db``, also ``postgresql+psycopg://``), or None for
        the default database (``PITGRID_DB``, a project file's, else ``pitgrid.db`` in the
        working directory: see ``results/default_db.py``).

        Example:
            >>> Location.parse("postgresql+psycopg://me@db:5432/research").target
            'postgresql://me@db:5432/research'
        """
        if url_or_path is None:
            from pitgrid.results.default_db import default_db

            url_or_path = default_db().location
        text = os.fspath(url_or_path)
        scheme, sep, rest = text.partition("://")
        if sep:
            if scheme.split("+")[0] in ("postgresql", "postgres"):
                url = f"postgresql://{rest}"
                parts = urlsplit(url)
                query = dict(parse_qsl(parts.query))
                dbname = parts.path.lstrip("/") or query.get("dbname", "")
                if not dbname:
                    raise ValueError(f"database URL {mask_url(text)!r} names no database: "
                                     "postgresql://user@host:5432/dbname")
                host = parts.hostname or query.get("host", "local")
                tag = f"{host}:{parts.port or query.get('port', 5432)}/{dbname}"
                return cls("postgresql", url, re.sub(r"[^A-Za-z0-9._-]+", "_", tag))
            if scheme != "sqlite" or not rest.startswith("/"):
                raise ValueError(f"unsupported database URL {mask_url(text)!r}: use a file path, "
                                 "sqlite:///relative.db, sqlite:////absolute/path.db or "
                                 "postgresql://user@host:5432/dbname")
            text = rest[1:]
        if text in ("", ":memory:"):
            raise ValueError("the results database must be a file: its zarr arrays live beside it")
        path = Path(text).resolve()
        return cls("sqlite", str(path), path.name)

    def __str__(self) -> str:
        return self.target if self.kind == "sqlite" else mask_url(self.target)


class Connection:
    """A DB-API connection in autocommit mode: every write opens its own transaction.

    Example:
        >>> conn = Connection(Location.parse("runs.db"))        # doctest: +SKIP
        >>> conn.execute("SELECT 1").fetchone()                  # doctest: +SKIP
        (1,)
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self.kind = location.kind
        if self.kind == "sqlite":
            # isolation_level=None: no implicit transactions; every write says BEGIN itself.
            self._raw: Any = sqlite3.connect(location.target, timeout=_BUSY_TIMEOUT_S,
                                             isolation_level=None)
            try:
                self._raw.execute("PRAGMA journal_mode = WAL")  # readers never wait for a writer
                self._raw.execute("PRAGMA foreign_keys = ON")
            except BaseException:
                self._raw.close()
                raise
        else:
            try:
                import psycopg
            except ImportError:
                raise ImportError("a postgresql:// results database needs the psycopg driver: "
                                  "pip install 'pitgrid[postgres]'") from None
            try:
                self._raw = psycopg.connect(location.target, autocommit=True)
            except psycopg.OperationalError as exc:
                # psycopg's message spans lines (the cause, then a hint); callers print one
                reason = "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())
                raise ConnectionError(f"cannot connect to the results database {location}: {reason}") from None

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open, as the driver sees it (also after a failed COMMIT)."""
        if self.kind == "sqlite":
            return self._raw.in_transaction
        from psycopg.pq import TransactionStatus

        return self._raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run one statement with ``?`` placeholders; returns the cursor (``fetchone``,
        ``fetchall``, ``rowcount``)."""
        if self.kind == "sqlite":
            return self._raw.execute(sql, args)
        cursor = self._raw.cursor()
        if args:
            cursor.execute(_pg_sql(sql), tuple(args))
        else:  # no parameters: psycopg then leaves % alone
            cursor.execute(sql)
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.kind == "sqlite":
            self._raw.executemany(sql, rows)
        else:
            self._raw.cursor().executemany(_pg_sql(sql), list(rows))

    def begin_write(self) -> None:
        """Open a transaction holding the database's write lock; waits up to 30 s for
        another writer, then raises."""
        if self.kind == "sqlite":
            self._raw.execute("BEGIN IMMEDIATE")
            return
        self.execute("BEGIN")
        try:
            self.execute(f"SET LOCAL lock_timeout = '{int(_BUSY_TIMEOUT_S * 1000)}ms'")
            self.execute(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK})")
        except BaseException:
            self.rollback()
            raise

    def try_begin_write(self) -> bool:
        """Like :meth:`begin_write` but returns False at once when another writer holds the lock."""
        if self.kind == "sqlite":
            self._raw.execute("PRAGMA busy_timeout = 0")
            try:
                self._raw.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
                return False
            finally:
                self._raw.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            return True
        self.execute("BEGIN")
        try:
            (got,) = self.execute(f"SELECT pg_try_advisory_xact_lock({_PG_WRITE_LOCK})").fetchone()
        except BaseException:
            self.rollback()
            raise
        if not got:
            self.rollback()
        return bool(got)

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
        if self.in_transaction:
            self.execute("ROLLBACK")

    def has_table(self, name: str) -> bool:
        if self.kind == "sqlite":
            sql = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            sql = ("SELECT COUNT(*) FROM information_schema.tables"
                   " WHERE table_schema = current_schema() AND table_name = ?")
        (n,) = self.execute(sql, (name,)).fetchone()
        return n > 0

    def close(self) -> None:
        self._raw.close()


def _pg_sql(sql: str) -> str:
    # psycopg's placeholders are %s, and a literal % must be doubled when parameters are passed
    return sql.replace("%", "%%").replace("?", "%s")


def mask_url(url: str | os.PathLike[str]) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter); a
    path or a URL without one comes back unchanged.

    Example:
        >>> mask_url("postgresql://me:secret@db:5432/research?sslmode=require&password=x")
        'postgresql://me:***@db:5432/research?sslmode=require&password=***'
    """
    url = os.fspath(url)
    if "://" not in url:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    has_query_password = any(k == "password" for k, _ in query)
    if parts.password is None and not has_query_password:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    text = parts.query
    if has_query_password:
        text = "&".join(f"{k}={'***' if k == 'password' else v}" for k, v in query)
    return urlunsplit(parts._replace(netloc=netloc, query=text))
