"""The reference workloads W1 to W4, built the same way for asv, the JSON script and the peer comparison.

W1: 10/50-bar moving-average crossover entries and exits on synthetic_prices(2520, 500,
    seed=42), per-symbol accounts, all cash, 10 bps fees, 5 bps slippage, fill at close.
W2: 100 (fast, slow) pairs, fast in 5..50 step 5, slow in 60..240 step 20, on W1's data.
W3: W1 on synthetic_prices(5040, 5000).
W4: every 21 bars, equal weights in the 50 symbols with the best 126-bar return,
    shared cash, same costs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import pitgrid as pg
from pitgrid import kernels as K

COSTS = {"fees_bps": 10.0, "slippage_bps": 5.0, "fill": "close"}
W1_SETTINGS = {**COSTS, "accounts": "per_symbol", "size": "all"}
W4_SETTINGS = {**COSTS, "accounts": "shared"}
W2_FAST = list(range(5, 51, 5))
W2_SLOW = list(range(60, 241, 20))


@dataclass
class Prepared:
    ds: object
    entries: np.ndarray | None = None
    exits: np.ndarray | None = None
    weights: np.ndarray | None = None


def data(n_time: int = 2520, n_symbols: int = 500, seed: int = 42):
    return pg.synthetic_prices(n_time, n_symbols, seed=seed)


def ma_signals(ds, fast: int = 10, slow: int = 50) -> Prepared:
    close = np.ascontiguousarray(ds["close"].values)
    cross = K.crosses(K.sma(close, fast), K.sma(close, slow))
    return Prepared(ds, entries=cross.over, exits=cross.under)


def momentum_weights(ds, lookback: int = 126, top: int = 50, every: int = 21) -> Prepared:
    close = np.ascontiguousarray(ds["close"].values)
    rebalance = (np.arange(close.shape[0]) % every == 0)[:, None]
    # only the rebalance bars are ranked, as the strategy does: the others hold NaN weights
    ranked = np.ascontiguousarray(np.broadcast_to(rebalance, close.shape))
    rank = K.cs_rank(-K.momentum(close, lookback), pct=False, mask=ranked)
    selected = np.isfinite(rank) & (rank <= top)
    n = selected.sum(axis=1, keepdims=True)
    w = np.where(selected, 1.0 / np.maximum(n, 1), 0.0)
    return Prepared(ds, weights=np.where(rebalance, w, np.nan))


def computed(res):
    """``res`` with its metrics built: a result's metrics are built when first read, and
    every timed pass includes them, as a peer's full path does."""
    res.metrics
    return res


def run_w1(p: Prepared):
    return computed(pg.simulate(p.ds, entries=p.entries, exits=p.exits, keep="equity", **W1_SETTINGS))


def run_w4(p: Prepared):
    return computed(pg.simulate(p.ds, weights=p.weights, keep="equity", **W4_SETTINGS))


def run_w2(market, progress: bool = False):
    from pitgrid.strategies import MovingAverageCross

    return pg.grid(market, MovingAverageCross(), {"fast": W2_FAST, "slow": W2_SLOW},
                   config=W1_SETTINGS, progress=progress)


def run_w1_strategy(market):
    """W1 end to end through a strategy: features (not from the cache), signals, simulation,
    metrics."""
    from pitgrid.strategies import MovingAverageCross

    pg.clear_feature_cache()
    return computed(pg.backtest(market, MovingAverageCross(fast=10, slow=50), W1_SETTINGS,
                                keep="equity"))


def run_backtest(market, workload: str = "W1"):
    """The user's call, every setting not named by the workload at its default (``keep``
    included): ``pg.backtest(market, MovingAverageCross(fast=10, slow=50), W1_SETTINGS)``
    for W1 and W3, ``CrossSectionalMomentum(lookback=126, top=50, every=21)`` for W4.
    Features are rebuilt (the cache is cleared first)."""
    from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross

    pg.clear_feature_cache()
    if workload == "W4":
        return computed(pg.backtest(market, CrossSectionalMomentum(lookback=126, top=50, every=21),
                                    W4_SETTINGS))
    return computed(pg.backtest(market, MovingAverageCross(fast=10, slow=50), W1_SETTINGS))


def core_only(p: Prepared, settings: dict) -> float:
    """Seconds for the compiled pass alone (inputs already prepared), as the targets count it."""
    import time

    from pitgrid.engine import simulate as sim
    from pitgrid.engine.codes import INTENT_SIGNALS, INTENT_WEIGHTS

    cfg = pg.SimConfig(**settings)
    arrays = sim.market_arrays(p.ds, cfg)
    T, S = arrays["close"].shape
    delist = np.full(S, -1, dtype=np.int64)
    idx = np.zeros(1, dtype=np.int64)
    if p.weights is not None:
        mode = INTENT_WEIGHTS
        intents = (np.zeros((1, 1, 1), np.uint8), np.zeros((1, 1, 1), np.uint8),
                   np.ascontiguousarray(p.weights[None]), idx, idx)
    else:
        mode = INTENT_SIGNALS
        intents = (p.entries[None].view(np.uint8), p.exits[None].view(np.uint8),
                   np.zeros((1, 1, 1)), idx, idx)
    core = sim.make_core(cfg, 1, S, mode, sim.size_values(cfg, None, 1))
    out = sim.allocate_outputs(1, T, S, core.A, False)
    core.ensure_log_room(T * S // 4)
    t0 = time.perf_counter()
    sim.run_core(core, arrays, delist, intents, out, 0, T)
    return time.perf_counter() - t0
