"""A store that grows: new bars after the last one, merged with what the store holds.

``pitgrid.ingest(NEW, store, append=True)`` (``pitgrid ingest NEW --store S --append``)
validates the new files exactly as an ingest does, then checks them against the store:
every new bar lies after the store's last bar and on its bar grid; reference rows
(actions, events, regimes, universe changes) are dated after it, since a row dated
earlier would change what was known at a bar already run. New symbols (listings)
join the symbol axis in sorted order, with no bars before their first. The merged
store is written beside the old one and swapped in by one atomic rename, so a kill
at any moment leaves the old store or the new one, readable either way.

Delistings: a symbol that misses the new bars is in a gap, not delisted. A store
records its delistings in the manifest: inferred when a finished history is ingested
(the data of a symbol end before the last bar), declared with ``delistings=`` (a file
``symbol,date``: the first date without the symbol), or inferred on an append marked
``finished=True`` for symbols whose data end within the appended bars.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pitgrid.data.market import MarketData, action_arrays, delist_bars
from pitgrid.data.validate import BarGrid, IngestError, Source, time_text


def store_grid(manifest: dict[str, Any]) -> BarGrid:
    g = manifest["bar_grid"]
    return BarGrid(int(g["step_ns"]), int(g["phase_ns"]), bool(g["intraday"]))


def check_after(bars: pl.DataFrame, srcs: Sequence[Source], last: np.datetime64) -> None:
    """Refuse the first new row (in file order) that is not after the store's last bar."""
    last_ns = int(np.datetime64(last, "ns").astype(np.int64))
    t = bars["time"].cast(pl.Int64)
    bad = (t <= last_ns).fill_null(False)
    if bad.any():
        i = int(bad.arg_true()[0])
        rec = bars.row(i, named=True)
        raise srcs[rec["_src"]].error(
            rec["_line"], rec["symbol"], "overlaps the store",
            f"time {time_text(t[i])} is not after the store's last bar {time_text(last_ns)}; "
            "appended bars must come after it")


def _after(table: pl.DataFrame, col: str, last: np.datetime64, name: str) -> None:
    when = pl.lit(np.datetime64(last, "ns")).cast(pl.Datetime("ns"))
    early = table.filter(pl.col(col) <= when)
    if early.height:
        r = early.row(0, named=True)
        who = f"symbol {r['symbol']}: " if "symbol" in r else ""
        raise IngestError(
            f"{name}: {who}{col} {r[col]} is not after the store's last bar "
            f"{np.datetime64(last, 's')}: an appended row cannot change what was known at a bar "
            "already in the store")


def merge_universes(old: pl.DataFrame, new: pl.DataFrame, last: np.datetime64,
                    had_data: set[str]) -> pl.DataFrame:
    """Old intervals plus the new: a repeated interval is the same; an open interval may get
    an end after ``last``; an interval may start after ``last``, or at any time for a symbol
    with no bar in the store (it traded nothing yet). Anything else changes the past."""
    last_ns = np.datetime64(last, "ns")
    key = ("universe_id", "symbol", "start")
    merged = {tuple(r[k] for k in key): r for r in old.iter_rows(named=True)}
    for r in new.iter_rows(named=True):
        k = tuple(r[c] for c in key)
        have = merged.get(k)
        if have is not None and have["end"] == r["end"]:
            continue
        start = np.datetime64(r["start"], "ns")
        if have is not None and have["end"] is None and r["end"] is not None \
                and np.datetime64(r["end"], "ns") > last_ns:
            merged[k] = r
        elif have is None and (start > last_ns or r["symbol"] not in had_data):
            merged[k] = r
        else:
            raise IngestError(
                f"universes: {r['universe_id']} {r['symbol']} from {r['start']} to {r['end']} "
                f"changes membership known at a bar already in the store (last bar "
                f"{np.datetime64(last, 's')})")
    table = pl.DataFrame(list(merged.values()), schema=old.schema, orient="row")
    return table.sort("universe_id", "symbol", "start")


def merge(base: MarketData, calendar: np.ndarray, symbols: Sequence[str],
          arrays: dict[str, np.ndarray], tables: dict[str, pl.DataFrame], sources: str
          ) -> tuple[np.ndarray, list[str], dict[str, np.ndarray], dict[str, pl.DataFrame]]:
    """The store's arrays and tables followed by the appended ones, on the merged symbols."""
    last = base.time[-1]
    old_symbols = [str(s) for s in base.symbols]
    all_symbols = sorted(set(old_symbols) | set(symbols))
    col = {s: i for i, s in enumerate(all_symbols)}
    old_cols = np.array([col[s] for s in old_symbols], dtype=np.int64)
    new_cols = np.array([col[s] for s in symbols], dtype=np.int64)
    T0, T1, S = len(base.time), len(calendar), len(all_symbols)
    time = np.concatenate([base.time, calendar]).astype("datetime64[ns]")
    extra = sorted(set(arrays) - set(base.fields))
    if extra:
        raise IngestError(f"{sources}: field {extra[0]!r} is not in the store (it has "
                          f"{sorted(base.fields)}): a field cannot start in the middle of a store")
    out: dict[str, np.ndarray] = {}
    for name in base.fields:
        if name in ("split_ratio", "dividend"):
            continue
        old = np.asarray(base[name].values)
        full = np.zeros((T0 + T1, S), dtype=bool) if name == "valid" else np.full((T0 + T1, S), np.nan)
        full[:T0, old_cols] = old
        if name in arrays:
            full[T0:, new_cols] = arrays[name]
        out[name] = full
    for name, col_name in (("actions", "ex_date"), ("events", "knowledge_time"), ("regimes", "time")):
        _after(tables[name], col_name, last, name)
    had_data = {s for s, any_valid in zip(old_symbols, np.asarray(base["valid"].values).any(axis=0))
                if any_valid}
    merged = {
        "actions": pl.concat([base.actions, tables["actions"]]).sort("ex_date", "symbol",
                                                                     maintain_order=True),
        "events": pl.concat([base.events, tables["events"]]).sort(
            "knowledge_time", "symbol", "event_time", "field", maintain_order=True),
        "regimes": pl.concat([base.regimes, tables["regimes"]], how="vertical_relaxed").sort("time"),
        "universes": merge_universes(base.universes, tables["universes"], last, had_data),
    }
    out["split_ratio"], out["dividend"] = action_arrays(merged["actions"], time, all_symbols)
    return time, all_symbols, out, merged


def delistings_from(manifest: dict[str, Any]) -> dict[str, str] | None:
    """The store's recorded delistings (symbol -> time of the first bar without it), or None
    for a store written before they were recorded (they are then inferred from the data)."""
    return manifest.get("delistings")


def inferred_delistings(time: np.ndarray, symbols: Sequence[str], valid: np.ndarray,
                        from_bar: int = 0) -> dict[str, str]:
    """Delistings of a finished history: symbols whose data end before the last bar, at the
    first bar after their last (only those at or after ``from_bar``)."""
    bars = delist_bars(valid)
    return {str(s): str(np.datetime64(time[b], "ns")) for s, b in zip(symbols, bars) if b >= from_bar}


def read_delistings(path: Path, symbols: Sequence[str]) -> dict[str, str]:
    """A declared delistings file ``symbol,date`` (date: the first date without the symbol)."""
    from pitgrid.data.validate import parse_times

    try:
        table = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise IngestError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None
    cols = {c.lower(): c for c in table.columns}
    if "symbol" not in cols or "date" not in cols:
        raise IngestError(f"{path}, line 1 (header): delistings need the columns symbol,date; "
                          f"got {table.columns}")
    times, _ = parse_times(table[cols["date"]])
    known = set(symbols)
    out = {}
    for i, (symbol, when) in enumerate(zip(table[cols["symbol"]].to_list(), times.to_list())):
        if symbol not in known:
            raise IngestError(f"{path}: line {i + 2}: symbol {symbol}: unknown symbol "
                              "(no prices for it)")
        if when is None:
            raise IngestError(f"{path}: line {i + 2}: symbol {symbol}: unparseable date")
        out[symbol] = str(np.datetime64(when, "ns"))
    return out
