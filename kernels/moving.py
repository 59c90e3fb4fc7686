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

Streaming: every kernel ``name_nb`` is the loop over ``name_step_nb(t, x_row, ...,
state..., out_row)``, which advances all symbols by one row; its state lives in the
arrays made by ``name_state(n_sym, ...)`` (see ``pitgrid.kernels.Stream``).

Numerics: SMA and WMA keep plain running sums of ``x - shift`` (``shift`` is a
recent value of the same symbol) and recompute them from the ring buffer of the
window's values, with compensated summation, on each symbol's first complete
window and every ``4 * window`` rows, so rounding error never accumulates over a
long series (the error bound is in docs/kernels.md).
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
def _check_row(x, out, n_sym):
    # numba does not bounds-check: a short row would read or write past the state
    if x.shape[0] != n_sym or out.shape[0] != n_sym:
        raise ValueError("the input and output rows must have one value per symbol of the state")


@njit(cache=True, nogil=True)
def _window_state(n_sym, window):
    """Ring of the last ``window`` input rows (row r in slot r % window, NaN before row 0),
    the last missing row per symbol (-1: none yet) and the next row on which some
    symbol's window becomes complete again (``due[0]``)."""
    if window < 1:
        raise ValueError("window must be >= 1")
    ring = np.full((window, n_sym), np.nan)
    last_bad = np.full(n_sym, -1, dtype=np.int64)
    due = np.full(1, window - 1, dtype=np.int64)
    return ring, last_bad, due


@njit(cache=True, nogil=True)
def _mark_missing(t, x, w, last_bad, due):
    """Record the missing values of row ``t``: their windows complete again on row ``t + w``."""
    for j in range(x.shape[0]):
        if not np.isfinite(x[j]):
            last_bad[j] = t
    due[0] = min(due[0], t + w)


@njit(cache=True, nogil=True)
def _next_due(t, last_bad, w):
    nxt = np.iinfo(np.int64).max
    for j in range(last_bad.shape[0]):
        d = last_bad[j] + w
        if t < d < nxt:
            nxt = d
    return nxt


@njit(cache=True, nogil=True)
def sma_state(n_sym, window):
    """State of :func:`sma_step_nb`: ring, s, k, last_bad, due."""
    ring, last_bad, due = _window_state(n_sym, window)
    return ring, np.zeros(n_sym), np.zeros(n_sym), last_bad, due


@njit(cache=True, nogil=True)
def _sma_anchor(j, t, w, ring, s, k):
    """Recompute ``s[j]`` from the ring rows ``t-w+1 .. t``, shifted by the newest value."""
    kk = ring[t % w, j]
    a = 0.0
    c = 0.0
    for r in range(t - w + 1, t + 1):
        a, c = _nadd(a, c, ring[r % w, j] - kk)
    k[j] = kk
    s[j] = a + c


@njit(cache=True, nogil=True)
def _sma_anchor_all(t, w, ring, s, k):
    """``_sma_anchor`` for every symbol whose newest value is present, in memory order."""
    n_sym = s.shape[0]
    newest = ring[t % w]
    comp = np.zeros(n_sym)
    a = np.zeros(n_sym)
    for r in range(t - w + 1, t + 1):
        row = ring[r % w]
        for j in range(n_sym):
            a[j], comp[j] = _nadd(a[j], comp[j], row[j] - newest[j])
    for j in range(n_sym):
        if np.isfinite(newest[j]):
            k[j] = newest[j]
            s[j] = a[j] + comp[j]


@njit(cache=True, nogil=True)
def sma_step_nb(t, x, window, ring, s, k, last_bad, due, out):
    """Advance :func:`sma_nb` by row ``t`` (the ``t``-th call, from 0) for every symbol.

    ``s[j]`` is the plain running sum of ``x - k[j]`` over the window; a missing value
    makes it NaN until the symbol's window is complete again (row ``last_bad + window``),
    where it is recomputed from the ring (compensated), as every present symbol's is on
    every ``4 * window``-th row.
    """
    w = window
    _check_row(x, out, s.shape[0])
    rp = ring[t % w]
    n_bad = 0
    for j in range(x.shape[0]):
        v = x[j]
        kk = k[j]
        a = s[j] + ((v - kk) - (rp[j] - kk))
        rp[j] = v
        s[j] = a
        m = kk + a / w
        out[j] = m if np.isfinite(m) else np.nan
        n_bad += not np.isfinite(v)
    if n_bad:
        _mark_missing(t, x, w, last_bad, due)
    if (t + 1) % (4 * w) == 0:
        _sma_anchor_all(t, w, ring, s, k)
        for j in range(x.shape[0]):
            m = k[j] + s[j] / w
            out[j] = m if np.isfinite(m) else np.nan
    if due[0] == t:
        for j in range(x.shape[0]):
            if last_bad[j] + w == t:
                _sma_anchor(j, t, w, ring, s, k)
                m = k[j] + s[j] / w
                out[j] = m if np.isfinite(m) else np.nan
        due[0] = _next_due(t, last_bad, w)


@njit(cache=True, nogil=True)
def sma_block_nb(t0, x, window, ring, s, k, last_bad, due, out):
    """Rows ``t0 ..`` of :func:`sma_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        sma_step_nb(t0 + i, x[i], window, ring, s, k, last_bad, due, out[i])


@njit(cache=True, nogil=True)
def sma_nb(x, window, out):
    """Simple moving average of the last ``window`` rows; NaN unless all are present."""
    _check_2d(x, out, window)
    ring, s, k, last_bad, due = sma_state(x.shape[1], window)
    sma_block_nb(0, x, window, ring, s, k, last_bad, due, out)


@njit(cache=True, nogil=True)
def ema_state(n_sym, window):
    """State of :func:`ema_step_nb`: count (present bars seen), value (seed sum, then the EMA)."""
    if window < 1:
        raise ValueError("window must be >= 1")
    return np.zeros(n_sym, dtype=np.int64), np.zeros(n_sym)


@njit(cache=True, nogil=True)
def ema_step_nb(t, x, window, count, value, out):
    """Advance :func:`ema_nb` by one row for every symbol."""
    _check_row(x, out, count.shape[0])
    alpha = 2.0 / (window + 1.0)
    for j in range(x.shape[0]):
        v = x[j]
        if not np.isfinite(v):
            out[j] = np.nan  # skipped: state held
            continue
        n = count[j] + 1
        if n <= window:
            count[j] = n
            a = value[j] + v  # the seed's sum: `window` terms, plain summation
            if n < window:
                value[j] = a
                out[j] = np.nan
                continue
            e = a / window
        else:
            e = value[j]
            e = e + alpha * (v - e)
        value[j] = e
        out[j] = e if np.isfinite(e) else np.nan


@njit(cache=True, nogil=True)
def ema_block_nb(t0, x, window, count, value, out):
    """Rows ``t0 ..`` of :func:`ema_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        ema_step_nb(t0 + i, x[i], window, count, value, out[i])


@njit(cache=True, nogil=True)
def ema_nb(x, window, out):
    """EMA with ``alpha = 2 / (window + 1)``.

    Seeded with the mean of the first ``window`` present values; missing bars are skipped.
    """
    _check_2d(x, out, window)
    count, value = ema_state(x.shape[1], window)
    ema_block_nb(0, x, window, count, value, out)


@njit(cache=True, nogil=True)
def wma_state(n_sym, window):
    """State of :func:`wma_step_nb`: ring, s (sum), b (weighted sum), k, last_bad, due.

    The sums start NaN, as after a missing value: the weighted sum's update never
    reads the value leaving the window, so only its own NaN marks an incomplete one.
    """
    ring, last_bad, due = _window_state(n_sym, window)
    return ring, np.full(n_sym, np.nan), np.full(n_sym, np.nan), np.zeros(n_sym), last_bad, due


@njit(cache=True, nogil=True)
def _wma_anchor(j, lo, w, ring, s, b, kk):
    """Recompute ``s[j]`` and ``b[j]`` from the ring rows ``lo .. lo+w-1`` (weights 1..w)."""
    a = 0.0
    ca = 0.0
    q = 0.0
    cq = 0.0
    for i in range(w):
        d = ring[(lo + i) % w, j] - kk
        a, ca = _nadd(a, ca, d)
        q, cq = _nadd(q, cq, (i + 1) * d)
    s[j] = a + ca
    b[j] = q + cq


@njit(cache=True, nogil=True)
def _wma_anchor_all(t, w, ring, s, b, k):
    """``_wma_anchor`` (newest value as the shift) for every symbol whose newest value is
    present, in memory order: the same additions per symbol, a row of the ring at a time."""
    n_sym = s.shape[0]
    newest = ring[t % w]
    a = np.zeros(n_sym)
    ca = np.zeros(n_sym)
    q = np.zeros(n_sym)
    cq = np.zeros(n_sym)
    lo = t - w + 1
    for i in range(w):
        row = ring[(lo + i) % w]
        for j in range(n_sym):
            d = row[j] - newest[j]
            a[j], ca[j] = _nadd(a[j], ca[j], d)
            q[j], cq[j] = _nadd(q[j], cq[j], (i + 1) * d)
    for j in range(n_sym):
        if np.isfinite(newest[j]):
            k[j] = newest[j]
            s[j] = a[j] + ca[j]
            b[j] = q[j] + cq[j]


@njit(cache=True, nogil=True)
def wma_step_nb(t, x, window, ring, s, b, k, last_bad, due, out):
    """Advance :func:`wma_nb` by one row; sums as in :func:`sma_step_nb`."""
    w = window
    denom = w * (w + 1) / 2.0
    _check_row(x, out, s.shape[0])
    rp = ring[t % w]
    n_bad = 0
    for j in range(x.shape[0]):
        v = x[j]
        kk = k[j]
        d = v - kk
        prev = s[j]
        q = b[j] + (w * d - prev)  # every weight drops by one: the oldest value's to 0
        s[j] = prev + (d - (rp[j] - kk))
        rp[j] = v
        b[j] = q
        m = kk + q / denom
        out[j] = m if np.isfinite(m) else np.nan
        n_bad += not np.isfinite(v)
    if n_bad:
        _mark_missing(t, x, w, last_bad, due)
    if (t + 1) % (4 * w) == 0:
        _wma_anchor_all(t, w, ring, s, b, k)
        for j in range(x.shape[0]):
            m = k[j] + b[j] / denom
            out[j] = m if np.isfinite(m) else np.nan
    if due[0] == t:
        for j in range(x.shape[0]):
            if last_bad[j] + w == t:  # anchoring again on an every-4w row changes nothing
                k[j] = x[j]
                _wma_anchor(j, t - w + 1, w, ring, s, b, k[j])
                m = k[j] + b[j] / denom
                out[j] = m if np.isfinite(m) else np.nan
        due[0] = _next_due(t, last_bad, w)


@njit(cache=True, nogil=True)
def wma_block_nb(t0, x, window, ring, s, b, k, last_bad, due, out):
    """Rows ``t0 ..`` of :func:`wma_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        wma_step_nb(t0 + i, x[i], window, ring, s, b, k, last_bad, due, out[i])


@njit(cache=True, nogil=True)
def wma_nb(x, window, out):
    """Linearly weighted moving average: weight ``window`` on row t, ..., 1 on row t-window+1."""
    _check_2d(x, out, window)
    ring, s, b, k, last_bad, due = wma_state(x.shape[1], window)
    wma_block_nb(0, x, window, ring, s, b, k, last_bad, due, out)


@njit(cache=True, nogil=True)
def _extreme_state(n_sym, window):
    """Per symbol a monotonic deque (row, value) in a ring of capacity ``window``."""
    if window < 1:
        raise ValueError("window must be >= 1")
    return (np.zeros((n_sym, window), dtype=np.int64), np.zeros((n_sym, window)),
            np.zeros(n_sym, dtype=np.int64), np.zeros(n_sym, dtype=np.int64),
            np.full(n_sym, -1, dtype=np.int64))


@njit(cache=True, nogil=True)
def _extreme_step(t, x, w, rows, vals, head, size, last_bad, out, take_max):
    _check_row(x, out, head.shape[0])
    for j in range(x.shape[0]):
        v = x[j]
        if not np.isfinite(v):
            last_bad[j] = t
            size[j] = 0
            head[j] = 0
            out[j] = np.nan
            continue
        h = head[j]
        n = size[j]
        while n > 0 and rows[j, h] <= t - w:  # expired at the front
            h += 1
            if h == w:
                h = 0
            n -= 1
        while n > 0:  # dominated at the back
            e = h + n - 1
            if e >= w:
                e -= w
            back = vals[j, e]
            if (back <= v) if take_max else (back >= v):
                n -= 1
            else:
                break
        e = h + n
        if e >= w:
            e -= w
        rows[j, e] = t
        vals[j, e] = v
        n += 1
        head[j] = h
        size[j] = n
        out[j] = vals[j, h] if t - last_bad[j] >= w else np.nan


@njit(cache=True, nogil=True)
def rolling_max_state(n_sym, window):
    """State of :func:`rolling_max_step_nb`: rows, vals, head, size, last_bad."""
    return _extreme_state(n_sym, window)


@njit(cache=True, nogil=True)
def rolling_max_step_nb(t, x, window, rows, vals, head, size, last_bad, out):
    """Advance :func:`rolling_max_nb` by one row for every symbol."""
    _extreme_step(t, x, window, rows, vals, head, size, last_bad, out, True)


@njit(cache=True, nogil=True)
def rolling_max_block_nb(t0, x, window, rows, vals, head, size, last_bad, out):
    """Rows ``t0 ..`` of :func:`rolling_max_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        rolling_max_step_nb(t0 + i, x[i], window, rows, vals, head, size, last_bad, out[i])


@njit(cache=True, nogil=True)
def rolling_max_nb(x, window, out):
    """Maximum of the last ``window`` rows; NaN unless all are present. O(1) amortised per row."""
    _check_2d(x, out, window)
    rows, vals, head, size, last_bad = rolling_max_state(x.shape[1], window)
    rolling_max_block_nb(0, x, window, rows, vals, head, size, last_bad, out)


@njit(cache=True, nogil=True)
def rolling_min_state(n_sym, window):
    """State of :func:`rolling_min_step_nb`: rows, vals, head, size, last_bad."""
    return _extreme_state(n_sym, window)


@njit(cache=True, nogil=True)
def rolling_min_step_nb(t, x, window, rows, vals, head, size, last_bad, out):
    """Advance :func:`rolling_min_nb` by one row for every symbol."""
    _extreme_step(t, x, window, rows, vals, head, size, last_bad, out, False)


@njit(cache=True, nogil=True)
def rolling_min_block_nb(t0, x, window, rows, vals, head, size, last_bad, out):
    """Rows ``t0 ..`` of :func:`rolling_min_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        rolling_min_step_nb(t0 + i, x[i], window, rows, vals, head, size, last_bad, out[i])


@njit(cache=True, nogil=True)
def rolling_min_nb(x, window, out):
    """Minimum of the last ``window`` rows; NaN unless all are present. O(1) amortised per row."""
    _check_2d(x, out, window)
    rows, vals, head, size, last_bad = rolling_min_state(x.shape[1], window)
    rolling_min_block_nb(0, x, window, rows, vals, head, size, last_bad, out)


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
