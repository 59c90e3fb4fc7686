"""The checks of each section other than ``[strategy]``: data, settings, model, benchmark,
portfolio, walk-forward and outputs.

Example:
    >>> from pathlib import Path
    >>> from pitgrid.runconfig.values import Checker
    >>> check = Checker("run.toml", Path("."))
    >>> walkforward(check, {"train": 500, "test": 100})
    {'train': 500, 'test': 100, 'anchored': False}
"""
from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Any

from pitgrid.cycle.strategy import Strategy
from pitgrid.engine.config import SimConfig
from pitgrid.engine.orders import STOP_SETTINGS
from pitgrid.runconfig.schema import DATA_KEYS, SYNTHETIC_KEYS, SyntheticData, settings_sections
from pitgrid.runconfig.strategies import build, strategy_class, strategy_params
from pitgrid.runconfig.values import Checker, matches, show, suggest


def data(check: Checker, table: dict[str, Any]) -> tuple[Path | None, SyntheticData | None]:
    """``[data]``: exactly one of an ingested ``store`` or ``synthetic`` arguments."""
    check.keys(table, "data.", DATA_KEYS)
    if ("store" in table) == ("synthetic" in table):
        raise check.fail("data", "give exactly one of store = \"<ingested store>\" or "
                         "synthetic = { n_time = ..., n_symbols = ..., seed = ... }")
    if "store" in table:
        from pitgrid.data.store import is_store

        store = check.existing_path(table["store"], "data.store")
        if not is_store(store):
            raise check.fail("data.store", f"{store} is not a pitgrid store (make one with "
                             "`pitgrid ingest SRC --store PATH`)")
        return store, None
    syn = check.table(table["synthetic"], "data.synthetic")
    check.keys(syn, "data.synthetic.", SYNTHETIC_KEYS)
    for key in ("n_time", "n_symbols"):
        if key not in syn:
            raise check.fail(f"data.synthetic.{key}", "required (a whole number >= 1)")
        if not matches(syn[key], int) or syn[key] < 1:
            raise check.fail(f"data.synthetic.{key}",
                             f"expected a whole number >= 1, got {show(syn[key])}")
    seed = check.whole(syn.get("seed", 0), "data.synthetic.seed")
    return None, SyntheticData(syn["n_time"], syn["n_symbols"], seed)


def model(check: Checker, table: dict[str, Any] | None) -> Path | None:
    """``[model] bundle``: a model directory, read from the config's folder when relative,
    loaded here so that a bundle that cannot run fails before the data is opened. ``table``
    is None when the file has no ``[model]``."""
    if table is None:
        return None
    if "bundle" not in table:
        raise check.fail("model.bundle", "required: the model's directory (metadata.json and "
                         "model.pt, written by pitgrid.save_bundle)")
    path = check.existing_path(table["bundle"], "model.bundle")
    from pitgrid.models.strategy import load_bundle

    try:
        load_bundle(path)
    except ValueError as exc:  # BundleError: names the bundle's file and field
        raise check.fail("model.bundle", str(exc)) from None
    return path


def settings(check: Checker, tables: dict[str, dict[str, Any]]
             ) -> tuple[dict[str, Any], dict[str, tuple[Any, ...]]]:
    """``[costs]``, ``[execution]``, ``[risk]`` and ``[exits]``: SimConfig fields, each in its
    own section; returns the settings and the grid axes, a list of stop levels in
    ``[exits]`` (``sl_stop = [0.03, 0.05]``) being one (the settings hold its first value)."""
    hints = typing.get_type_hints(SimConfig)
    hints["size_value"] = float
    sections = settings_sections()
    home = {key: section for section, keys in sections.items() for key in keys}
    out: dict[str, Any] = {}
    axes: dict[str, tuple[Any, ...]] = {}
    where: dict[str, str] = {}
    for section, keys in sections.items():
        for key, value in tables[section].items():
            dotted = f"{section}.{key}"
            if key not in keys:
                if key in home:
                    raise check.fail(dotted, f"{key} belongs in [{home[key]}]")
                raise check.fail(dotted, f"unknown key{suggest(key, keys)}; "
                                 f"allowed: {', '.join(keys)}")
            if isinstance(value, list) and key in STOP_SETTINGS:
                if not value:
                    raise check.fail(dotted, "a grid axis needs at least one value")
                axes[key] = tuple(check.typed(v, f"{dotted}[{i}]", hints[key])
                                  for i, v in enumerate(value))
                for v in axes[key]:
                    try:
                        SimConfig(**{key: v})
                    except ValueError as exc:
                        raise check.fail(dotted, str(exc)) from None
                value = axes[key][0]
            out[key] = check.typed(value, dotted, hints[key])
            where[key] = dotted
    if "size_value" in out and not (math.isfinite(out["size_value"]) and out["size_value"] > 0):
        raise check.fail("execution.size_value",
                         f"must be a finite number > 0, got {out['size_value']!r}")
    try:
        SimConfig(**{k: v for k, v in out.items() if k != "size_value"})
    except ValueError as exc:
        # SimConfig's messages start with the field name: point at its dotted key
        field_name = str(exc).split("=", 1)[0]
        raise check.fail(where.get(field_name, "costs"), str(exc)) from None
    return out, axes


def db(check: Checker, value: Any) -> str:
    """``[outputs] db``: a path (from the config's folder) or a URL; when not given, the
    default database, as for the command line: ``PITGRID_DB``, else the nearest project
    file's, else ``pitgrid.db`` in the working directory
    (:func:`pitgrid.results.default_db.default_db`)."""
    if value is None:
        from pitgrid.results.default_db import default_db

        try:
            return default_db().location
        except ValueError as exc:  # an unreadable project file, named in the message
            raise check.fail("outputs.db",
                             f"not given, and the default cannot be read: {exc}") from None
    text = check.typed(value, "outputs.db", str)
    # URLs (sqlite:///..., postgresql://...) go to ResultsDB as written
    return text if "://" in text else str(check.path(text))


def benchmark(check: Checker, table: dict[str, Any], universe: str | None) -> str | Strategy | None:
    """``[benchmark]``: ``symbol = "SPY"``, or ``strategy = "<name>"`` with ``params``."""
    if not table:
        return None
    if ("symbol" in table) == ("strategy" in table):
        raise check.fail("benchmark", 'give exactly one of symbol = "<symbol of the data>" or '
                         'strategy = "<strategy name>" (with params = {...})')
    if "symbol" in table:
        return check.typed(table["symbol"], "benchmark.symbol", str)
    _, cls = strategy_class(check, {"name": table["strategy"]}, "benchmark.strategy")
    return build(cls, strategy_params(check, cls, table.get("params", {}), universe), universe)


def portfolio(check: Checker, table: dict[str, Any], universe: str | None) -> dict[str, Any] | None:
    """``[portfolio]``: ``rebalance_every`` bars and ``sleeves``, a list of tables with
    ``strategy``, ``params``, ``share``, optional ``name`` and settings of their own."""
    if not table:
        return None
    from pitgrid.drivers.sleeves import Sleeve

    raw = table.get("sleeves")
    if not isinstance(raw, list) or not raw:
        raise check.fail("portfolio.sleeves", "a list of sleeves: { strategy = \"...\", "
                         "share = 0.5, params = {...} }")
    hints = typing.get_type_hints(SimConfig)
    book = []
    for i, entry in enumerate(raw):
        key = f"portfolio.sleeves[{i}]"
        entry = check.table(entry, key)
        if "strategy" not in entry or "share" not in entry:
            raise check.fail(key, "each sleeve needs strategy and share")
        _, cls = strategy_class(check, {"name": entry["strategy"], "params": entry.get("params", {})},
                                f"{key}.strategy")
        params = strategy_params(check, cls, entry.get("params", {}), universe)
        share = check.typed(entry["share"], f"{key}.share", float)
        own = {k: v for k, v in entry.items() if k not in ("strategy", "params", "share", "name")}
        unknown = sorted(set(own) - set(hints))
        if unknown:
            raise check.fail(f"{key}.{unknown[0]}", f"not a setting{suggest(unknown[0], list(hints))}")
        sleeve_settings = {k: check.typed(v, f"{key}.{k}", hints[k]) for k, v in own.items()}
        book.append(Sleeve(build(cls, params, universe), share, sleeve_settings,
                           check.typed(entry.get("name"), f"{key}.name", str | None)))
    every = table.get("rebalance_every")
    return {"sleeves": book,
            "rebalance_every": None if every is None else check.whole(every, "portfolio.rebalance_every")}


def walkforward(check: Checker, table: dict[str, Any]) -> dict[str, Any] | None:
    """``[walkforward]``: ``train`` and ``test`` bars, ``anchored`` (default false)."""
    if not table:
        return None
    for key in ("train", "test"):
        if key not in table:
            raise check.fail(f"walkforward.{key}", "required (a whole number of bars)")
    return {"train": check.whole(table["train"], "walkforward.train"),
            "test": check.whole(table["test"], "walkforward.test"),
            "anchored": check.typed(table.get("anchored", False), "walkforward.anchored", bool)}
