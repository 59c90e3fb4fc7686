"""How much of a grid's best result is selection: the deflated Sharpe ratio and the
probability of backtest overfitting.

* **Deflated Sharpe ratio** (Bailey and Lopez de Prado, 2014): the probability that the
  true Sharpe ratio of the selected set exceeds ``SR0``, the Sharpe ratio the best of
  ``N`` trials reaches by luck alone::

      SR0 = sqrt(V[SR]) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e)))
      DSR = Z((SR - SR0) * sqrt(T - 1) / sqrt(1 - skew * SR + (kurt - 1) / 4 * SR^2))

  with per-bar (not annualised) Sharpe ratios, ``V[SR]`` their variance across the
  trials, ``g`` the Euler-Mascheroni constant, ``T`` the number of returns, and the
  skewness and (non-excess) kurtosis of the selected set's returns.
* **Probability of backtest overfitting** by combinatorially symmetric cross-validation
  (Bailey, Borwein, Lopez de Prado and Zhu, 2015): the bars are cut into ``S`` blocks;
  for every choice of ``S/2`` blocks as the in-sample half, the set with the best
  in-sample Sharpe ratio is ranked among all sets out of sample (the other half); PBO is
  the share of choices in which it ranks at or below the median (logit <= 0).

Both need only per-block sums of each set's returns and of their powers, which a grid
accumulates chunk by chunk (:func:`block_moments`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

EULER_GAMMA = 0.5772156649015329
MOMENTS = 5  # count, sum of r, r^2, r^3, r^4


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _norm_ppf(p: float) -> float:
    """Inverse of the standard normal CDF (bisection on erfc: exact to 1e-15, no scipy)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _norm_cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """``SR0``: the expected largest Sharpe ratio of ``n_trials`` with true Sharpe 0 whose
    estimates vary by ``variance`` (same units as the Sharpe ratios).

    Example:
        >>> round(expected_max_sharpe(100, 0.5 / 250), 4)
        0.1132
    """
    if n_trials < 2:
        return 0.0
    g = EULER_GAMMA
    return math.sqrt(variance) * ((1 - g) * _norm_ppf(1 - 1 / n_trials)
                                  + g * _norm_ppf(1 - 1 / (n_trials * math.e)))


def deflated_sharpe(sharpe: float, n_obs: int, skew: float, kurtosis: float, *, n_trials: int,
                    variance: float) -> float:
    """The deflated Sharpe ratio of a selected per-bar Sharpe ratio (see the module docs).

    Example (the paper's numerical example: annualised Sharpe 2.5 over five years of daily
    returns, 100 trials with annualised variance 1/2, skewness -3, kurtosis 10):
        >>> round(deflated_sharpe(2.5 / 250 ** 0.5, 1250, -3.0, 10.0, n_trials=100,
        ...                       variance=0.5 / 250), 3)
        0.9
    """
    sr0 = expected_max_sharpe(n_trials, variance)
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe ** 2
    if n_obs < 2 or not denom > 0:
        return math.nan
    return _norm_cdf((sharpe - sr0) * math.sqrt(n_obs - 1) / math.sqrt(denom))


def block_moments(returns: np.ndarray, n_blocks: int) -> np.ndarray:
    """Per set and block: count, sum of r, r^2, r^3 and r^4 over the block's finite returns.

    ``returns`` is (sets, bars); the bars are cut into ``n_blocks`` contiguous blocks of
    (nearly) equal length. Returns (sets, n_blocks, 5).
    """
    r = np.asarray(returns, dtype=np.float64)
    edges = np.linspace(0, r.shape[1], n_blocks + 1).round().astype(int)
    out = np.zeros((r.shape[0], n_blocks, MOMENTS))
    for b in range(n_blocks):
        x = r[:, edges[b]: edges[b + 1]]
        ok = np.isfinite(x)
        x = np.where(ok, x, 0.0)
        out[:, b] = np.stack([ok.sum(axis=1), x.sum(axis=1), (x * x).sum(axis=1),
                              (x ** 3).sum(axis=1), (x ** 4).sum(axis=1)], axis=1)
    return out


def _sharpe(m: np.ndarray) -> np.ndarray:
    """Per-bar Sharpe ratio from summed moments (..., 5): mean / population std."""
    n, s1, s2 = m[..., 0], m[..., 1], m[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = s2 / n - mean ** 2
        return np.where(var > 0, mean / np.sqrt(np.maximum(var, 0.0)), np.nan)


def _shape(m: np.ndarray) -> tuple[float, float]:
    """Skewness and (non-excess) kurtosis from summed moments (5,)."""
    n, s1, s2, s3, s4 = m
    mean = s1 / n
    var = s2 / n - mean ** 2
    if not var > 0:
        return math.nan, math.nan
    m3 = s3 / n - 3 * mean * s2 / n + 2 * mean ** 3
    m4 = s4 / n - 4 * mean * s3 / n + 6 * mean ** 2 * s2 / n - 3 * mean ** 4
    return m3 / var ** 1.5, m4 / var ** 2


@dataclass(frozen=True)
class Overfitting:
    """The grid's overfitting statistics; ``best`` is the set selected by in-sample Sharpe."""

    n_trials: int
    n_obs: int
    best: int
    sharpe: float  # per bar, of the best set
    sr0: float  # per bar: the best of n_trials by luck alone
    deflated_sharpe: float
    pbo: float
    n_blocks: int
    n_combinations: int

    def to_dict(self) -> dict[str, float | int]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in self.__dict__.items()}


def pbo_cscv(moments: np.ndarray) -> tuple[float, int]:
    """Probability of backtest overfitting from block moments (sets, S, 5), S even; and the
    number of combinations (S choose S/2)."""
    n_sets, S = moments.shape[:2]
    if S % 2 or S < 2:
        raise ValueError(f"CSCV needs an even number of blocks, got {S}")
    train = np.array(list(itertools.combinations(range(S), S // 2)), dtype=np.int64)
    outside = np.ones((len(train), S), dtype=bool)
    outside[np.arange(len(train))[:, None], train] = False
    test = np.nonzero(outside)[1].reshape(len(train), S - S // 2)  # ascending, like train
    # by block, then set: a combination's blocks are whole rows to gather
    m = np.ascontiguousarray(moments[..., :3].transpose(1, 0, 2))  # the Sharpe ratio reads 3
    # combinations in batches of about 4 MiB of gathered moments: memory flat in the grid's size
    step = max(1, 2**19 // (3 * n_sets))
    below = total = 0
    for lo in range(0, len(train), step):
        ins = _sharpe(_block_sums(m, train[lo: lo + step]))  # (combinations, sets)
        out = _sharpe(_block_sums(m, test[lo: lo + step]))
        usable = np.isfinite(ins).any(axis=1)
        best = np.argmax(np.where(np.isfinite(ins), ins, -np.inf), axis=1)
        # relative rank of the selected set out of sample, in (0, 1)
        oos = np.where(np.isfinite(out), out, -np.inf)
        chosen = oos[np.arange(len(oos)), best][:, None]
        rank = 1 + (oos < chosen).sum(axis=1) + 0.5 * ((oos == chosen).sum(axis=1) - 1)
        omega = rank / (n_sets + 1)
        total += int(usable.sum())
        below += int((usable & (np.log(omega / (1 - omega)) <= 0)).sum())
    return (below / total if total else math.nan), total


def _block_sums(m: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Per combination and set, the moments (blocks, sets, k) summed over the combination's
    blocks in order: the same additions, in the same order, as one combination at a time."""
    acc = m[blocks[:, 0]]
    for j in range(1, blocks.shape[1]):
        acc += m[blocks[:, j]]
    return acc


def overfitting(moments: np.ndarray) -> Overfitting:
    """Deflated Sharpe ratio and PBO of a grid from its sets' block moments (sets, S, 5)."""
    totals = moments.sum(axis=1)
    sharpes = _sharpe(totals)
    finite = np.isfinite(sharpes)
    n_trials = int(finite.sum())
    best = int(np.nanargmax(sharpes)) if n_trials else -1
    n_obs = int(totals[best, 0]) if n_trials else 0
    variance = float(np.var(sharpes[finite], ddof=1)) if n_trials > 1 else 0.0
    if n_trials:
        skew, kurt = _shape(totals[best])
        sr = float(sharpes[best])
        dsr = deflated_sharpe(sr, n_obs, skew, kurt, n_trials=n_trials, variance=variance)
    else:
        sr = dsr = math.nan
    pbo, n_comb = pbo_cscv(moments) if moments.shape[0] > 1 else (math.nan, 0)
    return Overfitting(n_trials, n_obs, best, sr, expected_max_sharpe(n_trials, variance), dsr,
                       pbo, moments.shape[1], n_comb)
