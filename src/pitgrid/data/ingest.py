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
"""
from __future__ import annotations

import os
import time as _time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import polars as pl
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pitgrid.data import store as _store
from pitgrid.data.market import action_arrays
from pitgrid.data.validate import (
    PRICE_FIELDS,
    IngestError,
    Source,
    check_bars,
    empty_table,
    normalize_actions,
    normalize_events,
    normalize_regimes,
    normalize_universes,
    parse_times,
    pick_column,
    to_floats,
)

PathLike = str | os.PathLike[str]

_TIME_NAMES = ("time", "timestamp", "date", "datetime")
_SYMBOL_NAMES = ("symbol", "ticker")
_SPLIT_NAMES = ("split_coefficient", "split_ratio")
_DIVIDEND_NAMES = ("dividend_amount", "dividend", "cash_dividend")
LOOKAHEAD_FIELDS = frozenset({"adjusted_close", "adj_close", "adjclose"})
_RESERVED = frozenset({"valid", "split_ratio", "dividend", "time", "symbol"})


def ingest(
    sources: PathLike | Sequence[PathLike],
    store: PathLike,
    *,
    actions: PathLike | None = None,
    universes: PathLike | Mapping[str, PathLike] | None = None,
    events: PathLike | None = None,
    regimes: PathLike | None = None,
    symbol_block: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    unknown_symbols: Literal["error", "drop"] = "error",
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

    Example:
        >>> import pitgrid as pg
        >>> pg.ingest("prices.csv.gz", "prices.pitgrid",                          # doctest: +SKIP
        ...           universes="sp500_membership_intervals.csv", unknown_symbols="drop")
        PosixPath('prices.pitgrid')
    """
    if unknown_symbols not in ("error", "drop"):
        raise ValueError(f"unknown_symbols must be 'error' or 'drop', got {unknown_symbols!r}")
    if symbol_block is not None and symbol_block < 1:
        raise ValueError(f"symbol_block must be >= 1, got {symbol_block}")
    target = Path(store)
    _store.check_target(target, overwrite)
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

        task = bar.add_task("validate", total=1)
        grid = check_bars(bars, srcs, symbols)
        tables, dropped_rows, actions_from = _reference_tables(
            bars, srcs, symbols, actions, universes, events, regimes, unknown_symbols
        )
        bar.advance(task)

        bars = bars.drop("symbol", "time_raw")  # validated: codes and times are all that is left to use
        calendar, arrays = _pivot(bars, symbols, tables["actions"])
        n_rows = len(bars)
        del bars
        block = symbol_block or _store.default_symbol_block(len(calendar), len(symbols))
        n_blocks = -(-len(symbols) // block)
        task = bar.add_task("write", total=len(arrays) * n_blocks)
        fingerprint = _store.data_fingerprint(calendar, symbols, list(arrays), arrays.__getitem__, tables)
        with _store.staged(target, overwrite) as tmp:
            group = _store.create_group(tmp, calendar, symbols, {"bar_grid": grid.describe()})
            for name in sorted(arrays):
                _store.write_array(group, name, arrays[name], block, lambda: bar.advance(task))
            _store.finish(tmp, tables, {
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "sources": [str(p) for p in paths],
                "rows": n_rows,
                "n_time": len(calendar),
                "n_symbols": len(symbols),
                "time_range": [str(pd.Timestamp(t)) for t in calendar[[0, -1]]] if len(calendar) else [],
                "bar_grid": {"step_ns": grid.step_ns, "phase_ns": grid.phase_ns,
                             "intraday": grid.intraday, "text": grid.describe()},
                "fields": sorted(arrays),
                "symbol_block": block,
                "actions_from": actions_from,
                "tables": {name: len(t) for name, t in tables.items()},
                "dropped": {"lookahead_fields": sorted(dropped_fields), "unknown_symbol_rows": dropped_rows},
                "fingerprint": fingerprint,
                "seconds": round(_time.perf_counter() - started, 3),
            })
    return target


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Progress]:
    columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not enabled, transient=True) as bar:
        yield bar


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _scan(path: Path, infer: bool = False, **kwargs: object) -> pl.LazyFrame:
    """Parquet as typed; CSV as text unless ``infer`` (parsing is ours, so errors name the line)."""
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    if _is_parquet(path):
        return pl.scan_parquet(path)
    return pl.scan_csv(path, infer_schema=infer, **kwargs)


def _read_bars(path: Path, index: int) -> tuple[pl.DataFrame, Source, set[str]]:
    """One bar file as canonical columns plus ``_src``, ``_line``, ``time_raw``, ``date_only``."""
    src = Source(str(path), "row" if _is_parquet(path) else "line")
    try:
        names = _scan(path).collect_schema().names()
    except pl.exceptions.PolarsError as exc:
        raise IngestError(f"{path}: cannot read: {exc}") from exc
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
    numeric = [c for c, canon in rename.items() if canon not in ("time_raw", "symbol")]
    frame = _collect(path, src, numeric)
    frame = frame.select(list(rename)).rename(rename).with_row_index(
        "_line", offset=2 if src.row_word == "line" else 1
    )
    frame = frame.with_columns(
        [to_floats(frame, canon, src, col) for col, canon in rename.items() if col in numeric]
    )
    parsed, date_only = parse_times(frame["time_raw"])
    symbol = pl.col("symbol").cast(pl.String).str.strip_chars()
    return frame.with_columns(
        pl.col("_line").cast(pl.Int64),
        pl.lit(index, pl.UInt32).alias("_src"),
        # the text is only needed to report a time that did not parse
        time_raw=pl.when(parsed.is_null()).then(pl.col("time_raw").cast(pl.String)),
        time=parsed,
        date_only=date_only,
        symbol=pl.when(symbol.str.len_bytes() > 0).then(symbol),
    ), src, dropped


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
    except pl.exceptions.PolarsError as exc:
        raise IngestError(f"{src.name}: cannot read: {exc}") from exc


def _read_table(path: Path, infer: bool = False) -> tuple[pl.DataFrame, Source]:
    src = Source(str(path), "row" if _is_parquet(path) else "line")
    try:
        return _scan(path, infer).collect(), src
    except pl.exceptions.PolarsError as exc:
        raise IngestError(f"{path}: cannot read: {exc}") from exc


def _reference_tables(
    bars: pl.DataFrame,
    srcs: Sequence[Source],
    symbols: Sequence[str],
    actions: PathLike | None,
    universes: PathLike | Mapping[str, PathLike] | None,
    events: PathLike | None,
    regimes: PathLike | None,
    unknown: str,
) -> tuple[dict[str, pl.DataFrame], dict[str, int], str]:
    """All four tables (empty when not given), rows dropped per table, where actions came from."""
    known = set(symbols)
    dropped: dict[str, int] = {}
    if actions is not None:
        table, src = _read_table(Path(actions))
        action_table, dropped["actions"] = normalize_actions(table, src, known, unknown)
        actions_from = str(actions)
    else:
        action_table, actions_from = _in_file_actions(bars, srcs, known), "price files"
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
    return tables, dropped, actions_from


def _universe_id(path: Path) -> str:
    return path.name.split(".")[0].split("_")[0]


def _in_file_actions(bars: pl.DataFrame, srcs: Sequence[Source], known: set[str]) -> pl.DataFrame:
    """Actions from the price files' split/dividend columns, validated per file."""
    cols = [c for c in ("split_ratio", "dividend") if c in bars.columns]
    if not cols:
        return empty_table("actions")
    # only rows that may carry an action (blank or odd values included, to be validated)
    no_action = {"split_ratio": 1.0, "dividend": 0.0}
    rows = bars.filter(pl.any_horizontal([(pl.col(c) != no_action[c]).fill_null(True) for c in cols]))
    parts = [
        normalize_actions(
            rows.filter(pl.col("_src") == i).select("_line", "symbol", pl.col("time").alias("ex_date"), *cols),
            src, known,
        )[0]
        for i, src in enumerate(srcs)
    ]
    return pl.concat(parts).sort("ex_date", "symbol")


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
