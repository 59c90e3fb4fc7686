"""Row digests (pitgrid.drivers.digests) against a slow reference, and the property the
point-in-time check relies on: rows equal value by value digest alike, rows apart do not."""
from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pitgrid.drivers.digests import LANES, row_digests

M = (1 << 64) - 1


def reference(a: np.ndarray) -> list[int]:
    """One row at a time in Python integers: NaN as one bit pattern, -0.0 as 0.0; FNV-1a
    over value j in chain j % LANES, then over the chains' ends."""
    out = []
    for row in np.asarray(a).reshape(len(a), -1):
        chains = [0xCBF29CE484222325] * LANES
        for j, x in enumerate(row.tolist()):
            if isinstance(x, float):
                v = 0x7FF8000000000000 if x != x else (0 if x == 0 else
                                                          struct.unpack("<Q", struct.pack("<d", x))[0])
            else:
                v = int(x) & M
            chains[j % LANES] = ((chains[j % LANES] ^ v) * 0x100000001B3) & M
        h = 0xCBF29CE484222325
        for c in chains:
            h = ((h ^ c) * 0x100000001B3) & M
        out.append(h)
    return out


floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0]))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=11),
                  elements=floats))
def test_float_rows_match_the_reference(a):
    assert row_digests(a).tolist() == reference(a)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(st.sampled_from([np.bool_, np.int64, np.uint64, np.uint8, np.int32]),
                  hnp.array_shapes(min_dims=1, max_dims=2, max_side=11)))
def test_integer_and_bool_rows_match_the_reference(a):
    assert row_digests(a).tolist() == reference(a.astype(np.int64))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=floats),
       st.data())
def test_equal_rows_digest_alike_and_changed_rows_do_not(a, data):
    b = a.copy()
    bits = b.view(np.uint64)
    # another NaN payload and sign, and -0.0 for 0.0: equal value by value
    nan = np.isnan(b)
    bits[nan] = np.uint64(0xFFF0000000000001)
    b[b == 0] = -0.0
    assert np.array_equal(row_digests(a), row_digests(b))
    t = data.draw(st.integers(0, a.shape[0] - 1))
    s = data.draw(st.integers(0, a.shape[1] - 1))
    new = data.draw(floats.filter(lambda x: not (x == a[t, s] or (x != x and a[t, s] != a[t, s]))))
    b[t, s] = new
    d_a, d_b = row_digests(a), row_digests(b)
    assert d_a[t] != d_b[t]
    assert np.array_equal(np.delete(d_a, t), np.delete(d_b, t))


def test_float32_digests_as_its_float64_values_and_objects_are_not_digested():
    a = np.array([[1.5, np.nan], [0.25, -0.0]], dtype=np.float32)
    assert np.array_equal(row_digests(a), row_digests(a.astype(np.float64)))
    assert row_digests(np.array([["a"], ["b"]], dtype=object)) is None
