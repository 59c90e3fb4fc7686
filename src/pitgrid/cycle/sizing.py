"""Risk and sizing that depend on one row only: weights from selections and scores, and limits.

Each function maps ``(time, symbol)`` arrays row by row, so it is causal by
construction, and a rule that uses them still traces into the step driver's stream
graph (:func:`pitgrid.kernels.graph.row_local`). Path-dependent limits (max positions, stops, cooldown) are risk
gates in the compiled core (see :class:`pitgrid.SimConfig`).
"""
from __future__ import annotations

import numpy as np

from pitgrid.kernels.graph import row_local


@row_local
def equal_weight(selected: np.ndarray, *, rebalance: np.ndarray | None = None) -> np.ndarray:
    """``1/n`` on each row's selected symbols, 0 elsewhere; NaN rows where not rebalancing.

    Example:
        >>> equal_weight(np.array([[True, True, False]])).tolist()
        [[0.5, 0.5, 0.0]]
    """
    sel = np.asarray(selected, dtype=bool)
    n = sel.sum(axis=1, keepdims=True)
    w = np.where(sel, 1.0 / np.maximum(n, 1), 0.0)
    return _on_rebalance(w, rebalance)


@row_local
def score_weighted(scores: np.ndarray, selected: np.ndarray, *,
                   rebalance: np.ndarray | None = None) -> np.ndarray:
    """Weights proportional to the positive part of ``scores`` among selected symbols, summing to 1.

    Example:
        >>> score_weighted(np.array([[3.0, 1.0, 5.0]]), np.array([[True, True, False]])).tolist()
        [[0.75, 0.25, 0.0]]
    """
    s = np.where(np.asarray(selected, dtype=bool) & np.isfinite(scores), np.maximum(scores, 0.0), 0.0)
    total = s.sum(axis=1, keepdims=True)
    w = np.divide(s, total, out=np.zeros_like(s), where=total > 0)
    return _on_rebalance(w, rebalance)


@row_local
def volatility_targeted(weights: np.ndarray, volatility: np.ndarray, target: float) -> np.ndarray:
    """Scale each name's weight by ``target / volatility`` (annualised, same units); NaN vol -> 0.

    Example:
        >>> volatility_targeted(np.array([[0.5, 0.5]]), np.array([[0.2, 0.4]]), 0.2).tolist()
        [[0.5, 0.25]]
    """
    if not target > 0:
        raise ValueError(f"target={target!r} must be > 0")
    scale = np.divide(target, volatility, out=np.zeros_like(volatility, dtype=float),
                      where=np.isfinite(volatility) & (volatility > 0))
    return np.where(np.isnan(weights), np.nan, weights * scale)


@row_local
def apply_limits(weights: np.ndarray, *, max_weight: float | None = None,
                 max_gross: float | None = None, max_net: float | None = None) -> np.ndarray:
    """Clip each name to ``|w| <= max_weight``, then scale rows down to the gross and net caps.

    Example:
        >>> apply_limits(np.array([[0.6, 0.6]]), max_weight=0.5, max_gross=0.8).tolist()
        [[0.4, 0.4]]
    """
    w = np.array(weights, dtype=np.float64)
    if max_weight is not None:
        w = np.clip(w, -max_weight, max_weight)
    finite = np.where(np.isfinite(w), w, 0.0)
    scale = np.ones((w.shape[0], 1))
    if max_gross is not None:
        gross = np.abs(finite).sum(axis=1, keepdims=True)
        scale = np.minimum(scale, np.divide(max_gross, gross, out=np.ones_like(gross), where=gross > max_gross))
    if max_net is not None:
        net = np.abs(finite.sum(axis=1, keepdims=True)) * scale
        scale = scale * np.divide(max_net, net, out=np.ones_like(net), where=net > max_net)
    return w * scale


def _on_rebalance(w: np.ndarray, rebalance: np.ndarray | None) -> np.ndarray:
    if rebalance is None:
        return w
    return np.where(np.asarray(rebalance, dtype=bool)[:, None], w, np.nan)


def every_n_bars(n_time: int, n: int, offset: int = 0) -> np.ndarray:
    """Rebalance flags: True on bars ``offset, offset + n, ...``.

    Example:
        >>> every_n_bars(5, 2).tolist()
        [True, False, True, False, True]
    """
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    return (np.arange(n_time) - offset) % n == 0
