"""Ingest long-format bars and reference files into a pitgrid store.

Input files are CSV (plain or ``.gz``) or Parquet in long format: ``time, symbol,
open, high, low, close, volume`` plus any numeric fields (column names are matched
case-insensitively; ``timestamp``/``date`` and ``ticker`` are accepted for time and
symbol). Several files continue each other in the order given. Vendor
corporate-action columns (``split_coefficient``, ``dividend_amount``) become the
actions table and the ``split_ratio``/``dividend`` arrays; a separate ``actions`` file
replaces them. Back-adjusted vendor series (``adjusted_close``) embed splits and
dividends from after each bar, a look-ahead, so they are not stored.

Everything is validated before anything is written (``pitgrid.data.validate``);
the store is built beside the target and renamed into place, so a failed ingest
leaves nothing behind (layout in ``pitgrid.data.store``).

Files are checked whole before they are parsed: a CSV may be plain, gzip or zlib
(other compressions are refused by name), must decompress to its end, be UTF-8 and
have as many fields on every line as in its header; no two columns of a file may give
the same field (``close`` twice, ``Close`` beside ``close``, ``time`` beside ``date``).
Each refusal names the file and the line. Noisy split ratios are snapped to simple
fractions (``pitgrid.data.validate``); the manifest's ``snapped_split_ratios`` lists
each with its raw value.

Timezone-aware Parquet times: daily bars keep their local date and time of day (a
bar stamped at New York midnight is that day's bar, in summer and in winter);
intraday bars are stored in UTC, where a daylight-saving change repeats no hour.
"""
from __future__ import annotations

import codecs
import csv
import os
import re
import time as _time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import polars as pl
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pitgrid import _scan as _compiled
from pitgrid.data import grow as _grow
from pitgrid.data import store as _store
from pitgrid.data.market import LOOKAHEAD_FIELDS, MarketData, action_arrays, open_market
from pitgrid.data.validate import (
    PRICE_FIELDS,
    SUSPICIOUS_MOVE,
    IngestError,
    Source,
    check_bars,
    empty_table,
    infer_grid,
    normalize_actions,
    normalize_events,
    normalize_regimes,
    normalize_universes,
    parse_times,
    pick_column,
    beyond,
    last_closes,
    suspicious_moves,
    to_floats,
)

PathLike = str | os.PathLike[str]

_TIME_NAMES = ("time", "timestamp", "date", "datetime")
_SYMBOL_NAMES = ("symbol", "ticker")
_SPLIT_NAMES = ("split_coefficient", "split_ratio")
_DIVIDEND_NAMES = ("dividend_amount", "dividend", "cash_dividend")
_RESERVED = frozenset({"valid", "split_ratio", "dividend", "time", "symbol"})


def ingest(
    sources: PathLike | Sequence[PathLike],
    store: PathLike,
    *,
    actions: PathLike | None = None,
    universes: PathLike | Mapping[str, PathLike] | None = None,
    events: PathLike | None = None,
    regimes: PathLike | None = None,
    delistings: PathLike | None = None,
    symbol_block: int | None = None,
    overwrite: bool = False,
    append: bool = False,
    finished: bool | None = None,
    progress: bool = True,
    unknown_symbols: Literal["error", "drop"] = "error",
    suspicious_move: float = SUSPICIOUS_MOVE,
) -> Path:
    """Validate long-format bar files and write them as a ``(time, symbol)`` zarr store.

    ``universes`` is a membership file (intervals ``ticker,start_date,end_date`` or
    snapshots ``date,symbol``; the universe id comes from a ``universe_id`` column, else
    the file name up to its first underscore: ``sp500_membership_intervals.csv`` ->
    ``"sp500"``) or a mapping ``{universe_id: file}``. ``actions``, ``events`` and
    ``regimes`` are CSV or Parquet files (schemas in ``pitgrid.data.validate``).
    Reference rows naming a symbol without prices are refused, or dropped and
    counted in the manifest with ``unknown_symbols="drop"``. ``symbol_block`` is the
    number of symbols per chunk (default: about 8 MiB per chunk). Raises
    ``ValidationError`` (file, row, symbol, rule) on bad data and ``FileExistsError``
    when ``store`` exists and ``overwrite`` is false.

    ``append=True`` adds the files' bars after the last bar of the existing ``store``
    (same validation, then the rules of :mod:`pitgrid.data.grow`); the store is
    replaced atomically. ``delistings`` is a file ``symbol,date`` of declared
    delistings. ``finished`` says the data end the history: symbols whose bars stop
    before the last bar are delisted there (default: True for an ingest, False for an
    append, where a symbol missing from the new bars is in a gap).

    Moves that no recorded split or dividend explains (beyond ``suspicious_move``, see
    :func:`pitgrid.data.validate.suspicious_moves`) are warnings, not errors: the
    manifest's ``suspicious_moves`` lists them (``count``, and the ``MAX_LISTED_MOVES``
    largest as ``file, line, symbol, date, previous_close, close, split_ratio,
    dividend, raw_move, move, cause``: the closes as in the file, the day's recorded
    actions, the move of the raw closes and the move with the actions put back, which
    is the one checked), for ``pitgrid info`` and
    :func:`pitgrid.data.store.read_manifest` to show. An append checks its first bars
    against the store's last ones.

    Example:
        >>> import pitgrid as pg
        >>> pg.ingest("prices.csv.gz", "prices.pitgrid",                          # doctest: +SKIP
        ...           universes="sp500_membership_intervals.csv", unknown_symbols="drop")
        PosixPath('prices.pitgrid')
    """
    if unknown_symbols not in ("error", "drop"):
        raise ValueError(f"unknown_symbols must be 'error' or 'drop', got {unknown_symbols!r}")
    if not 0 < suspicious_move < 1:
        raise ValueError(f"suspicious_move must be in (0, 1), got {suspicious_move!r}")
    if symbol_block is not None and symbol_block < 1:
        raise IngestError(f"symbol_block must be >= 1 (symbols per chunk), got {symbol_block}")
    target = Path(store)
    if append and overwrite:
        raise ValueError("append and overwrite exclude each other")
    base, base_manifest = _grow_base(target) if append else (None, {})
    if not append:
        _store.check_target(target, overwrite)
    finished = (not append) if finished is None else finished
    paths = [Path(sources)] if isinstance(sources, (str, os.PathLike)) else [Path(p) for p in sources]
    if not paths:
        raise IngestError("ingest: no source files given")
    started = _time.perf_counter()
    with _progress_bar(progress) as bar:
        task = bar.add_task("read", total=len(paths))
        frames, srcs, dropped_fields = [], [], set()
        for i, path in enumerate(paths):
            frame, src, dropped = _read_bars(path, i)
            frames.append(frame)
            srcs.append(src)
            dropped_fields |= dropped
            bar.advance(task)
        bars = pl.concat(frames, how="diagonal_relaxed")
        del frames
        if bars.is_empty():
            raise IngestError(f"no bars in {', '.join(map(str, paths))}")
        symbols = bars["symbol"].drop_nulls().unique().sort().to_list()
        bars = bars.with_columns(code=(pl.col("symbol").rank("dense") - 1).cast(pl.Int64).fill_null(-1))
        if "time_wall" in bars.columns:
            bars = _wall_clock_if_daily(bars)

        task = bar.add_task("validate", total=1)
        grid = check_bars(bars, srcs, symbols, grid=None if base is None else _grow.store_grid(base_manifest))
        known = symbols if base is None else sorted(set(symbols) | {str(x) for x in base.symbols})
        if base is not None:
            _grow.check_after(bars, srcs, base.time[-1])
        tables, dropped_rows, actions_from, snapped = _reference_tables(
            bars, srcs, known, actions, universes, events, regimes, unknown_symbols
        )
        declared = {} if delistings is None else _grow.read_delistings(Path(delistings), known)
        bar.advance(task)

        bars = bars.drop("symbol", "time_raw")  # validated: codes and times are all that is left to use
        calendar, arrays = _pivot(bars, symbols, tables["actions"])
        moves = _suspicious(bars, calendar, symbols, arrays, paths, suspicious_move,
                            None if base is None else _closes_before(base, symbols))
        n_rows = len(bars)
        del bars
        recorded: dict[str, str] = {}
        first_new = 0
        if base is not None:
            first_new = len(base.time)
            had = _grow.delistings_from(base_manifest)
            recorded = dict(had) if had is not None else _grow.inferred_delistings(
                base.time, [str(x) for x in base.symbols], np.asarray(base["valid"].values))
            calendar, symbols, arrays, tables = _grow.merge(
                base, calendar, symbols, arrays, tables, ", ".join(map(str, paths)))
            n_rows += int(base_manifest.get("rows", 0))
        if finished:
            recorded.update(_grow.inferred_delistings(calendar, symbols, arrays["valid"], first_new))
        recorded.update(declared)
        block = symbol_block or _store.default_symbol_block(len(calendar), len(symbols))
        n_blocks = -(-len(symbols) // block)
        task = bar.add_task("write", total=len(arrays) * n_blocks)
        _store.write_store(target, calendar, symbols, arrays, tables, {
            "sources": [*base_manifest.get("sources", []), *(str(p) for p in paths)],
            "appends": base_manifest.get("appends", 0) + (1 if append else 0),
            "rows": n_rows,
            "bar_grid": {"step_ns": grid.step_ns, "phase_ns": grid.phase_ns,
                         "intraday": grid.intraday, "text": grid.describe()},
            "actions_from": actions_from,
            "dropped": {"lookahead_fields": sorted(dropped_fields), "unknown_symbol_rows": dropped_rows},
            "snapped_split_ratios": snapped,
            "suspicious_moves": _listed(base_manifest.get("suspicious_moves"), moves, suspicious_move),
            "seconds": round(_time.perf_counter() - started, 3),
        }, symbol_block=block, delistings=recorded, overwrite=overwrite or append,
            attrs={"bar_grid": grid.describe()}, on_block=lambda: bar.advance(task))
    return target


MAX_LISTED_MOVES = 500


def _suspicious(bars: pl.DataFrame, calendar: np.ndarray, symbols: Sequence[str],
                arrays: dict[str, np.ndarray], paths: Sequence[Path], threshold: float,
                before: np.ndarray | None) -> list[dict]:
    """The new bars' suspicious moves, each with the file and line it was read from, the
    day's recorded actions, the raw and the action-adjusted move, and what they suggest."""
    t, s, prev, move = suspicious_moves(arrays["close"], arrays["valid"], arrays["split_ratio"],
                                        arrays["dividend"], threshold, before=before)
    if len(t) == 0:
        return []
    close = arrays["close"][t, s]
    split = np.nan_to_num(arrays["split_ratio"][t, s], nan=1.0)
    paid = np.nan_to_num(arrays["dividend"][t, s], nan=0.0)
    raw = close / prev - 1.0
    recorded = (split != 1.0) | (paid != 0.0)
    cause = np.where(~recorded, "no action recorded",
                     np.where(beyond(raw, threshold), "recorded action does not explain it",
                              "recorded action not in the prices"))
    keys = pl.DataFrame({"code": s.astype(np.int64), "time": calendar[t].view(np.int64),
                         "previous_close": prev, "close": close, "split_ratio": split,
                         "dividend": paid, "raw_move": raw, "move": move, "cause": cause})
    rows = keys.join(bars.select("code", pl.col("time").cast(pl.Int64), "_src", "_line"),
                     on=["code", "time"], how="left")
    return [{"file": str(paths[r["_src"]]), "line": r["_line"], "symbol": symbols[r["code"]],
             "date": _day_or_time(r["time"]), "previous_close": r["previous_close"],
             "close": r["close"], "split_ratio": r["split_ratio"], "dividend": r["dividend"],
             "raw_move": round(r["raw_move"], 4), "move": round(r["move"], 4),
             "cause": r["cause"]} for r in rows.iter_rows(named=True)]


def _closes_before(base: MarketData, symbols: Sequence[str]) -> np.ndarray:
    """Each of ``symbols``' last close in the store an append grows (NaN: not in it)."""
    last = dict(zip((str(x) for x in base.symbols),
                    last_closes(np.asarray(base["close"].values), np.asarray(base["valid"].values))))
    return np.array([last.get(sym, np.nan) for sym in symbols], dtype=np.float64)


def _day_or_time(ns: int) -> str:
    stamp = pd.Timestamp(ns, unit="ns")
    return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()


def _listed(before: dict | None, moves: list[dict], threshold: float) -> dict:
    """The manifest's entry: every move counted, the largest listed, in symbol and date order."""
    every = [*(before or {}).get("moves", []), *moves]
    count = (before or {}).get("count", 0) + len(moves)
    if len(every) > MAX_LISTED_MOVES:
        every = sorted(every, key=lambda m: -abs(np.log1p(m["move"])))[:MAX_LISTED_MOVES]
    return {"threshold": threshold, "count": count,
            "moves": sorted(every, key=lambda m: (m["symbol"], m["date"]))}


def _grow_base(target: Path) -> tuple[MarketData, dict]:
    """The store an append grows, in memory, and its manifest."""
    if not _store.is_store(target):
        raise IngestError(f"{target}: --append needs an existing store (none here)")
    return open_market(target).load(), _store.read_manifest(target)


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Progress]:
    columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not enabled, transient=True) as bar:
        yield bar


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _first_line(exc: BaseException) -> str:
    """A library's message on one line (polars appends hints on further lines)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _scan(path: Path, infer: bool = False, **kwargs: object) -> pl.LazyFrame:
    """Parquet as typed; CSV as text unless ``infer`` (parsing is ours, so errors name the line)."""
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    # glob=False: a file name is a name, `[` and `*` included
    if _is_parquet(path):
        return pl.scan_parquet(path, glob=False)
    return pl.scan_csv(path, infer_schema=infer, glob=False, **kwargs)


# ---------------------------------------------------------------------- checking a file whole

_COMPRESSED_CHUNK = 1 << 18
_PLAIN_CHUNK = 1 << 22
# compressions polars does not read (it would parse the bytes as text)
_FOREIGN_MAGIC = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd",
                  b"PK\x03\x04": "zip", b"PAR1": "Parquet (name it .parquet)"}
_ZLIB_MAGIC = (b"\x1f\x8b", b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")
_DUPLICATED = re.compile(r"(.+)_duplicated_\d+$")


def _csv_bytes(path: Path) -> Iterator[bytes]:
    """The decompressed bytes of a CSV file: plain, gzip (one member or several) or zlib.

    Raises ``EOFError`` when the compressed data stop early, ``zlib.error`` when corrupt.
    """
    with open(path, "rb") as fh:
        head = fh.read(6)
        fh.seek(0)
        for magic, kind in _FOREIGN_MAGIC.items():
            if head.startswith(magic):
                raise IngestError(f"{path}, line 1: {kind} file; ingest reads CSV (plain, .gz) and Parquet")
        if head[:2] not in _ZLIB_MAGIC:
            while chunk := fh.read(_PLAIN_CHUNK):
                yield chunk
            return
        unzip = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        while chunk := fh.read(_COMPRESSED_CHUNK):
            while chunk:
                if unzip.eof:  # the next member of a multi-member gzip file
                    unzip = zlib.decompressobj(wbits=47)
                yield unzip.decompress(chunk)
                chunk = unzip.unused_data if unzip.eof else b""
        if not unzip.eof:
            raise EOFError("the compressed data end early")


class _RowWidths:
    """Counts the fields of each CSV record chunk by chunk (quotes respected) and keeps
    the first record whose width differs from the header's."""

    def __init__(self, n_fields: int) -> None:
        self.n_fields = n_fields
        self.lines = 0  # newlines seen so far
        self.commas = 0  # unquoted commas of the record not yet ended
        self.quoted = 0  # 1 inside a quoted field at the end of the last chunk
        self.pending = False  # the record not yet ended has bytes other than \r
        self.bad: tuple[int, int] | None = None  # (line, fields)

    def feed(self, chunk: bytes) -> None:
        b = np.frombuffer(chunk, np.uint8)
        newlines, commas = np.flatnonzero(b == 10), np.flatnonzero(b == 44)
        ends = newlines
        if self.quoted or b'"' in chunk:
            quotes = np.flatnonzero(b == 34)
            # a comma or newline is data when an odd number of quotes comes before it
            ends = newlines[(np.searchsorted(quotes, newlines) + self.quoted) % 2 == 0]
            commas = commas[(np.searchsorted(quotes, commas) + self.quoted) % 2 == 0]
            self.quoted = (self.quoted + len(quotes)) % 2
        if len(ends):
            per_record = np.diff(np.searchsorted(commas, ends), prepend=0)
            per_record[0] += self.commas
            length = np.diff(ends, prepend=-1) - 1
            content = (length > 1) | ((length == 1) & (b[np.maximum(ends - 1, 0)] != 13))
            content[0] |= self.pending
            fields = np.where(content, per_record + 1, 0)
            wrong = np.flatnonzero(fields != self.n_fields)
            if len(wrong) and self.bad is None:
                end = ends[wrong[0]]
                self.bad = (self.lines + int(np.searchsorted(newlines, end)) + 1, int(fields[wrong[0]]))
            self.commas = len(commas) - int(np.searchsorted(commas, ends[-1]))
            self.pending = bool((b[ends[-1] + 1:] != 13).any())
        else:
            self.commas += len(commas)
            self.pending = self.pending or bool((b != 13).any())
        self.lines += len(newlines)

    def finish(self) -> None:
        if self.pending and self.bad is None and self.commas + 1 != self.n_fields:
            self.bad = (self.lines + 1, self.commas + 1)


def _check_csv(path: Path, src: Source, names: Sequence[str] | None, symbol: str | None) -> None:
    """Refuse a CSV file that does not decompress to its end, is not UTF-8 or (given the
    header's ``names``) has a record wider or narrower than its header; each error names
    the line."""
    widths = _RowWidths(len(names or ()))
    utf8 = codecs.getincrementaldecoder("utf-8")()
    try:
        for chunk in _csv_bytes(path):
            try:
                utf8.decode(chunk)
            except UnicodeDecodeError as exc:
                at = max(0, exc.start - len(utf8.getstate()[0]))
                line = widths.lines + chunk.count(b"\n", 0, at) + 1
                raise src.error(line, None, "not UTF-8 text", f"byte {exc.object[exc.start]:#04x}") from None
            if names is not None:
                widths.feed(chunk)
                if widths.bad is not None:
                    break
            else:
                widths.lines += chunk.count(b"\n")
        widths.finish()
    except EOFError:
        raise src.error(widths.lines + 1, None, "truncated compressed file",
                        "the data end inside this line: the file was cut short") from None
    except zlib.error as exc:
        raise src.error(widths.lines + 1, None, "corrupt compressed data", str(exc)) from None
    if names is not None and widths.bad is not None:
        line, fields = widths.bad
        rule_detail = "an empty line" if fields == 0 else f"{fields} fields"
        raise src.error(line, _field_at(path, line, names, symbol), "ragged row",
                        f"{rule_detail} where the header has {len(names)}")


def _field_at(path: Path, line: int, names: Sequence[str], column: str | None) -> str | None:
    """The value of ``column`` on physical ``line`` of a CSV file (for error messages)."""
    if column is None:
        return None
    seen, text = 0, None
    for chunk in _csv_bytes(path):
        if text is not None:  # the line goes on in this chunk
            text += chunk.split(b"\n", 1)[0]
        else:
            n = chunk.count(b"\n")
            if seen + n < line - 1:
                seen += n
                continue
            start = 0
            for _ in range(line - 1 - seen):
                start = chunk.index(b"\n", start) + 1
            text = chunk[start:].split(b"\n", 1)[0]
            chunk = chunk[start:]
        if b"\n" in chunk:
            break
    if text is None:
        return None
    row = next(csv.reader([text.decode("utf-8", "replace")]), [])
    i = list(names).index(column)
    return row[i].strip() if i < len(row) and row[i].strip() else None


def _open_file(path: Path, symbol_names: Sequence[str] = ()) -> tuple[Source, list[str]]:
    """A file's Source and column names, once the file is known to read whole (CSV) and
    to have no column twice."""
    parquet = _is_parquet(path)
    src = Source(str(path), "row" if parquet else "line", typed=parquet)
    try:
        names = _scan(path).collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as exc:
        if not parquet:  # say where the file breaks, when it is the bytes that are wrong
            _check_csv(path, src, None, None)
        raise IngestError(f"{path}: cannot read: {_first_line(exc)}") from None
    twice = [n for n in names if (m := _DUPLICATED.fullmatch(n)) and m.group(1) in names]
    if twice:
        first = _DUPLICATED.fullmatch(twice[0]).group(1)  # type: ignore[union-attr]
        raise src.header_error("duplicate column", f"{first!r} appears more than once")
    if not parquet:
        symbol = next((n for n in names if n.lower() in symbol_names), None)
        _check_csv(path, src, names, symbol)
    return src, names


# ---------------------------------------------------------------------- reading bars


def _read_bars(path: Path, index: int) -> tuple[pl.DataFrame, Source, set[str]]:
    """One bar file as canonical columns plus ``_src``, ``_line``, ``time_raw``, ``date_only``
    (and ``time_wall``, the local time, when the file's times carry a time zone)."""
    src, names = _open_file(path, _SYMBOL_NAMES)
    header = pl.DataFrame(schema=names)
    rename = {pick_column(header, _TIME_NAMES, src): "time_raw", pick_column(header, _SYMBOL_NAMES, src): "symbol"}
    for canon, aliases in (("split_ratio", _SPLIT_NAMES), ("dividend", _DIVIDEND_NAMES)):
        col = pick_column(header, aliases, src, required=False)
        if col is not None:
            rename[col] = canon
    for field in PRICE_FIELDS:
        rename[pick_column(header, (field,), src)] = field
    dropped = {c.lower() for c in names if c.lower() in LOOKAHEAD_FIELDS}
    for col in names:
        low = col.lower()
        if col in rename or low in LOOKAHEAD_FIELDS:
            continue
        if low.startswith("_") or "/" in low or low in _RESERVED:
            raise IngestError(f"{path}: column {col!r} cannot be a field name (reserved or not a plain name)")
        rename[col] = low
    targets: dict[str, str] = {}
    for col, canon in rename.items():
        if canon in targets:  # e.g. `Eps` and `eps`, or `ticker` beside `symbol`
            raise src.header_error("ambiguous columns", f"{targets[canon]!r} and {col!r} both give {canon!r}")
        targets[canon] = col
    numeric = [c for c, canon in rename.items() if canon not in ("time_raw", "symbol")]
    frame = _collect(path, src, numeric)
    frame = frame.select(list(rename)).rename(rename).with_row_index(
        "_line", offset=2 if src.row_word == "line" else 1
    )
    frame = frame.with_columns(
        [to_floats(frame, canon, src, col) for col, canon in rename.items() if col in numeric]
    )
    raw_time = frame["time_raw"]
    parsed, date_only = parse_times(raw_time)
    symbol = pl.col("symbol").cast(pl.String).str.strip_chars()
    zoned = isinstance(raw_time.dtype, pl.Datetime) and raw_time.dtype.time_zone is not None
    wall = [raw_time.dt.replace_time_zone(None).cast(pl.Datetime("ns"), strict=False).alias("time_wall")] \
        if zoned else []
    return frame.with_columns(
        pl.col("_line").cast(pl.Int64),
        pl.lit(index, pl.UInt32).alias("_src"),
        *wall,
        # the text is only needed to report a time that did not parse
        time_raw=pl.when(parsed.is_null()).then(pl.col("time_raw").cast(pl.String)),
        time=parsed,
        date_only=date_only,
        symbol=pl.when(symbol.str.len_bytes() > 0).then(symbol),
    ), src, dropped


def _wall_clock_if_daily(bars: pl.DataFrame) -> pl.DataFrame:
    """Daily bars stamped in a time zone take their local times: New York midnight is
    04:00 or 05:00 UTC by season, one time of day only in New York. Intraday bars stay
    in UTC, where a daylight-saving change neither repeats nor skips an hour."""
    time_ns = bars["time"].cast(pl.Int64).fill_null(_compiled.NO_TIME).to_numpy()
    if not infer_grid(time_ns, bars["code"].to_numpy()).intraday:
        bars = bars.with_columns(time=pl.coalesce("time_wall", "time"))
    return bars.drop("time_wall")


def _collect(path: Path, src: Source, numeric: list[str]) -> pl.DataFrame:
    """Read the file: CSV numbers parse natively; on a parse error the file is re-read as
    text so that ``to_floats`` can name the first bad line."""
    try:
        if _is_parquet(path):
            return _scan(path).collect()
        try:
            return _scan(path, schema_overrides=dict.fromkeys(numeric, pl.Float64)).collect()
        except pl.exceptions.ComputeError:
            return _scan(path).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise IngestError(f"{src.name}: cannot read: {_first_line(exc)}") from None


def _read_table(path: Path, infer: bool = False) -> tuple[pl.DataFrame, Source]:
    src, _ = _open_file(path, ("symbol", "ticker"))
    try:
        return _scan(path, infer).collect(), src
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise IngestError(f"{path}: cannot read: {_first_line(exc)}") from None


def _reference_tables(
    bars: pl.DataFrame,
    srcs: Sequence[Source],
    symbols: Sequence[str],
    actions: PathLike | None,
    universes: PathLike | Mapping[str, PathLike] | None,
    events: PathLike | None,
    regimes: PathLike | None,
    unknown: str,
) -> tuple[dict[str, pl.DataFrame], dict[str, int], str, list[dict[str, object]]]:
    """All four tables (empty when not given), rows dropped per table, where actions came
    from, and the snapped split ratios (file, line, symbol, ex_date, raw, snapped, fraction)."""
    known = set(symbols)
    dropped: dict[str, int] = {}
    if actions is not None:
        table, src = _read_table(Path(actions))
        action_table, dropped["actions"], snapped = normalize_actions(table, src, known, unknown)
        snaps = [_snap_records(snapped, src)]
        actions_from = str(actions)
    else:
        (action_table, snaps), actions_from = _in_file_actions(bars, srcs, known), "price files"
    parts = []
    if universes is not None:
        files = universes if isinstance(universes, Mapping) else {_universe_id(Path(universes)): universes}
        for uid, path in files.items():
            table, src = _read_table(Path(path))
            part, n = normalize_universes(table, src, known, uid, unknown)
            parts.append(part)
            dropped[f"universes:{uid}"] = n
    tables = {
        "actions": action_table,
        "universes": pl.concat(parts) if parts else empty_table("universes"),
        "events": empty_table("events"),
        "regimes": empty_table("regimes"),
    }
    if events is not None:
        table, src = _read_table(Path(events))
        tables["events"], dropped["events"] = normalize_events(table, src, known, unknown)
    if regimes is not None:
        # inferred types, so integer labels stay integers (`regime == 1` works)
        table, src = _read_table(Path(regimes), infer=True)
        tables["regimes"] = normalize_regimes(table, src)
    return tables, dropped, actions_from, [r for part in snaps for r in part]


def _snap_records(snapped: pl.DataFrame, src: Source) -> list[dict[str, object]]:
    """Snapped split ratios as manifest entries (JSON: the raw float round-trips exactly)."""
    return [
        {"file": src.name, src.row_word: r["_line"], "symbol": r["symbol"],
         "ex_date": str(r["ex_date"].date() if r["ex_date"].time() == datetime.min.time() else r["ex_date"]),
         "raw": r["raw"], "snapped": r["snapped"], "fraction": r["fraction"]}
        for r in snapped.sort("_line").iter_rows(named=True)
    ]


def _universe_id(path: Path) -> str:
    return path.name.split(".")[0].split("_")[0]


def _in_file_actions(
    bars: pl.DataFrame, srcs: Sequence[Source], known: set[str]
) -> tuple[pl.DataFrame, list[list[dict[str, object]]]]:
    """Actions from the price files' split/dividend columns, validated per file, and the
    snapped split ratios of each file."""
    cols = [c for c in ("split_ratio", "dividend") if c in bars.columns]
    if not cols:
        return empty_table("actions"), []
    # only rows that may carry an action (blank or odd values included, to be validated)
    no_action = {"split_ratio": 1.0, "dividend": 0.0}
    rows = bars.filter(pl.any_horizontal([(pl.col(c) != no_action[c]).fill_null(True) for c in cols]))
    parts, snaps = [], []
    for i, src in enumerate(srcs):
        table, _, snapped = normalize_actions(
            rows.filter(pl.col("_src") == i).select("_line", "symbol", pl.col("time").alias("ex_date"), *cols),
            src, known,
        )
        parts.append(table)
        snaps.append(_snap_records(snapped, src))
    return pl.concat(parts).sort("ex_date", "symbol"), snaps


def _pivot(
    bars: pl.DataFrame, symbols: Sequence[str], actions: pl.DataFrame
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scatter validated rows onto the ``(time, symbol)`` grid; absent bars are NaN and invalid."""
    time_ns = bars["time"].cast(pl.Int64).to_numpy()
    calendar_ns, t_idx = np.unique(time_ns, return_inverse=True)
    calendar = calendar_ns.view("datetime64[ns]")
    shape = (len(calendar), len(symbols))
    flat = t_idx.reshape(-1) * len(symbols) + bars["code"].to_numpy()
    skip = {"_src", "_line", "time", "date_only", "code", "split_ratio", "dividend"}
    arrays = {}
    for name in [c for c in bars.columns if c not in skip]:
        grid = np.full(shape[0] * shape[1], np.nan)
        grid[flat] = bars[name].to_numpy()
        arrays[name] = grid.reshape(shape)
    valid = np.zeros(shape[0] * shape[1], dtype=bool)
    valid[flat] = True
    arrays["valid"] = valid.reshape(shape)
    arrays["split_ratio"], arrays["dividend"] = action_arrays(actions, calendar, list(symbols))
    return calendar, arrays
