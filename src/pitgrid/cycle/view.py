"""What the step driver hands a strategy at bar t, and the placeholders its features are traced on.

:class:`StepView` is the strategy's data in the step driver: rows ``first..t`` of
everything a :class:`~pitgrid.cycle.data.FeatureData` offers, each a fresh copy in
immutable memory. Nothing it holds or leads to reaches a row after t: no attribute
leads back to the market, an array's ``.base`` is a ``bytes`` object holding only
those rows, and no array can be made writeable (its owner is immutable too). Events
are what was known at t; delistings, corporate actions and the ends of universe
intervals after t are not there to read.

:class:`TraceData` hands out :class:`~pitgrid.kernels.graph.Node` placeholders, so
that running ``strategy.features`` on it records the feature graph the step driver
streams (see :mod:`pitgrid.kernels.graph`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pitgrid._sealed import Sealed
from pitgrid.cycle.data import FeatureData
from pitgrid.kernels.graph import Node, NotStreamable


def frozen(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` whose memory is an immutable ``bytes`` object: it cannot be made
    writeable, and nothing reachable from it holds more than these values."""
    a = np.ascontiguousarray(a)
    return np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape)


class KnownMarket:
    """``data.market`` where a strategy is handed only what is known at a bar: the names of
    the market's fields and its symbols, and no data.

    Example:
        >>> KnownMarket(("open", "close"), np.array(["A"])).fields
        ('open', 'close')
    """

    __slots__ = ("fields", "symbols")

    def __init__(self, fields: tuple[str, ...], symbols: np.ndarray) -> None:
        self.fields = tuple(fields)
        self.symbols = symbols

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"data.market here tells only its fields and symbols, not .{name}: "
                             f"{_READ_THROUGH}")

    def __getitem__(self, name: Any) -> Any:
        raise TypeError(f"data.market here tells only its fields and symbols, not "
                        f"data.market[{name!r}]: {_READ_THROUGH}")


_READ_THROUGH = "read the data through data.raw, data.adjusted, data.universe or data.events"


class StepView:
    """Bars ``first..upto`` as the step driver hands them to a strategy; the API of
    :class:`~pitgrid.cycle.data.FeatureData`.

    Built by :func:`step_view`. Its rows come from a sealed provider (a compiled
    callable with no readable attributes) that returns immutable copies of rows
    ``first..upto`` only, so the view holds no route to later rows.

    Example:
        >>> import pitgrid as pg
        >>> m = pg.MarketData(pg.synthetic_prices(30, 2, seed=0))
        >>> v = step_view(FeatureData(m), first=8, upto=9)
        >>> v.adjusted("close").shape, v.bars.tolist(), v.raw("close").flags.writeable
        ((2, 2), [8, 9], False)
    """

    __slots__ = ("_rows", "first", "upto", "time", "symbols", "market", "_cache")

    def __init__(self, rows: Sealed, first: int, upto: int, time: np.ndarray,
                 symbols: np.ndarray, market: KnownMarket) -> None:
        self._rows = rows
        self.first = int(first)
        self.upto = int(upto)
        self.time = time
        self.symbols = symbols
        self.market = market  # names only: nothing in it leads to data
        self._cache: dict[Any, np.ndarray] = {}

    @property
    def n_time(self) -> int:
        """Rows in this view (``upto - first + 1``)."""
        return self.upto - self.first + 1

    @property
    def bars(self) -> np.ndarray:
        """The bar number of each row (see :attr:`FeatureData.bars`)."""
        return frozen(np.arange(self.first, self.upto + 1))

    def _get(self, key: tuple) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = self._rows(key)
        return self._cache[key]

    def raw(self, field: str) -> np.ndarray:
        return self._get(("raw", field))

    @property
    def valid(self) -> np.ndarray:
        return self._get(("valid",))

    @property
    def split_factor(self) -> np.ndarray:
        return self._get(("split_factor",))

    def adjusted(self, field: str) -> np.ndarray:
        return self._get(("adjusted", field))

    def universe(self, universe_id: str | None) -> np.ndarray:
        return self._get(("universe", universe_id))

    def events(self, field: str, *, by: str = "knowledge_time") -> np.ndarray:
        """As :meth:`FeatureData.events`, from the events known at ``upto`` only."""
        if by not in ("knowledge_time", "event_time"):
            raise ValueError(f"by={by!r} is not 'knowledge_time' or 'event_time'")
        return self._get(("events", field) if by == "knowledge_time" else ("events", field, by))

    def __repr__(self) -> str:
        return f"StepView(bars {self.first}..{self.upto}, {len(self.symbols)} symbols)"


def step_view(known: FeatureData, first: int, upto: int,
              known_at: Callable[[int], FeatureData] | None = None,
              symbols: np.ndarray | None = None) -> StepView:
    """The view of rows ``first..upto`` of ``known`` (the driver's FeatureData of the whole
    market). ``known_at(t)`` builds a FeatureData of the market as known at bar t, for
    what is not causal row by row (events aligned by ``event_time``); ``symbols`` is a
    frozen copy of the symbols to share between views."""
    if not 0 <= first <= upto <= known.upto:
        raise ValueError(f"rows {first}..{upto} are outside bars 0..{known.upto}")

    def provide(key: tuple) -> np.ndarray:
        if len(key) == 3:  # events by event_time: only what is known at upto
            if known_at is None:
                raise ValueError("events by event_time need the market as known at the bar")
            return frozen(known_at(upto).events(key[1], by=key[2])[first:])
        return frozen(source_array(known, key)[first: upto + 1])

    symbols = frozen(np.asarray(known.symbols)) if symbols is None else symbols
    return StepView(Sealed(provide), first, upto, frozen(known.time[first: upto + 1]), symbols,
                    KnownMarket(tuple(known.market.fields), symbols))


class TraceData:
    """Placeholders for a strategy's data: features built on it become a stream graph."""

    def __init__(self, symbols: np.ndarray, fields: tuple[str, ...] | None = None) -> None:
        self.symbols = symbols
        self._fields = fields

    @property
    def market(self) -> KnownMarket:
        if self._fields is None:
            raise NotStreamable("data.market: the fields of the market are not known here")
        return KnownMarket(self._fields, self.symbols)

    def _time_dependent(self, what: str) -> Any:
        raise NotStreamable(f"data.{what} depends on the bar, not on one row")

    @property
    def time(self) -> np.ndarray:
        return self._time_dependent("time")

    @property
    def bars(self) -> Node:
        return Node.source(("bars",))

    @property
    def n_time(self) -> int:
        return self._time_dependent("n_time")

    @property
    def upto(self) -> int:
        return self._time_dependent("upto")

    def raw(self, field: str) -> Node:
        return Node.source(("raw", field))

    @property
    def valid(self) -> Node:
        return Node.source(("valid",))

    @property
    def split_factor(self) -> Node:
        return Node.source(("split_factor",))

    def adjusted(self, field: str) -> Node:
        return Node.source(("adjusted", field))

    def universe(self, universe_id: str | None) -> Node:
        return Node.source(("universe", universe_id))

    def events(self, field: str, *, by: str = "knowledge_time") -> Node:
        if by != "knowledge_time":
            raise NotStreamable(f"events by {by!r} are not known row by row")
        return Node.source(("events", field))


def source_array(known: FeatureData, key: tuple) -> np.ndarray:
    """The whole array behind a data key: ``("raw", field)``, ``("adjusted", field)``,
    ``("universe", id)``, ``("events", field)``, ``("valid",)``, ``("split_factor",)``,
    ``("bars",)``."""
    kind = key[0]
    if kind == "bars":
        return known.bars
    if kind == "raw":
        return known.raw(key[1])
    if kind == "adjusted":
        return known.adjusted(key[1])
    if kind == "universe":
        return known.universe(key[1])
    if kind == "events":
        return known.events(key[1])
    if kind == "valid":
        return known.valid
    if kind == "split_factor":
        return known.split_factor
    raise KeyError(key)
