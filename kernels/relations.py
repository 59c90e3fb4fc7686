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

Numerics: Neumaier-compensated running sums of ``x - kx``, ``y - ky`` and their
products (``kx``, ``ky`` recent values), recomputed from scratch every ``window``
rows; constant windows are detected exactly.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._common import as_panel, as_series, out_view, window_arg

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
def _pair_row(x, y, t, w, same_y, st, run, same_x, cov, vx, vy):
    """Advance every symbol's pair state to row ``t``.

    Writes the co-moment ``cov[j]`` and the second moments ``vx[j]``, ``vy[j]``
    (sums of products of deviations from the window means, not divided), or NaN
    when the window is incomplete. ``st[j]``: kx, ky, then five compensated sums
    (value, compensation) of dx, dy, dx*dx, dy*dy, dx*dy.
    """
    yv = y[t]
    y_ok = np.isfinite(yv)
    for j in range(x.shape[1]):
        xv = x[t, j]
        if not (y_ok and np.isfinite(xv)):
            run[j] = 0
            same_x[j] = 0
            cov[j] = np.nan
            vx[j] = np.nan
            vy[j] = np.nan
            continue
        r = run[j] + 1
        run[j] = r
        if r > 1 and x[t - 1, j] == xv:
            same_x[j] += 1
        else:
            same_x[j] = 1
        if r < w:
            cov[j] = np.nan
            vx[j] = np.nan
            vy[j] = np.nan
            continue
        if r == w or r == 2 * w:  # first full window, then every w rows: recompute
            run[j] = w  # keeps r in [w, 2w], so a compare (not a modulo) schedules it
            kx = xv
            ky = yv
            for q in range(2, 12):
                st[j, q] = 0.0
            for i in range(t - w + 1, t + 1):
                dx = x[i, j] - kx
                dy = y[i] - ky
                st[j, 2], st[j, 3] = _nadd(st[j, 2], st[j, 3], dx)
                st[j, 4], st[j, 5] = _nadd(st[j, 4], st[j, 5], dy)
                st[j, 6], st[j, 7] = _nadd(st[j, 6], st[j, 7], dx * dx)
                st[j, 8], st[j, 9] = _nadd(st[j, 8], st[j, 9], dy * dy)
                st[j, 10], st[j, 11] = _nadd(st[j, 10], st[j, 11], dx * dy)
            st[j, 0] = kx
            st[j, 1] = ky
        else:
            kx = st[j, 0]
            ky = st[j, 1]
            dx = xv - kx
            dy = yv - ky
            ox = x[t - w, j] - kx
            oy = y[t - w] - ky
            st[j, 2], st[j, 3] = _nadd(st[j, 2], st[j, 3], dx)
            st[j, 2], st[j, 3] = _nadd(st[j, 2], st[j, 3], -ox)
            st[j, 4], st[j, 5] = _nadd(st[j, 4], st[j, 5], dy)
            st[j, 4], st[j, 5] = _nadd(st[j, 4], st[j, 5], -oy)
            st[j, 6], st[j, 7] = _nadd(st[j, 6], st[j, 7], dx * dx)
            st[j, 6], st[j, 7] = _nadd(st[j, 6], st[j, 7], -(ox * ox))
            st[j, 8], st[j, 9] = _nadd(st[j, 8], st[j, 9], dy * dy)
            st[j, 8], st[j, 9] = _nadd(st[j, 8], st[j, 9], -(oy * oy))
            st[j, 10], st[j, 11] = _nadd(st[j, 10], st[j, 11], dx * dy)
            st[j, 10], st[j, 11] = _nadd(st[j, 10], st[j, 11], -(ox * oy))
        sx = st[j, 2] + st[j, 3]
        sy = st[j, 4] + st[j, 5]
        sxx = st[j, 6] + st[j, 7]
        syy = st[j, 8] + st[j, 9]
        sxy = st[j, 10] + st[j, 11]
        c = sxy - sx * sy / w
        a = sxx - sx * sx / w
        b = syy - sy * sy / w
        if same_x[j] >= w:
            a = 0.0
            c = 0.0
        if same_y >= w:
            b = 0.0
            c = 0.0
        if np.isfinite(a) and np.isfinite(b) and np.isfinite(c):
            cov[j] = c
            vx[j] = a if a > 0.0 else 0.0
            vy[j] = b if b > 0.0 else 0.0
        else:  # overflow (|values| beyond ~1e150): undefined
            cov[j] = np.nan
            vx[j] = np.nan
            vy[j] = np.nan


@njit(cache=True, nogil=True)
def _pair_kernel(x, y, window, out, want_beta):
    _check(x, y, out, window)
    n_time, n_sym = x.shape
    st = np.zeros((n_sym, 12), dtype=np.float64)
    run = np.zeros(n_sym, dtype=np.int64)
    same_x = np.zeros(n_sym, dtype=np.int64)
    cov = np.empty(n_sym, dtype=np.float64)
    vx = np.empty(n_sym, dtype=np.float64)
    vy = np.empty(n_sym, dtype=np.float64)
    same_y = 0  # equal present y values in a row, ending at t
    for t in range(n_time):
        yv = y[t]
        if not np.isfinite(yv):
            same_y = 0
        elif t > 0 and y[t - 1] == yv:
            same_y += 1
        else:
            same_y = 1
        _pair_row(x, y, t, window, same_y, st, run, same_x, cov, vx, vy)
        for j in range(n_sym):
            r = np.nan
            if want_beta:
                if vy[j] > 0.0:
                    r = cov[j] / vy[j]
            elif vx[j] > 0.0 and vy[j] > 0.0:
                r = cov[j] / (np.sqrt(vx[j]) * np.sqrt(vy[j]))
                r = min(1.0, max(-1.0, r))
            out[t, j] = r if np.isfinite(r) else np.nan


@njit(cache=True, nogil=True)
def rolling_corr_nb(x, y, window, out):
    """Rolling Pearson correlation of each column of ``x`` with the series ``y``."""
    _pair_kernel(x, y, window, out, False)


@njit(cache=True, nogil=True)
def rolling_beta_nb(x, y, window, out):
    """Rolling beta ``cov(x, y) / var(y)`` of each column of ``x`` on the series ``y``."""
    _pair_kernel(x, y, window, out, True)


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
