"""The ``pitgrid`` command line.

Exit codes: 0 ok, 1 a run failed, 2 bad usage, a bad config, unusable data or a
results database that cannot be reached (the message is printed on one line, without
a traceback). Names that come from data, files or the database (symbols, paths,
strategies, universes) are printed as they are, never read as console markup.

Example:
    $ pitgrid ingest prices.csv.gz --store prices.pitgrid \\
          --membership sp500_membership_intervals.csv --drop-unknown-symbols
    $ pitgrid info prices.pitgrid
    $ pitgrid run examples/ma_cross.toml
    $ pitgrid grid examples/momentum_grid.toml
    $ pitgrid runs --limit 5
    $ pitgrid show 1a2b3c4d
    $ pitgrid compare 1a2b3c4d 5e6f7a8b
    $ pitgrid report 1a2b3c4d -o run.html
    $ pitgrid demo
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pitgrid.results.sql import mask_url

app = typer.Typer(
    help="pitgrid: a point-in-time-safe, vectorized backtesting engine.",
    no_args_is_help=True,
    add_completion=False,
)
_out = Console()
_err = Console(stderr=True)

if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.results.db import ResultsDB, StoredRun
    from pitgrid.runconfig import RunConfig, RunOutcome

# the metrics a summary shows, in this order; `show` and `compare` show them all
_KEY_METRICS = ("total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar",
                "max_drawdown", "trades", "win_rate", "turnover", "exposure", "fees")
_RELATIVE_KEYS = ("benchmark_return", "alpha", "beta", "information_ratio", "tracking_error",
                  "up_capture", "down_capture", "correlation")
_PERCENT = {"total_return", "annual_return", "volatility", "max_drawdown", "win_rate", "exposure",
            "benchmark_return", "alpha", "tracking_error",
            "var_95", "cvar_95", "var_99", "cvar_99"}
_GRID_METRICS = ("sharpe", "annual_return", "max_drawdown", "trades")
_WHOLE = {"trades", "fills", "unfilled", "max_drawdown_duration"}
_MONEY = {"avg_win", "avg_loss", "fees", "slippage"}
_DB_OPTION = typer.Option(
    "--db", help="Results database: a path, or a sqlite:/// or postgresql:// URL.")


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
    append: Annotated[bool, typer.Option(
        help="Add the files' bars after the existing store's last bar (atomic).")] = False,
    delistings: Annotated[Path | None, typer.Option(
        help="Declared delistings: symbol,date (the first date without the symbol).")] = None,
    finished: Annotated[bool | None, typer.Option(
        "--finished/--not-finished",
        help="The data end the history: symbols whose bars stop early are delisted "
             "(default: yes for an ingest, no for an append).")] = None,
    drop_unknown_symbols: Annotated[
        bool, typer.Option(help="Drop reference rows naming symbols without prices instead of failing.")
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
    with _usage_errors(IngestError, FileExistsError, FileNotFoundError, ValueError):
        path = run_ingest(
            sources, store, actions=actions, universes=universes, events=events, regimes=regimes,
            delistings=delistings, symbol_block=symbol_block, overwrite=overwrite, append=append,
            finished=finished, progress=progress,
            unknown_symbols="drop" if drop_unknown_symbols else "error",
        )
    verb = "appended to" if append else "ingested into"
    _print_manifest(read_manifest(path), f"{verb} {path} in {time.perf_counter() - started:.1f} s")


@app.command()
def info(store: Annotated[Path, typer.Argument(help="A store written by `pitgrid ingest`.")]) -> None:
    """Summarise a store: shape, time range, bar grid, fields and reference tables."""
    from pitgrid.data.store import is_store, read_manifest

    if not is_store(store):
        _fail_usage(f"{store} is not a pitgrid store")
    _print_manifest(read_manifest(store), str(store))


def _print_manifest(manifest: dict, title: str) -> None:
    table = Table(title=escape(title), show_header=False, title_justify="left")
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
    for key, value in rows:
        table.add_row(key, Text(value))
    _out.print(table)


def _snapped_text(snapped: list[dict[str, Any]]) -> str:
    """One line per snapped split ratio: symbol, ex-date, raw -> snapped (fraction), where."""
    return "\n".join(
        f"{s['symbol']} {s['ex_date']}: {s['raw']!r} -> {s['snapped']!r} ({s['fraction']}) "
        f"[{s['file']} {'line' if 'line' in s else 'row'} {s.get('line', s.get('row'))}]"
        for s in snapped
    )


# ---------------------------------------------------------------------- running configs
@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="A TOML run config (see examples/ma_cross.toml).",
                                           exists=True, dir_okay=False)],
    db: Annotated[str | None, typer.Option(help="Results database (overrides \\[outputs] db).")] = None,
    reports: Annotated[Path | None, typer.Option(
        help="Report folder (overrides \\[outputs] reports).")] = None,
) -> None:
    r"""Backtest a config, save the run to the database and write its HTML report.

    Sections: \[data] \[universe] \[strategy] \[costs] \[execution] \[risk] \[model] \[outputs].
    Relative paths are read from the config's folder; see examples/ma_cross.toml.
    """
    from pitgrid.runconfig import run_backtest

    cfg = _load(config, db, reports)
    if cfg.is_grid:
        _fail_usage(f"{config} has grid axes ({', '.join(cfg.axes())} are lists): "
                    f"run it with `pitgrid grid {config}`")
    market = _open_market(cfg)
    with _run_failures("run"):
        outcome = run_backtest(cfg, market)
    _print_outcome(outcome)


@app.command()
def grid(
    config: Annotated[Path, typer.Argument(help="A TOML run config with list values in "
                                           "\\[strategy.params] (see examples/momentum_grid.toml).",
                                           exists=True, dir_okay=False)],
    db: Annotated[str | None, typer.Option(help="Results database (overrides \\[outputs] db).")] = None,
    reports: Annotated[Path | None, typer.Option(
        help="Report folder (overrides \\[outputs] reports).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run a parameter grid, save it as one run, and write the grid report and the best set's report."""
    from pitgrid.runconfig import run_grid

    cfg = _load(config, db, reports)
    if not cfg.is_grid:
        _fail_usage(f"{config} has no grid axes: give lists in [strategy.params] "
                    f"(fast = [5, 10]), or run it with `pitgrid run {config}`")
    market = _open_market(cfg)
    with _run_failures("grid"):
        outcome = run_grid(cfg, market, progress=progress)
    _print_outcome(outcome)


@app.command()
def walkforward(
    config: Annotated[Path, typer.Argument(help="A TOML run config with grid axes and [walkforward].",
                                           exists=True, dir_okay=False)],
    db: Annotated[str | None, typer.Option(help="Results database (overrides \\[outputs] db).")] = None,
    reports: Annotated[Path | None, typer.Option(
        help="Report folder (overrides \\[outputs] reports).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    r"""Walk-forward optimisation: a grid on each train window, its winner on the next test window.

    \[walkforward] train = 504, test = 126 (bars), anchored = false. The stitched out-of-sample
    run is saved to the database and reported, with its windows and the in-sample against
    out-of-sample metrics.
    """
    from pitgrid.runconfig import run_walkforward

    cfg = _load(config, db, reports)
    if cfg.walkforward is None or not cfg.is_grid:
        _fail_usage(f"{config}: walk-forward needs a [walkforward] section (train, test) and grid "
                    "axes (list values in [strategy.params])")
    market = _open_market(cfg)
    with _run_failures("walkforward"):
        outcome = run_walkforward(cfg, market, progress=progress)
    _print_outcome(outcome)
    frame = outcome.walkforward
    table = Table(title=f"windows ({frame.height})", title_justify="left", box=box.SIMPLE_HEAD)
    shown = [c for c in frame.columns if c not in ("train_start", "train_end")]
    short = {"test_start": "from", "test_end": "to", f"in_sample_{cfg.by}": f"IS {cfg.by}",
             f"out_of_sample_{cfg.by}": f"OOS {cfg.by}"}
    for column in ["window", *shown]:
        table.add_column(escape(short.get(column, column.removeprefix("param_"))))
    for i, row in enumerate(frame.select(shown).iter_rows()):
        table.add_row(str(i + 1), *(Text(str(v)[:10] if not isinstance(v, float) else f"{v:.3f}")
                                    for v in row))
    _out.print(table)


@app.command()
def check(
    config: Annotated[Path, typer.Argument(help="A TOML run config (no grid axes).",
                                           exists=True, dir_okay=False)],
    sampled: Annotated[bool, typer.Option(
        help="The quick sampled check only: cut and scramble after a few cutoffs.")] = False,
    cutoffs: Annotated[int | None, typer.Option(help="How many cutoffs (default 8).")] = None,
) -> None:
    """Check a config's strategy for look-ahead; a leak exits 1, naming where and what.

    The step driver, which hands the strategy only what is known at each bar, audits
    the batch run at every bar (separate fresh processes, read-only data); then the
    simulation is cut and scrambled after the cutoffs.
    """
    from pitgrid.drivers.pit import check_point_in_time

    cfg = _load(config, None, None)
    if cfg.is_grid:
        _fail_usage(f"{config} has grid axes ({', '.join(cfg.axes())}): check one parameter set")
    market = _open_market(cfg)
    with _run_failures("check"):
        report = check_point_in_time(market, cfg.strategy(), dict(cfg.settings),
                                     every_bar=not sampled, cutoffs=cutoffs)
    _out.print(Text(str(report)), soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def paper(
    config: Annotated[Path, typer.Argument(help="A TOML run config whose [data] store grows.",
                                           exists=True, dir_okay=False)],
    state: Annotated[Path, typer.Option("--state", help="Folder of the paper run's state.")],
    db: Annotated[str | None, typer.Option(help="Results database (overrides \\[outputs] db).")] = None,
) -> None:
    """Paper-trade a config: run every bar not yet run, save, write the next open's orders.

    Starts a step driver, or resumes the one saved in --state, on the config's store
    (grow it with `pitgrid ingest NEW --store S --append`). The orders that execute at
    the next open go to STATE/orders.csv and STATE/orders.json, the run so far to the
    results database as one paper run. With no new bar nothing changes.
    """
    from pitgrid.drivers.paper import PaperTrader

    cfg = _load(config, db, None)
    with _usage_errors(ValueError):
        trader = PaperTrader(cfg, state)
    with _run_failures("paper"), _usage_errors(ValueError):
        update = trader.update()
    when = "no new bar" if update.bars_run == 0 else f"{update.bars_run} new bar(s)"
    _out.print(Text(f"{when}; {update.bars_total} bars run, last {update.last_time}; "
                    f"paper run {update.run_id}"))
    table = Table(title=f"orders for the next open ({update.orders.height})", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for column in update.orders.columns:
        table.add_column(column, justify="right" if column == "shares" else "left")
    for row in update.orders.iter_rows():
        table.add_row(*(Text(f"{v:,.4g}" if isinstance(v, float) else str(v)) for v in row))
    _out.print(table)
    _print_paths([("orders", update.state / "orders.csv"), ("state", update.state)])


@app.command()
def demo(
    data: Annotated[Path | None, typer.Option(
        help="A sample folder with prices.csv.gz (and optionally sp500_membership_intervals.csv) "
             "instead of the synthetic universe.", file_okay=False)] = None,
    out: Annotated[Path, typer.Option(help="Output folder: store, database, reports, configs.")
                   ] = Path("pitgrid_out"),
    quick: Annotated[bool, typer.Option(help="A 500 x 50 synthetic universe: same steps, seconds.")
                     ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """The main job: ingest a universe, backtest two strategies and a grid, save and report them."""
    from pitgrid.demo import run_demo

    def log(line: str) -> None:
        _out.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(line)}", highlight=False)

    from pitgrid.data.validate import IngestError

    with _run_failures("demo"), _usage_errors(FileNotFoundError, IngestError):  # bad sample data
        result = run_demo(out, data=data, quick=quick, progress=progress, log=log)
    table = Table(title=f"pitgrid demo: {len(result.outcomes)} runs in {result.seconds:.1f} s",
                  title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("run / strategy")
    for column in ("return", "annual", "sharpe", "max dd", "trades"):
        table.add_column(column, justify="right")
    for o in result.outcomes:
        kind = f" (best of {o.table.height})" if o.table is not None else ""
        table.add_row(escape(f"{o.run_id[:8]} {o.strategy}{kind}\n{_params_text(o.params)}"),
                      *(_fmt(m, o.metrics.get(m)) for m in
                        ("total_return", "annual_return", "sharpe", "max_drawdown", "trades")))
    _out.print(table)
    grids = [o.grid_report for o in result.outcomes if o.grid_report is not None]
    _print_paths([("database", mask_url(result.db)), *(("report", o.report) for o in result.outcomes),
                  *(("grid report", p) for p in grids), ("configs", result.configs[0].parent)])
    _out.print(escape(f"next: pitgrid runs --db {mask_url(result.db)}   |   open {result.outcomes[0].report}"),
               highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------- reading runs
@app.command()
def runs(
    strategy: Annotated[str | None, typer.Option(help="Only runs of this strategy (class name).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first.", min=1)] = 20,
    db: Annotated[str, _DB_OPTION] = "pitgrid.db",
) -> None:
    """List saved runs, newest first."""
    with _open_db(db) as rdb:
        frame = rdb.list_runs(strategy=strategy, limit=limit)
    if frame.is_empty():
        _out.print(escape(f"no runs in {mask_url(db)}" + (f" for strategy {strategy}" if strategy else "")))
        return
    table = Table(title=escape(f"runs in {mask_url(db)} (ids: any unique prefix works)"), title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    for column in ("strategy", "sets", "period", "universe", "fills"):
        table.add_column(column, overflow="fold")
    for row in frame.iter_rows(named=True):
        table.add_row(row["run_id"][:8], row["created_at"].strftime("%Y-%m-%d %H:%M"),
                      Text(row["strategy"]), str(row["n_params"]),
                      f"{_day(row['start_time'])}..{_day(row['end_time'])}", Text(row["universe_id"] or "-"),
                      "[red]close (optimistic)[/]" if row["optimistic"] else "next open")
    _out.print(table)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="A run id, or a unique prefix of one.")],
    top: Annotated[int, typer.Option(help="Rows of a grid's table to show.", min=1)] = 10,
    db: Annotated[str, _DB_OPTION] = "pitgrid.db",
) -> None:
    """Show a run: where it came from, its settings and its metrics (a grid: its best sets)."""
    with _open_db(db) as rdb:
        run = _load_run(rdb, run_id)
    best = _best_param(run)
    facts = Table(title=escape(f"run {run.run_id}"), show_header=False, title_justify="left")
    source = run.config.get("run", {})
    rows = [
        ("strategy", run.strategy),
        ("parameters", _params_text(run.params[best]) if run.params else "-"),
        ("created (UTC)", run.created_at.strftime("%Y-%m-%d %H:%M:%S")),
        ("period", f"{_day(run.equity['time'].values[0])} .. {_day(run.equity['time'].values[-1])}"),
        ("universe", run.universe_id or "-"),
        ("fills", Text("same-bar close (OPTIMISTIC)", style="bold red") if run.optimistic
         else str(run.config.get("fill", "-"))),
        ("settings", _settings_text(run.config)),
        ("config file", str(source.get("source", "-"))),
        ("data", _params_text(source.get("data", {})) or "-"),
        ("data fingerprint", run.data_fingerprint[:16]),
        ("code version", run.code_version),
    ]
    if _is_grid(run):
        rows.insert(1, ("grid", f"{len(run.params)} sets; shown: the best by "
                                f"{source.get('grid', {}).get('by', 'sharpe')} (set {best})"))
        o = run.config.get("overfitting") or {}
        if o:
            rows.insert(2, ("selection", f"deflated sharpe {_prob(o.get('deflated_sharpe'))}, "
                                         f"PBO {_prob(o.get('pbo'))} (CSCV, {o.get('n_blocks')} blocks)"))
    for key, value in rows:
        facts.add_row(key, value if isinstance(value, Text) else escape(value))
    _out.print(facts)
    metrics = run.metrics.row(best, named=True)
    table = Table(title="metrics", show_header=False, title_justify="left")
    for name, value in metrics.items():
        if name != "param":
            table.add_row(Text(name), Text(_fmt(name, value)))
    _out.print(table)
    if _is_grid(run):
        _print_grid_table(_grid_frame(run), _grid_axes(run), _grid_by(run), top)


@app.command()
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids or unique prefixes (a grid: its best set).")],
    db: Annotated[str, _DB_OPTION] = "pitgrid.db",
) -> None:
    """Show the metrics of several runs side by side."""
    with _open_db(db) as rdb:
        loaded = [_load_run(rdb, r) for r in run_ids]
    table = Table(title="compare", title_justify="left")
    table.add_column("metric")
    for run in loaded:
        best = _best_param(run)
        params = _params_text(run.params[best]) if run.params else ""
        header = escape(f"{run.run_id[:8]}\n{run.strategy}\n{params}")
        table.add_column(header, justify="right", overflow="fold")
    fills = ["close (optimistic)" if r.optimistic else str(r.config.get("fill", "-")) for r in loaded]
    table.add_row("fill rule", *map(Text, fills))
    table.add_row("period", *(f"{_day(r.equity['time'].values[0])} .. {_day(r.equity['time'].values[-1])}"
                              for r in loaded))
    rows = [r.metrics.row(_best_param(r), named=True) for r in loaded]
    names = [n for n in rows[0] if n != "param"]
    for name in names:
        table.add_row(Text(name), *(Text(_fmt(name, row.get(name))) for row in rows))
    _out.print(table)


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="A run id, or a unique prefix of one.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.", dir_okay=False)],
    param: Annotated[int | None, typer.Option(
        help="A grid run: report this parameter set alone (default: the grid report).", min=0)] = None,
    by: Annotated[str | None, typer.Option(help="A grid run: the metric of the surface "
                                           "(default: the one the grid ranked by).")] = None,
    db: Annotated[str, _DB_OPTION] = "pitgrid.db",
) -> None:
    """Write the HTML report of a saved run (a grid: its metric surface and table)."""
    from pitgrid.results import write_grid_report, write_report

    with _open_db(db) as rdb:
        run = _load_run(rdb, run_id)
    output.parent.mkdir(parents=True, exist_ok=True)
    with _usage_errors():
        if _is_grid(run) and param is None:
            metric = by or _grid_by(run)
            if metric not in run.metrics.columns:
                raise ValueError(f"--by {metric!r} is not a metric; have: "
                                 f"{', '.join(c for c in run.metrics.columns if c != 'param')}")
            path = write_grid_report(_grid_frame(run), _grid_axes(run), metric, output,
                                     title=f"{run.strategy} grid: {metric}")
        else:
            index = _check_param(run, param or 0)
            path = write_report(run, output, param=index if _is_grid(run) else None,
                                title=f"{run.strategy} {_params_text(run.params[index])}")
    _print_paths([("report", path)])


# ---------------------------------------------------------------------- helpers
# ConnectionError: a results database that refuses the connection (the URL is the config's)
_USAGE_ERRORS = (ValueError, KeyError, FileNotFoundError, NotImplementedError, ImportError, ConnectionError)


@contextmanager
def _usage_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Config and data problems (``kinds``, default: the usual ones): the message without a
    traceback, exit code 2."""
    try:
        yield
    except kinds or _USAGE_ERRORS as exc:
        # IngestError and RunConfigError are ValueErrors; a KeyError's str() adds quotes
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        _err.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@contextmanager
def _run_failures(what: str) -> Iterator[None]:
    """A run that started and failed: its traceback (likely a bug worth reporting), exit code 1.
    A results database that cannot be reached is the config's problem: one line, exit code 2."""
    try:
        yield
    except typer.Exit:
        raise
    except ConnectionError as exc:
        _fail_usage(str(exc))
    except Exception as exc:
        _err.print_exception(max_frames=8)
        _err.print(f"[bold red]{what} failed:[/] {type(exc).__name__}: {escape(str(exc))}",
                   highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _fail_usage(message: str) -> NoReturn:
    _err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _load(config: Path, db: str | None, reports: Path | None) -> RunConfig:
    import dataclasses

    from pitgrid.runconfig import load_run_config

    with _usage_errors():
        cfg = load_run_config(config)
    overrides: dict[str, Any] = {}
    if db is not None:
        overrides["db"] = db if "://" in db else str(Path(db).resolve())
    if reports is not None:
        overrides["reports"] = reports.resolve()
    return dataclasses.replace(cfg, **overrides)


def _open_market(cfg: RunConfig) -> Any:
    with _usage_errors():
        market = cfg.open_market()
        # read the arrays now, so unreadable data is a data error rather than a failed run
        return market.load()


@contextmanager
def _open_db(db: str) -> Iterator[ResultsDB]:
    from pitgrid.results import ResultsDB

    with _usage_errors():
        if "://" not in db and not Path(db).exists():
            raise FileNotFoundError(f"no results database at {db} (pass --db PATH)")
        rdb = ResultsDB(db)
    try:
        yield rdb
    finally:
        rdb.close()


def _load_run(rdb: ResultsDB, text: str) -> StoredRun:
    """A run by id or unique prefix (reports are named by the first 8 digits)."""
    with _usage_errors():
        if len(text) != 32:
            matches = [r for r in rdb.list_runs()["run_id"].to_list() if r.startswith(text.lower())]
            if len(matches) != 1:
                found = "no run" if not matches else f"{len(matches)} runs"
                raise KeyError(f"{found} in {rdb.location} with an id starting {text!r}")
            text = matches[0]
        return rdb.load_run(text)


def _check_param(run: StoredRun, index: int) -> int:
    """``index`` when that set of the run can be reported alone; ValueError otherwise."""
    count = len(run.params)
    if not 0 <= index < count:
        raise ValueError(f"--param {index} is out of range: the run has {count} parameter set(s)")
    equity = run.equity.isel(param=index) if _is_grid(run) else run.equity
    if bool(equity.isnull().all()):
        keep = _grid_info(run).get("keep", "few")
        raise ValueError(f"set {index}'s equity curve was not kept (the grid kept its best {keep}); "
                         "its metrics are in the grid report, or run it alone with `pitgrid run`")
    return index


def _is_grid(run: StoredRun) -> bool:
    return "param" in run.equity.dims


def _grid_info(run: StoredRun) -> dict[str, Any]:
    return run.config.get("run", {}).get("grid", {})


def _best_param(run: StoredRun) -> int:
    """The set a grid run shows by default: the one it ranked best (saved with it), else the first."""
    return int(_grid_info(run).get("best_param", 0)) if _is_grid(run) else 0


def _grid_by(run: StoredRun) -> str:
    return _grid_info(run).get("by", "sharpe")


def _grid_axes(run: StoredRun) -> list[str]:
    """The parameters that vary across the sets (saved with the run, else read off the sets)."""
    saved = _grid_info(run).get("axes")
    if saved:
        return list(saved)
    keys = list(run.params[0]) if run.params else []
    return [k for k in keys if len({repr(p.get(k)) for p in run.params}) > 1]


def _grid_frame(run: StoredRun) -> Any:
    """The grid table without parameters that are unset for every set (all null)."""
    table = run.grid_table()
    return table.select([c for c in table.columns if table[c].null_count() < table.height])


def _print_outcome(outcome: RunOutcome) -> None:
    grid = outcome.table is not None
    if outcome.walkforward is not None:
        title = f"{outcome.strategy} walk-forward, out of sample ({outcome.walkforward.height} windows)"
    elif grid:
        title = f"{outcome.strategy} grid: best of {outcome.table.height} sets"
    else:
        title = f"{outcome.strategy} backtest"
    title += f" ({outcome.seconds:.1f} s)"
    table = Table(title=escape(title), show_header=False, title_justify="left")
    table.add_row("run id", outcome.run_id)
    table.add_row("parameters", escape(_params_text(outcome.params)))
    if outcome.optimistic:
        table.add_row("fills", "[bold red]same-bar close: OPTIMISTIC[/]")
    for name in _KEY_METRICS:
        table.add_row(name, Text(_fmt(name, outcome.metrics.get(name))))
    if outcome.metrics.get("beta") is not None:
        for name in _RELATIVE_KEYS:
            table.add_row(name, Text(_fmt(name, outcome.metrics.get(name))))
    if outcome.overfitting:
        o = outcome.overfitting
        table.add_row("deflated sharpe", Text(_prob(o.get("deflated_sharpe"))
                                              + f"  (best of {o.get('n_trials')} sets)"))
        table.add_row("overfitting (PBO)", Text(_prob(o.get("pbo"))
                                                + f"  (CSCV, {o.get('n_blocks')} blocks)"))
    _out.print(table)
    if grid:
        _print_grid_table(outcome.table, [c for c in outcome.table.columns
                                          if c not in outcome.metrics], outcome.by, 10)
    _print_paths([("report", outcome.report),
                  *([("grid report", outcome.grid_report)] if outcome.grid_report else []),
                  ("database", mask_url(outcome.db))])


def _prob(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _print_grid_table(frame: Any, axes: Sequence[str], by: str, top: int) -> None:
    import polars as pl

    ranked = frame.sort(pl.col(by).fill_nan(None), descending=True, nulls_last=True).head(top)
    table = Table(title=escape(f"top {ranked.height} of {frame.height} sets by {by}"), title_justify="left")
    shown = [*axes, *(m for m in dict.fromkeys([by, *_GRID_METRICS]) if m in frame.columns)]
    for column in shown:
        table.add_column(Text(column), justify="right")
    for row in ranked.iter_rows(named=True):
        table.add_row(*(Text(_fmt(c, row[c])) for c in shown))
    _out.print(table)


def _print_paths(rows: Sequence[tuple[str, Any]]) -> None:
    for label, path in rows:
        _out.print(escape(f"{label + ':':<12} {path}"), highlight=False, soft_wrap=True)


def _fmt(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if name in _PERCENT:
        return f"{value:.2%}"
    if name in _WHOLE or isinstance(value, int):
        return f"{value:,.0f}"
    if name in _MONEY:
        return f"{value:,.2f}"
    return f"{value:.3f}"


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)


def _settings_text(config: dict[str, Any]) -> str:
    """The simulation settings that differ from SimConfig's defaults (plus the fill rule)."""
    from pitgrid.engine.config import SimConfig

    defaults = SimConfig().to_dict()
    changed = {k: config[k] for k in defaults if k in config and (config[k] != defaults[k] or k == "fill")}
    if "size_value" in config:
        changed["size_value"] = config["size_value"]
    return _params_text(changed)


def _day(value: Any) -> str:
    import numpy as np

    return "-" if value is None else str(np.datetime64(value, "D"))
