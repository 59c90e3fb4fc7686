"""Results commands: ``runs`` lists saved runs, ``show`` one run, ``compare`` several side by
side, ``report`` writes a saved run's HTML report. ``--format csv|json`` prints for programs.

Example:
    $ pitgrid runs --limit 5
    $ pitgrid show 1a2b3c4d --format json
    $ pitgrid compare 1a2b3c4d 5e6f7a8b --format csv
    $ pitgrid report 1a2b3c4d -o run.html --benchmark SPY
    $ pitgrid report 5e6f7a8b -o grid.html --axes fast,slow
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from pitgrid.cli.app import app
from pitgrid.cli.database import (
    DB_OPTION, chosen_db, check_param, grid_axes, grid_by, grid_frame, is_grid, load_run, open_db)
from pitgrid.cli.errors import check_benchmark, fail_usage, usage_errors
from pitgrid.cli.output import (
    FORMAT_OPTION, SHORT, Column, Format, day, emit, emit_json, err, fitted_table, fmt, iso, out,
    params_text, print_grid_table, print_pairs, print_paths, prob)
from pitgrid.results.sql import mask_url

# the metrics `runs` shows of each run (a grid: of its best set)
_LISTED = ("total_return", "annual_return", "sharpe", "max_drawdown", "trades")
# `runs --format csv|json`: a record's fields, in order
_RUN_FIELDS = ("run_id", "created_at", "strategy", "params", "sets", "best_param", "start", "end",
               "universe", "fill", "optimistic", *_LISTED, "model_sha256")


@app.command(short_help="List saved runs with parameters and metrics.")
def runs(
    strategy: Annotated[str | None, typer.Option(
        help="Only runs of this strategy (class name).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first.", min=1)] = 20,
    db: Annotated[str | None, DB_OPTION] = None,
    form: Annotated[Format, FORMAT_OPTION] = Format.table,
) -> None:
    """List saved runs, newest first, with their parameters and key metrics (a grid: its best
    set's)."""
    with open_db(db) as rdb:
        frame = rdb.list_runs(strategy=strategy, limit=limit)
    records = [{
        "run_id": r["run_id"], "created_at": r["created_at"], "strategy": r["strategy"],
        "params": json.loads(r["params"]) if r["params"] else {}, "sets": r["n_params"],
        "best_param": r["best_param"], "start": iso(r["start_time"]), "end": iso(r["end_time"]),
        "universe": r["universe_id"], "fill": "close" if r["optimistic"] else "next_open",
        "optimistic": r["optimistic"],
        **{m: r[m] for m in _LISTED}, "model_sha256": r["model_sha256"],
    } for r in frame.iter_rows(named=True)]
    if form is not Format.table:
        emit(records, form, _RUN_FIELDS)
        return
    where = mask_url(chosen_db(db))
    if not records:
        out.print(Text(f"no runs in {where}" + (f" for strategy {strategy}" if strategy else "")))
        return
    columns = [Column("id", "id"), Column("run", "strategy / parameters", wrap=True),
               *(Column(m, SHORT.get(m, m), numeric=True) for m in _LISTED),
               Column("created", "created (UTC)"), Column("period", "period"),
               Column("universe", "universe", wrap=True)]
    rows = [{"id": r["run_id"][:8], "run": _run_cell(r),
             **{m: fmt(m, r[m]) for m in _LISTED},
             "created": r["created_at"].strftime("%Y-%m-%d %H:%M"),
             "period": f"{r['start'][:10]}..{r['end'][:10]}", "universe": r["universe"] or "-"}
            for r in records]
    out.print(fitted_table(columns, rows, title=f"runs in {where} (ids: any unique prefix works)",
                           optional=["trades", "created", "period", "universe"]))


def _run_cell(record: dict[str, Any]) -> Text:
    """Strategy on the first line; the parameters (of the best set, for a grid) below, dim."""
    cell = Text(record["strategy"])
    if record["optimistic"]:
        cell.append(" (close fills: optimistic)", style="bold red")
    shown = params_text(record["params"]) or "-"
    if record["sets"] > 1:
        shown = f"best of {record['sets']}: {shown}"
    cell.append("\n" + shown, style="dim")
    return cell


@app.command(short_help="Show one saved run.")
def show(
    run_id: Annotated[str, typer.Argument(help="A run id, or a unique prefix of one.")],
    top: Annotated[int, typer.Option(help="Rows of a grid's table to show.", min=1)] = 10,
    db: Annotated[str | None, DB_OPTION] = None,
    form: Annotated[Format, FORMAT_OPTION] = Format.table,
) -> None:
    """Show a run: where it came from, its settings and its metrics (a grid: its best sets).

    csv: one row per parameter set (parameters and metrics); json: the whole run.
    """
    with open_db(db) as rdb:
        run = load_run(rdb, run_id)
    best = run.best_param
    source = run.config.get("run", {})
    facts: dict[str, Any] = {
        "run_id": run.run_id, "strategy": run.strategy,
        "params": run.params[best] if run.params else {},
        "created_at": run.created_at, "start": day(run.equity["time"].values[0]),
        "end": day(run.equity["time"].values[-1]), "universe": run.universe_id,
        "fill": run.config.get("fill"), "optimistic": run.optimistic,
        "settings": _settings(run.config), "config_file": source.get("source"),
        "data": source.get("data"), "data_fingerprint": run.data_fingerprint,
        "code_version": run.code_version, "model_sha256": run.model_sha256,
        "sets": len(run.params), "best_param": best,
    }
    if form is Format.csv:
        import polars as pl

        ids = pl.Series("run_id", [run.run_id] * len(run.params))
        table = run.grid_table().insert_column(0, ids)
        emit(table.to_dicts(), form)
        return
    metrics = {k: v for k, v in run.metrics.row(best, named=True).items() if k != "param"}
    if form is Format.json:
        grid = ({"by": grid_by(run), "axes": grid_axes(run), "overfitting": run.config.get(
            "overfitting"), "sets": grid_frame(run).to_dicts()} if is_grid(run) else None)
        emit_json({**facts, "metrics": metrics, "grid": grid})
        return
    pairs: list[tuple[str, Any]] = [
        ("strategy", run.strategy), ("parameters", params_text(facts["params"]) or "-"),
        ("created (UTC)", run.created_at.strftime("%Y-%m-%d %H:%M:%S")),
        ("period", f"{facts['start']} .. {facts['end']}"), ("universe", run.universe_id or "-"),
        ("fills", Text("same-bar close (OPTIMISTIC)", style="bold red") if run.optimistic
         else str(facts["fill"] or "-")),
        ("settings", params_text(facts["settings"])),
        ("config file", str(facts["config_file"] or "-")),
        ("data", params_text(facts["data"] or {}) or "-"),
        ("data fingerprint", run.data_fingerprint[:16]), ("code version", run.code_version),
    ]
    if run.model_sha256:
        pairs.append(("model weights", f"sha256 {run.model_sha256}"))
    if is_grid(run):
        pairs.insert(1, ("grid", f"{len(run.params)} sets; shown: the best by {grid_by(run)} "
                                 f"(set {best})"))
        o = run.config.get("overfitting") or {}
        if o:
            pairs.insert(2, ("selection", f"deflated sharpe {prob(o.get('deflated_sharpe'))}, "
                                          f"PBO {prob(o.get('pbo'))} "
                                          f"(CSCV, {o.get('n_blocks')} blocks)"))
    print_pairs(pairs, f"run {run.run_id}")
    print_pairs([(name, fmt(name, value)) for name, value in metrics.items()], "metrics")
    if is_grid(run):
        print_grid_table(grid_frame(run), grid_axes(run), grid_by(run), top)


@app.command(short_help="Compare saved runs side by side.")
def compare(
    run_ids: Annotated[list[str], typer.Argument(
        help="Run ids or unique prefixes (a grid: its best set).")],
    db: Annotated[str | None, DB_OPTION] = None,
    form: Annotated[Format, FORMAT_OPTION] = Format.table,
) -> None:
    """Show the metrics of several runs side by side.

    csv and json: one record per run (its parameters and metrics).
    """
    with open_db(db) as rdb:
        loaded = [load_run(rdb, r) for r in run_ids]
    records = [{
        "run_id": r.run_id, "strategy": r.strategy,
        "params": r.params[r.best_param] if r.params else {},
        "fill": r.config.get("fill"), "optimistic": r.optimistic,
        "start": day(r.equity["time"].values[0]), "end": day(r.equity["time"].values[-1]),
        **{k: v for k, v in r.metrics.row(r.best_param, named=True).items() if k != "param"},
    } for r in loaded]
    if form is not Format.table:
        emit(records, form)
        return
    legend = [{"id": r["run_id"][:8], "strategy": r["strategy"],
               "params": params_text(r["params"]) or "-",
               "period": f"{r['start']}..{r['end']}",
               "fill": "close (OPTIMISTIC)" if r["optimistic"] else str(r["fill"])}
              for r in records]
    out.print(fitted_table([Column("id", "id"), Column("strategy", "strategy", wrap=True),
                            Column("params", "parameters", wrap=True),
                            Column("period", "period"), Column("fill", "fill", wrap=True)],
                           legend, title="compare",
                           # an optimistic fill rule stays in sight, whatever the width
                           optional=["period"] if any(r["optimistic"] for r in records)
                           else ["fill", "period"]))
    names = [k for k in records[0]
             if k not in ("run_id", "strategy", "params", "fill", "optimistic", "start", "end")]
    # as many runs side by side as fit; the rest below, with the metric names again
    per_table = max(1, (out.width - 24) // 12)
    for first in range(0, len(records), per_table):
        chunk = records[first:first + per_table]
        columns = [Column("metric", "metric"),
                   *(Column(str(i), r["run_id"][:8], numeric=True) for i, r in enumerate(chunk))]
        rows = [{"metric": name, **{str(i): fmt(name, r.get(name)) for i, r in enumerate(chunk)}}
                for name in names]
        out.print(fitted_table(columns, rows))


@app.command(short_help="Write a saved run's HTML report.")
def report(
    run_id: Annotated[str, typer.Argument(help="A run id, or a unique prefix of one.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.",
                                         dir_okay=False)],
    param: Annotated[int | None, typer.Option(
        help="A grid run: report this parameter set alone (default: the grid report).",
        min=0)] = None,
    by: Annotated[str | None, typer.Option(help="A grid run: the metric of the surface "
                                           "(default: the one the grid ranked by).")] = None,
    axes: Annotated[str | None, typer.Option(
        help="A grid run: the two parameters of the heatmap, as a,b (default: the two with "
             "the most values).")] = None,
    benchmark: Annotated[str | None, typer.Option(
        help="A symbol of the run's data to measure it against (default: the benchmark it "
             "was run against, if any).")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", "--store", help="The store the run traded (default: the one its config "
                                  "recorded), to value holdings and credit dividends.",
        file_okay=False)] = None,
    db: Annotated[str | None, DB_OPTION] = None,
) -> None:
    """Write the HTML report of a saved run (a grid: its metric surface and table).

    A run's report values holdings, marks open positions and credits dividends with the
    data it traded: the store or synthetic universe its config recorded, else --data.
    """
    from pitgrid.cli.run_market import run_market
    from pitgrid.results import write_grid_report, write_report

    with open_db(db) as rdb:
        run = load_run(rdb, run_id)
    grid_page = is_grid(run) and param is None
    if axes is not None and not grid_page:
        fail_usage("--axes chooses a grid report's heatmap: give it for a grid run, without "
                   "--param")
    if benchmark is not None and grid_page:
        fail_usage("--benchmark measures one parameter set: add --param N (the grid's best is "
                   f"set {run.best_param})")
    output.parent.mkdir(parents=True, exist_ok=True)
    with usage_errors():
        if grid_page:
            metric = by or grid_by(run)
            if metric not in run.metrics.columns:
                raise ValueError(f"--by {metric!r} is not a metric; have: "
                                 f"{', '.join(c for c in run.metrics.columns if c != 'param')}")
            chosen = None if axes is None else [a.strip() for a in axes.split(",")]
            path = write_grid_report(grid_frame(run), grid_axes(run), metric, output,
                                     title=f"{run.strategy} grid: {metric}",
                                     overfitting=run.config.get("overfitting"), axes=chosen)
        else:
            index = check_param(run, param or 0)
            market, note = run_market(run, data)
            if note is not None:
                err.print(Text(note), soft_wrap=True)
            if benchmark is not None:
                if market is None:
                    fail_usage(f"--benchmark {benchmark} needs the run's data: pass --data STORE")
                check_benchmark(benchmark, market, "the run's data")
            path = write_report(run, output, param=index if is_grid(run) else None,
                                market=market, benchmark=benchmark,
                                title=f"{run.strategy} {params_text(run.params[index])}")
    print_paths([("report", path)])


# ---------------------------------------------------------------------- helpers
def _settings(config: dict[str, Any]) -> dict[str, Any]:
    """The simulation settings that differ from SimConfig's defaults (plus the fill rule)."""
    from pitgrid.engine.config import SimConfig

    defaults = SimConfig().to_dict()
    changed = {k: config[k] for k in defaults
               if k in config and (config[k] != defaults[k] or k == "fill")}
    if "size_value" in config:
        changed["size_value"] = config["size_value"]
    return changed
