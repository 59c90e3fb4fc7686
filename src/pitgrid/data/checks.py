"""Whole-array checks that read each cell once and allocate nothing where the answer is yes."""
from __future__ import annotations

import numpy as np


def all_finite(values: np.ndarray) -> bool:
    """Whether every cell of ``values`` is finite (no NaN, no infinity).

    A NaN or an infinity anywhere makes the sum NaN or infinite, so a finite sum settles
    it in one read with no mask allocated (``isfinite(x).all()`` writes a mask as large
    as an eighth of the data first). A sum that is not finite may be finite cells
    overflowing; those are checked cell by cell.

    Example:
        >>> all_finite(np.array([[1.0, 2.0], [3.0, 4.0]])), all_finite(np.array([1.0, np.nan]))
        (True, False)
        >>> all_finite(np.array([1e308, 1e308]))  # the sum overflows, the cells do not
        True
    """
    values = np.asarray(values)
    if values.dtype.kind in "biu":
        return True
    if values.dtype.kind in "fc":
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.add.reduce(values, axis=None)):
                return True
    return bool(np.isfinite(values).all())
