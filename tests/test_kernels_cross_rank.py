"""``cs_rank`` sorts each row by the float's bits with radix passes (high 32 bits, then
runs sharing them by the low 32): hold it to a slow, obviously correct rank on rows made
to hit every path of that sort.

Rows of values that share their sign, exponent and leading mantissa (long runs sorted
by the low-bit passes, short ones by insertion), with exact ties, -0.0 beside 0.0,
infinities and NaN (missing), and bytes every key shares (passes skipped, an odd number
of passes left). The reference ranks each present value by counting: the number below
it plus half of the others equal to it.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pitgrid import kernels as K


def counted_rank(x: np.ndarray, pct: bool) -> np.ndarray:
    """Average rank of each finite value among the finite values of its row, by counting."""
    out = np.full(x.shape, np.nan)
    for t in range(x.shape[0]):
        present = x[t][np.isfinite(x[t])]
        m = len(present)
        for j, v in enumerate(x[t]):
            if not np.isfinite(v):
                continue
            below = int((present < v).sum())
            equal = int((present == v).sum())
            rank = below + (equal + 1) / 2.0
            out[t, j] = ((rank - 1.0) / (m - 1.0) if m > 1 else 0.5) if pct else rank
    return out


BASES = [0.0, 1.0, -1.0, 3.7, -250.0, 1e-300, 1e300]
# steps from the base: far apart (the high passes), within the low 32 bits of the
# mantissa (the runs), or nothing (ties)
STEPS = [1.0, 2.0**-10, 2.0**-25, 2.0**-40, 2.0**-50, 0.0]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0]


@st.composite
def rows(draw):
    T = draw(st.integers(1, 4))
    S = draw(st.integers(1, 120))
    base = draw(st.sampled_from(BASES))
    step = draw(st.sampled_from(STEPS))
    k = np.array(draw(st.lists(st.integers(-60, 60), min_size=T * S, max_size=T * S)), float)
    x = (base + k * step * max(abs(base), 1.0)).reshape(T, S)
    specials = draw(st.lists(st.tuples(st.integers(0, T * S - 1), st.sampled_from(SPECIAL)),
                             max_size=T * S // 3 + 1))
    for i, v in specials:
        x.flat[i] = v
    return x


@settings(max_examples=300, deadline=None)
@given(x=rows(), pct=st.booleans())
def test_cs_rank_equals_the_counted_rank(x, pct):
    got = K.cs_rank(x, pct=pct)
    want = counted_rank(x, pct)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    # both are exact: the same halves of integers, divided once by the same m - 1
    np.testing.assert_array_equal(got[ok], want[ok])


def test_a_long_run_sharing_the_high_bits_is_ranked_in_full():
    """400 values differing only far down the mantissa: one run, sorted by the low passes."""
    rng = np.random.default_rng(3)
    x = 1.0 + rng.permutation(400)[None, :] * 2.0**-44
    np.testing.assert_array_equal(K.cs_rank(x, pct=False), counted_rank(x, False))
