"""How a metric reads to a person: percentages, money, counts and bars, with n/a for missing.

Shared by the HTML reports and the notebook display so a number looks the same in both.

Example:
    >>> fmt("sharpe", 1.23456), fmt("max_drawdown", 0.1234), fmt("trades", 12.0), fmt("x", None)
    ('1.235', '12.34%', '12', 'n/a')
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

PERCENT = frozenset({
    "total_return", "annual_return", "volatility", "max_drawdown", "win_rate", "exposure",
    "var_95", "cvar_95", "var_99", "cvar_99", "alpha", "tracking_error", "benchmark_return",
    "return", "weight", "share",
})
COUNTS = frozenset({"trades", "fills", "unfilled", "closing fills", "wins", "bars held"})
MONEY = frozenset({"avg_win", "avg_loss", "fees", "slippage", "price", "notional", "value",
                   "realized P&L", "unrealized P&L", "total P&L", "avg P&L", "avg cost",
                   "equity", "cash", "entry price", "exit price", "invested", "dividends", "P&L"})
BARS = frozenset({"max_drawdown_duration"})
#: metrics where less is better: a grid's "best" value of these is its smallest
LOWER_IS_BETTER = frozenset({
    "volatility", "max_drawdown", "max_drawdown_duration", "var_95", "cvar_95", "var_99",
    "cvar_99", "tracking_error", "fees", "slippage", "unfilled",
})
#: the metrics a person looks at first; the notebook summary and the run list show these
KEY_METRICS = ("total_return", "annual_return", "sharpe", "max_drawdown", "trades", "exposure")
LABELS = {
    "total_return": "total return", "annual_return": "annual return (CAGR)",
    "max_drawdown": "max drawdown", "max_drawdown_duration": "longest drawdown",
    "win_rate": "win rate", "avg_win": "average win", "avg_loss": "average loss",
    "profit_factor": "profit factor", "var_95": "VaR 95%", "cvar_95": "CVaR 95%",
    "var_99": "VaR 99%", "cvar_99": "CVaR 99%", "tail_index": "tail index",
    "information_ratio": "information ratio", "tracking_error": "tracking error",
    "up_capture": "up capture", "down_capture": "down capture",
    "benchmark_return": "benchmark return",
}


def missing(value: Any) -> bool:
    """None, NaN and infinities read as n/a."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(float(value))
    return False


def fmt(name: str, value: Any) -> str:
    """``value`` of the metric or column ``name`` as text."""
    if missing(value):
        return "n/a"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return str(value)
    value = float(value) if isinstance(value, (float, np.floating)) else int(value)
    if name in PERCENT:
        return f"{value:.2%}"
    if name in BARS:
        return f"{value:,.0f} bars"
    if name in COUNTS or isinstance(value, int):
        return f"{value:,.0f}"
    if name in MONEY or name == "shares":
        return f"{value:,.2f}"
    return f"{value:,.3f}"


def label(name: str) -> str:
    """The name a person reads for a metric column."""
    return LABELS.get(name, name.replace("_", " "))
