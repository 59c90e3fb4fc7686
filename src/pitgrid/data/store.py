"""The on-disk market store: a zarr v3 group plus Parquet reference tables.

Layout of a store directory ``STORE/``::

    STORE/zarr.json              zarr v3 group, consolidated metadata (xarray.open_zarr reads it)
    STORE/time, STORE/symbol     coordinates: bar times (datetime64[ns]) and sorted symbols
    STORE/<field>/               one (time, symbol) array per field, chunks (n_time, symbol_block):
                                 open high low close volume (float64, NaN = no bar),
                                 valid (bool), split_ratio (float64, 1 = none),
                                 dividend (float64, 0 = none), extra numeric fields (float64)
    STORE/_pitgrid/manifest.json format and version, sources, counts, bar grid, fingerprint,
                                 facts (gapless, has_actions: what a run may skip checking)
    STORE/_pitgrid/<table>.parquet  reference tables written with polars:
        universes  universe_id, symbol, start, end (end null = still a member)
        actions    symbol, ex_date, split_ratio, cash_dividend
        events     symbol, event_time, knowledge_time, field, value
        regimes    time, regime

Chunking by blocks of symbols across all time lets a worker read only its
symbols. ``_pitgrid/`` is written after the zarr metadata is consolidated, so zarr
and xarray never list it. A store is built in a hidden sibling directory and
renamed into place (``staged``), so readers see either the old store or the new one.

The sibling's name says who builds it: ``.STORE.tmp-HOST-PID-START-RANDOM`` (START is
the process's start time, so a reused process id is not mistaken for the owner); an
overwrite moves the old store aside as ``.STORE.old-...`` with the same tag. A killed
ingest leaves these behind; the next ingest or open of ``STORE`` removes those whose
owner is gone (a zombie counts as gone), and puts an old store back when the kill
came between its two renames. Temporaries of live processes, of other hosts and in
other naming schemes are left alone.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import xarray as xr
import zarr

from pitgrid.data.checks import all_finite
from pitgrid.data.validate import IngestError

FORMAT = "pitgrid-store"
VERSION = 1
TABLES_DIR = "_pitgrid"
MANIFEST = "manifest.json"
TABLE_NAMES = ("universes", "actions", "events", "regimes")
DIMS = ("time", "symbol")
FACTS = ("gapless", "has_actions")  # see data_facts

# about 8 MiB of float64 per chunk: big enough for fast sequential reads, small enough per worker
_CHUNK_BYTES = 8 * 2**20


def default_symbol_block(n_time: int, n_symbols: int) -> int:
    """Symbols per chunk so that one float64 chunk ``(n_time, block)`` is about 8 MiB.

    Example:
        >>> default_symbol_block(5402, 504)
        194
    """
    return int(min(max(1, n_symbols), max(1, _CHUNK_BYTES // (8 * max(1, n_time)))))


def is_store(path: Path) -> bool:
    """True when ``path`` holds a pitgrid store (its manifest names the format)."""
    try:
        return read_manifest(path).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def read_manifest(path: Path) -> dict[str, Any]:
    """The store's manifest (format, version, sources, counts, grid, fingerprint).

    Every way of opening a store reads it, so this is where the leftovers of killed
    ingests of ``path`` are cleared first (``remove_stale_temps``).
    """
    remove_stale_temps(path)
    return json.loads((Path(path) / TABLES_DIR / MANIFEST).read_text())


def read_tables(path: Path) -> dict[str, pl.DataFrame]:
    """The reference tables present in the store, by name."""
    from pitgrid.data.validate import TABLE_SCHEMAS

    folder = Path(path) / TABLES_DIR
    tables = {n: pl.read_parquet(folder / f"{n}.parquet") for n in TABLE_NAMES
              if (folder / f"{n}.parquet").exists()}
    # a store written before a column existed reads with that column empty
    for name, table in tables.items():
        missing = [c for c in TABLE_SCHEMAS[name] if c not in table.columns]
        if missing:
            tables[name] = table.with_columns(
                pl.lit(None, TABLE_SCHEMAS[name][c]).alias(c) for c in missing
            ).select(list(TABLE_SCHEMAS[name]))
    return tables


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse a target that exists (unless ``overwrite``), that is not a store or empty dir,
    or that cannot be created (a file on its path, a folder that is not writable)."""
    target = Path(target)
    ancestor = next(p for p in target.absolute().parents if p.exists())
    if not ancestor.is_dir():
        raise IngestError(f"{target}: cannot create the store: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise IngestError(f"{target}: cannot create the store: {ancestor} is not writable")
    if not target.exists():
        return
    if not overwrite:
        raise FileExistsError(f"store {target} exists; pass overwrite=True (CLI --overwrite) to replace it")
    if not (is_store(target) or (target.is_dir() and not any(target.iterdir()))):
        raise FileExistsError(f"refusing to replace {target}: it is not a pitgrid store")


def write_error(target: Path, exc: OSError) -> IngestError:
    """An OS error while writing ``target`` as one line naming the store and the cause."""
    where = f" ({exc.filename})" if exc.filename else ""
    return IngestError(f"{target}: cannot write the store: {exc.strerror or exc}{where}")


@contextmanager
def write_errors(target: Path) -> Iterator[None]:
    """Turn OS errors (disk full, permission denied) into ``write_error``."""
    try:
        yield
    except OSError as exc:
        raise write_error(target, exc) from None


# ---------------------------------------------------------------------- temporaries

_OWNED = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<host>\w+)-(?P<pid>\d+)-(?P<start>\d+)-[0-9a-f]+")


def _host() -> str:
    return re.sub(r"\W", "_", socket.gethostname()) or "host"


def _process_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time in clock ticks after boot)`` of a process (Linux), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


def _owner_tag() -> str:
    """``HOST-PID-START-RANDOM`` for this process (START 0 where start times are unknown)."""
    stat = _process_stat(os.getpid())
    return f"{_host()}-{os.getpid()}-{stat[1] if stat else 0}-{uuid.uuid4().hex[:10]}"


def _owner_alive(host: str, pid: int, start: int) -> bool:
    if host != _host():
        return True  # another machine's process: there is no telling, so it may be writing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    if start == 0:
        return True
    stat = _process_stat(pid)
    return stat is not None and stat[0] != "Z" and stat[1] == start


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the staging folders of ingests of ``target`` whose process is gone; move a
    store a killed overwrite had set aside back to ``target`` when ``target`` is missing.
    Returns the folders removed or moved back. Errors are ignored: a read-only folder
    simply keeps its leftovers."""
    target = Path(target)
    try:
        entries = sorted(target.parent.iterdir())
    except OSError:
        return []
    done = []
    for entry in entries:
        m = _OWNED.fullmatch(entry.name)
        if m is None or m["name"] != target.name or _owner_alive(m["host"], int(m["pid"]), int(m["start"])):
            continue
        try:
            if m["kind"] == "old" and not target.exists():
                os.rename(entry, target)
            else:
                shutil.rmtree(entry)
        except OSError:
            continue  # another process cleans it at the same moment, or the folder is read-only
        done.append(entry)
    return done


@contextmanager
def staged(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a fresh sibling directory to build the store in; move it onto ``target`` at the end.

    On any exception the staging directory is deleted and ``target`` is untouched.
    With ``overwrite`` the old store is renamed aside, the new one renamed in, then the
    old one deleted; if the second rename fails the old store is put back. Leftovers of
    killed ingests of ``target`` are removed first (``remove_stale_temps``).
    """
    target = Path(target)
    check_target(target, overwrite)
    remove_stale_temps(target)
    tag = _owner_tag()
    tmp = target.parent / f".{target.name}.tmp-{tag}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise write_error(target, exc) from None
    try:
        yield tmp
        _move_in(tmp, target, overwrite, target.parent / f".{target.name}.old-{tag}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``), so a
    reader opening ``b`` finds the old store or the new one, never neither. False where
    the system call is not available."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: the file system cannot swap
        return False
    raise OSError(err, os.strerror(err), str(b))


def _move_in(tmp: Path, target: Path, overwrite: bool, old: Path) -> None:
    if not target.exists():
        with write_errors(target):
            os.rename(tmp, target)
        return
    check_target(target, overwrite)
    with write_errors(target):
        if _exchange(tmp, target):
            # tmp now holds the old store, under its owner's name: removed below, or by
            # the next open if this process is killed first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
    shutil.rmtree(old, ignore_errors=True)


def create_group(path: Path, time: np.ndarray, symbols: Sequence[str], attrs: Mapping[str, Any]) -> zarr.Group:
    """Write the coordinates (via xarray, so it encodes the times) and return the zarr group."""
    coords = {"time": np.asarray(time, "datetime64[ns]"), "symbol": np.asarray(symbols, dtype=object)}
    xr.Dataset(coords=coords, attrs=dict(attrs)).to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return zarr.open_group(path, mode="a")


def write_array(
    group: zarr.Group,
    name: str,
    values: np.ndarray,
    symbol_block: int,
    on_block: Callable[[], None] = lambda: None,
) -> None:
    """Write one ``(time, symbol)`` array chunked ``(n_time, symbol_block)``, block by block."""
    fill = False if values.dtype == bool else np.nan
    arr = group.create_array(
        name,
        shape=values.shape,
        chunks=(values.shape[0], symbol_block),
        dtype=values.dtype,
        fill_value=fill,
        dimension_names=DIMS,
    )
    for j in range(0, values.shape[1], symbol_block):
        arr[:, j : j + symbol_block] = values[:, j : j + symbol_block]
        on_block()


def finish(path: Path, tables: Mapping[str, pl.DataFrame], manifest: Mapping[str, Any]) -> None:
    """Consolidate the zarr metadata, then write the reference tables and the manifest."""
    with warnings.catch_warnings():
        # consolidated metadata is a zarr-python extension to v3; xarray relies on it
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(str(path))
    folder = Path(path) / TABLES_DIR
    folder.mkdir()
    for name, table in tables.items():
        table.write_parquet(folder / f"{name}.parquet")
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "version": VERSION, **manifest}, indent=2))


def data_fingerprint(
    time: np.ndarray,
    symbols: Sequence[str],
    names: Sequence[str],
    get: Callable[[str], np.ndarray],
    tables: Mapping[str, pl.DataFrame],
    delistings: Mapping[str, str] | None = None,
) -> str:
    """SHA-256 hex digest of coordinates, every named array, the reference tables and the
    recorded delistings (when there are any: they change what a run does).

    Arrays are fetched one at a time through ``get`` (so a lazy store is read one
    field at a time) and hashed in ``sorted(names)`` order as little-endian bytes;
    the four reference tables as CSV text. Attributes are left out: the same data from another path or
    run has the same fingerprint.
    """
    h = hashlib.sha256()

    def put(chunk: bytes | memoryview) -> None:
        h.update(len(chunk).to_bytes(8, "little"))
        h.update(chunk)

    put(b"pitgrid-fingerprint-v1")
    put(np.ascontiguousarray(np.asarray(time, "datetime64[ns]").view("<i8")).data)
    put("\0".join(symbols).encode())
    for name in sorted(names):
        values = np.asarray(get(name))
        values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
        put(f"{name}|{values.dtype.str}|{values.shape}".encode())
        put(values.reshape(-1).view(np.uint8).data)
    for name in TABLE_NAMES:
        put(name.encode())
        put(tables[name].write_csv().encode())
    if delistings:
        put(json.dumps(dict(sorted(delistings.items()))).encode())
    return h.hexdigest()


def data_facts(fields: Sequence[str], get: Callable[[str], np.ndarray],
               known: Mapping[str, bool] | None = None) -> dict[str, bool]:
    """What runs on these arrays may take as known instead of checking every cell again.

    ``gapless``: every symbol has a valid bar at every time, with a finite open and close
    (the prices a fill reads; then a run's validity mask is all ones). ``has_actions``: some
    bar has a split ratio other than 1 or a dividend other than 0 (NaN counts: it is
    read as a possible action). Computed once where the data are written or first used;
    the ``known`` ones (learnt while the arrays were made) are taken as they are.

    Example:
        >>> import numpy as np
        >>> a = {"close": np.ones((2, 2)), "valid": np.ones((2, 2), bool)}
        >>> data_facts(list(a), a.__getitem__)
        {'gapless': True, 'has_actions': False}
        >>> data_facts(list(a), a.__getitem__, known={"gapless": False})["gapless"]
        False
    """
    names = set(fields)
    facts = dict(known or {})
    if "gapless" not in facts:
        gapless = "valid" not in names or bool(np.asarray(get("valid"), dtype=bool).all())
        for name in ("open", "close"):
            if gapless and name in names:
                gapless = all_finite(get(name))
        facts["gapless"] = gapless
    if "has_actions" not in facts:
        facts["has_actions"] = (
            ("split_ratio" in names and bool((np.asarray(get("split_ratio")) != 1.0).any()))
            or ("dividend" in names and bool((np.asarray(get("dividend")) != 0.0).any())))
    return {name: facts[name] for name in FACTS}


def write_store(target: Path, time: np.ndarray, symbols: Sequence[str],
                arrays: Mapping[str, np.ndarray], tables: Mapping[str, pl.DataFrame],
                manifest: Mapping[str, Any], *, symbol_block: int | None = None,
                delistings: Mapping[str, str] | None = None, overwrite: bool = False,
                attrs: Mapping[str, Any] | None = None,
                on_block: Callable[[], None] = lambda: None) -> Path:
    """Write a whole store at ``target`` (staged, then moved in): the arrays, the tables and
    the manifest, to which the counts, fields, chunking, delistings, fingerprint and facts
    (``data_facts``) are added here, the one place they are computed: opening the store
    reads them and never recomputes them."""
    from datetime import datetime, timezone

    block = symbol_block or default_symbol_block(len(time), len(symbols))
    delistings = dict(sorted((delistings or {}).items()))
    fingerprint = data_fingerprint(time, symbols, list(arrays), arrays.__getitem__, tables, delistings)
    facts = data_facts(list(arrays), arrays.__getitem__)
    with staged(target, overwrite) as tmp, write_errors(target):
        group = create_group(tmp, time, symbols, attrs or {})
        for name in sorted(arrays):
            write_array(group, name, arrays[name], block, on_block)
        finish(tmp, tables, {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **manifest,
            "n_time": len(time), "n_symbols": len(symbols),
            "time_range": [str(pd.Timestamp(t)) for t in np.asarray(time)[[0, -1]]]
            if len(time) else [],
            "fields": sorted(arrays), "symbol_block": block,
            "tables": {name: len(t) for name, t in tables.items()},
            "delistings": delistings, "fingerprint": fingerprint, "facts": facts,
        })
    return target


def write_market(market: Any, path: Path) -> Path:
    """Write an in-memory market (a :class:`pitgrid.MarketData`) as a store at ``path``, its
    delistings recorded: e.g. for worker processes that must open the same data read-only."""
    time = np.asarray(market.time, "datetime64[ns]")
    symbols = [str(x) for x in market.symbols]
    arrays = {name: np.asarray(market.ds[name].values) for name in market.ds.data_vars}
    delistings = {s: str(time[b]) for s, b in zip(symbols, market.delist_bar.tolist()) if b >= 0}
    return write_store(Path(path), time, symbols, arrays,
                       {name: getattr(market, name) for name in TABLE_NAMES},
                       {"sources": ["<in-memory market>"]}, delistings=delistings, overwrite=True)
