"""Integer codes shared with the compiled core (cython_ext/core.pyx); keep both in step."""
from __future__ import annotations

INTENT_SIGNALS, INTENT_WEIGHTS, INTENT_CROSS = 0, 1, 2
SIZE_RULES = {"all": 0, "shares": 1, "value": 2, "percent": 3}
KIND_FILL, KIND_UNFILLED, KIND_FILTERED = 1, 2, 3
REASONS = {
    0: "order", 1: "delist", 2: "invalid_bar", 3: "volume", 4: "cash", 5: "short", 6: "leverage",
    7: "min_bars", 8: "max_positions", 9: "max_trades", 10: "daily_loss_stop",
    11: "drawdown_stop", 12: "cooldown", 13: "stop_loss", 14: "take_profit", 15: "trailing_stop",
    16: "time_stop", 17: "limit", 18: "stop", 19: "expired",
}
# the fill reasons of exits and orders beyond the market (docs/simulation.md, step B2)
EXIT_REASONS = ("stop_loss", "take_profit", "trailing_stop", "time_stop", "limit", "stop")
STATS = ("closed", "wins", "gross_win", "gross_loss", "notional", "fills", "unfilled", "fees", "slippage")
