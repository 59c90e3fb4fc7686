"""Worked strategies: moving-average crossover, RSI mean reversion, cross-sectional
momentum, an event-driven rule on alt-data with separate event and knowledge times, and
equal weights over a universe (a benchmark).

Each is a small frozen dataclass; read them as templates for your own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pitgrid import kernels as K
from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.sizing import equal_weight
from pitgrid.cycle.strategy import Intents, Strategy
from pitgrid.kernels.graph import row_local


@dataclass(frozen=True, kw_only=True)
class MovingAverageCross(Strategy):
    """Enter when the fast average of the split-adjusted close crosses above the slow one; exit on the cross below.

    Example:
        >>> s = MovingAverageCross(fast=10, slow=50)
        >>> s.params()["fast"]
        10
    """

    fast: int = 10
    slow: int = 50
    feature_params: ClassVar[tuple[str, ...]] = ("fast", "slow")
    intent_rows: ClassVar[int | None] = 2  # a cross reads this bar and the one before

    def __post_init__(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={self.fast}, slow={self.slow}")

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        close = data.adjusted("close")
        return {"fast": K.sma(close, self.fast), "slow": K.sma(close, self.slow)}

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        # one pass over both averages for both crosses (W3: half the time of two)
        cross = K.crosses(f["fast"], f["slow"])
        return Intents(entries=cross.over, exits=cross.under)

    def grid_bank_keys(self) -> tuple[int, int] | None:
        """The two rows of a grid's feature bank this variant's rule reads (fast, then slow),
        or None when the rule is more than the core's cross rule (a universe filters it).

        A grid computes each distinct row once (:meth:`grid_bank_row`) and runs the cross
        rule, :func:`pitgrid.kernels.crosses` of the two rows, inside the compiled loop, so a
        grid equals the variants run one by one.
        """
        return None if self.universe is not None else (self.fast, self.slow)

    def grid_bank_row(self, data: FeatureData, window: int, out: np.ndarray) -> None:
        """One bank row written into ``out``: the ``window``-bar average of the split-adjusted
        close."""
        K.sma_into(np.ascontiguousarray(data.adjusted("close")), window, out)

    def settings(self) -> dict[str, Any]:
        return {"size": "all"}


@dataclass(frozen=True, kw_only=True)
class RSIMeanReversion(Strategy):
    """Buy when Wilder's RSI falls below ``low``; sell when it rises above ``high``.

    Example:
        >>> RSIMeanReversion(window=14, low=30, high=70).params()["low"]
        30
    """

    window: int = 14
    low: float = 30.0
    high: float = 70.0
    weight: float = 0.05
    feature_params: ClassVar[tuple[str, ...]] = ("window",)
    intent_rows: ClassVar[int | None] = 1

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high < 100:
            raise ValueError(f"need 0 < low < high < 100, got low={self.low}, high={self.high}")

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        return {"rsi": K.rsi(data.adjusted("close"), self.window)}

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        rsi = f["rsi"]
        finite = np.isfinite(rsi)
        return Intents(entries=finite & (rsi < self.low), exits=finite & (rsi > self.high))

    def settings(self) -> dict[str, Any]:
        return {"size": "percent", "size_value": self.weight}


@dataclass(frozen=True, kw_only=True)
class CrossSectionalMomentum(Strategy):
    """Every ``every`` bars, hold the ``top`` symbols by ``lookback``-bar return in equal weights.

    With a ``universe``, the ranking runs over each bar's members only, so the top
    ``top`` members are held (not the members among the top ``top`` of everything).

    Example:
        >>> CrossSectionalMomentum(lookback=126, top=50, every=21).params()["top"]
        50
    """

    lookback: int = 126
    top: int = 50
    every: int = 21
    feature_params: ClassVar[tuple[str, ...]] = ("lookback",)
    intent_rows: ClassVar[int | None] = 1

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        return {"momentum": K.momentum(data.adjusted("close"), self.lookback)}

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        # universe first: only this bar's members are ranked; rank 1 = the best return,
        # ties share their average rank; only rebalance bars are ranked (the weights of
        # the others are NaN: leave as is)
        rebalance = data.bars % self.every == 0
        rank = K.cs_rank(-f["momentum"], pct=False,
                         mask=_on_bars(data.universe(self.universe), rebalance))
        selected = np.isfinite(rank) & (rank <= self.top)
        return Intents(weights=equal_weight(selected, rebalance=rebalance))


@row_local
def _on_bars(member: np.ndarray, bars: np.ndarray) -> np.ndarray:
    """``member`` on the flagged bars (``(time,)``), no symbol on the others."""
    return np.asarray(member, dtype=bool) & np.asarray(bars, dtype=bool)[:, None]


@dataclass(frozen=True, kw_only=True)
class EventDriven(Strategy):
    """Trade on an alt-data field as it becomes known: enter above ``enter_above``, exit below ``exit_below``.

    Values are aligned by ``knowledge_time`` (when the data was published), never by
    ``event_time`` (what it is about).

    Example:
        >>> EventDriven(field="sentiment", enter_above=0.5).params()["field"]
        'sentiment'
    """

    field: str = "sentiment"
    enter_above: float = 0.5
    exit_below: float = 0.0
    weight: float = 0.1
    feature_params: ClassVar[tuple[str, ...]] = ("field",)
    intent_rows: ClassVar[int | None] = 1

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        return {"signal": data.events(self.field)}

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        sig = f["signal"]
        finite = np.isfinite(sig)
        return Intents(entries=finite & (sig > self.enter_above), exits=finite & (sig < self.exit_below))

    def settings(self) -> dict[str, Any]:
        return {"size": "percent", "size_value": self.weight}



@dataclass(frozen=True, kw_only=True)
class EqualWeight(Strategy):
    """Every member of the universe with a price, in equal weights, rebalanced every ``every``
    bars: the benchmark a cross-sectional strategy is usually measured against.

    Example:
        >>> EqualWeight(universe="sp500", every=21).params()["every"]
        21
    """

    every: int = 21
    intent_rows: ClassVar[int | None] = 1

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        return {"close": data.adjusted("close")}

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        held = data.universe(self.universe) & np.isfinite(f["close"])
        return Intents(weights=equal_weight(held, rebalance=data.bars % self.every == 0))
