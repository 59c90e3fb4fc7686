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


@njit(cache=True, nogil=True)
def row_digests_nb(bits: np.ndarray, floats: bool, out: np.ndarray) -> None:
    """Digest of each row of ``bits`` ((rows, k) uint64: float64 bit patterns when
    ``floats``, else integers) into ``out`` ((rows,) uint64)."""
    n, k = bits.shape
    for t in range(n):
        h = np.uint64(0xCBF29CE484222325)
        for j in range(k):
            v = bits[t, j]
            if floats:
                e = v & np.uint64(0x7FF0000000000000)
                m = v & np.uint64(0x000FFFFFFFFFFFFF)
                if e == np.uint64(0x7FF0000000000000) and m != np.uint64(0):
                    v = _NAN
                elif (v << np.uint64(1)) == np.uint64(0):
                    v = np.uint64(0)
            # FNV-1a over whole words: each step is a bijection of the value (an odd
            # multiplier), so one changed value always changes the digest
            h = (h ^ v) * np.uint64(0x100000001B3)
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
    bits = np.ascontiguousarray(rows, dtype=np.float64 if floats else np.int64).view(np.uint64)
    out = np.empty(len(a), dtype=np.uint64)
    row_digests_nb(bits, floats, out)
    return out
