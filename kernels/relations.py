"""Relations to a series: rolling correlation and beta of each symbol against ``y``.

``y`` is one value per bar (1-D over time), e.g. the returns of a market index.
Pass returns, not price levels, when you want the usual market beta.

Conventions (shared by every ``pitgrid.kernels`` module, see docs/kernels.md):

* Arrays are ``(time, symbol)``, C-contiguous float64; ``y`` is ``(time,)``.
  ``name(...)`` allocates, ``name_into(..., out)`` writes into a checked
  preallocated output, ``name_nb(..., out)`` is the raw
  ``@njit(cache=True, nogil=True)`` kernel.
* Causal: output row ``t`` reads input rows ``<= t`` only.
* Missing value: any non-finite input (NaN, +inf, -inf) is a missing bar. A pair
  ``(x[t, j], y[t])`` is present only when both are.
* Window kernels: row ``t`` is a value only when all ``window`` pairs
  ``t-window+1 .. t`` are present; otherwise NaN (warm-up of ``window-1`` rows,
  and NaN for every window that holds a gap in ``x`` or in ``y``).
* ``rolling_corr`` is Pearson's correlation of the window, clipped to [-1, 1];
  NaN when either side is constant over the window.
* ``rolling_beta = cov(x, y) / var(y)`` over the window (``ddof`` cancels); NaN
  when ``y`` is constant over the window, 0 when only ``x`` is.
* Outputs are finite or NaN, never infinite.

Numerics: plain running sums of ``x - kx``, ``y - ky`` and their products (``kx``,
``ky`` recent values), recomputed from the ring buffers with compensated summation
on each window's first complete row and every ``window`` rows (the bound is in
docs/kernels.md); where their rounding could still reach 1e-10 of a side's variance (a
small move after a large one), the window is computed afresh from the rings, two passes;
constant windows are detected exactly.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._common import as_panel, as_series, out_view, window_arg

# the running sums' rounding: see _rounding_shows (as in volatility.py's moments)
_ROUND = 4.0 * 2.0 ** -53
_REL = 1e-10

__all__ = [
    "rolling_corr", "rolling_corr_into", "rolling_corr_nb",
    "rolling_beta", "rolling_beta_into", "rolling_beta_nb",
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
def _check(x, y, out, window):
    if y.shape[0] != x.shape[0]:
        raise ValueError("y must have one value per row of x")
    if out.shape[0] != x.shape[0] or out.shape[1] != x.shape[1]:
        raise ValueError("out must have the shape of x")
    if window < 1:
        raise ValueError("window must be >= 1")


@njit(cache=True, nogil=True)
def _pair_state(n_sym, window):
    """ring_x (row r in slot r % window), ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x,
    mag_y, same_x, same_y, last_bad, due.

    The five sums are plain running sums over the window of ``dx = x - kx``,
    ``dy = y - ky`` and their products; NaN (as after a missing value) until the first
    complete window. ``mag_x`` / ``mag_y``: the largest sum of squares the running sums of
    squares have held or been added to since they were last recomputed (their rounding
    is a small multiple of it). ``same_x`` / ``same_y``: equal values in a row, ending at the
    newest.
    ``due[0]``: the next row on which some symbol's window becomes complete again.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    nan = np.full(n_sym, np.nan)
    return (np.full((window, n_sym), np.nan), np.full(window, np.nan), np.zeros(n_sym),
            np.zeros(n_sym), nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy(),
            np.zeros(n_sym), np.zeros(n_sym),
            np.zeros(n_sym, dtype=np.int64), np.zeros(1, dtype=np.int64),
            np.full(n_sym, -1, dtype=np.int64), np.full(1, window - 1, dtype=np.int64))


@njit(cache=True, nogil=True, inline="always")
def _pair_out(sx, sy, sxx, syy, sxy, const_x, const_y, w, want_beta):
    """Beta or correlation from the window sums; constant sides are detected exactly."""
    c = sxy - sx * sy / w
    a = sxx - sx * sx / w
    b = syy - sy * sy / w
    a = 0.0 if const_x else a
    b = 0.0 if const_y else b
    c = 0.0 if (const_x or const_y) else c
    r = np.nan
    if want_beta:
        if b > 0.0:
            r = c / b
    elif a > 0.0 and b > 0.0:
        r = c / (np.sqrt(a) * np.sqrt(b))
        r = min(1.0, max(-1.0, r))
    ok = np.isfinite(a) and np.isfinite(b) and np.isfinite(c)  # overflow: undefined
    return r if (ok and np.isfinite(r)) else np.nan


@njit(cache=True, nogil=True)
def _pair_anchor(j, lo, w, ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x, mag_y):
    """Recompute symbol ``j``'s five sums from the ring rows ``lo .. lo+w-1`` (compensated)."""
    s = np.zeros(10)
    for r in range(lo, lo + w):
        dx = ring_x[r % w, j] - kx[j]
        dy = ring_y[r % w] - ky[j]
        s[0], s[1] = _nadd(s[0], s[1], dx)
        s[2], s[3] = _nadd(s[2], s[3], dy)
        s[4], s[5] = _nadd(s[4], s[5], dx * dx)
        s[6], s[7] = _nadd(s[6], s[7], dy * dy)
        s[8], s[9] = _nadd(s[8], s[9], dx * dy)
    sx[j] = s[0] + s[1]
    sy[j] = s[2] + s[3]
    sxx[j] = s[4] + s[5]
    syy[j] = s[6] + s[7]
    sxy[j] = s[8] + s[9]
    mag_x[j] = sxx[j]
    mag_y[j] = syy[j]


@njit(cache=True, nogil=True)
def _pair_exact(j, t, w, ring_x, ring_y, const_x, const_y, want_beta):
    """Beta or correlation of symbol ``j``'s window ``t-w+1 .. t`` from the rings, two
    passes (means, then deviations), compensated: where the running sums' rounding shows."""
    s = np.zeros(4)
    for r in range(t - w + 1, t + 1):
        s[0], s[1] = _nadd(s[0], s[1], ring_x[r % w, j])
        s[2], s[3] = _nadd(s[2], s[3], ring_y[r % w])
    mx = (s[0] + s[1]) / w
    my = (s[2] + s[3]) / w
    q = np.zeros(6)
    for r in range(t - w + 1, t + 1):
        dx = ring_x[r % w, j] - mx
        dy = ring_y[r % w] - my
        q[0], q[1] = _nadd(q[0], q[1], dx * dx)
        q[2], q[3] = _nadd(q[2], q[3], dy * dy)
        q[4], q[5] = _nadd(q[4], q[5], dx * dy)
    return _pair_out(0.0, 0.0, q[0] + q[1], q[2] + q[3], q[4] + q[5], const_x, const_y, w,
                     want_beta)


@njit(cache=True, nogil=True, inline="always")
def _rounding_shows(s, q, w, mg):
    """Whether the running sums' rounding could reach 1e-10 of the sum of squared
    deviations ``q`` (``s`` the sum, ``mg`` the magnitude the sum of squares went through)."""
    return (_ROUND * (2.0 * w * mg + s * s) >= _REL * q
            or _ROUND * _ROUND * w * w * mg >= _REL * _REL * q)


@njit(cache=True, nogil=True, inline="always")
def _shows(a, b, c, d, mgx, mgy, const_x, const_y, w):
    """Whether either side's variance could carry the running sums' rounding."""
    return ((not const_x and _rounding_shows(a, c - a * a / w, w, mgx))
            or (not const_y and _rounding_shows(b, d - b * b / w, w, mgy)))


@njit(cache=True, nogil=True)
def _pair_step(t, x, y, w, ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x, mag_y, same_x,
               same_y, last_bad, due, out, want_beta):
    """Advance every symbol's pair window by row ``t`` (``y`` is that row's value).

    Plain running sums, recomputed from the rings (compensated) on the row where a
    symbol's window becomes complete and for every symbol every ``w`` rows (the variance's cancellation error grows with the square of the distance to the shift, so it is kept recent). A
    missing value makes the sums NaN, which is what marks an incomplete window.
    """
    n_sym = kx.shape[0]
    if x.shape[0] != n_sym or out.shape[0] != n_sym:
        raise ValueError("the input and output rows must have one value per symbol of the state")
    pos = t % w
    rp = ring_x[pos]
    pp = ring_x[(t - 1) % w]
    y_ok = np.isfinite(y)
    sy_run = same_y[0] + 1 if y == ring_y[(t - 1) % w] else 1
    same_y[0] = sy_run
    const_y = sy_run >= w and y_ok
    oy = ring_y[pos]
    ring_y[pos] = y
    n_bad = 0
    for j in range(n_sym):
        v = x[j]
        ax = kx[j]
        ay = ky[j]
        dx = v - ax
        dy = y - ay
        ox = rp[j] - ax
        qy = oy - ay
        sm = same_x[j] + 1 if v == pp[j] else 1  # pp read before rp is written (w == 1)
        a = sx[j] + (dx - ox)
        b = sy[j] + (dy - qy)
        c = sxx[j] + (dx * dx - ox * ox)
        d = syy[j] + (dy * dy - qy * qy)
        e = sxy[j] + (dx * dy - ox * qy)
        mgx = max(mag_x[j], abs(sxx[j]) + ox * ox + dx * dx)
        mgy = max(mag_y[j], abs(syy[j]) + qy * qy + dy * dy)
        mag_x[j] = mgx
        mag_y[j] = mgy
        rp[j] = v
        sx[j] = a
        sy[j] = b
        sxx[j] = c
        syy[j] = d
        sxy[j] = e
        same_x[j] = sm
        cx = sm >= w and np.isfinite(v)
        out[j] = _pair_out(a, b, c, d, e, cx, const_y, w, want_beta)
        if np.isfinite(out[j]) and _shows(a, b, c, d, mgx, mgy, cx, const_y, w):
            out[j] = _pair_exact(j, t, w, ring_x, ring_y, cx, const_y, want_beta)
        n_bad += not np.isfinite(v)
    if n_bad or not y_ok:
        for j in range(n_sym):
            if not (y_ok and np.isfinite(x[j])):
                last_bad[j] = t
        due[0] = min(due[0], t + w)
    every = (t + 1) % w == 0
    if every or due[0] == t:
        nxt = np.iinfo(np.int64).max
        for j in range(n_sym):
            dd = last_bad[j] + w
            if (every and y_ok and np.isfinite(x[j])) or dd == t:
                kx[j] = x[j]
                ky[j] = y
                _pair_anchor(j, t - w + 1, w, ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy,
                             mag_x, mag_y)
                cx = same_x[j] >= w
                out[j] = _pair_out(sx[j], sy[j], sxx[j], syy[j], sxy[j], cx, const_y, w, want_beta)
                if np.isfinite(out[j]) and _shows(sx[j], sy[j], sxx[j], syy[j], mag_x[j],
                                                  mag_y[j], cx, const_y, w):
                    out[j] = _pair_exact(j, t, w, ring_x, ring_y, cx, const_y, want_beta)
            if t < dd < nxt:
                nxt = dd
        if due[0] == t:
            due[0] = nxt


@njit(cache=True, nogil=True)
def rolling_corr_state(n_sym, window):
    """State of :func:`rolling_corr_step_nb`; see ``_pair_state``."""
    return _pair_state(n_sym, window)


@njit(cache=True, nogil=True)
def rolling_corr_step_nb(t, x, y, window, ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x,
                         mag_y, same_x, same_y, last_bad, due, out):
    """Advance :func:`rolling_corr_nb` by row ``t`` (the ``t``-th call, from 0); ``y`` is a
    number, that row's value of the series."""
    _pair_step(t, x, y, window, ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x, mag_y, same_x,
               same_y, last_bad, due, out, False)


@njit(cache=True, nogil=True)
def rolling_corr_block_nb(t0, x, y, window, ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x,
                          mag_y, same_x, same_y, last_bad, due, out):
    """Rows ``t0 ..`` of :func:`rolling_corr_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        rolling_corr_step_nb(t0 + i, x[i], y[i], window, ring_x, ring_y, kx, ky, sx, sy, sxx, syy,
                             sxy, mag_x, mag_y, same_x, same_y, last_bad, due, out[i])


@njit(cache=True, nogil=True)
def rolling_corr_nb(x, y, window, out):
    """Rolling Pearson correlation of each column of ``x`` with the series ``y``."""
    _check(x, y, out, window)
    (ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x, mag_y, same_x, same_y, last_bad,
     due) = rolling_corr_state(x.shape[1], window)
    rolling_corr_block_nb(0, x, y, window, ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x,
                          mag_y, same_x, same_y, last_bad, due, out)


@njit(cache=True, nogil=True)
def rolling_beta_state(n_sym, window):
    """State of :func:`rolling_beta_step_nb`; see ``_pair_state``."""
    return _pair_state(n_sym, window)


@njit(cache=True, nogil=True)
def rolling_beta_step_nb(t, x, y, window, ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x,
                         mag_y, same_x, same_y, last_bad, due, out):
    """Advance :func:`rolling_beta_nb` by row ``t`` (the ``t``-th call, from 0); ``y`` is a
    number, that row's value of the series."""
    _pair_step(t, x, y, window, ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x, mag_y, same_x,
               same_y, last_bad, due, out, True)


@njit(cache=True, nogil=True)
def rolling_beta_block_nb(t0, x, y, window, ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x,
                          mag_y, same_x, same_y, last_bad, due, out):
    """Rows ``t0 ..`` of :func:`rolling_beta_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        rolling_beta_step_nb(t0 + i, x[i], y[i], window, ring_x, ring_y, kx, ky, sx, sy, sxx, syy,
                             sxy, mag_x, mag_y, same_x, same_y, last_bad, due, out[i])


@njit(cache=True, nogil=True)
def rolling_beta_nb(x, y, window, out):
    """Rolling beta ``cov(x, y) / var(y)`` of each column of ``x`` on the series ``y``."""
    _check(x, y, out, window)
    (ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x, mag_y, same_x, same_y, last_bad,
     due) = rolling_beta_state(x.shape[1], window)
    rolling_beta_block_nb(0, x, y, window, ring_x, ring_y, kx, ky, sx, sy, sxx, syy, sxy, mag_x,
                          mag_y, same_x, same_y, last_bad, due, out)


# --------------------------------------------------------------------------- wrappers


def _alloc(kernel, x, y, window):
    x2, shape = as_panel(x)
    y1 = as_series(y, x2.shape[0])
    out = np.empty(x2.shape, dtype=np.float64)
    kernel(x2, y1, window_arg(window), out)
    return out.reshape(shape)


def _into(kernel, x, y, window, out):
    x2, shape = as_panel(x)
    y1 = as_series(y, x2.shape[0])
    kernel(x2, y1, window_arg(window), out_view(out, shape, (x2, y1)))
    return out


def rolling_corr(x, y, window):
    """Rolling correlation of each symbol of ``x`` with the 1-D series ``y``."""
    return _alloc(rolling_corr_nb, x, y, window)


def rolling_corr_into(x, y, window, out):
    """:func:`rolling_corr` written into ``out``; returns ``out``."""
    return _into(rolling_corr_nb, x, y, window, out)


def rolling_beta(x, y, window):
    """Rolling beta of each symbol of ``x`` on the 1-D series ``y``."""
    return _alloc(rolling_beta_nb, x, y, window)


def rolling_beta_into(x, y, window, out):
    """:func:`rolling_beta` written into ``out``; returns ``out``."""
    return _into(rolling_beta_nb, x, y, window, out)
