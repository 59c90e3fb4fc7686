"""A 64-bit digest of each row of an array: how two runs of the point-in-time check
compare their features without sending them whole.

Rows that compare equal value by value (``==``, NaN equal to NaN whatever its bits, 0.0
equal to -0.0) have the same digest; a row with one value changed never has, and rows
that differ in several values collide with a chance of about 2**-64. The check compares digests, and only where two differ does it
ask the runs for the values themselves (to apply its rounding tolerance and to name the
symbol and the numbers).
"""
from __future__ import annotations

import numpy as np
from numba import njit

_NAN = np.uint64(0x7FF8000000000000)
_BASIS = np.uint64(0xCBF29CE484222325)
_PRIME = np.uint64(0x100000001B3)
LANES = 4  # the chains row_digests_nb runs (h0..h3): the reference in the tests follows it


@njit(cache=True, nogil=True, inline="always")
def _word(x, floats: bool):
    """The 64-bit word of one value: of a float's bits (``floats``: ``x`` is a float64's
    bit pattern) every NaN as one pattern and -0.0 as 0.0; an integer's or a boolean's
    two's complement."""
    if floats:
        v = np.uint64(x)
        if (v & np.uint64(0x7FF0000000000000)) == np.uint64(0x7FF0000000000000) \
                and (v & np.uint64(0x000FFFFFFFFFFFFF)) != np.uint64(0):
            return _NAN
        if (v << np.uint64(1)) == np.uint64(0):
            return np.uint64(0)
        return v
    return np.uint64(np.int64(x))


@njit(cache=True, nogil=True)
def row_digests_nb(a: np.ndarray, floats: bool, out: np.ndarray) -> None:
    """Digest of each row of ``a`` ((rows, k): float64 bit patterns as uint64 when
    ``floats``, else integers or booleans) into ``out`` ((rows,) uint64).

    FNV-1a over whole words, in ``LANES`` chains (value j in chain j % LANES) that run
    side by side on the processor, then over the chains' ends: each step is a bijection of
    the value it takes in (an odd multiplier), so one changed value always changes its
    chain and so the digest."""
    n, k = a.shape
    full = k - k % LANES
    for t in range(n):
        h0 = h1 = h2 = h3 = _BASIS
        for j in range(0, full, LANES):
            h0 = (h0 ^ _word(a[t, j], floats)) * _PRIME
            h1 = (h1 ^ _word(a[t, j + 1], floats)) * _PRIME
            h2 = (h2 ^ _word(a[t, j + 2], floats)) * _PRIME
            h3 = (h3 ^ _word(a[t, j + 3], floats)) * _PRIME
        for j in range(full, k):  # the last values, each in its own chain
            if j - full == 0:
                h0 = (h0 ^ _word(a[t, j], floats)) * _PRIME
            elif j - full == 1:
                h1 = (h1 ^ _word(a[t, j], floats)) * _PRIME
            else:
                h2 = (h2 ^ _word(a[t, j], floats)) * _PRIME
        h = _BASIS
        for x in (h0, h1, h2, h3):
            h = (h ^ x) * _PRIME
        out[t] = h


def row_digests(a: np.ndarray) -> np.ndarray | None:
    """The digest of each row (first axis) of ``a``: a ``(len(a),)`` uint64 array; None
    for an array of another kind than numbers or booleans.

    Example:
        >>> import numpy as np
        >>> d = row_digests(np.array([[1.0, np.nan], [1.0, np.nan], [-0.0, 2.0]]))
        >>> bool(d[0] == d[1]), bool(d[0] == d[2])
        (True, False)
    """
    a = np.asarray(a)
    if a.dtype.kind not in "biuf" or a.ndim == 0:
        return None
    rows = a.reshape(len(a), -1)
    floats = a.dtype.kind == "f"
    if floats:  # a float of any width digests as its float64 value
        rows = np.ascontiguousarray(rows, dtype=np.float64).view(np.uint64)
    elif a.dtype.kind == "u" and a.dtype.itemsize == 8:  # as the same bits, not as numbers
        rows = np.ascontiguousarray(rows).view(np.int64)
    else:  # booleans and integers as they are: widened in the kernel, not copied
        rows = np.ascontiguousarray(rows)
    out = np.empty(len(a), dtype=np.uint64)
    row_digests_nb(rows, floats, out)
    return out
