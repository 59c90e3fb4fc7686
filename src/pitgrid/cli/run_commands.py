"""Run commands: ``run``, ``grid``, ``walkforward``, ``check``, ``paper`` and ``demo``: a config
in, a saved run (database and report) and a summary out.

Example:
    $ pitgrid run examples/ma_cross.toml --benchmark SPY
    $ pitgrid grid examples/momentum_grid.toml
    $ pitgrid demo
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from pitgrid.cli.app import app
from pitgrid.cli.errors import check_benchmark, fail_usage, run_failures, usage_errors
from pitgrid.cli.output import (
    SHORT, Column, fitted_table, fmt, out, params_text, print_grid_table, print_pairs, print_paths,
    prob)
from pitgrid.results.sql import mask_url

if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.runconfig import RunConfig, RunOutcome

# the metrics a run's summary shows, in this order
_KEY_METRICS = ("total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar",
                "max_drawdown", "trades", "win_rate", "turnover", "exposure", "fees")
_RELATIVE_KEYS = ("benchmark_return", "alpha", "beta", "information_ratio", "tracking_error",
                  "up_capture", "down_capture", "correlation")
_CONFIG = typer.Argument(help="A TOML run config (see examples/ma_cross.toml).", exists=True,
                         dir_okay=False)
_DB = typer.Option(help="Results database (default: the config's [outputs] db, else $PITGRID_DB, "
                        "else the project file's, else pitgrid.db).")
_REPORTS = typer.Option(help="Report folder (overrides [outputs] reports).")
_BENCHMARK = typer.Option(help="A symbol of the data to measure the run against (overrides "
                               "[benchmark]; a strategy benchmark goes in the config).")


def _run_config(config: Path, db: str | None, reports: Path | None, benchmark: str | None,
                what: str, refusal: Callable[[Any], str | None],
                runner: Callable[[Any, Any], Any]) -> tuple[Any, Any]:
    """What run, grid and walkforward share: load the config, refuse it with ``refusal``'s
    message when there is one, open its data, run it and print the outcome."""
    cfg = _load(config, db, reports)
    message = refusal(cfg)
    if message is not None:
        fail_usage(message)
    market = _open_market(cfg)
    cfg = _with_benchmark(cfg, market, benchmark)
    with run_failures(what):
        outcome = runner(cfg, market)
    _print_outcome(outcome)
    return cfg, outcome


@app.command(short_help="Backtest a config, save it and report it.")
def run(
    config: Annotated[Path, _CONFIG],
    db: Annotated[str | None, _DB] = None,
    reports: Annotated[Path | None, _REPORTS] = None,
    benchmark: Annotated[str | None, _BENCHMARK] = None,
) -> None:
    """Backtest a config, save the run to the database and write its HTML report.

    Sections: [data] [universe] [strategy] [costs] [execution] [risk] [model] [benchmark]
    [outputs]. Relative paths are read from the config's folder; see examples/ma_cross.toml.
    """
    from pitgrid.runconfig import run_backtest

    _run_config(config, db, reports, benchmark, "run", lambda cfg: (
        f"{config} has grid axes ({', '.join(cfg.axes())} are lists): run it with "
        f"`pitgrid grid {config}`" if cfg.is_grid else None), run_backtest)


@app.command(short_help="Run a parameter grid, save it and report it.")
def grid(
    config: Annotated[Path, typer.Argument(
        help="A TOML run config with list values in [strategy.params] "
             "(see examples/momentum_grid.toml).", exists=True, dir_okay=False)],
    db: Annotated[str | None, _DB] = None,
    reports: Annotated[Path | None, _REPORTS] = None,
    benchmark: Annotated[str | None, _BENCHMARK] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run a parameter grid, save it as one run, and write the grid report and the best set's
    report (measured against the benchmark, when there is one)."""
    from pitgrid.runconfig import run_grid

    _run_config(config, db, reports, benchmark, "grid", lambda cfg: (
        None if cfg.is_grid else
        f"{config} has no grid axes: give lists in [strategy.params] (fast = [5, 10]) or of "
        f"stop levels in [exits], or run it with `pitgrid run {config}`"),
        lambda cfg, market: run_grid(cfg, market, progress=progress))


@app.command(short_help="Walk-forward optimisation of a grid.")
def walkforward(
    config: Annotated[Path, typer.Argument(help="A TOML run config with grid axes and "
                                           "[walkforward].", exists=True, dir_okay=False)],
    db: Annotated[str | None, _DB] = None,
    reports: Annotated[Path | None, _REPORTS] = None,
    benchmark: Annotated[str | None, _BENCHMARK] = None,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    """Walk-forward optimisation: a grid on each train window, its winner on the next test window.

    [walkforward] train = 504, test = 126 (bars), anchored = false. The stitched out-of-sample
    run is saved to the database and reported, with its windows and the in-sample against
    out-of-sample metrics (and against the benchmark, when there is one).
    """
    from pitgrid.runconfig import run_walkforward

    cfg, outcome = _run_config(config, db, reports, benchmark, "walkforward", lambda cfg: (
        None if cfg.walkforward is not None and cfg.is_grid else
        f"{config}: walk-forward needs a [walkforward] section (train, test) and grid axes "
        "(list values in [strategy.params])"),
        lambda cfg, market: run_walkforward(cfg, market, progress=progress))
    frame = outcome.walkforward
    shown = [c for c in frame.columns if c not in ("train_start", "train_end")]
    short = {"test_start": "from", "test_end": "to", f"in_sample_{cfg.by}": f"IS {cfg.by}",
             f"out_of_sample_{cfg.by}": f"OOS {cfg.by}"}
    columns = [Column("window", "#", numeric=True),
               *(Column(c, short.get(c, c.removeprefix("param_")),
                        numeric=c not in ("test_start", "test_end"), wrap=True) for c in shown)]
    rows = [{"window": i + 1, **{c: f"{v:.3f}" if isinstance(v, float) else str(v)[:10]
                                 for c, v in row.items()}}
            for i, row in enumerate(frame.select(shown).iter_rows(named=True))]
    out.print(fitted_table(columns, rows, title=f"windows ({frame.height})"))


@app.command(short_help="Check a config's strategy for look-ahead.")
def check(
    config: Annotated[Path, typer.Argument(help="A TOML run config (no grid axes).",
                                           exists=True, dir_okay=False)],
    sampled: Annotated[bool, typer.Option(
        help="The quick sampled check only: cut and scramble after a few cutoffs.")] = False,
    cutoffs: Annotated[int | None, typer.Option(help="How many cutoffs (default 8).")] = None,
) -> None:
    """Check a config's strategy for look-ahead; a leak exits 1, naming where and what.

    The step driver, which hands the strategy only what is known at each bar, audits
    the batch run at every bar (the step driver in a fresh process, read-only data); then the
    simulation is cut and scrambled after the cutoffs.
    """
    from pitgrid.drivers.pit import check_point_in_time

    cfg = _load(config, None, None)
    if cfg.is_grid:
        fail_usage(f"{config} has grid axes ({', '.join(cfg.axes())}): check one parameter set")
    market = _open_market(cfg)
    with run_failures("check"):
        report = check_point_in_time(market, cfg.strategy(), dict(cfg.settings),
                                     every_bar=not sampled, cutoffs=cutoffs)
    out.print(Text(str(report)), soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command(short_help="Paper-trade a config on a growing store.")
def paper(
    config: Annotated[Path, typer.Argument(help="A TOML run config whose [data] store grows.",
                                           exists=True, dir_okay=False)],
    state: Annotated[Path, typer.Option("--state", help="Folder of the paper run's state.")],
    db: Annotated[str | None, _DB] = None,
) -> None:
    """Paper-trade a config: run every bar not yet run, save, write the next open's orders.

    Starts a step driver, or resumes the one saved in --state, on the config's store
    (grow it with `pitgrid ingest NEW --store S --append`). The orders that execute at
    the next open go to STATE/orders.csv and STATE/orders.json, the run so far to the
    results database as one paper run. With no new bar nothing changes.
    """
    from pitgrid.drivers.paper import PaperTrader

    cfg = _load(config, db, None)
    with usage_errors(ValueError):
        trader = PaperTrader(cfg, state)
    with run_failures("paper"), usage_errors(ValueError):
        update = trader.update()
    when = "no new bar" if update.bars_run == 0 else f"{update.bars_run} new bar(s)"
    out.print(Text(f"{when}; {update.bars_total} bars run, last {update.last_time}; "
                   f"paper run {update.run_id}"))
    orders = update.orders
    columns = [Column(c, c, numeric=c == "shares", wrap=True) for c in orders.columns]
    rows = [{c: f"{v:,.4g}" if isinstance(v, float) else str(v) for c, v in row.items()}
            for row in orders.iter_rows(named=True)]
    out.print(fitted_table(columns, rows, title=f"orders for the next open ({orders.height})"))
    print_paths([("orders", update.state / "orders.csv"), ("state", update.state)])


@app.command(short_help="Ingest, backtest, save and report a sample.")
def demo(
    data: Annotated[Path | None, typer.Option(
        help="A sample folder with prices.csv.gz (and optionally sp500_membership_intervals.csv) "
             "instead of the synthetic universe.", file_okay=False)] = None,
    out_dir: Annotated[Path, typer.Option(
        "--out", help="Output folder: store, database, reports, configs.")] = Path("pitgrid_out"),
    quick: Annotated[bool, typer.Option(help="A 500 x 50 synthetic universe: same steps, seconds.")
                     ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """The main job: ingest a universe, backtest two strategies and a grid, save and report them."""
    from pitgrid.data.validate import IngestError
    from pitgrid.demo import run_demo

    def log(line: str) -> None:
        out.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(line)}", highlight=False)

    with run_failures("demo"), usage_errors(FileNotFoundError, IngestError):  # bad sample data
        result = run_demo(out_dir, data=data, quick=quick, progress=progress, log=log)
    metrics = ("total_return", "annual_return", "sharpe", "max_drawdown", "trades")
    columns = [Column("run", "run / strategy", wrap=True),
               *(Column(m, SHORT.get(m, m), numeric=True) for m in metrics)]
    rows = [{"run": f"{o.run_id[:8]} {o.strategy}"
                    + (f" (best of {o.table.height})" if o.table is not None else "")
                    + f"\n{params_text(o.params)}",
             **{m: fmt(m, o.metrics.get(m)) for m in metrics}} for o in result.outcomes]
    title = f"pitgrid demo: {len(result.outcomes)} runs in {result.seconds:.1f} s"
    out.print(fitted_table(columns, rows, title=title))
    grids = [o.grid_report for o in result.outcomes if o.grid_report is not None]
    print_paths([("database", mask_url(result.db)),
                 *(("report", o.report) for o in result.outcomes),
                 *(("grid report", p) for p in grids), ("configs", result.configs[0].parent)])
    out.print(escape(f"next: pitgrid runs --db {mask_url(result.db)}   |   open "
                     f"{result.outcomes[0].report}"), highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------- helpers
def _load(config: Path, db: str | None, reports: Path | None) -> RunConfig:
    """The config with the command line's overrides (a config without [outputs] db already
    has the default database: PITGRID_DB, the project file's, ./pitgrid.db)."""
    from pitgrid.runconfig import load_run_config

    with usage_errors():
        cfg = load_run_config(config)
    overrides: dict[str, Any] = {}
    if db is not None:
        overrides["db"] = db if "://" in db else str(Path(db).resolve())
    if reports is not None:
        overrides["reports"] = reports.resolve()
    return dataclasses.replace(cfg, **overrides)


def _open_market(cfg: RunConfig) -> Any:
    with usage_errors():
        market = cfg.open_market()
        # read the arrays now, so unreadable data is a data error rather than a failed run
        return market.load()


def _with_benchmark(cfg: RunConfig, market: Any, symbol: str | None) -> RunConfig:
    if symbol is None:
        return cfg
    check_benchmark(symbol, market, f"{cfg.source}'s data")
    return dataclasses.replace(cfg, benchmark=symbol)


def _print_outcome(outcome: RunOutcome) -> None:
    grid = outcome.table is not None
    if outcome.walkforward is not None:
        title = (f"{outcome.strategy} walk-forward, out of sample "
                 f"({outcome.walkforward.height} windows)")
    elif grid:
        title = f"{outcome.strategy} grid: best of {outcome.table.height} sets"
    else:
        title = f"{outcome.strategy} backtest"
    pairs: list[tuple[str, Any]] = [("run id", outcome.run_id),
                                    ("parameters", params_text(outcome.params))]
    if outcome.optimistic:
        pairs.append(("fills", Text("same-bar close: OPTIMISTIC", style="bold red")))
    names = _KEY_METRICS + (_RELATIVE_KEYS if outcome.metrics.get("beta") is not None else ())
    pairs += [(name, fmt(name, outcome.metrics.get(name))) for name in names]
    if outcome.overfitting:
        o = outcome.overfitting
        pairs += [("deflated sharpe", f"{prob(o.get('deflated_sharpe'))}  "
                                      f"(best of {o.get('n_trials')} sets)"),
                  ("overfitting (PBO)",
                   f"{prob(o.get('pbo'))}  (CSCV, {o.get('n_blocks')} blocks)")]
    print_pairs(pairs, f"{title} ({outcome.seconds:.1f} s)")
    if grid:
        print_grid_table(outcome.table, [c for c in outcome.table.columns
                                         if c not in outcome.metrics], outcome.by, 10)
    print_paths([("report", outcome.report),
                 *([("grid report", outcome.grid_report)] if outcome.grid_report else []),
                 ("database", mask_url(outcome.db))])
