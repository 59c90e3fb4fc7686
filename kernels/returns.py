"""Returns: simple and log returns over one bar, momentum over ``window`` bars.

Conventions (shared by every ``pitgrid.kernels`` module, see docs/kernels.md):

* Arrays are ``(time, symbol)``, C-contiguous float64. ``name(...)`` allocates,
  ``name_into(..., out)`` writes into a checked preallocated output,
  ``name_nb(..., out)`` is the raw ``@njit(cache=True, nogil=True)`` kernel.
* Causal: output row ``t`` reads input rows ``<= t`` only.
* Missing value: any non-finite input (NaN, +inf, -inf) is a missing bar.
* Point kernels: each reads exactly two rows, ``t`` and ``t - n`` (``n = 1`` for
  returns, ``n = window`` for momentum); the output is NaN when either is missing
  (so the first ``n`` rows are NaN, and a return across a gap is NaN, never
  silently stretched over two bars). The rows in between are not read.
* ``simple_returns = x[t] / x[t-1] - 1`` (computed as ``(x[t] - x[t-1]) / x[t-1]``),
  ``log_returns = log(x[t] / x[t-1])`` (computed with ``log1p``; NaN unless both
  prices are > 0), ``momentum = x[t] / x[t-window] - 1``.
* Outputs are finite or NaN, never infinite (a zero base price gives NaN).

Streaming: ``name_nb`` is the loop over ``name_step_nb`` (one row, all symbols;
the state is a ring of the last ``n`` rows, from ``name_state``), see
``pitgrid.kernels.Stream``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._common import as_panel, out_view, window_arg

__all__ = [
    "simple_returns", "simple_returns_into", "simple_returns_nb",
    "log_returns", "log_returns_into", "log_returns_nb",
    "momentum", "momentum_into", "momentum_nb",
]


# --------------------------------------------------------------------------- jitted


@njit(cache=True, nogil=True)
def _ring_state(n_sym, n):
    """The last ``n`` input rows, row r in slot r % n (NaN before row 0)."""
    if n < 1:
        raise ValueError("window must be >= 1")
    return np.full((n, n_sym), np.nan)


@njit(cache=True, nogil=True)
def _ratio_step(t, x, ring, out, use_log):
    n_sym = ring.shape[1]
    if x.shape[0] != n_sym or out.shape[0] != n_sym:
        raise ValueError("the input and output rows must have one value per symbol of the state")
    rp = ring[t % ring.shape[0]]  # row t - n, NaN while t < n
    for j in range(n_sym):
        a = x[j]
        b = rp[j]
        rp[j] = a
        r = np.nan
        if np.isfinite(a) and np.isfinite(b):
            if use_log:
                if a > 0.0 and b > 0.0:
                    r = np.log1p((a - b) / b)
            elif b != 0.0:
                r = (a - b) / b
        out[j] = r if np.isfinite(r) else np.nan


@njit(cache=True, nogil=True)
def _check(x, out):
    if out.shape[0] != x.shape[0] or out.shape[1] != x.shape[1]:
        raise ValueError("out must have the shape of x")


@njit(cache=True, nogil=True)
def simple_returns_state(n_sym):
    """State of :func:`simple_returns_step_nb`: ring (the previous row)."""
    return (_ring_state(n_sym, 1),)


@njit(cache=True, nogil=True)
def simple_returns_step_nb(t, x, ring, out):
    """Advance :func:`simple_returns_nb` by one row for every symbol."""
    _ratio_step(t, x, ring, out, False)


@njit(cache=True, nogil=True)
def simple_returns_block_nb(t0, x, ring, out):
    """Rows ``t0 ..`` of :func:`simple_returns_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        simple_returns_step_nb(t0 + i, x[i], ring, out[i])


@njit(cache=True, nogil=True)
def simple_returns_nb(x, out):
    """One-bar simple return ``x[t] / x[t-1] - 1``."""
    _check(x, out)
    (ring,) = simple_returns_state(x.shape[1])
    simple_returns_block_nb(0, x, ring, out)


@njit(cache=True, nogil=True)
def log_returns_state(n_sym):
    """State of :func:`log_returns_step_nb`: ring (the previous row)."""
    return (_ring_state(n_sym, 1),)


@njit(cache=True, nogil=True)
def log_returns_step_nb(t, x, ring, out):
    """Advance :func:`log_returns_nb` by one row for every symbol."""
    _ratio_step(t, x, ring, out, True)


@njit(cache=True, nogil=True)
def log_returns_block_nb(t0, x, ring, out):
    """Rows ``t0 ..`` of :func:`log_returns_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        log_returns_step_nb(t0 + i, x[i], ring, out[i])


@njit(cache=True, nogil=True)
def log_returns_nb(x, out):
    """One-bar log return ``log(x[t] / x[t-1])``."""
    _check(x, out)
    (ring,) = log_returns_state(x.shape[1])
    log_returns_block_nb(0, x, ring, out)


@njit(cache=True, nogil=True)
def momentum_state(n_sym, window):
    """State of :func:`momentum_step_nb`: ring (the last ``window`` rows)."""
    return (_ring_state(n_sym, window),)


@njit(cache=True, nogil=True)
def momentum_step_nb(t, x, window, ring, out):
    """Advance :func:`momentum_nb` by row ``t`` (the ``t``-th call, from 0)."""
    if ring.shape[0] != window:
        raise ValueError("the ring must hold `window` rows")
    _ratio_step(t, x, ring, out, False)


@njit(cache=True, nogil=True)
def momentum_block_nb(t0, x, window, ring, out):
    """Rows ``t0 ..`` of :func:`momentum_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        momentum_step_nb(t0 + i, x[i], window, ring, out[i])


@njit(cache=True, nogil=True)
def momentum_nb(x, window, out):
    """``x[t] / x[t-window] - 1``."""
    _check(x, out)
    (ring,) = momentum_state(x.shape[1], window)
    momentum_block_nb(0, x, window, ring, out)


# --------------------------------------------------------------------------- wrappers


def simple_returns(x):
    """One-bar simple returns; row 0 and rows next to a missing bar are NaN."""
    x2, shape = as_panel(x)
    out = np.empty(x2.shape, dtype=np.float64)
    simple_returns_nb(x2, out)
    return out.reshape(shape)


def simple_returns_into(x, out):
    """:func:`simple_returns` written into ``out``; returns ``out``."""
    x2, shape = as_panel(x)
    simple_returns_nb(x2, out_view(out, shape, (x2,)))
    return out


def log_returns(x):
    """One-bar log returns; NaN unless both prices are present and > 0."""
    x2, shape = as_panel(x)
    out = np.empty(x2.shape, dtype=np.float64)
    log_returns_nb(x2, out)
    return out.reshape(shape)


def log_returns_into(x, out):
    """:func:`log_returns` written into ``out``; returns ``out``."""
    x2, shape = as_panel(x)
    log_returns_nb(x2, out_view(out, shape, (x2,)))
    return out


def momentum(x, window):
    """``x[t] / x[t-window] - 1``; NaN when either end is missing."""
    x2, shape = as_panel(x)
    out = np.empty(x2.shape, dtype=np.float64)
    momentum_nb(x2, window_arg(window), out)
    return out.reshape(shape)


def momentum_into(x, window, out):
    """:func:`momentum` written into ``out``; returns ``out``."""
    x2, shape = as_panel(x)
    momentum_nb(x2, window_arg(window), out_view(out, shape, (x2,)))
    return out
