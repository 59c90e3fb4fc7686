"""Dispersion kernels: rolling std, rolling z-score, Bollinger bands, ATR.

Conventions (shared by every ``pitgrid.kernels`` module, see docs/kernels.md):

* Arrays are ``(time, symbol)``, C-contiguous float64. ``name(...)`` allocates,
  ``name_into(..., out)`` writes into checked preallocated outputs,
  ``name_nb(..., out)`` is the raw ``@njit(cache=True, nogil=True)`` kernel.
* Causal: output row ``t`` reads input rows ``<= t`` only.
* Missing value: any non-finite input (NaN, +inf, -inf) is a missing bar.
* Window kernels (rolling std, z-score, Bollinger): row ``t`` is a value only
  when all ``window`` rows ``t-window+1 .. t`` are present; otherwise NaN
  (warm-up of ``window-1`` rows, and NaN for every window that holds a gap).
* ``ddof``: the variance divides by ``window - ddof``. Defaults: ``ddof=1``
  (sample std, as pandas) for :func:`rolling_std` and :func:`rolling_zscore`;
  ``ddof=0`` (population std, as Bollinger and TA-Lib) for :func:`bollinger`.
* Zero dispersion: a window whose values are all equal has std exactly 0; its
  z-score is NaN (undefined), its Bollinger bands collapse onto the mean.
* ATR is recursive (Wilder): a bar is present only when high, low and close are
  all finite; a missing bar is skipped (state held, output NaN on that row). The
  true range of a bar needs the previous present close, so the first present bar
  has none; ATR is seeded with the mean of the first ``window`` true ranges and
  then ``atr = (atr * (window - 1) + tr) / window``. It is first defined on the
  ``window + 1``-th present bar.
* Outputs are finite or NaN, never infinite.

Numerics: the window moments are Neumaier-compensated running sums of
``x - shift`` and ``(x - shift)**2`` (``shift`` is a recent value of the symbol),
recomputed from scratch every ``window`` rows; windows of identical values are
detected exactly, so their variance is exactly 0.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from ._common import (
    as_panel, ddof_arg, distinct_outputs, float_arg, out_view, same_shape, window_arg,
)

__all__ = [
    "rolling_std", "rolling_std_into", "rolling_std_nb",
    "rolling_zscore", "rolling_zscore_into", "rolling_zscore_nb",
    "Bands", "bollinger", "bollinger_into", "bollinger_nb",
    "atr", "atr_into", "atr_nb",
]


# --------------------------------------------------------------------------- jitted


@njit(cache=True, nogil=True)
def _nadd(s, c, v):
    """Neumaier step: add ``v`` to the sum ``s`` with running compensation ``c``."""
    t = s + v
    if abs(s) >= abs(v):
        c += (s - t) + v
    else:
        c += (v - t) + s
    return t, c


@njit(cache=True, nogil=True)
def _check(x, out, window, ddof):
    if out.shape[0] != x.shape[0] or out.shape[1] != x.shape[1]:
        raise ValueError("outputs must have the shape of x")
    if window < 1:
        raise ValueError("window must be >= 1")
    if ddof < 0 or ddof >= window:
        raise ValueError("ddof must satisfy 0 <= ddof < window")


@njit(cache=True, nogil=True)
def _moments_row(x, t, w, st, run, same, mean, m2):
    """Advance every symbol's window state to row ``t``.

    Writes ``mean[j]`` and ``m2[j]`` (sum of squared deviations from the mean) of
    the window ending at ``t``, or NaN for both when the window is incomplete.
    ``st[j]`` holds: shift, s1, c1, s2, c2 (compensated sums of d and d*d, d = x - shift).
    """
    for j in range(x.shape[1]):
        v = x[t, j]
        if not np.isfinite(v):
            run[j] = 0
            same[j] = 0
            mean[j] = np.nan
            m2[j] = np.nan
            continue
        r = run[j] + 1
        run[j] = r
        if r > 1 and x[t - 1, j] == v:
            same[j] += 1
        else:
            same[j] = 1
        if r < w:
            mean[j] = np.nan
            m2[j] = np.nan
            continue
        if r == w or r == 2 * w:  # first full window, then every w rows: recompute
            run[j] = w  # keeps r in [w, 2w], so a compare (not a modulo) schedules it
            k = v
            a = 0.0
            ca = 0.0
            b = 0.0
            cb = 0.0
            for i in range(t - w + 1, t + 1):
                d = x[i, j] - k
                a, ca = _nadd(a, ca, d)
                b, cb = _nadd(b, cb, d * d)
        else:
            k = st[j, 0]
            dn = v - k
            do = x[t - w, j] - k
            a, ca = _nadd(st[j, 1], st[j, 2], dn)
            a, ca = _nadd(a, ca, -do)
            b, cb = _nadd(st[j, 3], st[j, 4], dn * dn)
            b, cb = _nadd(b, cb, -(do * do))
        st[j, 0] = k
        st[j, 1] = a
        st[j, 2] = ca
        st[j, 3] = b
        st[j, 4] = cb
        if same[j] >= w:
            mean[j] = v
            m2[j] = 0.0
        else:
            s1 = a + ca
            q = (b + cb) - s1 * s1 / w
            mu = k + s1 / w
            if np.isfinite(mu) and np.isfinite(q):
                mean[j] = mu
                m2[j] = q if q > 0.0 else 0.0
            else:  # overflow (|values| beyond ~1e150): undefined, not a wrong number
                mean[j] = np.nan
                m2[j] = np.nan


@njit(cache=True, nogil=True)
def rolling_std_nb(x, window, ddof, out):
    """Rolling standard deviation over ``window`` rows, divisor ``window - ddof``."""
    _check(x, out, window, ddof)
    n_time, n_sym = x.shape
    st = np.zeros((n_sym, 5), dtype=np.float64)
    run = np.zeros(n_sym, dtype=np.int64)
    same = np.zeros(n_sym, dtype=np.int64)
    mean = np.empty(n_sym, dtype=np.float64)
    m2 = np.empty(n_sym, dtype=np.float64)
    div = float(window - ddof)
    for t in range(n_time):
        _moments_row(x, t, window, st, run, same, mean, m2)
        for j in range(n_sym):
            sd = np.sqrt(m2[j] / div)
            out[t, j] = sd if np.isfinite(sd) else np.nan


@njit(cache=True, nogil=True)
def rolling_zscore_nb(x, window, ddof, out):
    """``(x[t] - mean) / std`` over the window ending at ``t`` (which includes ``x[t]``).

    NaN when the window's std is 0.
    """
    _check(x, out, window, ddof)
    n_time, n_sym = x.shape
    st = np.zeros((n_sym, 5), dtype=np.float64)
    run = np.zeros(n_sym, dtype=np.int64)
    same = np.zeros(n_sym, dtype=np.int64)
    mean = np.empty(n_sym, dtype=np.float64)
    m2 = np.empty(n_sym, dtype=np.float64)
    div = float(window - ddof)
    for t in range(n_time):
        _moments_row(x, t, window, st, run, same, mean, m2)
        for j in range(n_sym):
            sd = np.sqrt(m2[j] / div)
            if sd > 0.0:
                z = (x[t, j] - mean[j]) / sd
                out[t, j] = z if np.isfinite(z) else np.nan
            else:
                out[t, j] = np.nan


@njit(cache=True, nogil=True)
def bollinger_nb(x, window, k, ddof, out_mid, out_upper, out_lower):
    """Bollinger bands: mid = SMA, upper / lower = mid +/- k * std (divisor ``window - ddof``)."""
    _check(x, out_mid, window, ddof)
    _check(x, out_upper, window, ddof)
    _check(x, out_lower, window, ddof)
    n_time, n_sym = x.shape
    st = np.zeros((n_sym, 5), dtype=np.float64)
    run = np.zeros(n_sym, dtype=np.int64)
    same = np.zeros(n_sym, dtype=np.int64)
    mean = np.empty(n_sym, dtype=np.float64)
    m2 = np.empty(n_sym, dtype=np.float64)
    div = float(window - ddof)
    for t in range(n_time):
        _moments_row(x, t, window, st, run, same, mean, m2)
        for j in range(n_sym):
            mid = mean[j]
            half = k * np.sqrt(m2[j] / div)
            up = mid + half
            dn = mid - half
            if np.isfinite(up) and np.isfinite(dn):
                out_mid[t, j] = mid
                out_upper[t, j] = up
                out_lower[t, j] = dn
            else:
                out_mid[t, j] = np.nan
                out_upper[t, j] = np.nan
                out_lower[t, j] = np.nan


@njit(cache=True, nogil=True)
def atr_nb(high, low, close, window, out):
    """Wilder's average true range; see the module docstring for warm-up and gaps."""
    n_time, n_sym = close.shape
    if (high.shape[0] != n_time or high.shape[1] != n_sym or low.shape[0] != n_time
            or low.shape[1] != n_sym or out.shape[0] != n_time or out.shape[1] != n_sym):
        raise ValueError("high, low, close and out must have the same shape")
    if window < 1:
        raise ValueError("window must be >= 1")
    w = window
    has_prev = np.zeros(n_sym, dtype=np.bool_)
    prev_close = np.zeros(n_sym, dtype=np.float64)
    n_tr = np.zeros(n_sym, dtype=np.int64)
    state = np.zeros(n_sym, dtype=np.float64)  # warm-up sum of TR, then the ATR
    comp = np.zeros(n_sym, dtype=np.float64)
    for t in range(n_time):
        for j in range(n_sym):
            h = high[t, j]
            lo = low[t, j]
            c = close[t, j]
            if not (np.isfinite(h) and np.isfinite(lo) and np.isfinite(c)):
                out[t, j] = np.nan  # skipped: state held
                continue
            res = np.nan
            if has_prev[j]:
                pc = prev_close[j]
                tr = max(h - lo, abs(h - pc), abs(lo - pc))
                n = n_tr[j] + 1
                if n <= w:
                    n_tr[j] = n
                    a, ca = _nadd(state[j], comp[j], tr)
                    state[j] = a
                    comp[j] = ca
                    if n == w:
                        res = (a + ca) / w
                        state[j] = res
                else:
                    res = (state[j] * (w - 1) + tr) / w
                    state[j] = res
            has_prev[j] = True
            prev_close[j] = c
            out[t, j] = res if np.isfinite(res) else np.nan


# --------------------------------------------------------------------------- wrappers


class Bands(NamedTuple):
    """Bollinger bands, each shaped like the input."""

    mid: np.ndarray
    upper: np.ndarray
    lower: np.ndarray


def rolling_std(x, window, ddof=1):
    """Rolling standard deviation over ``window`` rows (divisor ``window - ddof``)."""
    x2, shape = as_panel(x)
    w = window_arg(window)
    out = np.empty(x2.shape, dtype=np.float64)
    rolling_std_nb(x2, w, ddof_arg(ddof, w), out)
    return out.reshape(shape)


def rolling_std_into(x, window, ddof, out):
    """:func:`rolling_std` written into ``out``; returns ``out``."""
    x2, shape = as_panel(x)
    w = window_arg(window)
    rolling_std_nb(x2, w, ddof_arg(ddof, w), out_view(out, shape, (x2,)))
    return out


def rolling_zscore(x, window, ddof=1):
    """Rolling z-score ``(x - rolling mean) / rolling std``; the window includes row ``t``."""
    x2, shape = as_panel(x)
    w = window_arg(window)
    out = np.empty(x2.shape, dtype=np.float64)
    rolling_zscore_nb(x2, w, ddof_arg(ddof, w), out)
    return out.reshape(shape)


def rolling_zscore_into(x, window, ddof, out):
    """:func:`rolling_zscore` written into ``out``; returns ``out``."""
    x2, shape = as_panel(x)
    w = window_arg(window)
    rolling_zscore_nb(x2, w, ddof_arg(ddof, w), out_view(out, shape, (x2,)))
    return out


def bollinger(x, window=20, k=2.0, ddof=0):
    """Bollinger bands ``Bands(mid, upper, lower)``: SMA and SMA +/- k * population std."""
    x2, shape = as_panel(x)
    w = window_arg(window)
    outs = [np.empty(x2.shape, dtype=np.float64) for _ in range(3)]
    bollinger_nb(x2, w, float_arg(k, "k"), ddof_arg(ddof, w), *outs)
    return Bands(*(o.reshape(shape) for o in outs))


def bollinger_into(x, window, k, ddof, out_mid, out_upper, out_lower):
    """:func:`bollinger` written into three outputs.

    Returns ``Bands(out_mid, out_upper, out_lower)``, the arrays passed in.
    """
    x2, shape = as_panel(x)
    w = window_arg(window)
    distinct_outputs(out_mid, out_upper, out_lower)
    views = [out_view(o, shape, (x2,), name) for o, name in
             ((out_mid, "out_mid"), (out_upper, "out_upper"), (out_lower, "out_lower"))]
    bollinger_nb(x2, w, float_arg(k, "k"), ddof_arg(ddof, w), *views)
    return Bands(out_mid, out_upper, out_lower)


def _hlc(high, low, close):
    c2, shape = as_panel(close, "close")
    h2, _ = as_panel(high, "high")
    l2, _ = as_panel(low, "low")
    same_shape(c2.shape, h2, "high")
    same_shape(c2.shape, l2, "low")
    return h2, l2, c2, shape


def atr(high, low, close, window=14):
    """Wilder's average true range of ``(high, low, close)`` over ``window`` bars."""
    h2, l2, c2, shape = _hlc(high, low, close)
    out = np.empty(c2.shape, dtype=np.float64)
    atr_nb(h2, l2, c2, window_arg(window), out)
    return out.reshape(shape)


def atr_into(high, low, close, window, out):
    """:func:`atr` written into ``out``; returns ``out``."""
    h2, l2, c2, shape = _hlc(high, low, close)
    atr_nb(h2, l2, c2, window_arg(window), out_view(out, shape, (h2, l2, c2)))
    return out
