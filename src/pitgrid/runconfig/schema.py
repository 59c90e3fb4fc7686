"""What a run config holds once checked: sections and their keys, defaults, :class:`RunConfig`.

Example:
    >>> from pitgrid.runconfig import run_config_from_dict
    >>> cfg = run_config_from_dict({"data": {"synthetic": {"n_time": 300, "n_symbols": 5}},
    ...                             "strategy": {"name": "ma_cross",
    ...                                          "params": {"fast": [5, 10], "slow": 50}}})
    >>> cfg.is_grid, cfg.axes()
    (True, {'fast': [5, 10]})
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData
from pitgrid.engine.config import SimConfig
from pitgrid.engine.metrics import TRADE_METRICS
from pitgrid.results.sql import mask_url

# short names for the shipped strategies (pitgrid.strategies, and the model strategy)
ALIASES: dict[str, str] = {
    "ma_cross": "MovingAverageCross",
    "rsi": "RSIMeanReversion",
    "momentum": "CrossSectionalMomentum",
    "event": "EventDriven",
    "equal_weight": "EqualWeight",
    "model": "ModelStrategy",
}
COSTS = ("fees_bps", "slippage_bps", "spread_bps", "impact_k", "commission_per_share",
         "min_commission", "borrow_bps")
RISK = ("allow_short", "max_leverage", "min_bars_between", "max_positions", "max_trades_per_bar",
        "daily_loss_stop", "max_drawdown_stop", "cooldown_losses", "cooldown_bars")
# per-position exits and the life of limit and stop orders (docs/simulation.md, step B2)
EXITS = ("sl_stop", "tp_stop", "sl_trail", "time_stop", "stop_first", "trail_on",
         "order_ttl")
DATA_KEYS = ("store", "synthetic", "start", "end")
SYNTHETIC_KEYS = ("n_time", "n_symbols", "seed")
OUTPUT_KEYS = ("db", "reports", "keep", "by", "audit")
DEFAULT_DB = "pitgrid.db"
DEFAULT_REPORTS = "pitgrid_out"
DEFAULT_KEEP = 5
DEFAULT_BY = "sharpe"


def metric_names() -> tuple[str, ...]:
    """What ``[outputs] by`` may rank by."""
    from pitgrid._metrics import METRIC_NAMES

    return tuple(METRIC_NAMES) + TRADE_METRICS


def settings_sections() -> dict[str, tuple[str, ...]]:
    """SimConfig fields by section; a field not named below (a new one) belongs to [execution]."""
    names = SimConfig.field_names()
    return {
        "costs": tuple(n for n in names if n in COSTS),
        "execution": tuple(n for n in names if n not in COSTS and n not in RISK and n not in EXITS)
        + ("size_value",),
        "risk": tuple(n for n in names if n in RISK),
        "exits": tuple(n for n in names if n in EXITS),
    }


SECTIONS: dict[str, tuple[str, ...]] = {
    "data": DATA_KEYS,
    "universe": ("id",),
    "strategy": ("name", "params"),
    **settings_sections(),
    "model": ("bundle",),
    "benchmark": ("symbol", "strategy", "params"),
    "walkforward": ("train", "test", "anchored"),
    "portfolio": ("rebalance_every", "sleeves"),
    "outputs": OUTPUT_KEYS,
}


class RunConfigError(ValueError):
    """A run config that cannot run; ``file`` and ``key`` (dotted, e.g. ``execution.fill``) say where.

    Example:
        >>> str(RunConfigError("run.toml", "execution.fill", "'nope' is not allowed"))
        "run.toml: execution.fill: 'nope' is not allowed"
    """

    def __init__(self, file: str, key: str, message: str) -> None:
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")
        self.file, self.key, self.message = file, key, message


@dataclass(frozen=True)
class SyntheticData:
    """Arguments of :func:`pitgrid.synthetic_prices`: a deterministic universe, no files needed."""

    n_time: int
    n_symbols: int
    seed: int = 0


@dataclass(frozen=True)
class RunConfig:
    """A validated run config. ``params`` maps a strategy parameter to a value, or to a tuple of
    values for a grid axis; ``settings`` are SimConfig fields (plus ``size_value``) merged from
    ``[costs]``, ``[execution]`` and ``[risk]``.

    Example:
        >>> cfg = run_config_from_dict({"data": {"synthetic": {"n_time": 300, "n_symbols": 5}},
        ...                             "strategy": {"name": "ma_cross",
        ...                                          "params": {"fast": [5, 10], "slow": 50}}})
        >>> cfg.is_grid, cfg.axes(), cfg.strategy_class.__name__
        (True, {'fast': [5, 10]}, 'MovingAverageCross')
    """

    source: str
    strategy_name: str
    strategy_class: type[Strategy]
    params: Mapping[str, Any] = field(default_factory=dict)
    store: Path | None = None
    synthetic: SyntheticData | None = None
    universe: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    model_bundle: Path | None = None
    db: str = DEFAULT_DB
    reports: Path = Path(DEFAULT_REPORTS)
    keep: int = DEFAULT_KEEP
    by: str = DEFAULT_BY
    audit: bool = False
    start: np.datetime64 | None = None
    end: np.datetime64 | None = None
    benchmark: str | Strategy | None = None
    walkforward: Mapping[str, Any] | None = None
    portfolio: Mapping[str, Any] | None = None

    # stop levels listed in [exits]: grid axes on the core's parameter axis
    exit_axes: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def is_grid(self) -> bool:
        """True when any strategy parameter or ``[exits]`` stop level is a list (a grid axis)."""
        return bool(self.exit_axes) or any(isinstance(v, tuple) for v in self.params.values())

    def axes(self) -> dict[str, list[Any]]:
        """The grid axes, in file order (strategy parameters, then stop levels), as
        :func:`pitgrid.grid` takes them."""
        return {**{k: list(v) for k, v in self.params.items() if isinstance(v, tuple)},
                **{k: list(v) for k, v in self.exit_axes.items()}}

    def strategy(self) -> Strategy:
        """The strategy with its fixed parameters (and the first value of each grid axis)."""
        first = {k: v[0] if isinstance(v, tuple) else v for k, v in self.params.items()}
        return self.strategy_class(**first, universe=self.universe)

    def open_market(self) -> MarketData:
        """The run's market: the ingested store, or the synthetic universe.

        Raises :class:`RunConfigError` when ``[universe] id`` is not in the data, or when
        the ``[model]`` bundle reads a field the data lack.
        """
        import pitgrid as pg

        if self.store is not None:
            market = pg.open_market(self.store)
        else:
            s = self.synthetic
            market = pg.MarketData(pg.synthetic_prices(s.n_time, s.n_symbols, seed=s.seed))
        if self.universe is not None and self.universe not in market.universe_ids:
            have = ", ".join(market.universe_ids) or "none"
            raise RunConfigError(self.source, "universe.id",
                                 f"{self.universe!r} is not in the data; its universes: {have}")
        if self.model_bundle is not None:
            from pitgrid.models.features import check_fields
            from pitgrid.models.strategy import load_bundle

            try:
                check_fields(load_bundle(self.model_bundle), market.fields)
            except ValueError as exc:  # BundleError: names metadata.json and the feature
                raise RunConfigError(self.source, "model.bundle", str(exc)) from None
        return market

    def describe(self) -> dict[str, Any]:
        """The config as plain JSON-able values: stored with each run for provenance."""
        data = ({"store": str(self.store)} if self.store is not None
                else {"synthetic": dataclasses.asdict(self.synthetic)})
        return {
            "source": self.source, "data": {**data, "start": None if self.start is None else str(self.start),
                                            "end": None if self.end is None else str(self.end)},
            "universe": self.universe,
            "strategy": {"name": self.strategy_name,
                         "params": {k: list(v) if isinstance(v, tuple) else v
                                    for k, v in self.params.items()}},
            "settings": dict(self.settings),
            "exit_axes": {k: list(v) for k, v in self.exit_axes.items()},
            "model": None if self.model_bundle is None else str(self.model_bundle),
            "benchmark": (self.benchmark if isinstance(self.benchmark, str) or self.benchmark is None
                          else self.benchmark.describe()),
            "portfolio": None if self.portfolio is None else {
                "rebalance_every": self.portfolio["rebalance_every"],
                "sleeves": [{"name": s.label, "share": s.share, **s.strategy.describe(),
                             "settings": dict(s.settings)} for s in self.portfolio["sleeves"]]},
            "outputs": {"db": mask_url(self.db), "reports": str(self.reports), "keep": self.keep,
                        "by": self.by, "audit": self.audit},
        }


