"""Moving averages and rolling extremes: SMA, EMA, WMA, rolling max / min.

Conventions (shared by every ``pitgrid.kernels`` module, see docs/kernels.md):

* Arrays are ``(time, symbol)``, C-contiguous float64. ``name(x, ...)`` allocates
  and returns the result; ``name_into(x, ..., out)`` checks ``out`` and writes into
  it; ``name_nb(x, ..., out)`` is the raw ``@njit(cache=True, nogil=True)`` kernel,
  callable from other numba code, which checks only shapes and parameter ranges.
* Causal: output row ``t`` reads input rows ``<= t`` only.
* Missing value: any non-finite input (NaN, +inf, -inf) is a missing bar.
* Window kernels (SMA, WMA, rolling max / min): row ``t`` is a value only when all
  ``window`` rows ``t-window+1 .. t`` are present; otherwise NaN. So the first
  ``window-1`` rows are NaN (warm-up) and a missing bar makes NaN every window
  that contains it: output resumes ``window`` rows after the gap.
* Recursive kernels (EMA): a missing bar is skipped. The state is held, the row's
  output is NaN, and the next present bar continues from the held state. The
  warm-up counts present bars: EMA is seeded with the simple mean of its first
  ``window`` present values and is NaN before that.
* Outputs are finite or NaN, never infinite.

Numerics: SMA and WMA keep Neumaier-compensated running sums of ``x - shift``
(``shift`` is a recent value of the same symbol) and recompute them from scratch
every ``window`` rows, so rounding error never accumulates over a long series.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._common import as_panel, out_view, window_arg

__all__ = [
    "sma", "sma_into", "sma_nb",
    "ema", "ema_into", "ema_nb",
    "wma", "wma_into", "wma_nb",
    "rolling_max", "rolling_max_into", "rolling_max_nb",
    "rolling_min", "rolling_min_into", "rolling_min_nb",
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
def _check_2d(x, out, window):
    if out.shape[0] != x.shape[0] or out.shape[1] != x.shape[1]:
        raise ValueError("out must have the shape of x")
    if window < 1:
        raise ValueError("window must be >= 1")


@njit(cache=True, nogil=True)
def sma_nb(x, window, out):
    """Simple moving average of the last ``window`` rows; NaN unless all are present."""
    _check_2d(x, out, window)
    n_time, n_sym = x.shape
    w = window
    run = np.zeros(n_sym, dtype=np.int64)  # present bars in a row (capped once >= w)
    shift = np.zeros(n_sym, dtype=np.float64)
    s = np.zeros(n_sym, dtype=np.float64)
    c = np.zeros(n_sym, dtype=np.float64)
    for t in range(n_time):
        for j in range(n_sym):
            v = x[t, j]
            if not np.isfinite(v):
                run[j] = 0
                out[t, j] = np.nan
                continue
            r = run[j] + 1
            run[j] = r
            if r < w:
                out[t, j] = np.nan
                continue
            if r == w or r == 2 * w:  # first full window, then every w rows: recompute
                run[j] = w  # keeps r in [w, 2w], so a compare (not a modulo) schedules it
                k = v
                a = 0.0
                ca = 0.0
                for i in range(t - w + 1, t + 1):
                    a, ca = _nadd(a, ca, x[i, j] - k)
                shift[j] = k
            else:
                k = shift[j]
                a, ca = _nadd(s[j], c[j], v - k)
                a, ca = _nadd(a, ca, k - x[t - w, j])
            s[j] = a
            c[j] = ca
            m = k + (a + ca) / w
            out[t, j] = m if np.isfinite(m) else np.nan


@njit(cache=True, nogil=True)
def ema_nb(x, window, out):
    """EMA with ``alpha = 2 / (window + 1)``.

    Seeded with the mean of the first ``window`` present values; missing bars are skipped.
    """
    _check_2d(x, out, window)
    n_time, n_sym = x.shape
    alpha = 2.0 / (window + 1.0)
    count = np.zeros(n_sym, dtype=np.int64)  # present bars seen so far
    state = np.zeros(n_sym, dtype=np.float64)  # warm-up sum, then the EMA
    for t in range(n_time):
        for j in range(n_sym):
            v = x[t, j]
            if not np.isfinite(v):
                out[t, j] = np.nan  # skipped: state held
                continue
            n = count[j] + 1
            if n <= window:
                count[j] = n
                a = state[j] + v  # the seed's sum: `window` terms, plain summation
                if n < window:
                    state[j] = a
                    out[t, j] = np.nan
                    continue
                e = a / window
            else:
                e = state[j]
                e = e + alpha * (v - e)
            state[j] = e
            out[t, j] = e if np.isfinite(e) else np.nan


@njit(cache=True, nogil=True)
def wma_nb(x, window, out):
    """Linearly weighted moving average: weight ``window`` on row t, ..., 1 on row t-window+1."""
    _check_2d(x, out, window)
    n_time, n_sym = x.shape
    w = window
    denom = w * (w + 1) / 2.0
    run = np.zeros(n_sym, dtype=np.int64)
    shift = np.zeros(n_sym, dtype=np.float64)
    s = np.zeros(n_sym, dtype=np.float64)  # sum of (x - shift) over the window
    cs = np.zeros(n_sym, dtype=np.float64)
    ws = np.zeros(n_sym, dtype=np.float64)  # weighted sum of (x - shift)
    cws = np.zeros(n_sym, dtype=np.float64)
    for t in range(n_time):
        for j in range(n_sym):
            v = x[t, j]
            if not np.isfinite(v):
                run[j] = 0
                out[t, j] = np.nan
                continue
            r = run[j] + 1
            run[j] = r
            if r < w:
                out[t, j] = np.nan
                continue
            if r == w or r == 2 * w:  # first full window, then every w rows: recompute
                run[j] = w  # keeps r in [w, 2w], so a compare (not a modulo) schedules it
                k = v
                a = 0.0
                ca = 0.0
                b = 0.0
                cb = 0.0
                for i in range(w):
                    d = x[t - w + 1 + i, j] - k
                    a, ca = _nadd(a, ca, d)
                    b, cb = _nadd(b, cb, (i + 1) * d)
                shift[j] = k
            else:
                k = shift[j]
                prev_sum = s[j] + cs[j]
                b, cb = _nadd(ws[j], cws[j], w * (v - k))
                b, cb = _nadd(b, cb, -prev_sum)
                a, ca = _nadd(s[j], cs[j], v - k)
                a, ca = _nadd(a, ca, k - x[t - w, j])
            s[j] = a
            cs[j] = ca
            ws[j] = b
            cws[j] = cb
            m = k + (b + cb) / denom
            out[t, j] = m if np.isfinite(m) else np.nan


@njit(cache=True, nogil=True)
def _rolling_extreme_nb(x, window, out, take_max):
    _check_2d(x, out, window)
    n_time, n_sym = x.shape
    w = window
    # per symbol, a monotonic deque of row indices in a ring buffer of capacity w
    buf = np.zeros((n_sym, w), dtype=np.int64)
    head = np.zeros(n_sym, dtype=np.int64)
    size = np.zeros(n_sym, dtype=np.int64)
    run = np.zeros(n_sym, dtype=np.int64)
    for t in range(n_time):
        for j in range(n_sym):
            v = x[t, j]
            if not np.isfinite(v):
                run[j] = 0
                size[j] = 0
                head[j] = 0
                out[t, j] = np.nan
                continue
            run[j] += 1
            h = head[j]
            n = size[j]
            while n > 0 and buf[j, h] <= t - w:  # expired at the front
                h += 1
                if h == w:
                    h = 0
                n -= 1
            while n > 0:  # dominated at the back
                b = h + n - 1
                if b >= w:
                    b -= w
                back = x[buf[j, b], j]
                if (back <= v) if take_max else (back >= v):
                    n -= 1
                else:
                    break
            b = h + n
            if b >= w:
                b -= w
            buf[j, b] = t
            n += 1
            head[j] = h
            size[j] = n
            if run[j] >= w:
                out[t, j] = x[buf[j, h], j]
            else:
                out[t, j] = np.nan


@njit(cache=True, nogil=True)
def rolling_max_nb(x, window, out):
    """Maximum of the last ``window`` rows; NaN unless all are present. O(1) amortised per row."""
    _rolling_extreme_nb(x, window, out, True)


@njit(cache=True, nogil=True)
def rolling_min_nb(x, window, out):
    """Minimum of the last ``window`` rows; NaN unless all are present. O(1) amortised per row."""
    _rolling_extreme_nb(x, window, out, False)


# --------------------------------------------------------------------------- wrappers


def _alloc_call(kernel, x, window):
    x2, shape = as_panel(x)
    out = np.empty(x2.shape, dtype=np.float64)
    kernel(x2, window_arg(window), out)
    return out.reshape(shape)


def _into_call(kernel, x, window, out):
    x2, shape = as_panel(x)
    kernel(x2, window_arg(window), out_view(out, shape, (x2,)))
    return out


def sma(x, window):
    """Simple moving average over ``window`` rows. Returns a new float64 array shaped like ``x``."""
    return _alloc_call(sma_nb, x, window)


def sma_into(x, window, out):
    """:func:`sma` written into the preallocated float64 array ``out``; returns ``out``."""
    return _into_call(sma_nb, x, window, out)


def ema(x, window):
    """Exponential moving average, ``alpha = 2 / (window + 1)``, seeded with the SMA of the
    first ``window`` present values; missing bars are skipped (NaN on that row)."""
    return _alloc_call(ema_nb, x, window)


def ema_into(x, window, out):
    """:func:`ema` written into ``out``; returns ``out``."""
    return _into_call(ema_nb, x, window, out)


def wma(x, window):
    """Linearly weighted moving average (weights 1..window, newest heaviest)."""
    return _alloc_call(wma_nb, x, window)


def wma_into(x, window, out):
    """:func:`wma` written into ``out``; returns ``out``."""
    return _into_call(wma_nb, x, window, out)


def rolling_max(x, window):
    """Rolling maximum over ``window`` rows."""
    return _alloc_call(rolling_max_nb, x, window)


def rolling_max_into(x, window, out):
    """:func:`rolling_max` written into ``out``; returns ``out``."""
    return _into_call(rolling_max_nb, x, window, out)


def rolling_min(x, window):
    """Rolling minimum over ``window`` rows."""
    return _alloc_call(rolling_min_nb, x, window)


def rolling_min_into(x, window, out):
    """:func:`rolling_min` written into ``out``; returns ``out``."""
    return _into_call(rolling_min_nb, x, window, out)
