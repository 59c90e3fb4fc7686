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

Streaming: every kernel ``name_nb`` is the loop over ``name_step_nb`` (one row, all
symbols; state in the arrays of ``name_state``), see ``pitgrid.kernels.Stream``.

Numerics: the window moments are plain running sums of ``x - shift`` and
``(x - shift)**2`` (``shift`` is a recent value of the symbol), recomputed from the
ring buffer of the window's values (compensated) on each symbol's first complete
window and every ``window`` rows; windows of identical values are detected
exactly, so their variance is exactly 0.
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
    _check_params(window, ddof)


@njit(cache=True, nogil=True)
def _check_params(window, ddof):
    if window < 1:
        raise ValueError("window must be >= 1")
    if ddof < 0 or ddof >= window:
        raise ValueError("ddof must satisfy 0 <= ddof < window")


@njit(cache=True, nogil=True)
def _check_row(x, out, n_sym):
    # numba does not bounds-check: a short row would read or write past the state
    if x.shape[0] != n_sym or out.shape[0] != n_sym:
        raise ValueError("the input and output rows must have one value per symbol of the state")


@njit(cache=True, nogil=True)
def _moments_state(n_sym, window, ddof):
    """ring (row r in slot r % window), s1, s2, mag, k, same, last_bad, due, work_mean, work_m2.

    ``s1``, ``s2``: plain running sums of ``d`` and ``d*d`` over the window, ``d = x - k``;
    NaN (as after a missing value) until the first complete window. ``same``: equal
    values in a row, ending at the newest. ``due[0]``: the next row on which some
    symbol's window becomes complete again. The work rows hold each step's mean and
    sum of squared deviations. ``mag``: the largest ``d*d`` sum the running ``s2`` has held
    since its last anchor, which bounds its rounding error.
    """
    _check_params(window, ddof)
    return (np.full((window, n_sym), np.nan), np.full(n_sym, np.nan), np.full(n_sym, np.nan),
            np.zeros(n_sym), np.zeros(n_sym), np.zeros(n_sym, dtype=np.int64),
            np.full(n_sym, -1, dtype=np.int64),
            np.full(1, window - 1, dtype=np.int64), np.empty(n_sym), np.empty(n_sym))


# The running sums carry the rounding of the largest values they held since their last
# anchor: ``s2`` is off by at most about 4 u w mag and ``s1`` by 4 u w sqrt(w mag). Where
# that could reach 1e-10 of the result (a nearly constant window after a large move), the
# window is summed afresh from the ring, two passes.
_ROUND = 4.0 * 2.0 ** -53
_REL = 1e-10


@njit(cache=True, nogil=True, inline="always")
def _moment_out(j, v, kk, a, b, sm, w, mean, m2):
    """Mean and sum of squared deviations from the sums; exact for a constant window."""
    mu = kk + a / w
    q = b - a * a / w
    q = 0.0 if q < 0.0 else q
    ok = np.isfinite(mu) and np.isfinite(q)  # overflow (|values| beyond ~1e150): undefined
    const = sm >= w and np.isfinite(v)
    mean[j] = v if const else (mu if ok else np.nan)
    m2[j] = 0.0 if const else (q if ok else np.nan)


@njit(cache=True, nogil=True, inline="always")
def _rounding_shows(a, q, w, mg):
    """Whether the sums' rounding could reach 1e-10 of the result (both bounds squared out of
    their square roots, with 2|a| sqrt(w mg) <= a^2 + w mg)."""
    return (_ROUND * (2.0 * w * mg + a * a) >= _REL * q
            or _ROUND * _ROUND * w * w * mg >= _REL * _REL * q)


@njit(cache=True, nogil=True)
def _moments_exact(j, t, w, ring):
    """Mean and sum of squared deviations of rows ``t-w+1 .. t`` of the ring, two passes."""
    s = 0.0
    c = 0.0
    for r in range(t - w + 1, t + 1):
        s, c = _nadd(s, c, ring[r % w, j])
    mu = (s + c) / w
    q = 0.0
    cq = 0.0
    for r in range(t - w + 1, t + 1):
        d = ring[r % w, j] - mu
        q, cq = _nadd(q, cq, d * d)
    return mu, q + cq


@njit(cache=True, nogil=True)
def _moments_anchor(j, lo, w, ring, s1, s2, kk):
    """Recompute ``s1[j]``, ``s2[j]`` from the ring rows ``lo .. lo+w-1``."""
    a = 0.0
    ca = 0.0
    b = 0.0
    cb = 0.0
    for r in range(lo, lo + w):
        d = ring[r % w, j] - kk
        a, ca = _nadd(a, ca, d)
        b, cb = _nadd(b, cb, d * d)
    s1[j] = a + ca
    s2[j] = b + cb


@njit(cache=True, nogil=True)
def _moments_anchor_all(t, w, ring, s1, s2, mag, k):
    """``_moments_anchor`` (newest value as the shift) for every symbol whose newest value is
    present, in memory order: the same additions per symbol, a row of the ring at a time."""
    n_sym = s1.shape[0]
    newest = ring[t % w]
    a = np.zeros(n_sym)
    ca = np.zeros(n_sym)
    b = np.zeros(n_sym)
    cb = np.zeros(n_sym)
    for r in range(t - w + 1, t + 1):
        row = ring[r % w]
        for j in range(n_sym):
            d = row[j] - newest[j]
            a[j], ca[j] = _nadd(a[j], ca[j], d)
            b[j], cb[j] = _nadd(b[j], cb[j], d * d)
    for j in range(n_sym):
        if np.isfinite(newest[j]):
            k[j] = newest[j]
            s1[j] = a[j] + ca[j]
            s2[j] = b[j] + cb[j]
            mag[j] = s2[j]


@njit(cache=True, nogil=True)
def _moments_step(t, x, w, ring, s1, s2, mag, k, same, last_bad, due, mean, m2):
    """Advance every symbol's window by row ``t``; write ``mean`` and ``m2`` of the window.

    Plain running sums, recomputed from the ring (compensated) on the row where a
    symbol's window becomes complete and for every symbol every ``w`` rows (the variance's cancellation error grows with the square of the distance to the shift, so it is kept recent). A
    missing value makes the sums NaN, which is what marks an incomplete window.
    """
    n_sym = s1.shape[0]
    _check_row(x, mean, n_sym)
    rp = ring[t % w]
    pp = ring[(t - 1) % w]
    n_bad = 0
    for j in range(n_sym):
        v = x[j]
        kk = k[j]
        dn = v - kk
        do = rp[j] - kk
        sm = same[j] + 1 if v == pp[j] else 1  # pp read before rp is written (w == 1)
        a = s1[j] + (dn - do)
        b = s2[j] + (dn * dn - do * do)
        mg = max(mag[j], abs(s2[j]) + do * do + dn * dn)
        rp[j] = v
        s1[j] = a
        s2[j] = b
        mag[j] = mg
        same[j] = sm
        _moment_out(j, v, kk, a, b, sm, w, mean, m2)
        if sm < w and np.isfinite(m2[j]) and _rounding_shows(a, m2[j], w, mg):
            mean[j], m2[j] = _moments_exact(j, t, w, ring)
        n_bad += not np.isfinite(v)
    if n_bad:
        for j in range(n_sym):
            if not np.isfinite(x[j]):
                last_bad[j] = t
        due[0] = min(due[0], t + w)
    every = (t + 1) % w == 0
    if every:
        _moments_anchor_all(t, w, ring, s1, s2, mag, k)
    if every or due[0] == t:
        nxt = np.iinfo(np.int64).max
        for j in range(n_sym):
            d = last_bad[j] + w
            # a window complete again on this row has a present newest value
            if (every and np.isfinite(x[j])) or d == t:
                if not every:
                    k[j] = x[j]
                    _moments_anchor(j, t - w + 1, w, ring, s1, s2, k[j])
                    mag[j] = s2[j]
                _moment_out(j, x[j], k[j], s1[j], s2[j], same[j], w, mean, m2)
                if same[j] < w and np.isfinite(m2[j]) and _rounding_shows(s1[j], m2[j], w, mag[j]):
                    mean[j], m2[j] = _moments_exact(j, t, w, ring)
            if t < d < nxt:
                nxt = d
        if due[0] == t:
            due[0] = nxt


@njit(cache=True, nogil=True)
def rolling_std_state(n_sym, window, ddof):
    """State of :func:`rolling_std_step_nb`; see ``_moments_state``."""
    return _moments_state(n_sym, window, ddof)


@njit(cache=True, nogil=True)
def rolling_std_step_nb(t, x, window, ddof, ring, s1, s2, mag, k, same, last_bad, due, work_mean,
                        work_m2, out):
    """Advance :func:`rolling_std_nb` by row ``t`` (the ``t``-th call, from 0)."""
    _moments_step(t, x, window, ring, s1, s2, mag, k, same, last_bad, due, work_mean, work_m2)
    _check_row(x, out, s1.shape[0])
    div = float(window - ddof)
    for j in range(x.shape[0]):
        sd = np.sqrt(work_m2[j] / div)
        out[j] = sd if np.isfinite(sd) else np.nan


@njit(cache=True, nogil=True)
def rolling_std_block_nb(t0, x, window, ddof, ring, s1, s2, mag, k, same, last_bad, due, work_mean,
                         work_m2, out):
    """Rows ``t0 ..`` of :func:`rolling_std_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        rolling_std_step_nb(t0 + i, x[i], window, ddof, ring, s1, s2, mag, k, same, last_bad, due,
                            work_mean, work_m2, out[i])


@njit(cache=True, nogil=True)
def rolling_std_nb(x, window, ddof, out):
    """Rolling standard deviation over ``window`` rows, divisor ``window - ddof``."""
    _check(x, out, window, ddof)
    st = rolling_std_state(x.shape[1], window, ddof)
    ring, s1, s2, mag, k, same, last_bad, due, work_mean, work_m2 = st
    rolling_std_block_nb(0, x, window, ddof, ring, s1, s2, mag, k, same, last_bad, due, work_mean,
                         work_m2, out)


@njit(cache=True, nogil=True)
def rolling_zscore_state(n_sym, window, ddof):
    """State of :func:`rolling_zscore_step_nb`; see ``_moments_state``."""
    return _moments_state(n_sym, window, ddof)


@njit(cache=True, nogil=True)
def rolling_zscore_step_nb(t, x, window, ddof, ring, s1, s2, mag, k, same, last_bad, due,
                           work_mean, work_m2, out):
    """Advance :func:`rolling_zscore_nb` by row ``t`` (the ``t``-th call, from 0)."""
    _moments_step(t, x, window, ring, s1, s2, mag, k, same, last_bad, due, work_mean, work_m2)
    _check_row(x, out, s1.shape[0])
    div = float(window - ddof)
    for j in range(x.shape[0]):
        sd = np.sqrt(work_m2[j] / div)
        z = (x[j] - work_mean[j]) / sd if sd > 0.0 else np.nan
        out[j] = z if np.isfinite(z) else np.nan


@njit(cache=True, nogil=True)
def rolling_zscore_block_nb(t0, x, window, ddof, ring, s1, s2, mag, k, same, last_bad, due,
                            work_mean, work_m2, out):
    """Rows ``t0 ..`` of :func:`rolling_zscore_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        rolling_zscore_step_nb(t0 + i, x[i], window, ddof, ring, s1, s2, mag, k, same, last_bad,
                               due, work_mean, work_m2, out[i])


@njit(cache=True, nogil=True)
def rolling_zscore_nb(x, window, ddof, out):
    """``(x[t] - mean) / std`` over the window ending at ``t`` (which includes ``x[t]``).

    NaN when the window's std is 0.
    """
    _check(x, out, window, ddof)
    st = rolling_zscore_state(x.shape[1], window, ddof)
    ring, s1, s2, mag, k, same, last_bad, due, work_mean, work_m2 = st
    rolling_zscore_block_nb(0, x, window, ddof, ring, s1, s2, mag, k, same, last_bad, due,
                            work_mean, work_m2, out)


@njit(cache=True, nogil=True)
def bollinger_state(n_sym, window, k, ddof):
    """State of :func:`bollinger_step_nb`; see ``_moments_state``."""
    return _moments_state(n_sym, window, ddof)


@njit(cache=True, nogil=True)
def bollinger_step_nb(t, x, window, k, ddof, ring, s1, s2, mag, shift, same, last_bad, due,
                      work_mean, work_m2, out_mid, out_upper, out_lower):
    """Advance :func:`bollinger_nb` by row ``t`` (the ``t``-th call, from 0)."""
    _moments_step(t, x, window, ring, s1, s2, mag, shift, same, last_bad, due, work_mean, work_m2)
    n_sym = s1.shape[0]
    _check_row(x, out_mid, n_sym)
    _check_row(x, out_upper, n_sym)
    _check_row(x, out_lower, n_sym)
    div = float(window - ddof)
    for j in range(n_sym):
        mid = work_mean[j]
        half = k * np.sqrt(work_m2[j] / div)
        up = mid + half
        dn = mid - half
        ok = np.isfinite(up) and np.isfinite(dn)
        out_mid[j] = mid if ok else np.nan
        out_upper[j] = up if ok else np.nan
        out_lower[j] = dn if ok else np.nan


@njit(cache=True, nogil=True)
def bollinger_block_nb(t0, x, window, k, ddof, ring, s1, s2, mag, shift, same, last_bad, due,
                       work_mean, work_m2, out_mid, out_upper, out_lower):
    """Rows ``t0 ..`` of :func:`bollinger_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        bollinger_step_nb(t0 + i, x[i], window, k, ddof, ring, s1, s2, mag, shift, same, last_bad,
                          due, work_mean, work_m2, out_mid[i], out_upper[i], out_lower[i])


@njit(cache=True, nogil=True)
def bollinger_nb(x, window, k, ddof, out_mid, out_upper, out_lower):
    """Bollinger bands: mid = SMA, upper / lower = mid +/- k * std (divisor ``window - ddof``)."""
    _check(x, out_mid, window, ddof)
    _check(x, out_upper, window, ddof)
    _check(x, out_lower, window, ddof)
    st = bollinger_state(x.shape[1], window, k, ddof)
    ring, s1, s2, mag, shift, same, last_bad, due, work_mean, work_m2 = st
    bollinger_block_nb(0, x, window, k, ddof, ring, s1, s2, mag, shift, same, last_bad, due,
                       work_mean, work_m2, out_mid, out_upper, out_lower)


@njit(cache=True, nogil=True)
def atr_state(n_sym, window):
    """State of :func:`atr_step_nb`: has_prev, prev_close, n_tr, value (warm-up sum of true
    ranges, then the ATR), comp (the warm-up sum's compensation)."""
    if window < 1:
        raise ValueError("window must be >= 1")
    return (np.zeros(n_sym, dtype=np.bool_), np.zeros(n_sym), np.zeros(n_sym, dtype=np.int64),
            np.zeros(n_sym), np.zeros(n_sym))


@njit(cache=True, nogil=True)
def atr_step_nb(t, high, low, close, window, has_prev, prev_close, n_tr, value, comp, out):
    """Advance :func:`atr_nb` by one row for every symbol."""
    n_sym = n_tr.shape[0]
    _check_row(close, out, n_sym)
    _check_row(high, low, n_sym)
    w = window
    for j in range(n_sym):
        h = high[j]
        lo = low[j]
        c = close[j]
        if not (np.isfinite(h) and np.isfinite(lo) and np.isfinite(c)):
            out[j] = np.nan  # skipped: state held
            continue
        res = np.nan
        if has_prev[j]:
            pc = prev_close[j]
            tr = max(h - lo, abs(h - pc), abs(lo - pc))
            n = n_tr[j] + 1
            if n <= w:
                n_tr[j] = n
                a, ca = _nadd(value[j], comp[j], tr)
                value[j] = a
                comp[j] = ca
                if n == w:
                    res = (a + ca) / w
                    value[j] = res
            else:
                res = (value[j] * (w - 1) + tr) / w
                value[j] = res
        has_prev[j] = True
        prev_close[j] = c
        out[j] = res if np.isfinite(res) else np.nan


@njit(cache=True, nogil=True)
def atr_block_nb(t0, high, low, close, window, has_prev, prev_close, n_tr, value, comp, out):
    """Rows ``t0 ..`` of :func:`atr_nb`, advancing the given state a step per row."""
    for i in range(high.shape[0]):
        atr_step_nb(t0 + i, high[i], low[i], close[i], window, has_prev, prev_close, n_tr, value,
                    comp, out[i])


@njit(cache=True, nogil=True)
def atr_nb(high, low, close, window, out):
    """Wilder's average true range; see the module docstring for warm-up and gaps."""
    n_time, n_sym = close.shape
    if (high.shape[0] != n_time or high.shape[1] != n_sym or low.shape[0] != n_time
            or low.shape[1] != n_sym or out.shape[0] != n_time or out.shape[1] != n_sym):
        raise ValueError("high, low, close and out must have the same shape")
    has_prev, prev_close, n_tr, value, comp = atr_state(n_sym, window)
    atr_block_nb(0, high, low, close, window, has_prev, prev_close, n_tr, value, comp, out)


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
