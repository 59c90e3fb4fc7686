"""``[strategy]``: a shipped strategy (by alias or class name) or ``module:Class``, and its parameters.

A list value in ``params`` is a grid axis; every combination is built once here,
so a grid cannot fail halfway on a setting the strategy refuses.

Example:
    >>> from pathlib import Path
    >>> from pitgrid.runconfig.values import Checker
    >>> check = Checker("run.toml", Path("."))
    >>> strategy_class(check, {"name": "ma_cross"})[0]
    'MovingAverageCross'
"""
from __future__ import annotations

import dataclasses
import importlib
import itertools
import sys
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pitgrid.cycle.strategy import Strategy
from pitgrid.runconfig.schema import ALIASES
from pitgrid.runconfig.values import Checker, suggest


def strategy_class(check: Checker, table: dict[str, Any], key: str = "strategy.name",
                   ) -> tuple[str, type[Strategy]]:
    """The class ``table["name"]`` names, and its class name (or ``module:Class`` as written)."""
    if "name" not in table:
        raise check.fail(key, f"required: one of {', '.join(shipped_names())}, "
                         "or \"module:Class\" for your own")
    name = check.typed(table["name"], key, str)
    check.table(table.get("params", {}), "strategy.params")
    if ":" in name:
        return name, _user_class(check, name, key)
    cls = shipped().get(ALIASES.get(name, name))
    if cls is None:
        raise check.fail(key, f"unknown strategy {name!r}{suggest(name, shipped_names())}; "
                         f"allowed: {', '.join(shipped_names())}, or \"module:Class\" for your own")
    return cls.__name__, cls


def _user_class(check: Checker, name: str, key: str) -> type[Strategy]:
    module_name, _, attr = name.partition(":")
    try:
        # a module beside the config file imports without installing it
        with _on_path(check.base_dir):
            obj = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise check.fail(key, f"cannot import {module_name!r}: {exc}") from None
    except AttributeError:
        raise check.fail(key, f"module {module_name!r} has no {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, Strategy) and dataclasses.is_dataclass(obj)):
        raise check.fail(key, f"{name} is not a Strategy dataclass "
                         "(subclass pitgrid.Strategy with @dataclass(frozen=True, kw_only=True))")
    return obj


def takes(cls: type[Strategy], parameter: str) -> bool:
    """Whether the strategy class has an init parameter ``parameter``."""
    return parameter in {f.name for f in dataclasses.fields(cls) if f.init}


def strategy_params(check: Checker, cls: type[Strategy], raw: dict[str, Any], universe: str | None,
                    *, fixed: Mapping[str, Any] | None = None,
                    prefix: str = "strategy.params") -> dict[str, Any]:
    """``raw`` checked against the class's fields and type hints; ``fixed`` are parameters set
    by other sections (the model's bundle), which ``raw`` may not set."""
    fixed = dict(fixed or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    allowed = tuple(n for n in fields if n != "universe" and n not in fixed)
    if "universe" in raw:
        raise check.fail(f"{prefix}.universe", "set the universe in [universe] id")
    if "bundle" in raw and "bundle" in fixed:
        raise check.fail(f"{prefix}.bundle", "set the bundle in [model] bundle")
    check.keys(raw, f"{prefix}.", allowed)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a user class whose annotations do not resolve: skip type checks
        hints = {}
    params: dict[str, Any] = dict(fixed)
    for key, value in raw.items():
        hint = hints.get(key, Any)
        dotted = f"{prefix}.{key}"
        if isinstance(value, list):
            if not value:
                raise check.fail(dotted, "an empty list: a grid axis needs at least one value")
            params[key] = tuple(check.typed(v, f"{dotted}[{i}]", hint) for i, v in enumerate(value))
        elif key == "bundle" and isinstance(value, str):
            # a sleeve's model, like [model] bundle, is read from the config's folder
            params[key] = str(check.existing_path(value, dotted))
        else:
            params[key] = check.typed(value, dotted, hint)
    _construct_all(check, cls, params, universe, prefix)
    return params


def build(cls: type[Strategy], params: Mapping[str, Any], universe: str | None) -> Strategy:
    """One strategy; the universe goes to classes that take one."""
    return cls(**params, universe=universe) if takes(cls, "universe") else cls(**params)


def _construct_all(check: Checker, cls: type[Strategy], params: dict[str, Any],
                   universe: str | None, prefix: str) -> None:
    names = list(params)
    axes = [v if isinstance(v, tuple) else (v,) for v in params.values()]
    for combo in itertools.product(*axes):
        setting = dict(zip(names, combo))
        try:
            build(cls, setting, universe)
        except (ValueError, TypeError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in setting.items())
            raise check.fail(prefix, f"{cls.__name__}({shown}) is refused: {exc}") from None


@contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def shipped() -> dict[str, type[Strategy]]:
    """The strategies pitgrid ships, by class name."""
    from pitgrid import strategies
    from pitgrid.models.strategy import ModelStrategy

    found = {name: obj for name, obj in vars(strategies).items()
             if isinstance(obj, type) and issubclass(obj, Strategy)
             and obj.__module__ == strategies.__name__}
    return {**found, ModelStrategy.__name__: ModelStrategy}


def shipped_names() -> list[str]:
    return [*ALIASES, *shipped()]
