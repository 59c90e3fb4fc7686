"""The ``pitgrid`` command line.

Example:
    $ pitgrid ingest prices.csv.gz --store prices.pitgrid \\
          --membership sp500_membership_intervals.csv --drop-unknown-symbols
    $ pitgrid info prices.pitgrid
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="pitgrid: a point-in-time-safe, vectorized backtesting engine.",
    no_args_is_help=True,
    add_completion=False,
)
_out = Console()
_err = Console(stderr=True)


@app.command()
def ingest(
    sources: Annotated[list[Path], typer.Argument(help="Long-format bar files: CSV, CSV.gz or Parquet.")],
    store: Annotated[Path, typer.Option("--store", help="Store directory to create.")],
    actions: Annotated[
        Path | None, typer.Option(help="Corporate actions file (replaces split/dividend columns).")
    ] = None,
    membership: Annotated[
        Path | None, typer.Option(help="Universe membership: intervals or snapshots.")
    ] = None,
    universe_id: Annotated[
        str | None, typer.Option(help="Universe id for --membership (default: file name up to '_').")
    ] = None,
    events: Annotated[Path | None, typer.Option(help="Events: symbol, event_time, knowledge_time, field, value.")] = None,
    regimes: Annotated[Path | None, typer.Option(help="Regimes: time, regime.")] = None,
    symbol_block: Annotated[int | None, typer.Option(help="Symbols per chunk (default: ~8 MiB chunks).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
    drop_unknown_symbols: Annotated[
        bool, typer.Option(help="Drop reference rows naming symbols without prices instead of failing.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Validate bar files and write them as a (time, symbol) zarr store."""
    from pitgrid.data.ingest import ingest as run_ingest
    from pitgrid.data.store import read_manifest
    from pitgrid.data.validate import IngestError

    universes = None
    if membership is not None:
        universes = {universe_id: membership} if universe_id else membership
    started = time.perf_counter()
    try:
        path = run_ingest(
            sources, store, actions=actions, universes=universes, events=events, regimes=regimes,
            symbol_block=symbol_block, overwrite=overwrite, progress=progress,
            unknown_symbols="drop" if drop_unknown_symbols else "error",
        )
    except (IngestError, FileExistsError) as exc:
        _err.print(f"[bold red]ingest failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    _print_manifest(read_manifest(path), f"ingested into {path} in {time.perf_counter() - started:.1f} s")


@app.command()
def info(store: Annotated[Path, typer.Argument(help="A store written by `pitgrid ingest`.")]) -> None:
    """Summarise a store: shape, time range, bar grid, fields and reference tables."""
    from pitgrid.data.store import is_store, read_manifest

    if not is_store(store):
        _err.print(f"[bold red]{store} is not a pitgrid store[/]")
        raise typer.Exit(1)
    _print_manifest(read_manifest(store), str(store))


def _print_manifest(manifest: dict, title: str) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
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
        ("fingerprint", manifest["fingerprint"][:16]),
    ]
    for key, value in rows:
        table.add_row(key, value)
    _out.print(table)
