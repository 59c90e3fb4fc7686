"""Execution, cost and account settings of a simulation, validated up front."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from pitgrid.engine.codes import SIZE_RULES

_CHOICES: dict[str, tuple[str, ...]] = {
    "fill": ("next_open", "close"),
    "accounts": ("shared", "per_symbol"),
    "size": tuple(SIZE_RULES),
    "unfilled": ("drop", "carry"),
    "trail_on": ("high", "close"),
}


@dataclass(frozen=True)
class SimConfig:
    """Everything the compiled core needs besides data and intents.

    Units: ``*_bps`` in basis points; ``borrow_bps`` is annual, charged per bar as
    ``borrow_bps / bars_per_year``; ``max_participation`` is a fraction of the bar's
    volume (``inf`` = no cap); ``lot_size`` 0 means fractional shares.

    Risk gates (0 = off), refused orders are recorded with their reason:
    ``min_bars_between`` bars between orders per symbol; ``max_positions`` open
    positions per account; ``max_trades_per_bar`` orders per account and bar;
    ``daily_loss_stop`` no new risk on a bar whose equity fell that fraction since
    the last bar; ``max_drawdown_stop`` flatten and stop trading at that drawdown;
    ``cooldown_losses``/``cooldown_bars`` no new risk for that many bars after that
    many losing round trips in a row.

    Per-position exits (0 = off; docs/simulation.md, step B2): ``sl_stop``,
    ``tp_stop`` and ``sl_trail`` are fractions of the entry price (or multiples of
    the ``stop_unit`` array given to :func:`pitgrid.simulate`, e.g. an ATR);
    ``time_stop`` exits at the open after that many bars held. ``stop_first``: when
    a stop and the target both lie inside one bar, the stop fills (False: the target).
    ``trail_on``: what the trailing stop follows, "high" (the bar's high, lows for
    shorts, as vectorbt) or "close" (the closes, from the fill bar's, as backtrader's
    ``StopTrail``).
    ``order_ttl``: the bars a limit or stop order stays live. These scalars apply to
    every position; :func:`pitgrid.simulate` also takes them per ``(time, symbol)``
    or per parameter set.

    Example:
        >>> cfg = SimConfig(fees_bps=10, slippage_bps=5, fill="close")
        >>> cfg.optimistic
        True
    """

    fill: Literal["next_open", "close"] = "next_open"
    fees_bps: float = 0.0
    slippage_bps: float = 0.0
    spread_bps: float = 0.0
    impact_k: float = 0.0
    commission_per_share: float = 0.0
    min_commission: float = 0.0
    max_participation: float = math.inf
    unfilled: Literal["drop", "carry"] = "drop"
    lot_size: float = 0.0
    min_order_value: float = 0.0
    allow_short: bool = False
    max_leverage: float = 1.0
    borrow_bps: float = 0.0
    bars_per_year: float = 252.0
    init_cash: float = 100_000.0
    accounts: Literal["shared", "per_symbol"] = "shared"
    size: Literal["all", "shares", "value", "percent"] = "all"
    min_bars_between: int = 0
    max_positions: int = 0
    max_trades_per_bar: int = 0
    daily_loss_stop: float = 0.0
    max_drawdown_stop: float = 0.0
    cooldown_losses: int = 0
    cooldown_bars: int = 0
    sl_stop: float = 0.0
    tp_stop: float = 0.0
    sl_trail: float = 0.0
    time_stop: int = 0
    stop_first: bool = True
    trail_on: Literal["high", "close"] = "high"
    order_ttl: int = 1

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}")
        nonneg = ("fees_bps", "slippage_bps", "spread_bps", "impact_k", "commission_per_share",
                  "min_commission", "lot_size", "min_order_value", "borrow_bps")
        for name in nonneg:
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}={value!r} must be a finite number >= 0")
        if not (self.max_participation > 0):
            raise ValueError(f"max_participation={self.max_participation!r} must be > 0 (inf = no cap)")
        if not (math.isfinite(self.max_leverage) and self.max_leverage >= 1.0):
            raise ValueError(f"max_leverage={self.max_leverage!r} must be a finite number >= 1")
        if not (math.isfinite(self.init_cash) and self.init_cash > 0):
            raise ValueError(f"init_cash={self.init_cash!r} must be a finite number > 0")
        if not (math.isfinite(self.bars_per_year) and self.bars_per_year > 0):
            raise ValueError(f"bars_per_year={self.bars_per_year!r} must be a finite number > 0")
        for name in ("sl_stop", "tp_stop", "sl_trail"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}={value!r} must be a finite number >= 0 (0 = off)")
        if isinstance(self.order_ttl, bool) or int(self.order_ttl) != self.order_ttl or self.order_ttl < 1:
            raise ValueError(f"order_ttl={self.order_ttl!r} must be a whole number of bars >= 1")
        for name in ("min_bars_between", "max_positions", "max_trades_per_bar", "cooldown_losses",
                     "cooldown_bars", "time_stop"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"{name}={value!r} must be a whole number >= 0 (0 = off)")
        for name in ("daily_loss_stop", "max_drawdown_stop"):
            value = getattr(self, name)
            if not (0.0 <= value < 1.0):
                raise ValueError(f"{name}={value!r} must be a fraction in [0, 1) (0 = off)")
        if (self.fees_bps + self.slippage_bps + self.spread_bps / 2) >= 1e4:
            raise ValueError("fees_bps + slippage_bps + spread_bps/2 must stay below 10000 bps")

    @property
    def optimistic(self) -> bool:
        """Same-bar close fills see the price the decision saw: an optimistic assumption."""
        return self.fill == "close"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
