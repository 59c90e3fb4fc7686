"""Checks of single config values: types against hints, allowed choices, counts, paths, dates.

Every failure is a :class:`~pitgrid.runconfig.schema.RunConfigError` naming the
file and the dotted key, with a close match where one exists.

Example:
    >>> from pathlib import Path
    >>> check = Checker("run.toml", Path("/tmp"))
    >>> check.typed(3, "costs.fees_bps", float)
    3.0
    >>> str(check.fail("execution.fill", "'x' is not allowed"))
    "run.toml: execution.fill: 'x' is not allowed"
"""
from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pitgrid.runconfig.schema import RunConfigError


class Checker:
    """The value checks of one config file; relative paths are read from ``base_dir``."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source, self.base_dir = source, base_dir

    def fail(self, key: str, message: str) -> RunConfigError:
        return RunConfigError(self.source, key, message)

    def keys(self, table: Mapping[str, Any], prefix: str, allowed: Mapping[str, Any] | tuple[str, ...],
             *, what: str = "key") -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(prefix + key, f"unknown {what}{suggest(key, allowed)}; "
                                f"allowed: {', '.join(allowed)}")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table ([{key}] or {{ ... }}), got {show(value)}")
        return value

    def typed(self, value: Any, key: str, hint: Any) -> Any:
        """``value`` checked against a type hint; ints become floats where a float is expected."""
        if not matches(value, hint):
            if typing.get_origin(hint) is Literal:
                return self.choice(value, key, typing.get_args(hint))
            raise self.fail(key, f"expected {describe_hint(hint)}, got {show(value)}")
        return float(value) if hint is float and isinstance(value, int) else value

    def choice(self, value: Any, key: str, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(key, f"{value!r} is not allowed{suggest(value, allowed)}; "
                            f"allowed: {', '.join(map(repr, allowed))}")
        return value

    def whole(self, value: Any, key: str) -> int:
        if not matches(value, int) or value < 0:
            raise self.fail(key, f"expected a whole number >= 0, got {show(value)}")
        return value

    def path(self, text: str) -> Path:
        return (self.base_dir / Path(text).expanduser()).resolve()

    def existing_path(self, value: Any, key: str) -> Path:
        path = self.path(self.typed(value, key, str))
        if not path.exists():
            raise self.fail(key, f"{path} does not exist (relative paths are read from {self.base_dir})")
        return path

    def when(self, value: Any, key: str) -> np.datetime64 | None:
        """A date or time (TOML date, or text like "2015-06-30"), or None."""
        if value is None:
            return None
        try:
            return np.datetime64(str(value).replace(" ", "T"), "ns")
        except ValueError:
            raise self.fail(key, f"expected a date such as 2015-06-30, got {show(value)}") from None


def suggest(word: Any, allowed: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def matches(value: Any, hint: Any) -> bool:
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
        return any(matches(value, arm) for arm in typing.get_args(hint))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # hints we cannot check (generics, protocols): the strategy validates itself


def describe_hint(hint: Any) -> str:
    if hint is type(None):
        return "nothing"
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    if hint in words:
        return words[hint]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(describe_hint(a) for a in typing.get_args(hint) if a is not type(None))
    return getattr(hint, "__name__", str(hint))


def show(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "list",
            dict: "table"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"
