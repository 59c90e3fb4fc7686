"""The main job (``pitgrid demo``): data in, backtests and a grid out, all saved and reported.

1. Data: a deterministic synthetic universe (10 years x 500 symbols, seed 7) written as
   a long CSV, or a sample folder (``--data``: ``prices.csv.gz`` and optionally
   ``sp500_membership_intervals.csv``); ingested into a zarr store.
2. Run configs, written as TOML files into ``OUT/configs`` and loaded back the way
   ``pitgrid run`` loads them: a moving-average crossover, a cross-sectional momentum
   strategy (inside the ``sp500`` universe when the data has it) and a small
   moving-average grid. Honest defaults: next-open fills, 10 bps fees, 5 bps slippage.
   The moving-average runs give every symbol the same budget, ``1 / N`` of equity per
   entry (``size = "percent"``, N the data's symbols), as a user sizes a per-symbol
   trend rule; the engine's default (all cash split among the entries of a bar) would
   put everything into the first bar's signals and leave later ones unfunded.
3. Results: every run in ``OUT/pitgrid.db``, one HTML report per run in ``OUT/reports``.

Example:
    >>> result = run_demo("pitgrid_out", quick=True)          # doctest: +SKIP
    >>> [o.strategy for o in result.outcomes]                  # doctest: +SKIP
    ['MovingAverageCross', 'CrossSectionalMomentum', 'MovingAverageCross']
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitgrid.runconfig import RunOutcome, load_run_config, run_backtest, run_grid

FULL_SIZE = (2520, 500)   # 10 years of business days x 500 symbols
QUICK_SIZE = (500, 50)
SEED = 7
PRICES_FILE = "prices.csv.gz"
MEMBERSHIP_FILE = "sp500_membership_intervals.csv"
_COSTS = {"fees_bps": 10, "slippage_bps": 5}
_EXECUTION = {"fill": "next_open"}


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put things, and what each run gave."""

    out: Path
    store: Path
    db: Path
    outcomes: list[RunOutcome]
    configs: list[Path]
    seconds: float


def run_demo(out: str | Path = "pitgrid_out", *, data: str | Path | None = None, quick: bool = False,
             progress: bool = True, log: Callable[[str], None] = print) -> DemoResult:
    """Ingest the demo data, run the demo configs, save and report them; see the module docs.

    ``quick`` uses a 500 x 50 synthetic universe (same steps, a few seconds). ``log``
    receives one line per step. Raises ``FileNotFoundError`` when ``data`` lacks
    ``prices.csv.gz`` and ``IngestError`` when its files do not validate.

    Example:
        >>> result = run_demo("/tmp/demo", quick=True, progress=False, log=lambda s: None)  # doctest: +SKIP
        >>> result.db.exists()                                                              # doctest: +SKIP
        True
    """
    import pitgrid as pg

    started = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    store = out / "prices.zarr"
    sources, membership = _sources(out, data, quick, log)
    log(f"ingesting {', '.join(map(str, sources))} into {store}")
    # a rerun replaces the store: it is derived from the sources, which are kept
    pg.ingest(sources, store, universes=membership, overwrite=True, progress=progress,
              unknown_symbols="drop")
    market = pg.open_market(store)
    universe = "sp500" if "sp500" in market.universe_ids else None

    configs = _write_configs(out / "configs", store, universe, len(market.symbols))
    outcomes = []
    for path in configs:
        cfg = load_run_config(path)
        log(f"running {path.name}: {cfg.strategy_name} {cfg.describe()['strategy']['params']}")
        outcome = (run_grid(cfg, market, progress=progress) if cfg.is_grid
                   else run_backtest(cfg, market, progress=progress))
        outcomes.append(outcome)
    return DemoResult(out=out, store=store, db=out / "pitgrid.db", outcomes=outcomes,
                      configs=configs, seconds=time.perf_counter() - started)


DATA_LAYOUT = (
    f"--data takes a folder holding {PRICES_FILE}, long daily bars with the columns "
    "time,symbol,open,high,low,close,volume (optionally split_coefficient and dividend_amount), "
    f"and optionally {MEMBERSHIP_FILE} (ticker,start_date,end_date); the project's real "
    "sample is such a folder, and without one `pitgrid demo` runs on synthetic data"
)


def _sources(out: Path, data: str | Path | None, quick: bool, log: Callable[[str], None]
             ) -> tuple[list[Path], Path | None]:
    """The bar files to ingest and the membership file, if any."""
    if data is not None:
        folder = Path(data)
        prices = folder / PRICES_FILE
        if not prices.is_file():
            what = "is not a folder" if not folder.is_dir() else f"has no {PRICES_FILE}"
            raise FileNotFoundError(f"--data {folder} {what} ({prices} is missing): {DATA_LAYOUT}")
        membership = folder / MEMBERSHIP_FILE
        return [prices], membership if membership.is_file() else None
    n_time, n_symbols = QUICK_SIZE if quick else FULL_SIZE
    csv = out / "prices.csv"
    log(f"writing synthetic_prices({n_time}, {n_symbols}, seed={SEED}) to {csv}")
    write_long_csv(n_time, n_symbols, SEED, csv)
    return [csv], None


def write_long_csv(n_time: int, n_symbols: int, seed: int, path: Path) -> Path:
    """Write :func:`pitgrid.synthetic_prices` as a long CSV: ``time,symbol,open,high,low,close,volume``.

    Example:
        >>> write_long_csv(252, 5, 0, Path("prices.csv"))          # doctest: +SKIP
        PosixPath('prices.csv')
    """
    import pitgrid as pg

    pg.long_bars(pg.synthetic_prices(n_time, n_symbols, seed=seed)).write_csv(path)
    return path


def _write_configs(folder: Path, store: Path, universe: str | None, n_symbols: int) -> list[Path]:
    """The demo's run configs as TOML files, rerunnable with ``pitgrid run`` / ``pitgrid grid``."""
    folder.mkdir(parents=True, exist_ok=True)
    # a per-symbol rule: each symbol's entry gets the same share of equity
    per_symbol = {"execution": {**_EXECUTION, "size": "percent",
                                "size_value": float(f"{1 / n_symbols:.4g}")}}
    common: dict[str, dict[str, Any]] = {
        "costs": _COSTS, "execution": _EXECUTION,
        # relative to the config file, so the output folder can be moved as a whole
        "outputs": {"db": "../pitgrid.db", "reports": "../reports"},
    }
    # with real data every run trades the point-in-time membership, not today's survivors
    data = {"data": {"store": f"../{store.name}"}, **({"universe": {"id": universe}} if universe else {})}
    runs = {
        "ma_cross.toml": {**data, "strategy": {"name": "ma_cross", "params": {"fast": 10, "slow": 50}},
                          **common, **per_symbol},
        "momentum.toml": {**data, "strategy": {"name": "momentum",
                                       "params": {"lookback": 126, "top": min(50, max(10, n_symbols // 10)),
                                                  "every": 21}},
                          **common},
        "ma_grid.toml": {**data, "strategy": {"name": "ma_cross",
                                              "params": {"fast": [5, 10, 20], "slow": [50, 100]}},
                         **common, **per_symbol,
                         "outputs": {**common["outputs"], "keep": 3, "by": "sharpe"}},
    }
    paths = []
    for name, sections in runs.items():
        path = folder / name
        path.write_text(to_toml(sections, header=f"written by `pitgrid demo`; rerun: pitgrid "
                                f"{'grid' if 'grid' in name else 'run'} {path}"))
        paths.append(path)
    return paths


def to_toml(sections: dict[str, dict[str, Any]], *, header: str = "") -> str:
    """TOML text of ``{section: {key: value}}`` (tomli-w), after a ``# header`` comment line.

    Example:
        >>> print(to_toml({"strategy": {"name": "ma_cross", "params": {"fast": [5, 10]}}}))
        [strategy]
        name = "ma_cross"
        <BLANKLINE>
        [strategy.params]
        fast = [
            5,
            10,
        ]
        <BLANKLINE>
    """
    import tomli_w

    return (f"# {header}\n\n" if header else "") + tomli_w.dumps(sections)
