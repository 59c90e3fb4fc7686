"""``delist_bars`` searches backwards only the symbols whose last bar is invalid; it must
equal the plain search of every column."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pitgrid.data.market import delist_bars


def every_column(valid: np.ndarray) -> np.ndarray:
    """The first bar after each column's last valid one, if that is before the end; else -1."""
    out = np.full(valid.shape[1], -1, dtype=np.int64)
    for s in range(valid.shape[1]):
        idx = np.flatnonzero(valid[:, s])
        if len(idx) and idx[-1] < valid.shape[0] - 1:
            out[s] = idx[-1] + 1
    return out


@settings(max_examples=300, deadline=None)
@given(valid=st.integers(1, 30).flatmap(
    lambda T: st.integers(1, 12).flatmap(lambda S: arrays(bool, (T, S)))))
def test_delist_bars_equals_the_search_of_every_column(valid):
    got = delist_bars(valid)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, every_column(valid))
