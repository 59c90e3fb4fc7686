"""Oscillators: RSI (Wilder) and MACD.

Conventions (shared by every ``pitgrid.kernels`` module, see docs/kernels.md):

* Arrays are ``(time, symbol)``, C-contiguous float64. ``name(...)`` allocates,
  ``name_into(..., out)`` writes into checked preallocated outputs,
  ``name_nb(..., out)`` is the raw ``@njit(cache=True, nogil=True)`` kernel.
* Causal: output row ``t`` reads input rows ``<= t`` only.
* Missing value: any non-finite input (NaN, +inf, -inf) is a missing bar.
* Both kernels are recursive: a missing bar is skipped. The state is held, the
  row's output is NaN, and the next present bar continues from the held state
  (RSI's next change is measured from the last present price).
* RSI: changes ``d = x[t] - x[prev present]``; gains ``max(d, 0)``, losses
  ``max(-d, 0)``. Average gain / loss are seeded with the simple mean of the first
  ``window`` changes, then ``avg = (avg * (window - 1) + new) / window`` (Wilder).
  ``RSI = 100 * avg_gain / (avg_gain + avg_loss)``, which is 100 when there are no
  losses and 50 when the window saw no movement at all. The first change needs two
  present prices, so RSI is first defined on the ``window + 1``-th present bar.
* MACD: ``line = EMA(fast) - EMA(slow)``, ``signal = EMA(signal)`` of the line,
  ``hist = line - signal``. EMAs use ``alpha = 2 / (n + 1)`` and are seeded with the
  mean of their first ``n`` inputs (as :func:`pitgrid.kernels.ema`). The line is
  defined from the ``slow``-th present bar, the signal ``signal - 1`` line values
  later; rows where an output is not yet defined are NaN.
* Outputs are finite or NaN, never infinite.

Streaming: ``name_nb`` is the loop over ``name_step_nb`` (one row, all symbols;
state in the arrays of ``name_state``), see ``pitgrid.kernels.Stream``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from ._common import as_panel, distinct_outputs, out_view, window_arg

__all__ = [
    "rsi", "rsi_into", "rsi_nb",
    "MACD", "macd", "macd_into", "macd_nb",
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
def _check_row(x, out, n_sym):
    # numba does not bounds-check: a short row would read or write past the state
    if x.shape[0] != n_sym or out.shape[0] != n_sym:
        raise ValueError("the input and output rows must have one value per symbol of the state")


@njit(cache=True, nogil=True)
def rsi_state(n_sym, window):
    """State of :func:`rsi_step_nb`: has_prev, prev, n_chg, avg (columns: gain sum / average,
    its compensation, loss sum / average, its compensation)."""
    if window < 1:
        raise ValueError("window must be >= 1")
    return (np.zeros(n_sym, dtype=np.bool_), np.zeros(n_sym), np.zeros(n_sym, dtype=np.int64),
            np.zeros((n_sym, 4)))


@njit(cache=True, nogil=True)
def rsi_step_nb(t, x, window, has_prev, prev, n_chg, avg, out):
    """Advance :func:`rsi_nb` by one row for every symbol."""
    _check_row(x, out, n_chg.shape[0])
    w = window
    st = avg
    for j in range(x.shape[0]):
        v = x[j]
        if not np.isfinite(v):
            out[j] = np.nan  # skipped: state held
            continue
        res = np.nan
        if has_prev[j]:
            d = v - prev[j]
            gain = d if d > 0.0 else 0.0
            loss = -d if d < 0.0 else 0.0
            n = n_chg[j] + 1
            if n <= w:
                n_chg[j] = n
                g, cg = _nadd(st[j, 0], st[j, 1], gain)
                lo, cl = _nadd(st[j, 2], st[j, 3], loss)
                st[j, 0] = g
                st[j, 1] = cg
                st[j, 2] = lo
                st[j, 3] = cl
                if n == w:
                    ag = (g + cg) / w
                    al = (lo + cl) / w
                    st[j, 0] = ag
                    st[j, 2] = al
                    tot = ag + al
                    res = 100.0 * ag / tot if tot > 0.0 else 50.0
            else:
                ag = (st[j, 0] * (w - 1) + gain) / w
                al = (st[j, 2] * (w - 1) + loss) / w
                st[j, 0] = ag
                st[j, 2] = al
                tot = ag + al
                res = 100.0 * ag / tot if tot > 0.0 else 50.0
        has_prev[j] = True
        prev[j] = v
        out[j] = res if np.isfinite(res) else np.nan


@njit(cache=True, nogil=True)
def rsi_block_nb(t0, x, window, has_prev, prev, n_chg, avg, out):
    """Rows ``t0 ..`` of :func:`rsi_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        rsi_step_nb(t0 + i, x[i], window, has_prev, prev, n_chg, avg, out[i])


@njit(cache=True, nogil=True)
def rsi_nb(x, window, out):
    """Wilder's relative strength index in [0, 100]; see the module docstring."""
    n_time, n_sym = x.shape
    if out.shape[0] != n_time or out.shape[1] != n_sym:
        raise ValueError("out must have the shape of x")
    has_prev, prev, n_chg, avg = rsi_state(n_sym, window)
    rsi_block_nb(0, x, window, has_prev, prev, n_chg, avg, out)


@njit(cache=True, nogil=True, inline="always")
def _ema_push(v, j, n, alpha, count, state):
    """Feed a present value ``v`` to EMA slot ``j``; return the EMA or NaN during warm-up.

    Same arithmetic as ``pitgrid.kernels.moving.ema_step_nb`` (plain seed sum: a
    compensated one here made this kernel ten times slower), so MACD's line is
    bit for bit ``ema(x, fast) - ema(x, slow)``.
    """
    m = count[j] + 1
    if m <= n:
        count[j] = m
        a = state[j] + v
        if m < n:
            state[j] = a
            return np.nan
        e = a / n
    else:
        e = state[j]
        e = e + alpha * (v - e)
    state[j] = e
    return e


@njit(cache=True, nogil=True)
def _check_spans(fast, slow, signal):
    if fast < 1 or slow < 1 or signal < 1:
        raise ValueError("fast, slow and signal must be >= 1")


@njit(cache=True, nogil=True)
def macd_state(n_sym, fast, slow, signal):
    """State of :func:`macd_step_nb`: present count and value (seed sum, then the EMA) of
    the fast, slow and signal EMAs."""
    _check_spans(fast, slow, signal)
    return (np.zeros(n_sym, dtype=np.int64), np.zeros(n_sym, dtype=np.int64),
            np.zeros(n_sym, dtype=np.int64), np.zeros(n_sym), np.zeros(n_sym), np.zeros(n_sym))


@njit(cache=True, nogil=True)
def macd_step_nb(t, x, fast, slow, signal, cnt_f, cnt_s, cnt_g, st_f, st_s, st_g, out_line,
                 out_signal, out_hist):
    """Advance :func:`macd_nb` by one row for every symbol."""
    n_sym = cnt_f.shape[0]
    _check_row(x, out_line, n_sym)
    _check_row(x, out_signal, n_sym)
    _check_row(x, out_hist, n_sym)
    af = 2.0 / (fast + 1.0)
    a_s = 2.0 / (slow + 1.0)
    ag = 2.0 / (signal + 1.0)
    for j in range(n_sym):
        v = x[j]
        line = np.nan
        sig = np.nan
        if np.isfinite(v):
            ef = _ema_push(v, j, fast, af, cnt_f, st_f)
            es = _ema_push(v, j, slow, a_s, cnt_s, st_s)
            if np.isfinite(ef) and np.isfinite(es):
                line = ef - es
                if np.isfinite(line):
                    sig = _ema_push(line, j, signal, ag, cnt_g, st_g)
                else:
                    line = np.nan
        hist = line - sig
        out_line[j] = line
        out_signal[j] = sig if np.isfinite(sig) else np.nan
        out_hist[j] = hist if np.isfinite(hist) else np.nan


@njit(cache=True, nogil=True)
def macd_block_nb(t0, x, fast, slow, signal, cnt_f, cnt_s, cnt_g, st_f, st_s, st_g, out_line,
                  out_signal, out_hist):
    """Rows ``t0 ..`` of :func:`macd_nb`, advancing the given state a step per row."""
    for i in range(x.shape[0]):
        macd_step_nb(t0 + i, x[i], fast, slow, signal, cnt_f, cnt_s, cnt_g, st_f, st_s, st_g,
                     out_line[i], out_signal[i], out_hist[i])


@njit(cache=True, nogil=True)
def macd_nb(x, fast, slow, signal, out_line, out_signal, out_hist):
    """MACD line, signal line and histogram; see the module docstring."""
    n_time, n_sym = x.shape
    for o in (out_line, out_signal, out_hist):
        if o.shape[0] != n_time or o.shape[1] != n_sym:
            raise ValueError("outputs must have the shape of x")
    cnt_f, cnt_s, cnt_g, st_f, st_s, st_g = macd_state(n_sym, fast, slow, signal)
    macd_block_nb(0, x, fast, slow, signal, cnt_f, cnt_s, cnt_g, st_f, st_s, st_g, out_line,
                  out_signal, out_hist)


# --------------------------------------------------------------------------- wrappers


class MACD(NamedTuple):
    """MACD outputs, each shaped like the input."""

    line: np.ndarray
    signal: np.ndarray
    hist: np.ndarray


def rsi(x, window=14):
    """Wilder's RSI over ``window`` changes, in [0, 100]."""
    x2, shape = as_panel(x)
    out = np.empty(x2.shape, dtype=np.float64)
    rsi_nb(x2, window_arg(window), out)
    return out.reshape(shape)


def rsi_into(x, window, out):
    """:func:`rsi` written into ``out``; returns ``out``."""
    x2, shape = as_panel(x)
    rsi_nb(x2, window_arg(window), out_view(out, shape, (x2,)))
    return out


def _macd_args(fast, slow, signal):
    f = window_arg(fast, "fast")
    s = window_arg(slow, "slow")
    g = window_arg(signal, "signal")
    if f >= s:
        raise ValueError(f"fast must be smaller than slow, got fast={f}, slow={s}")
    return f, s, g


def macd(x, fast=12, slow=26, signal=9):
    """``MACD(line, signal, hist)`` with EMA spans ``fast < slow`` and ``signal``."""
    x2, shape = as_panel(x)
    outs = [np.empty(x2.shape, dtype=np.float64) for _ in range(3)]
    macd_nb(x2, *_macd_args(fast, slow, signal), *outs)
    return MACD(*(o.reshape(shape) for o in outs))


def macd_into(x, fast, slow, signal, out_line, out_signal, out_hist):
    """:func:`macd` written into three outputs; returns ``MACD(out_line, out_signal, out_hist)``."""
    x2, shape = as_panel(x)
    distinct_outputs(out_line, out_signal, out_hist)
    views = [out_view(o, shape, (x2,), name) for o, name in
             ((out_line, "out_line"), (out_signal, "out_signal"), (out_hist, "out_hist"))]
    macd_nb(x2, *_macd_args(fast, slow, signal), *views)
    return MACD(out_line, out_signal, out_hist)
