"""The result of a simulation: labelled arrays, trade tables and metrics."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import xarray as xr

_REQUIRED = object()


class LazyTable:
    """A table (or array) a result builds on first read (``build()``), so a run whose
    trades or positions are never looked at does not pay for them. ``build`` must be
    picklable (a module-level function, or a ``functools.partial`` of one) when results
    cross processes.

    Example:
        >>> import polars as pl
        >>> t = LazyTable(lambda: pl.DataFrame({"x": [1]}))
        >>> t.build().height
        1
    """

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], pl.DataFrame]) -> None:
        self.build = build


class _Table:
    """A field of :class:`SimResult` that may hold a :class:`LazyTable`: built once, on
    first read, then kept."""

    def __init__(self, default: Any = _REQUIRED) -> None:
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            # what the dataclass takes as the field's default; AttributeError: none
            if self.default is _REQUIRED:
                raise AttributeError(self.slot[1:])
            return self.default
        value = obj.__dict__[self.slot]
        if isinstance(value, LazyTable):
            value = obj.__dict__[self.slot] = value.build()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = value


@dataclass
class SimResult:
    """Outputs of :func:`pitgrid.simulate` (and of the drivers built on it).

    ``equity`` is the total equity per parameter set (dims ``time`` or
    ``param, time``), always present. ``account_equity``, ``cash`` (dims
    ``[param,] time, account``) and ``positions`` (``[param,] time, symbol``) are
    present when kept (``keep="full"``). ``trades`` holds every fill, ``unfilled``
    every order or remainder that did not fill and why, ``filtered`` every order a
    risk gate refused and why, ``halted_at`` the bar index at which the drawdown
    stop halted each account (-1 = never; present when the stop is on). ``metrics`` has one row
    per parameter set. ``optimistic`` is true for same-bar close fills.

    The three tables are built from the core's order log when first read (a
    :class:`LazyTable` given for any of them is), so a run read only for its equity
    and metrics never builds them; so are ``positions``, ``cash`` and ``account_equity``
    of a batch run, from the core's journal of what each bar changed, and ``metrics``,
    from the equity and trade counters of the bar the result was made at.

    Example:
        >>> import pitgrid as pg
        >>> ds = pg.synthetic_prices(60, 3, seed=0)
        >>> res = pg.simulate(ds, weights=ds["close"] * 0 + 0.3, fill="close")
        >>> res.optimistic, res.trades.height > 0
        (True, True)
    """

    equity: xr.DataArray
    long_exposure: xr.DataArray
    short_exposure: xr.DataArray
    trades: pl.DataFrame = _Table()  # type: ignore[assignment]
    unfilled: pl.DataFrame = _Table()  # type: ignore[assignment]
    metrics: pl.DataFrame = _Table()  # type: ignore[assignment]
    config: dict[str, Any]
    optimistic: bool
    filtered: pl.DataFrame | None = _Table(None)  # type: ignore[assignment]
    halted_at: xr.DataArray | None = None
    account_equity: xr.DataArray | None = _Table(None)  # type: ignore[assignment]
    cash: xr.DataArray | None = _Table(None)  # type: ignore[assignment]
    positions: xr.DataArray | None = _Table(None)  # type: ignore[assignment]
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> pl.DataFrame:
        """Key metrics, one row per parameter set, with the fill assumption spelled out
        (every metric is in ``metrics``)."""
        from pitgrid.results.display import summary

        return summary(self)

    def plot(self, kind: str = "equity", *, param: int | list[int] | None = None) -> Any:
        """A plotly figure: ``kind`` "equity" or "drawdown"; ``param`` picks parameter sets."""
        from pitgrid.results.display import plot

        return plot(self, kind, param=param)

    def _repr_html_(self) -> str:
        from pitgrid.results.display import result_html

        return result_html(self)
