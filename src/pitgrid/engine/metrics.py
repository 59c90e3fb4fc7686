"""Metrics per parameter set: the compiled equity metrics plus trade statistics."""
from __future__ import annotations

import numpy as np
import polars as pl

from pitgrid._metrics import METRIC_NAMES, equity_metrics
from pitgrid.engine.codes import STATS

TRADE_METRICS = ("trades", "win_rate", "avg_win", "avg_loss", "profit_factor", "turnover",
                 "exposure", "fills", "unfilled", "fees", "slippage")


def compute_metrics(
    equity: np.ndarray,
    initial: np.ndarray,
    *,
    bars_per_year: float = 252.0,
    stats: np.ndarray | None = None,
    gross: np.ndarray | None = None,
) -> pl.DataFrame:
    """Metrics of each row of ``equity`` (rows, time); docs/metrics.md has the formulas.

    ``stats`` (rows, len(STATS)) are the core's trade counters and ``gross`` the
    gross exposure (rows, time); without them only equity metrics are returned.

    Example:
        >>> import numpy as np
        >>> m = compute_metrics(np.array([[101.0, 99.0, 103.0]]), np.array([100.0]))
        >>> round(m["total_return"][0], 4)
        0.03
    """
    equity = np.ascontiguousarray(np.atleast_2d(equity), dtype=np.float64)
    initial = np.ascontiguousarray(np.broadcast_to(initial, equity.shape[:1]), dtype=np.float64)
    out = np.empty((equity.shape[0], len(METRIC_NAMES)))
    equity_metrics(equity, initial, float(bars_per_year), out)
    cols = {name: out[:, i] for i, name in enumerate(METRIC_NAMES)}
    if stats is not None:
        st = {name: stats[:, i] for i, name in enumerate(STATS)}
        with np.errstate(invalid="ignore", divide="ignore"):
            losses = st["closed"] - st["wins"]
            cols["trades"] = st["closed"]
            cols["win_rate"] = st["wins"] / st["closed"]
            cols["avg_win"] = st["gross_win"] / st["wins"]
            cols["avg_loss"] = -st["gross_loss"] / losses
            cols["profit_factor"] = st["gross_win"] / st["gross_loss"]
            years = equity.shape[1] / bars_per_year
            cols["turnover"] = st["notional"] / equity.mean(axis=1) / years
            cols["fills"] = st["fills"]
            cols["unfilled"] = st["unfilled"]
            cols["fees"] = st["fees"]
            cols["slippage"] = st["slippage"]
            if gross is not None:
                cols["exposure"] = (gross / equity).mean(axis=1)
    return pl.DataFrame(cols)
