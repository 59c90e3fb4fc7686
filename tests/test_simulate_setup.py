"""What ``simulate`` works out before the core runs, checked against the plain forms."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pitgrid.data.market import delist_bars
from pitgrid.engine.simulate import _delistings


@settings(max_examples=300, deadline=None)
@given(valid=st.integers(1, 30).flatmap(
    lambda T: st.integers(1, 12).flatmap(lambda S: arrays(bool, (T, S)))))
def test_delistings_searched_in_the_ended_symbols_equal_delist_bars(valid):
    np.testing.assert_array_equal(_delistings(valid), delist_bars(valid))
