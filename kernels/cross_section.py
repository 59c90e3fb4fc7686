"""Cross-sectional kernels: per row (one bar), across symbols.

Each output row ``t`` reads input row ``t`` only, so these are causal by
construction; they are still tested like every other kernel. They need a 2-D
input: a 1-D array (one symbol's series elsewhere in the library) is refused
rather than guessed at; pass ``x[None, :]`` for a single bar.

Conventions (shared by every ``pitgrid.kernels`` module, see docs/kernels.md):

* Arrays are ``(time, symbol)``, C-contiguous float64. ``name(...)`` allocates,
  ``name_into(..., out)`` writes into a checked preallocated output,
  ``name_nb(..., out)`` is the raw ``@njit(cache=True, nogil=True)`` kernel.
* Missing value: any non-finite input (NaN, +inf, -inf) is a missing symbol on
  that bar; it stays NaN in the output and is left out of the row's statistics
  (the row is computed over the ``m`` present symbols).
* ``cs_rank``: average ranks for ties. With ``pct=True`` (default) the rank is
  normalised to [0, 1] as ``(rank - 1) / (m - 1)``: the lowest value is 0, the
  highest 1, and a lone present symbol gets 0.5. With ``pct=False`` the ranks are
  1..m (ties share the average, e.g. 2.5).
* ``cs_zscore``: ``(x - mean) / std`` over the present symbols of the row, std
  with divisor ``m - ddof`` (default ``ddof=1``). The row is NaN when
  ``m - ddof < 1`` or when all present values are equal (std 0).
* Universe first: the wrappers take ``mask=`` (bool, the shape of ``x``), the members
  of each bar; a non-member counts as missing, so ranks, z-scores and top-k see the
  members only. The raw ``_nb`` kernels read missing values only: mask before.
* Outputs are finite or NaN, never infinite.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._common import as_panel, ddof_arg, out_view

__all__ = [
    "cs_rank", "cs_rank_into", "cs_rank_nb",
    "cs_zscore", "cs_zscore_into", "cs_zscore_nb",
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
def _radix_sort(keys, order, lo, hi, first_shift, tmp_keys, tmp_order, counts):
    """Sort ``keys[lo:hi]`` (uint64) and ``order[lo:hi]`` with them, by the bits from
    ``first_shift`` up, least significant byte first; a byte all keys share is skipped."""
    n = hi - lo
    src_k, src_o, dst_k, dst_o = keys, order, tmp_keys, tmp_order
    for shift in range(first_shift, 64, 8):
        sh = np.uint64(shift)
        counts[:] = 0
        for i in range(lo, hi):
            counts[(src_k[i] >> sh) & np.uint64(255)] += 1
        if counts[(src_k[lo] >> sh) & np.uint64(255)] == n:
            continue
        total = lo
        for b in range(256):
            c = counts[b]
            counts[b] = total
            total += c
        for i in range(lo, hi):
            d = (src_k[i] >> sh) & np.uint64(255)
            j = counts[d]
            counts[d] = j + 1
            dst_k[j] = src_k[i]
            dst_o[j] = src_o[i]
        src_k, dst_k = dst_k, src_k
        src_o, dst_o = dst_o, src_o
    if src_k is not keys:
        for i in range(lo, hi):
            keys[i] = src_k[i]
            order[i] = src_o[i]


@njit(cache=True, nogil=True)
def _insertion_sort(keys, order, lo, hi):
    for i in range(lo + 1, hi):
        k = keys[i]
        o = order[i]
        j = i - 1
        while j >= lo and keys[j] > k:
            keys[j + 1] = keys[j]
            order[j + 1] = order[j]
            j -= 1
        keys[j + 1] = k
        order[j + 1] = o


@njit(cache=True, nogil=True)
def _sort_keys(keys, order, m, tmp_keys, tmp_order, counts):
    """Sort ``keys[:m]`` with ``order[:m]``: by the high 32 bits (four radix passes), then
    each run that shares them by the low 32 (insertion for short runs, radix for long
    ones, so no input is quadratic). About 4x faster than a comparison argsort here."""
    _radix_sort(keys, order, 0, m, 32, tmp_keys, tmp_order, counts)
    i = 0
    while i < m:
        high = keys[i] >> np.uint64(32)
        j = i + 1
        while j < m and keys[j] >> np.uint64(32) == high:
            j += 1
        if j - i > 32:
            _radix_sort(keys, order, i, j, 0, tmp_keys, tmp_order, counts)
            # the high half is equal within the run: the passes above 32 bits were skipped
        elif j - i > 1:
            _insertion_sort(keys, order, i, j)
        i = j


@njit(cache=True, nogil=True)
def cs_rank_nb(x, pct, out):
    """Average-tie rank of each present value within its row; see the module docstring."""
    n_time, n_sym = x.shape
    if out.shape[0] != n_time or out.shape[1] != n_sym:
        raise ValueError("out must have the shape of x")
    vals = np.empty(n_sym, dtype=np.float64)
    cols = np.empty(n_sym, dtype=np.int64)
    keys = np.empty(n_sym, dtype=np.uint64)
    order = np.empty(n_sym, dtype=np.int64)
    tmp_keys = np.empty(n_sym, dtype=np.uint64)
    tmp_order = np.empty(n_sym, dtype=np.int64)
    counts = np.empty(256, dtype=np.int64)
    sign = np.uint64(1) << np.uint64(63)
    bits = x.view(np.uint64)
    for t in range(n_time):
        m = 0
        for j in range(n_sym):
            v = x[t, j]
            if np.isfinite(v):
                vals[m] = v
                cols[m] = j
                # the float's bits as an unsigned key in the same order (negatives
                # flipped): -0.0 and 0.0 differ but are neighbours, a tie found below
                u = bits[t, j]
                keys[m] = ~u if u & sign else u | sign
                order[m] = m
                m += 1
            else:
                out[t, j] = np.nan
        if m == 0:
            continue
        _sort_keys(keys, order, m, tmp_keys, tmp_order, counts)
        i = 0
        while i < m:
            k = i
            v = vals[order[i]]
            while k + 1 < m and vals[order[k + 1]] == v:
                k += 1
            rank = 0.5 * (i + k) + 1.0  # average of the 1-based ranks i+1 .. k+1
            if pct:
                r = (rank - 1.0) / (m - 1.0) if m > 1 else 0.5
            else:
                r = rank
            for q in range(i, k + 1):
                out[t, cols[order[q]]] = r
            i = k + 1


@njit(cache=True, nogil=True)
def cs_zscore_nb(x, ddof, out):
    """Per-row z-score across the present symbols; see the module docstring."""
    n_time, n_sym = x.shape
    if out.shape[0] != n_time or out.shape[1] != n_sym:
        raise ValueError("out must have the shape of x")
    if ddof < 0:
        raise ValueError("ddof must be >= 0")
    for t in range(n_time):
        m = 0
        s = 0.0
        c = 0.0
        lo = np.inf
        hi = -np.inf
        for j in range(n_sym):
            v = x[t, j]
            if np.isfinite(v):
                m += 1
                s, c = _nadd(s, c, v)
                lo = min(lo, v)
                hi = max(hi, v)
        if m - ddof < 1 or not (hi > lo):
            for j in range(n_sym):
                out[t, j] = np.nan
            continue
        mean = (s + c) / m
        q = 0.0
        cq = 0.0
        for j in range(n_sym):
            v = x[t, j]
            if np.isfinite(v):
                d = v - mean
                q, cq = _nadd(q, cq, d * d)
        sd = np.sqrt((q + cq) / (m - ddof))
        for j in range(n_sym):
            v = x[t, j]
            z = np.nan
            if np.isfinite(v) and sd > 0.0:
                z = (v - mean) / sd
            out[t, j] = z if np.isfinite(z) else np.nan


# --------------------------------------------------------------------------- wrappers


def _panel2d(x):
    x2, shape = as_panel(x)
    if len(shape) != 2:
        raise ValueError("cross-sectional kernels need a 2-D (time, symbol) array; "
                         "for a single bar pass x[None, :]")
    return x2, shape


def _members(x2, mask):
    """Non-members are missing: they take no part in the row's statistics and come out NaN."""
    if mask is None:
        return x2
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"mask must be a bool array of membership, got dtype {m.dtype}")
    if m.shape != x2.shape:
        raise ValueError(f"mask has shape {m.shape}, expected the shape of x {x2.shape}")
    return np.where(m, x2, np.nan)


def cs_rank(x, pct=True, *, mask=None):
    """Cross-sectional average rank per row: in [0, 1] (``pct=True``) or 1..m.

    ``mask`` (bool, the shape of ``x``) is the universe: only its members are ranked,
    the others are NaN. Example: ``cs_rank(score, pct=False, mask=data.universe("sp500"))``.
    """
    x2, shape = _panel2d(x)
    x2 = _members(x2, mask)
    out = np.empty(x2.shape, dtype=np.float64)
    cs_rank_nb(x2, bool(pct), out)
    return out.reshape(shape)


def cs_rank_into(x, pct, out, *, mask=None):
    """:func:`cs_rank` written into ``out``; returns ``out``."""
    x2, shape = _panel2d(x)
    cs_rank_nb(_members(x2, mask), bool(pct), out_view(out, shape, (x2,)))
    return out


def cs_zscore(x, ddof=1, *, mask=None):
    """Cross-sectional z-score per row over the present members (divisor ``m - ddof``).

    ``mask`` (bool, the shape of ``x``) is the universe: mean and deviation are taken
    over its members only, the others are NaN.
    """
    x2, shape = _panel2d(x)
    x2 = _members(x2, mask)
    out = np.empty(x2.shape, dtype=np.float64)
    cs_zscore_nb(x2, ddof_arg(ddof), out)
    return out.reshape(shape)


def cs_zscore_into(x, ddof, out, *, mask=None):
    """:func:`cs_zscore` written into ``out``; returns ``out``."""
    x2, shape = _panel2d(x)
    cs_zscore_nb(_members(x2, mask), ddof_arg(ddof), out_view(out, shape, (x2,)))
    return out
