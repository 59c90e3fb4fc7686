"""Running a checked config: backtest, grid, walk-forward or portfolio, saved to the database
with its report(s).

Every result saved from a model strategy carries ``config["model_sha256"]``, the
SHA-256 of the bundle's ``model.pt``, so a stored run names the exact weights.

Example:
    >>> from pitgrid.runconfig import load_run_config
    >>> outcome = run_backtest(load_run_config("examples/ma_cross.toml"))  # doctest: +SKIP
    >>> outcome.metrics["sharpe"], outcome.report                          # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData
from pitgrid.drivers.common import resolve_settings
from pitgrid.results.sql import Location
from pitgrid.runconfig.combine import account_result, grid_as_result
from pitgrid.runconfig.schema import DEFAULT_BY, RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.engine.result import SimResult
    from pitgrid.results.db import ResultsDB, StoredRun


@dataclass(frozen=True)
class RunOutcome:
    """What a run left behind: its id in the database, its report(s) and headline numbers.

    For a grid, ``params`` and ``metrics`` are those of the best set (by ``by``), and
    ``table`` has every set.
    """

    run_id: str
    strategy: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    optimistic: bool
    db: str
    report: Path
    seconds: float
    grid_report: Path | None = None
    table: pl.DataFrame | None = None
    best_param: int | None = None
    by: str = DEFAULT_BY
    overfitting: dict[str, Any] | None = None
    walkforward: pl.DataFrame | None = None


def run_backtest(cfg: RunConfig, market: MarketData | None = None, *,
                 progress: bool = True) -> RunOutcome:
    """Backtest a config without grid axes, save it to ``cfg.db`` and write its HTML report.

    ``progress``: one line per phase after the backtest (saving, the report), on a terminal.

    Example:
        >>> outcome = run_backtest(load_run_config("examples/ma_cross.toml"))  # doctest: +SKIP
        >>> outcome.metrics["sharpe"], outcome.report                          # doctest: +SKIP
    """
    import pitgrid as pg
    from pitgrid.results import write_report

    if cfg.is_grid:
        raise ValueError(f"{cfg.source} has grid axes {sorted(cfg.axes())}: run it as a grid")
    started = time.perf_counter()
    market = market if market is not None else cfg.open_market()
    if cfg.portfolio is not None:
        return _run_portfolio(cfg, market, started, progress)
    strategy = cfg.strategy()
    res = pg.backtest(market, strategy, dict(cfg.settings), audit=cfg.audit, start=cfg.start,
                      end=cfg.end, benchmark=cfg.benchmark)
    size_value = resolve_settings(strategy, dict(cfg.settings))[1]
    extra = {} if size_value is None else {"size_value": size_value}
    res = dataclasses.replace(res, config={**res.config, **extra, "run": cfg.describe(),
                                           **_provenance(strategy)})
    run_id, stored = _save(cfg, res, strategy.name, market, [stored_params(strategy)], progress)
    with _phase(progress, "writing the report"):
        report = write_report(stored, _report_path(cfg, strategy.name, run_id), market=market,
                              title=f"{strategy.name} {_short(strategy.params())}")
    return RunOutcome(run_id=run_id, strategy=strategy.name, params=stored_params(strategy),
                      metrics=res.metrics.row(0, named=True), optimistic=res.optimistic,
                      db=cfg.db, report=report, seconds=time.perf_counter() - started)


def run_grid(cfg: RunConfig, market: MarketData | None = None, *, progress: bool = True) -> RunOutcome:
    """Run a config's grid, save it as one run, and write its grid report and best set's report.

    The saved run has one parameter set per grid row, so its ``grid_metrics`` rows hold
    the whole table (every set's exact metrics). Equity curves are kept for the best
    ``cfg.keep`` sets only (NaN for the others: grids keep no more). The best set by
    ``cfg.by`` is also backtested alone, and its equity, exposures and fills fill its
    row, so its report is as complete as a single run's.

    Example:
        >>> outcome = run_grid(load_run_config("examples/momentum_grid.toml"))  # doctest: +SKIP
        >>> outcome.table.height, outcome.best_param                            # doctest: +SKIP
    """
    import pitgrid as pg
    from pitgrid.results import write_grid_report, write_report

    if not cfg.is_grid:
        raise ValueError(f"{cfg.source} has no grid axes (list values in [strategy.params])")
    started = time.perf_counter()
    market = market if market is not None else cfg.open_market()
    base, axes = cfg.strategy(), cfg.axes()
    g = pg.grid(market, base, axes, config=dict(cfg.settings), keep=cfg.keep, by=cfg.by,
                progress=progress, start=cfg.start, end=cfg.end)
    if g.partial:
        raise RuntimeError(f"the grid stopped after {g.table.height} of "
                           f"{math.prod(map(len, axes.values()))} sets; nothing was saved")
    scores = g.table[cfg.by].to_numpy().astype(np.float64)
    best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
    best_strategy, best_stops = _split_set(base, g.params[best])
    with _phase(progress, "grid: the best set in full"):
        single = pg.backtest(market, best_strategy, {**cfg.settings, **best_stops}, start=cfg.start,
                             end=cfg.end, benchmark=cfg.benchmark)
    variants = [{**stored_params(v), **stops} for v, stops in (_split_set(base, p) for p in g.params)]
    stats = g.overfitting.to_dict() if g.overfitting is not None else None
    describe = {**cfg.describe(), "grid": {"axes": list(axes), "by": cfg.by, "keep": cfg.keep,
                                           "best_param": best}}
    res = grid_as_result(g, single, best, list(axes), {**single.config, "run": describe,
                                                       "overfitting": stats, **_provenance(base)})
    run_id, stored = _save(cfg, res, base.name, market, variants, progress)
    with _phase(progress, "writing the reports"):
        grid_report = write_grid_report(g.table, list(axes), cfg.by,
                                        _report_path(cfg, base.name, run_id, "grid"),
                                        title=f"{base.name} grid: {cfg.by}", overfitting=stats)
        report = write_report(stored, _report_path(cfg, base.name, run_id, "best"), param=best,
                              market=market,
                              title=f"{base.name} best by {cfg.by}: {_short(g.params[best])}")
    return RunOutcome(run_id=run_id, strategy=base.name, params=variants[best],
                      metrics=single.metrics.row(0, named=True), optimistic=single.optimistic,
                      db=cfg.db, report=report, seconds=time.perf_counter() - started,
                      grid_report=grid_report, table=g.table, best_param=best, by=cfg.by,
                      overfitting=stats)


def _run_portfolio(cfg: RunConfig, market: MarketData, started: float,
                   progress: bool) -> RunOutcome:
    """A ``[portfolio]`` of sleeves in one account: saved as one run, each sleeve in its config."""
    import pitgrid as pg
    from pitgrid.results import write_report

    book = pg.sleeves(market, list(cfg.portfolio["sleeves"]), config=dict(cfg.settings),
                      rebalance_every=cfg.portfolio["rebalance_every"])
    res = account_result(book, {"run": cfg.describe()})
    digest = portfolio_model_sha256(res.config["sleeves"])
    if digest is not None:
        res = dataclasses.replace(res, config={**res.config, "model_sha256": digest})
    label = {"sleeves": ", ".join(f"{n} {s:.0%}" for n, s in book.shares.items())}
    run_id, stored = _save(cfg, res, "portfolio", market, [label], progress)
    with _phase(progress, "writing the report"):
        report = write_report(stored, _report_path(cfg, "portfolio", run_id), market=market,
                              title=f"portfolio: {label['sleeves']}")
    return RunOutcome(run_id=run_id, strategy="portfolio", params=label,
                      metrics=res.metrics.row(0, named=True), optimistic=res.optimistic,
                      db=cfg.db, report=report, seconds=time.perf_counter() - started)


def run_walkforward(cfg: RunConfig, market: MarketData | None = None, *,
                    progress: bool = True) -> RunOutcome:
    """Walk-forward optimisation of a config's grid (``[walkforward]`` train and test bars):
    the stitched out-of-sample run is saved, with its windows, and reported.

    Example:
        >>> outcome = run_walkforward(load_run_config("wf.toml"))    # doctest: +SKIP
    """
    import pitgrid as pg
    from pitgrid.results import write_report

    if cfg.walkforward is None or not cfg.is_grid:
        raise ValueError(f"{cfg.source}: walk-forward needs a [walkforward] section (train, test) "
                         "and grid axes (list values in [strategy.params])")
    if cfg.exit_axes:
        raise ValueError(f"{cfg.source}: walk-forward chooses strategy parameters; give "
                         f"{', '.join(cfg.exit_axes)} in [exits] one value, not a list")
    started = time.perf_counter()
    market = market if market is not None else cfg.open_market()
    base = cfg.strategy()
    wf = pg.walkforward(market, base, cfg.axes(), train=cfg.walkforward["train"],
                        test=cfg.walkforward["test"], anchored=cfg.walkforward["anchored"],
                        by=cfg.by, config=dict(cfg.settings), progress=progress,
                        benchmark=cfg.benchmark)
    windows = [{k: (str(v) if isinstance(v, (np.datetime64, datetime.datetime)) else v)
                for k, v in row.items()} for row in wf.windows.iter_rows(named=True)]
    res = dataclasses.replace(wf.result, config={
        **wf.result.config, "run": cfg.describe(), **_provenance(base),
        "walkforward": {**cfg.walkforward, "by": cfg.by, "windows": windows,
                        "comparison": wf.comparison.to_dicts()}})
    label = {"walkforward": f"{len(windows)} windows"}
    run_id, stored = _save(cfg, res, base.name, market, [label], progress)
    with _phase(progress, "writing the report"):
        report = write_report(stored, _report_path(cfg, base.name, run_id, "walkforward"),
                              market=market, title=f"{base.name} walk-forward by {cfg.by}")
    return RunOutcome(run_id=run_id, strategy=base.name, params=label,
                      metrics=res.metrics.row(0, named=True), optimistic=res.optimistic,
                      db=cfg.db, report=report, seconds=time.perf_counter() - started,
                      walkforward=wf.windows)


def stored_params(strategy: Strategy) -> dict[str, Any]:
    """The strategy's parameters without unset ones (a run's universe is a column of its own)."""
    return {k: v for k, v in strategy.params().items() if v is not None}


def _save(cfg: RunConfig, res: SimResult, strategy: str, market: MarketData,
          params: list[dict[str, Any]], progress: bool) -> tuple[str, StoredRun]:
    """Save the run in one transaction and read it back as stored (what reports show)."""
    with _phase(progress, "saving to the database"), _results_db(cfg) as db:
        run_id = db.save_run(res, strategy=strategy, data_fingerprint=market.fingerprint(),
                             universe_id=cfg.universe, params=params)
        return run_id, db.load_run(run_id)


@contextmanager
def _phase(progress: bool, what: str) -> Iterator[None]:
    """One step of a run's tail, shown (on a terminal) while it runs and with its time after."""
    from tqdm.auto import tqdm

    with tqdm(total=1, desc=what, unit="step", disable=None if progress else True) as bar:
        yield
        bar.update()


def _results_db(cfg: RunConfig) -> ResultsDB:
    """The run's database; a file's folder is made first (SQLite will not)."""
    from pitgrid.results import ResultsDB

    location = Location.parse(cfg.db)
    if location.kind == "sqlite":
        Path(location.target).parent.mkdir(parents=True, exist_ok=True)
    return ResultsDB(cfg.db)


def _report_path(cfg: RunConfig, strategy: str, run_id: str, kind: str = "") -> Path:
    cfg.reports.mkdir(parents=True, exist_ok=True)
    return cfg.reports / ("-".join(filter(None, [strategy, kind, run_id[:8]])) + ".html")


def _short(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)


def portfolio_model_sha256(sleeves: list[Mapping[str, Any]]) -> str | None:
    """A portfolio's weights hash: None without model sleeves; the shared hash when every
    model sleeve trades the same weights; else the SHA-256 of the distinct sleeve hashes,
    sorted and joined by ``,`` (each sleeve's own stays in ``config["sleeves"]``).

    Example:
        >>> portfolio_model_sha256([{"model_sha256": "ab"}, {}, {"model_sha256": "ab"}])
        'ab'
        >>> portfolio_model_sha256([{"name": "trend"}]) is None
        True
    """
    import hashlib

    hashes = sorted({s["model_sha256"] for s in sleeves if s.get("model_sha256")})
    if len(hashes) <= 1:
        return hashes[0] if hashes else None
    # sorted: the same models give the same hash whatever the sleeves' order
    return hashlib.sha256(",".join(hashes).encode()).hexdigest()


def _provenance(strategy: Strategy) -> dict[str, Any]:
    """``model_sha256`` of the model the run traded on, when it traded on one."""
    digest = strategy.describe().get("model_sha256")
    return {} if digest is None else {"model_sha256": digest}


def _split_set(base: Strategy, params: dict[str, Any]) -> tuple[Strategy, dict[str, Any]]:
    """A grid set as the strategy with its parameters and the ``[exits]`` stop levels."""
    own = {f.name for f in dataclasses.fields(base)}
    return (dataclasses.replace(base, **{k: v for k, v in params.items() if k in own}),
            {k: v for k, v in params.items() if k not in own})
