"""Run configuration files: one TOML file names the data, strategy, costs and outputs of a run.

Sections (``examples/ma_cross.toml`` and ``examples/momentum_grid.toml`` are complete ones)::

    [data]        store = "prices.pitgrid"                     an ingested store, or
                  synthetic = { n_time = 2520, n_symbols = 500, seed = 7 }
                  start = 2012-01-03, end = 2019-12-31         optional: trade start..end only
                                                               (features warm up before start)
    [universe]    id = "sp500"                                 optional: trade only its members
    [strategy]    name = "ma_cross"                            a shipped strategy (class name or
                                                               alias) or "module:Class"
                  params = { fast = 10, slow = [50, 100] }     a list value is a grid axis
    [costs]       fees_bps, slippage_bps, spread_bps, ...      SimConfig fields, split in three
    [execution]   fill, size, size_value, init_cash, ...       sections for readability
    [risk]        allow_short, max_leverage, max_positions, ...
    [model]       bundle = "model_dir"                         optional: checked to exist (for now)
    [outputs]     db = "pitgrid.db", reports = "pitgrid_out", keep = 5, by = "sharpe",
                  audit = false (true: the point-in-time check at every bar, recorded with the run)

Relative paths written in a file are read from the file's folder, so a config runs the
same from any working directory; outputs the file does not name go to the working
directory. Every key is checked before anything runs: an error names the file, the
dotted key and the allowed values.

Example:
    >>> cfg = load_run_config("examples/momentum_grid.toml")     # doctest: +SKIP
    >>> cfg.is_grid, cfg.axes()                                   # doctest: +SKIP
    (True, {'lookback': [63, 126, 252], 'top': [10, 25]})
    >>> outcome = run_grid(cfg)                                   # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import datetime
import difflib
import importlib
import itertools
import math
import sys
import time
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData
from pitgrid.drivers.common import resolve_settings
from pitgrid.engine.config import SimConfig
from pitgrid.engine.metrics import TRADE_METRICS
from pitgrid.engine.result import SimResult
from pitgrid.results.sql import Location, mask_url

if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.results.db import ResultsDB

__all__ = ["ALIASES", "RunConfig", "RunConfigError", "RunOutcome", "SyntheticData",
           "load_run_config", "run_backtest", "run_config_from_dict", "run_grid"]

# short names for the shipped strategies (pitgrid.strategies)
ALIASES: dict[str, str] = {
    "ma_cross": "MovingAverageCross",
    "rsi": "RSIMeanReversion",
    "momentum": "CrossSectionalMomentum",
    "event": "EventDriven",
    "equal_weight": "EqualWeight",
}
_COSTS = ("fees_bps", "slippage_bps", "spread_bps", "impact_k", "commission_per_share",
          "min_commission", "borrow_bps")
_RISK = ("allow_short", "max_leverage", "min_bars_between", "max_positions", "max_trades_per_bar",
         "daily_loss_stop", "max_drawdown_stop", "cooldown_losses", "cooldown_bars")
_DATA_KEYS = ("store", "synthetic", "start", "end")
_SYNTHETIC_KEYS = ("n_time", "n_symbols", "seed")
_OUTPUT_KEYS = ("db", "reports", "keep", "by", "audit")
_DEFAULT_DB = "pitgrid.db"
_DEFAULT_REPORTS = "pitgrid_out"
_DEFAULT_KEEP = 5
_DEFAULT_BY = "sharpe"


def _metric_names() -> tuple[str, ...]:
    from pitgrid._metrics import METRIC_NAMES

    return tuple(METRIC_NAMES) + TRADE_METRICS


def _settings_sections() -> dict[str, tuple[str, ...]]:
    """SimConfig fields by section; a field not named below (a new one) belongs to [execution]."""
    names = SimConfig.field_names()
    return {
        "costs": tuple(n for n in names if n in _COSTS),
        "execution": tuple(n for n in names if n not in _COSTS and n not in _RISK) + ("size_value",),
        "risk": tuple(n for n in names if n in _RISK),
    }


_SECTIONS: dict[str, tuple[str, ...]] = {
    "data": _DATA_KEYS,
    "universe": ("id",),
    "strategy": ("name", "params"),
    **_settings_sections(),
    "model": ("bundle",),
    "benchmark": ("symbol", "strategy", "params"),
    "walkforward": ("train", "test", "anchored"),
    "portfolio": ("rebalance_every", "sleeves"),
    "outputs": _OUTPUT_KEYS,
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
    db: str = _DEFAULT_DB
    reports: Path = Path(_DEFAULT_REPORTS)
    keep: int = _DEFAULT_KEEP
    by: str = _DEFAULT_BY
    audit: bool = False
    start: np.datetime64 | None = None
    end: np.datetime64 | None = None
    benchmark: str | Strategy | None = None
    walkforward: Mapping[str, Any] | None = None
    portfolio: Mapping[str, Any] | None = None

    @property
    def is_grid(self) -> bool:
        """True when any strategy parameter is a list (a grid axis)."""
        return any(isinstance(v, tuple) for v in self.params.values())

    def axes(self) -> dict[str, list[Any]]:
        """The grid axes, in file order, as :func:`pitgrid.grid` takes them."""
        return {k: list(v) for k, v in self.params.items() if isinstance(v, tuple)}

    def strategy(self) -> Strategy:
        """The strategy with its fixed parameters (and the first value of each grid axis)."""
        first = {k: v[0] if isinstance(v, tuple) else v for k, v in self.params.items()}
        return self.strategy_class(**first, universe=self.universe)

    def open_market(self) -> MarketData:
        """The run's market: the ingested store, or the synthetic universe.

        Raises :class:`RunConfigError` when ``[universe] id`` is not in the data.
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


# ---------------------------------------------------------------------- loading
def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML run config.

    Raises ``FileNotFoundError`` for a missing file and :class:`RunConfigError` (a
    ``ValueError``) for anything else: bad TOML, unknown sections or keys (with a
    close match), values of the wrong type or outside their allowed set, an unknown
    strategy, a parameter setting the strategy refuses, a missing store or bundle.

    Example:
        >>> cfg = load_run_config("examples/ma_cross.toml")      # doctest: +SKIP
        >>> cfg.settings["fill"]                                 # doctest: +SKIP
        'next_open'
    """
    path = Path(path)
    with path.open("rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise RunConfigError(str(path), "", f"not valid TOML: {exc}") from None
    return run_config_from_dict(raw, source=str(path), base_dir=path.resolve().parent)


def run_config_from_dict(raw: Mapping[str, Any], *, source: str = "<config>",
                         base_dir: str | Path | None = None) -> RunConfig:
    """Validate a config given as nested dicts (a parsed TOML file); see :func:`load_run_config`.

    ``base_dir`` is where relative input paths are read from (default: the working directory).

    Example:
        >>> cfg = run_config_from_dict({"data": {"synthetic": {"n_time": 300, "n_symbols": 5}},
        ...                             "strategy": {"name": "rsi"}, "costs": {"fees_bps": 10}})
        >>> cfg.settings["fees_bps"], cfg.is_grid
        (10.0, False)
    """
    check = _Checker(source, Path(base_dir) if base_dir is not None else Path.cwd())
    check.keys(raw, "", _SECTIONS, what="section")
    tables = {name: check.table(raw.get(name, {}), name) for name in _SECTIONS}

    for name in ("universe", "strategy", "model", "benchmark", "walkforward", "portfolio", "outputs"):
        check.keys(tables[name], f"{name}.", _SECTIONS[name])
    store, synthetic = check.data(tables["data"])
    start, end = (check.when(tables["data"].get(k), f"data.{k}") for k in ("start", "end"))
    universe = check.typed(tables["universe"].get("id"), "universe.id", str | None)
    if universe is not None and synthetic is not None:
        raise RunConfigError(source, "universe.id", "synthetic data has no universes; "
                             "use [data] store = an ingested store with membership")
    portfolio = check.portfolio(tables["portfolio"], universe)
    if portfolio is not None and not tables["strategy"]:
        # a portfolio names its strategies per sleeve; the run is labelled by the first
        first = portfolio["sleeves"][0].strategy
        name, cls, params = "portfolio", type(first), {k: v for k, v in first.params().items()
                                                       if k != "universe"}
    else:
        name, cls = check.strategy_class(tables["strategy"])
        params = check.params(cls, tables["strategy"].get("params", {}), universe)
    settings = check.settings(tables)
    bundle = tables["model"].get("bundle")
    if bundle is not None:
        bundle = check.existing_path(bundle, "model.bundle")
    out = tables["outputs"]
    return RunConfig(
        source=source, strategy_name=name, strategy_class=cls, params=types.MappingProxyType(params),
        store=store, synthetic=synthetic, universe=universe,
        settings=types.MappingProxyType(settings), model_bundle=bundle,
        db=check.db(out.get("db")),
        reports=(check.path(check.typed(out["reports"], "outputs.reports", str))
                 if "reports" in out else Path.cwd() / _DEFAULT_REPORTS),
        keep=check.whole(out.get("keep", _DEFAULT_KEEP), "outputs.keep"),
        by=check.choice(out.get("by", _DEFAULT_BY), "outputs.by", _metric_names()),
        audit=check.typed(out.get("audit", False), "outputs.audit", bool),
        start=start, end=end, benchmark=check.benchmark(tables["benchmark"], universe),
        walkforward=check.walkforward(tables["walkforward"]), portfolio=portfolio,
    )


class _Checker:
    """Validation steps of one config; every error names the source file and the dotted key."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source, self.base_dir = source, base_dir

    def fail(self, key: str, message: str) -> RunConfigError:
        return RunConfigError(self.source, key, message)

    def keys(self, table: Mapping[str, Any], prefix: str, allowed: Mapping[str, Any] | tuple[str, ...],
             *, what: str = "key") -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(prefix + key, f"unknown {what}{_suggest(key, allowed)}; "
                                f"allowed: {', '.join(allowed)}")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table ([{key}] or {{ ... }}), got {_show(value)}")
        return value

    def typed(self, value: Any, key: str, hint: Any) -> Any:
        """``value`` checked against a type hint; ints become floats where a float is expected."""
        if not _matches(value, hint):
            if typing.get_origin(hint) is Literal:
                return self.choice(value, key, typing.get_args(hint))
            raise self.fail(key, f"expected {_describe(hint)}, got {_show(value)}")
        return float(value) if hint is float and isinstance(value, int) else value

    def choice(self, value: Any, key: str, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(key, f"{value!r} is not allowed{_suggest(value, allowed)}; "
                            f"allowed: {', '.join(map(repr, allowed))}")
        return value

    def whole(self, value: Any, key: str) -> int:
        if not _matches(value, int) or value < 0:
            raise self.fail(key, f"expected a whole number >= 0, got {_show(value)}")
        return value

    def path(self, text: str) -> Path:
        return (self.base_dir / Path(text).expanduser()).resolve()

    def existing_path(self, value: Any, key: str) -> Path:
        path = self.path(self.typed(value, key, str))
        if not path.exists():
            raise self.fail(key, f"{path} does not exist (relative paths are read from {self.base_dir})")
        return path

    def db(self, value: Any) -> str:
        if value is None:
            return str(Path.cwd() / _DEFAULT_DB)
        text = self.typed(value, "outputs.db", str)
        # URLs (sqlite:///..., postgresql://...) go to ResultsDB as written
        return text if "://" in text else str(self.path(text))

    def benchmark(self, table: dict[str, Any], universe: str | None) -> str | Strategy | None:
        """``[benchmark]``: ``symbol = "SPY"``, or ``strategy = "<name>"`` with ``params``."""
        if not table:
            return None
        if ("symbol" in table) == ("strategy" in table):
            raise self.fail("benchmark", 'give exactly one of symbol = "<symbol of the data>" or '
                            'strategy = "<strategy name>" (with params = {...})')
        if "symbol" in table:
            return self.typed(table["symbol"], "benchmark.symbol", str)
        name, cls = self.strategy_class({"name": table["strategy"]})
        params = self.params(cls, table.get("params", {}), universe)
        return cls(**params, universe=universe) if "universe" in {f.name for f in
                                                                  dataclasses.fields(cls)} else cls(**params)

    def portfolio(self, table: dict[str, Any], universe: str | None) -> dict[str, Any] | None:
        """``[portfolio]``: ``rebalance_every`` bars and ``sleeves``, a list of tables with
        ``strategy``, ``params``, ``share``, optional ``name`` and settings of their own."""
        if not table:
            return None
        from pitgrid.drivers.sleeves import Sleeve

        raw = table.get("sleeves")
        if not isinstance(raw, list) or not raw:
            raise self.fail("portfolio.sleeves", "a list of sleeves: { strategy = \"...\", "
                            "share = 0.5, params = {...} }")
        hints = typing.get_type_hints(SimConfig)
        book = []
        for i, entry in enumerate(raw):
            key = f"portfolio.sleeves[{i}]"
            entry = self.table(entry, key)
            if "strategy" not in entry or "share" not in entry:
                raise self.fail(key, "each sleeve needs strategy and share")
            name, cls = self.strategy_class({"name": entry["strategy"], "params": entry.get("params", {})})
            params = self.params(cls, entry.get("params", {}), universe)
            share = self.typed(entry["share"], f"{key}.share", float)
            own = {k: v for k, v in entry.items() if k not in ("strategy", "params", "share", "name")}
            unknown = sorted(set(own) - set(hints))
            if unknown:
                raise self.fail(f"{key}.{unknown[0]}", f"not a setting{_suggest(unknown[0], list(hints))}")
            settings = {k: self.typed(v, f"{key}.{k}", hints[k]) for k, v in own.items()}
            strategy = cls(**params, universe=universe) if "universe" in {
                f.name for f in dataclasses.fields(cls)} else cls(**params)
            book.append(Sleeve(strategy, share, settings,
                               self.typed(entry.get("name"), f"{key}.name", str | None)))
        every = table.get("rebalance_every")
        return {"sleeves": book,
                "rebalance_every": None if every is None else self.whole(every, "portfolio.rebalance_every")}

    def walkforward(self, table: dict[str, Any]) -> dict[str, Any] | None:
        """``[walkforward]``: ``train`` and ``test`` bars, ``anchored`` (default false)."""
        if not table:
            return None
        for key in ("train", "test"):
            if key not in table:
                raise self.fail(f"walkforward.{key}", "required (a whole number of bars)")
        return {"train": self.whole(table["train"], "walkforward.train"),
                "test": self.whole(table["test"], "walkforward.test"),
                "anchored": self.typed(table.get("anchored", False), "walkforward.anchored", bool)}

    def when(self, value: Any, key: str) -> np.datetime64 | None:
        """A date or time (TOML date, or text like "2015-06-30"), or None."""
        if value is None:
            return None
        try:
            return np.datetime64(str(value).replace(" ", "T"), "ns")
        except ValueError:
            raise self.fail(key, f"expected a date such as 2015-06-30, got {_show(value)}") from None

    def data(self, data: dict[str, Any]) -> tuple[Path | None, SyntheticData | None]:
        self.keys(data, "data.", _DATA_KEYS)
        if ("store" in data) == ("synthetic" in data):
            raise self.fail("data", "give exactly one of store = \"<ingested store>\" or "
                            "synthetic = { n_time = ..., n_symbols = ..., seed = ... }")
        if "store" in data:
            from pitgrid.data.store import is_store

            store = self.existing_path(data["store"], "data.store")
            if not is_store(store):
                raise self.fail("data.store", f"{store} is not a pitgrid store (make one with "
                                "`pitgrid ingest SRC --store PATH`)")
            return store, None
        syn = self.table(data["synthetic"], "data.synthetic")
        self.keys(syn, "data.synthetic.", _SYNTHETIC_KEYS)
        for key in ("n_time", "n_symbols"):
            if key not in syn:
                raise self.fail(f"data.synthetic.{key}", "required (a whole number >= 1)")
            if not _matches(syn[key], int) or syn[key] < 1:
                raise self.fail(f"data.synthetic.{key}",
                                f"expected a whole number >= 1, got {_show(syn[key])}")
        seed = self.whole(syn.get("seed", 0), "data.synthetic.seed")
        return None, SyntheticData(syn["n_time"], syn["n_symbols"], seed)

    def strategy_class(self, table: dict[str, Any]) -> tuple[str, type[Strategy]]:
        if "name" not in table:
            raise self.fail("strategy.name", f"required: one of {', '.join(_shipped_names())}, "
                            "or \"module:Class\" for your own")
        name = self.typed(table["name"], "strategy.name", str)
        self.table(table.get("params", {}), "strategy.params")
        if ":" in name:
            return name, self._user_class(name)
        shipped = _shipped()
        cls = shipped.get(ALIASES.get(name, name))
        if cls is None:
            raise self.fail("strategy.name", f"unknown strategy {name!r}"
                            f"{_suggest(name, _shipped_names())}; "
                            f"allowed: {', '.join(_shipped_names())}, or \"module:Class\" for your own")
        return cls.__name__, cls

    def _user_class(self, name: str) -> type[Strategy]:
        module_name, _, attr = name.partition(":")
        try:
            # a module beside the config file imports without installing it
            with _on_path(self.base_dir):
                obj = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            raise self.fail("strategy.name", f"cannot import {module_name!r}: {exc}") from None
        except AttributeError:
            raise self.fail("strategy.name", f"module {module_name!r} has no {attr!r}") from None
        if not (isinstance(obj, type) and issubclass(obj, Strategy) and dataclasses.is_dataclass(obj)):
            raise self.fail("strategy.name", f"{name} is not a Strategy dataclass "
                            "(subclass pitgrid.Strategy with @dataclass(frozen=True, kw_only=True))")
        return obj

    def params(self, cls: type[Strategy], raw: dict[str, Any], universe: str | None) -> dict[str, Any]:
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        allowed = tuple(n for n in fields if n != "universe")
        if "universe" in raw:
            raise self.fail("strategy.params.universe", "set the universe in [universe] id")
        self.keys(raw, "strategy.params.", allowed)
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # a user class whose annotations do not resolve: skip type checks
            hints = {}
        params: dict[str, Any] = {}
        for key, value in raw.items():
            hint = hints.get(key, Any)
            dotted = f"strategy.params.{key}"
            if isinstance(value, list):
                if not value:
                    raise self.fail(dotted, "an empty list: a grid axis needs at least one value")
                params[key] = tuple(self.typed(v, f"{dotted}[{i}]", hint) for i, v in enumerate(value))
            else:
                params[key] = self.typed(value, dotted, hint)
        self._construct_all(cls, params, universe)
        return params

    def _construct_all(self, cls: type[Strategy], params: dict[str, Any], universe: str | None) -> None:
        """Build every parameter set once, so a grid cannot fail halfway on a setting it refuses."""
        names = list(params)
        axes = [v if isinstance(v, tuple) else (v,) for v in params.values()]
        for combo in itertools.product(*axes):
            setting = dict(zip(names, combo))
            try:
                cls(**setting, universe=universe)
            except (ValueError, TypeError) as exc:
                shown = ", ".join(f"{k}={v!r}" for k, v in setting.items())
                raise self.fail("strategy.params", f"{cls.__name__}({shown}) is refused: {exc}") from None

    def settings(self, tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
        hints = typing.get_type_hints(SimConfig)
        hints["size_value"] = float
        sections = _settings_sections()
        home = {key: section for section, keys in sections.items() for key in keys}
        out: dict[str, Any] = {}
        where: dict[str, str] = {}
        for section, keys in sections.items():
            for key, value in tables[section].items():
                dotted = f"{section}.{key}"
                if key not in keys:
                    if key in home:
                        raise self.fail(dotted, f"{key} belongs in [{home[key]}]")
                    raise self.fail(dotted, f"unknown key{_suggest(key, keys)}; "
                                    f"allowed: {', '.join(keys)}")
                out[key] = self.typed(value, dotted, hints[key])
                where[key] = dotted
        if "size_value" in out and not (math.isfinite(out["size_value"]) and out["size_value"] > 0):
            raise self.fail("execution.size_value",
                            f"must be a finite number > 0, got {out['size_value']!r}")
        try:
            SimConfig(**{k: v for k, v in out.items() if k != "size_value"})
        except ValueError as exc:
            # SimConfig's messages start with the field name: point at its dotted key
            field_name = str(exc).split("=", 1)[0]
            raise self.fail(where.get(field_name, "costs"), str(exc)) from None
        return out


@contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def _shipped() -> dict[str, type[Strategy]]:
    from pitgrid import strategies

    return {name: obj for name, obj in vars(strategies).items()
            if isinstance(obj, type) and issubclass(obj, Strategy)
            and obj.__module__ == strategies.__name__}


def _shipped_names() -> list[str]:
    return [*ALIASES, *_shipped()]


def _suggest(word: Any, allowed: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _matches(value: Any, hint: Any) -> bool:
    """Whether a TOML value fits a type hint; bools are not numbers, ints are floats."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    origin = typing.get_origin(hint)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(hint))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # hints we cannot check (generics, protocols): the strategy validates itself


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "nothing"
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    if hint in words:
        return words[hint]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint) if a is not type(None))
    return getattr(hint, "__name__", str(hint))


def _show(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "list",
            dict: "table"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


# ---------------------------------------------------------------------- running
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
    by: str = _DEFAULT_BY
    overfitting: dict[str, Any] | None = None
    walkforward: pl.DataFrame | None = None


def run_backtest(cfg: RunConfig, market: MarketData | None = None) -> RunOutcome:
    """Backtest a config without grid axes, save it to ``cfg.db`` and write its HTML report.

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
        return _run_portfolio(cfg, market, started)
    strategy = cfg.strategy()
    res = pg.backtest(market, strategy, dict(cfg.settings), audit=cfg.audit, start=cfg.start,
                      end=cfg.end, benchmark=cfg.benchmark)
    size_value = resolve_settings(strategy, dict(cfg.settings))[1]
    extra = {} if size_value is None else {"size_value": size_value}
    res = dataclasses.replace(res, config={**res.config, **extra, "run": cfg.describe()})
    with _results_db(cfg) as db:
        run_id = db.save_run(res, strategy=strategy.name, data_fingerprint=market.fingerprint(),
                             universe_id=cfg.universe, params=[stored_params(strategy)])
        stored = db.load_run(run_id)
    report = write_report(stored, _report_path(cfg, strategy.name, run_id),
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
    best_strategy = dataclasses.replace(base, **g.params[best])
    single = pg.backtest(market, best_strategy, dict(cfg.settings), start=cfg.start, end=cfg.end,
                         benchmark=cfg.benchmark)
    variants = [stored_params(dataclasses.replace(base, **p)) for p in g.params]
    stats = g.overfitting.to_dict() if g.overfitting is not None else None
    describe = {**cfg.describe(), "grid": {"axes": list(axes), "by": cfg.by, "keep": cfg.keep,
                                           "best_param": best}}
    res = _grid_as_result(g, single, best, list(axes),
                          {**single.config, "run": describe, "overfitting": stats})
    with _results_db(cfg) as db:
        run_id = db.save_run(res, strategy=base.name, data_fingerprint=market.fingerprint(),
                             universe_id=cfg.universe, params=variants)
        stored = db.load_run(run_id)
    grid_report = write_grid_report(g.table, list(axes), cfg.by,
                                    _report_path(cfg, base.name, run_id, "grid"),
                                    title=f"{base.name} grid: {cfg.by}", overfitting=stats)
    report = write_report(stored, _report_path(cfg, base.name, run_id, "best"), param=best,
                          title=f"{base.name} best by {cfg.by}: {_short(g.params[best])}")
    return RunOutcome(run_id=run_id, strategy=base.name, params=variants[best],
                      metrics=single.metrics.row(0, named=True), optimistic=single.optimistic,
                      db=cfg.db, report=report, seconds=time.perf_counter() - started,
                      grid_report=grid_report, table=g.table, best_param=best, by=cfg.by,
                      overfitting=stats)


def _run_portfolio(cfg: RunConfig, market: MarketData, started: float) -> RunOutcome:
    """A ``[portfolio]`` of sleeves in one account: saved as one run, each sleeve in its config."""
    import pitgrid as pg
    from pitgrid.results import write_report

    book = pg.sleeves(market, list(cfg.portfolio["sleeves"]), config=dict(cfg.settings),
                      rebalance_every=cfg.portfolio["rebalance_every"])
    res = _account_result(book, cfg)
    label = {"sleeves": ", ".join(f"{n} {s:.0%}" for n, s in book.shares.items())}
    with _results_db(cfg) as db:
        run_id = db.save_run(res, strategy="portfolio", data_fingerprint=market.fingerprint(),
                             universe_id=cfg.universe, params=[label])
        stored = db.load_run(run_id)
    report = write_report(stored, _report_path(cfg, "portfolio", run_id),
                          title=f"portfolio: {label['sleeves']}")
    return RunOutcome(run_id=run_id, strategy="portfolio", params=label,
                      metrics=res.metrics.row(0, named=True), optimistic=res.optimistic,
                      db=cfg.db, report=report, seconds=time.perf_counter() - started)


def _account_result(book: Any, cfg: RunConfig) -> SimResult:
    """The sleeves' runs added up into the account's: equity, cash, positions, exposures, fills."""
    runs = list(book.sleeves.values())

    def total(name: str) -> Any:
        arrays = [getattr(r, name) for r in runs]
        return None if any(a is None for a in arrays) else sum(arrays[1:], start=arrays[0])

    def rows(name: str) -> pl.DataFrame:
        return pl.concat([getattr(r, name) for r in runs], how="vertical_relaxed").sort(
            "time", maintain_order=True)

    counts = {k: float(sum(r.metrics[k][0] for r in runs))
              for k in ("trades", "fills", "unfilled", "fees", "slippage")}
    metrics = book.metrics.with_columns(pl.lit(v).alias(k) for k, v in counts.items())
    sleeves = [{"name": n, "share": book.shares[n], **r.extra["strategy"],
                "metrics": {k: r.metrics[k][0] for k in ("total_return", "annual_return", "sharpe",
                                                          "max_drawdown", "trades")}}
               for n, r in book.sleeves.items()]
    first = runs[0]
    return SimResult(equity=book.equity, long_exposure=total("long_exposure"),
                     short_exposure=total("short_exposure"), trades=rows("trades"),
                     unfilled=rows("unfilled"), filtered=rows("filtered"), metrics=metrics,
                     config={**first.config, "init_cash": book.capital, "run": cfg.describe(),
                             "sleeves": sleeves},
                     optimistic=first.optimistic, account_equity=total("account_equity"),
                     cash=total("cash"), positions=total("positions"))


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
    started = time.perf_counter()
    market = market if market is not None else cfg.open_market()
    base = cfg.strategy()
    wf = pg.walkforward(market, base, cfg.axes(), train=cfg.walkforward["train"],
                        test=cfg.walkforward["test"], anchored=cfg.walkforward["anchored"],
                        by=cfg.by, config=dict(cfg.settings), progress=progress)
    windows = [{k: (str(v) if isinstance(v, (np.datetime64, datetime.datetime)) else v)
                for k, v in row.items()} for row in wf.windows.iter_rows(named=True)]
    res = dataclasses.replace(wf.result, config={
        **wf.result.config, "run": cfg.describe(),
        "walkforward": {**cfg.walkforward, "by": cfg.by, "windows": windows,
                        "comparison": wf.comparison.to_dicts()}})
    label = {"walkforward": f"{len(windows)} windows"}
    with _results_db(cfg) as db:
        run_id = db.save_run(res, strategy=base.name, data_fingerprint=market.fingerprint(),
                             universe_id=cfg.universe, params=[label])
        stored = db.load_run(run_id)
    report = write_report(stored, _report_path(cfg, base.name, run_id, "walkforward"),
                          title=f"{base.name} walk-forward by {cfg.by}")
    return RunOutcome(run_id=run_id, strategy=base.name, params=label,
                      metrics=res.metrics.row(0, named=True), optimistic=res.optimistic,
                      db=cfg.db, report=report, seconds=time.perf_counter() - started,
                      walkforward=wf.windows)


def _grid_as_result(g: Any, single: SimResult, best: int, axes: list[str],
                    config: dict[str, Any]) -> SimResult:
    """One SimResult over every grid set: metrics for all, curves where kept, the best set in full."""
    P = g.table.height
    times = single.equity["time"].values
    equity, long_, short = (np.full((P, len(times)), np.nan) for _ in range(3))
    if g.equity is not None:
        equity[g.equity["param"].values] = g.equity.values
    equity[best] = single.equity.values
    long_[best] = single.long_exposure.values
    short[best] = single.short_exposure.values

    def label(values: np.ndarray) -> xr.DataArray:
        return xr.DataArray(values, dims=("param", "time"), coords={"param": np.arange(P), "time": times})

    metrics = g.table.drop(axes).insert_column(0, pl.Series("param", np.arange(P)))
    trades = single.trades.with_columns(pl.lit(best, dtype=single.trades["param"].dtype).alias("param"))
    return SimResult(equity=label(equity), long_exposure=label(long_), short_exposure=label(short),
                     trades=trades, unfilled=single.unfilled, metrics=metrics, config=config,
                     optimistic=single.optimistic)


def stored_params(strategy: Strategy) -> dict[str, Any]:
    """The strategy's parameters without unset ones (a run's universe is a column of its own)."""
    return {k: v for k, v in strategy.params().items() if v is not None}


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
