"""Reading a run config: TOML in, every section checked, paths read from the file's folder.

Example:
    >>> cfg = run_config_from_dict({"data": {"synthetic": {"n_time": 300, "n_symbols": 5}},
    ...                             "strategy": {"name": "rsi"}, "costs": {"fees_bps": 10}})
    >>> cfg.settings["fees_bps"], cfg.is_grid
    (10.0, False)
"""
from __future__ import annotations

import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pitgrid.runconfig import sections
from pitgrid.runconfig.schema import (
    DEFAULT_BY, DEFAULT_KEEP, DEFAULT_REPORTS, SECTIONS, RunConfig, RunConfigError, metric_names,
)
from pitgrid.runconfig.strategies import strategy_class, strategy_params, takes
from pitgrid.runconfig.values import Checker


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML run config.

    Raises ``FileNotFoundError`` for a missing file and :class:`RunConfigError` (a
    ``ValueError``) for anything else: bad TOML, unknown sections or keys (with a
    close match), values of the wrong type or outside their allowed set, an unknown
    strategy, a parameter setting the strategy refuses, a missing store or a model
    bundle that cannot be loaded.

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
    check = Checker(source, Path(base_dir) if base_dir is not None else Path.cwd())
    check.keys(raw, "", SECTIONS, what="section")
    tables = {name: check.table(raw.get(name, {}), name) for name in SECTIONS}
    for name in ("universe", "strategy", "model", "benchmark", "walkforward", "portfolio", "outputs"):
        check.keys(tables[name], f"{name}.", SECTIONS[name])
    store, synthetic = sections.data(check, tables["data"])
    start, end = (check.when(tables["data"].get(k), f"data.{k}") for k in ("start", "end"))
    universe = check.typed(tables["universe"].get("id"), "universe.id", str | None)
    if universe is not None and synthetic is not None:
        raise RunConfigError(source, "universe.id", "synthetic data has no universes; "
                             "use [data] store = an ingested store with membership")
    bundle = sections.model(check, tables["model"] if "model" in raw else None)
    portfolio = sections.portfolio(check, tables["portfolio"], universe)
    if portfolio is not None and not tables["strategy"]:
        # a portfolio names its strategies per sleeve; the run is labelled by the first
        first = portfolio["sleeves"][0].strategy
        name, cls, params = "portfolio", type(first), {k: v for k, v in first.params().items()
                                                       if k != "universe"}
    else:
        name, cls, params = _strategy(check, tables["strategy"], bundle, universe)
    out = tables["outputs"]
    settings, exit_axes = sections.settings(check, tables)
    return RunConfig(
        source=source, strategy_name=name, strategy_class=cls, params=types.MappingProxyType(params),
        store=store, synthetic=synthetic, universe=universe,
        settings=types.MappingProxyType(settings), exit_axes=types.MappingProxyType(exit_axes),
        model_bundle=bundle,
        db=sections.db(check, out.get("db")),
        reports=(check.path(check.typed(out["reports"], "outputs.reports", str))
                 if "reports" in out else Path.cwd() / DEFAULT_REPORTS),
        keep=check.whole(out.get("keep", DEFAULT_KEEP), "outputs.keep"),
        by=check.choice(out.get("by", DEFAULT_BY), "outputs.by", metric_names()),
        audit=check.typed(out.get("audit", False), "outputs.audit", bool),
        start=start, end=end, benchmark=sections.benchmark(check, tables["benchmark"], universe),
        walkforward=sections.walkforward(check, tables["walkforward"]), portfolio=portfolio,
    )


def _strategy(check: Checker, table: dict[str, Any], bundle: Path | None,
              universe: str | None) -> tuple[str, type, dict[str, Any]]:
    """``[strategy]``, or the model strategy when only ``[model]`` is given; a strategy that
    reads a bundle gets ``[model] bundle``, and only a strategy that reads one may have it."""
    if not table and bundle is not None:
        table = {"name": "model"}
    name, cls = strategy_class(check, table)
    if takes(cls, "bundle") and bundle is None:
        raise check.fail("model.bundle", f"required: {name} reads a model bundle; add [model] "
                         'bundle = "<model directory>" (relative paths are read from the '
                         "config's folder)")
    if bundle is not None and not takes(cls, "bundle"):
        raise check.fail("model", f"{name} reads no model; for the model's own strategy write "
                         '[strategy] name = "model" (or leave [strategy] out)')
    fixed = {"bundle": str(bundle)} if bundle is not None else None
    return name, cls, strategy_params(check, cls, table.get("params", {}), universe, fixed=fixed)
