"""Data commands: ``pitgrid ingest`` writes a store from bar files, ``pitgrid info`` describes one.

Example:
    $ pitgrid ingest prices.csv.gz --store prices.pitgrid \\
          --membership sp500_membership_intervals.csv --drop-unknown-symbols
    $ pitgrid info prices.pitgrid
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from pitgrid.cli.app import app
from pitgrid.cli.errors import fail_usage, usage_errors
from pitgrid.cli.output import Column, fitted_table, out, print_pairs


# suspicious moves listed after an ingest and by default in `info`
_SHOWN_MOVES = 10


@app.command(short_help="Validate bar files and write a store.")
def ingest(
    sources: Annotated[list[Path], typer.Argument(
        help="Long-format bar files: CSV, CSV.gz or Parquet.")],
    store: Annotated[Path, typer.Option("--store", help="Store directory to create.")],
    actions: Annotated[
        Path | None, typer.Option(help="Corporate actions file (replaces split/dividend columns).")
    ] = None,
    membership: Annotated[
        Path | None, typer.Option(help="Universe membership: intervals or snapshots.")
    ] = None,
    universe_id: Annotated[
        str | None,
        typer.Option(help="Universe id for --membership (default: file name up to '_').")
    ] = None,
    events: Annotated[Path | None, typer.Option(
        help="Events: symbol, event_time, knowledge_time, field, value.")] = None,
    regimes: Annotated[Path | None, typer.Option(help="Regimes: time, regime.")] = None,
    symbol_block: Annotated[int | None, typer.Option(
        help="Symbols per chunk (default: ~8 MiB chunks).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
    append: Annotated[bool, typer.Option(
        help="Add the files' bars after the existing store's last bar (atomic).")] = False,
    delistings: Annotated[Path | None, typer.Option(
        help="Declared delistings: symbol,date (the first date without the symbol).")] = None,
    finished: Annotated[bool | None, typer.Option(
        "--finished/--not-finished",
        help="The data end the history: symbols whose bars stop early are delisted "
             "(default: yes for an ingest, no for an append).")] = None,
    drop_unknown_symbols: Annotated[
        bool,
        typer.Option(help="Drop reference rows naming symbols without prices instead of failing.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Validate bar files and write them as a (time, symbol) zarr store; unusable data exit 2."""
    from pitgrid.data.ingest import ingest as run_ingest
    from pitgrid.data.store import read_manifest
    from pitgrid.data.validate import IngestError

    universes = None
    if membership is not None:
        universes = {universe_id: membership} if universe_id else membership
    started = time.perf_counter()
    with usage_errors(IngestError, FileExistsError, FileNotFoundError, ValueError):
        path = run_ingest(
            sources, store, actions=actions, universes=universes, events=events, regimes=regimes,
            delistings=delistings, symbol_block=symbol_block, overwrite=overwrite, append=append,
            finished=finished, progress=progress,
            unknown_symbols="drop" if drop_unknown_symbols else "error",
        )
    verb = "appended to" if append else "ingested into"
    _print_manifest(read_manifest(path), f"{verb} {path} in {time.perf_counter() - started:.1f} s")


@app.command(short_help="Summarise a store.")
def info(
    store: Annotated[Path, typer.Argument(help="A store written by `pitgrid ingest`.")],
    moves: Annotated[int, typer.Option(
        help="How many suspicious moves to list (the largest first).", min=0)] = _SHOWN_MOVES,
) -> None:
    """Summarise a store: shape, time range, bar grid, fields and reference tables."""
    from pitgrid.data.store import is_store, read_manifest

    if not is_store(store):
        fail_usage(f"{store} is not a pitgrid store")
    _print_manifest(read_manifest(store), str(store), moves)


def _print_manifest(manifest: dict, title: str, moves: int = _SHOWN_MOVES) -> None:
    dropped = manifest["dropped"]
    rows = [
        ("rows", f"{manifest['rows']:,}"),
        ("bars x symbols", f"{manifest['n_time']:,} x {manifest['n_symbols']:,}"),
        ("time range", " .. ".join(manifest["time_range"])),
        ("bar grid", manifest["bar_grid"]["text"]),
        ("fields", ", ".join(manifest["fields"])),
        ("chunks", f"(all time, {manifest['symbol_block']} symbols)"),
        ("actions from", manifest["actions_from"]),
        ("tables", ", ".join(f"{k}={v:,}" for k, v in manifest["tables"].items())),
        ("not stored (look-ahead)", ", ".join(dropped["lookahead_fields"]) or "-"),
        ("dropped rows (unknown symbols)",
         ", ".join(f"{k}={v:,}" for k, v in dropped["unknown_symbol_rows"].items()) or "-"),
        ("snapped split ratios", _snapped_text(manifest.get("snapped_split_ratios", [])) or "-"),
        ("fingerprint", manifest["fingerprint"][:16]),
    ]
    print_pairs(rows, title)
    _print_moves(manifest.get("suspicious_moves") or {}, moves)


def _print_moves(entry: dict[str, Any], shown: int) -> None:
    """The largest suspicious moves (warnings, not errors): data worth a look before a run.
    Closes as in the file; "move" has the day's recorded split and dividend put back (the
    one checked); beside a recorded action, the raw closes' move, so that a recorded split
    the prices do not show reads as one."""
    listed = sorted(entry.get("moves", []), key=lambda m: -abs(math.log1p(m["move"])))[:shown]
    if not entry.get("count") or not listed:
        return
    rows = [{"symbol": m["symbol"], "date": m["date"], "prev": f"{m['previous_close']:,.4g}",
             "close": f"{m['close']:,.4g}", "actions": _actions_text(m),
             "move": f"{m['move']:+.1%}", "cause": m.get("cause", "-"),
             "where": f"{Path(m['file']).name} line {m['line']}"} for m in listed]
    columns = [Column("symbol", "symbol", wrap=True), Column("date", "date"),
               Column("prev", "prev", numeric=True), Column("close", "close", numeric=True),
               Column("move", "move", numeric=True), Column("actions", "recorded", wrap=True),
               Column("cause", "cause", wrap=True),
               Column("where", "where", wrap=True)]
    out.print(fitted_table(columns, rows, optional=["where", "cause"], title=(
        f"warning: {entry['count']:,} close-to-close moves beyond {entry['threshold']:.0%} that no "
        f"split or dividend explains (largest {len(listed)}; move: with the day's recorded "
        "actions put back; `pitgrid info STORE --moves N` lists more)")))


def _actions_text(move: dict[str, Any]) -> str:
    """The day's recorded split and dividend, which the move put back, and the raw closes'
    move ("-": none recorded, the raw move is the move)."""
    parts = []
    if move.get("split_ratio", 1.0) != 1.0:
        parts.append(f"split {move['split_ratio']:.4g}")
    if move.get("dividend", 0.0):
        parts.append(f"div {move['dividend']:,.4g}")
    if parts and "raw_move" in move:
        parts.append(f"raw {move['raw_move']:+.1%}")
    return "\n".join(parts) or "-"


def _snapped_text(snapped: list[dict[str, Any]]) -> str:
    """One line per snapped split ratio: symbol, ex-date, raw -> snapped (fraction), where."""
    return "\n".join(
        f"{s['symbol']} {s['ex_date']}: {s['raw']!r} -> {s['snapped']!r} ({s['fraction']}) "
        f"[{s['file']} {'line' if 'line' in s else 'row'} {s.get('line', s.get('row'))}]"
        for s in snapped
    )
