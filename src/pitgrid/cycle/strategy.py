"""How a user writes a strategy: typed parameters, causal features, a rule, settings."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pitgrid.cycle.data import FeatureData


ORDER_FIELDS = ("sl_stop", "tp_stop", "sl_trail", "time_stop", "stop_unit", "entry_limit",
                "entry_stop", "exit_limit", "exit_stop")


@dataclass
class Intents:
    """What a strategy wants, over ``(time, symbol)``: signals or target weights.

    ``entries``/``exits`` (bool) open and close positions under the size rule, and
    ``short_entries``/``short_exits`` short ones (with ``allow_short``);
    ``weights`` (float, NaN = leave as is) are targets of account equity.
    ``orders`` holds per-``(time, symbol)`` arrays of stops and order levels, by the
    names of :func:`pitgrid.simulate` (``sl_stop``, ``tp_stop``, ``sl_trail``,
    ``time_stop``, ``stop_unit``, ``entry_limit``, ``entry_stop``, ``exit_limit``,
    ``exit_stop``); each replaces the run's scalar setting of that name.

    Example:
        >>> import numpy as np
        >>> e = np.array([[True, False]])
        >>> Intents(entries=e, orders={"sl_stop": np.full((1, 2), 0.05)}).kind
        'signals'
    """

    entries: np.ndarray | None = None
    exits: np.ndarray | None = None
    weights: np.ndarray | None = None
    short_entries: np.ndarray | None = None
    short_exits: np.ndarray | None = None
    orders: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        signals = not (self.entries is None and self.exits is None
                       and self.short_entries is None and self.short_exits is None)
        if (self.weights is None) != signals:
            raise ValueError("Intents needs weights, or entries/exits, not both")
        unknown = sorted(set(self.orders or {}) - set(ORDER_FIELDS))
        if unknown:
            raise ValueError(f"Intents.orders has unknown key(s) {unknown}; "
                             f"allowed: {', '.join(ORDER_FIELDS)}")

    @property
    def kind(self) -> str:
        return "weights" if self.weights is not None else "signals"

    def rows(self, sl: slice) -> Intents:
        pick = (lambda a: None if a is None else a[sl])
        return Intents(pick(self.entries), pick(self.exits), pick(self.weights),
                       pick(self.short_entries), pick(self.short_exits),
                       None if self.orders is None else {k: v[sl] for k, v in self.orders.items()})


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """Base class of strategies. Subclass it as a frozen dataclass with typed parameters.

    * ``features(data)`` returns causal ``(time, symbol)`` arrays (row t reads rows <= t),
      usually from :mod:`pitgrid.kernels`; the batch driver computes them once for
      all bars and caches them by data fingerprint and ``feature_params``.
    * ``intents(data, features)`` returns :class:`Intents` (row t may read rows <= t).
    * ``settings()`` are :class:`pitgrid.SimConfig` fields the strategy relies on
      (size rule, risk gates); the run's config overrides them.
    * ``on_step(t, data, intents)`` is an optional Python hook for custom logic; it
      gets the intents of bar ``t`` (one row) and returns them, changed or not.
      A strategy with a hook runs bar by bar in both drivers.
    * ``intent_rows`` declares how many recent rows ``intents`` reads to decide its
      last row (a crossover reads 2, a threshold 1); the step driver then hands it
      only those rows, so a bar costs the same late in a run as early. Rules must
      read the bar number from ``data.bars`` (never count rows). ``None`` (the
      default) hands the whole history every bar.
    * In the step driver, features written with :mod:`pitgrid.kernels` and
      elementwise array arithmetic run as streams (one update per bar, see
      :meth:`feature_stream`); other feature code is recomputed on the bars up to
      ``t`` every bar, and the driver says once why.
    * ``universe`` names a universe: outside it, entries are dropped and holdings exited
      (weights set to 0). That filter comes after the rule, so a rule that reads across
      symbols (ranks, z-scores, top-k, equal weights) must itself look at the members
      only: ``member = data.universe(self.universe)`` is the ``(time, symbol)``
      membership of each bar; pass it as ``mask=`` to :func:`pitgrid.kernels.cs_rank`
      and :func:`pitgrid.kernels.cs_zscore`, and ``&`` it into a selection before
      :func:`pitgrid.cycle.sizing.equal_weight`.

    Example:
        >>> import pitgrid as pg
        >>> from pitgrid.strategies import MovingAverageCross
        >>> market = pg.MarketData(pg.synthetic_prices(300, 5, seed=0))
        >>> res = pg.backtest(market, MovingAverageCross(fast=10, slow=50), {"fees_bps": 10})
        >>> res.equity.dims
        ('time',)
    """

    universe: str | None = None
    feature_params: ClassVar[tuple[str, ...]] = ()
    intent_rows: ClassVar[int | None] = None

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def intents(self, data: FeatureData, features: dict[str, np.ndarray]) -> Intents:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        return {}

    def feature_stream(self, symbols: np.ndarray) -> Any:
        """The features as a stream for the step driver: an object with ``sources`` (the
        data keys it reads, see :class:`~pitgrid.cycle.view.TraceData`), ``update(rows)``
        (one bar's source rows -> one row per feature), ``state()`` and ``load_state()``.

        By default ``features`` is traced into a :class:`pitgrid.kernels.graph.Graph`;
        raises :class:`pitgrid.kernels.graph.NotStreamable` saying why it cannot be.
        """
        from pitgrid.cycle.view import TraceData
        from pitgrid.kernels.graph import Graph

        return Graph(self.features(TraceData(symbols)), len(symbols))

    def on_step(self, t: int, data: FeatureData, intents: Intents) -> Intents:
        return intents

    def annotations(self, data: FeatureData, features: dict[str, np.ndarray]) -> dict[str, Any]:
        """Tables the batch driver keeps with the result (e.g. why a model held); none by default."""
        return {}

    @property
    def has_hook(self) -> bool:
        return type(self).on_step is not Strategy.on_step

    @property
    def name(self) -> str:
        return type(self).__name__

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def feature_key(self) -> str:
        """What the features depend on besides the data: the cache key."""
        return json.dumps([self.name, {k: getattr(self, k) for k in self.feature_params}],
                          sort_keys=True, default=str)

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, "params": self.params()}


def apply_universe(intents: Intents, member: np.ndarray | None,
                   shape: tuple[int, ...] | None = None) -> Intents:
    """Universe stage: no entries outside the universe; holdings that leave it are exited.

    ``member`` None: every symbol is a member of every bar (no universe), which spares
    building and reading a mask of ones; ``shape`` is then the intents' (time, symbol).
    """
    signals = (intents.entries, intents.exits)
    whole = intents.weights is not None or all(isinstance(a, np.ndarray) and a.dtype == bool
                                               for a in signals)
    if whole and (member is None or member.all()):  # everyone is a member: nothing to mask
        return intents
    if member is None:
        if shape is None:
            raise ValueError("apply_universe needs the intents' shape when member is None")
        member = np.ones(shape, dtype=bool)
    if intents.weights is not None:
        return Intents(weights=np.where(member, intents.weights, 0.0), orders=intents.orders)
    entries = intents.entries if intents.entries is not None else np.zeros_like(member)
    exits = intents.exits if intents.exits is not None else np.zeros_like(member)
    shorts = intents.short_entries is not None or intents.short_exits is not None
    short_entries = short_exits = None
    if shorts:
        short_entries = (intents.short_entries if intents.short_entries is not None
                         else np.zeros_like(member)) & member
        short_exits = (intents.short_exits if intents.short_exits is not None
                       else np.zeros_like(member)) | ~member
    return Intents(entries=entries & member, exits=exits | ~member, short_entries=short_entries,
                   short_exits=short_exits, orders=intents.orders)
