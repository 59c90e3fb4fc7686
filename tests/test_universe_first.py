"""Universe first: cross-sectional stages see only the members of each bar."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid import kernels as K
from pitgrid.strategies import CrossSectionalMomentum


def _ref_rank_members(x, member, pct):
    """Per row, rank the present members among themselves (pandas), NaN elsewhere."""
    out = np.full(x.shape, np.nan)
    for t in range(x.shape[0]):
        cols = np.flatnonzero(member[t] & np.isfinite(x[t]))
        if len(cols) == 0:
            continue
        r = pd.Series(x[t, cols]).rank(method="average").to_numpy()
        if pct:
            r = (r - 1.0) / (len(cols) - 1.0) if len(cols) > 1 else np.full(len(cols), 0.5)
        out[t, cols] = r
    return out


def _ref_zscore_members(x, member, ddof):
    out = np.full(x.shape, np.nan)
    for t in range(x.shape[0]):
        cols = np.flatnonzero(member[t] & np.isfinite(x[t]))
        v = x[t, cols]
        if len(v) - ddof >= 1 and len(v) and v.max() > v.min():
            out[t, cols] = (v - v.mean()) / np.std(v, ddof=ddof)
    return out


panels = st.tuples(st.integers(1, 12), st.integers(1, 9), st.integers(0, 2**32 - 1))


@settings(max_examples=150, deadline=None)
@given(panels, st.booleans(), st.integers(0, 2))
def test_masked_cross_sections_match_the_members_only_reference(shape, pct, ddof):
    T, S, seed = shape
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal((T, S)), 1)  # rounded: ties happen
    x[rng.random((T, S)) < 0.15] = np.nan
    member = rng.random((T, S)) < 0.6
    got = K.cs_rank(x, pct=pct, mask=member)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(_ref_rank_members(x, member, pct)))
    np.testing.assert_allclose(got, _ref_rank_members(x, member, pct), rtol=1e-12, equal_nan=True)
    z = K.cs_zscore(x, ddof, mask=member)
    np.testing.assert_allclose(z, _ref_zscore_members(x, member, ddof), rtol=1e-9, atol=1e-12,
                               equal_nan=True)
    out = np.empty_like(x)
    np.testing.assert_array_equal(K.cs_rank_into(x, pct, out, mask=member), got)


def test_mask_must_be_bool_of_the_shape_of_x():
    x = np.zeros((3, 4))
    with pytest.raises(TypeError, match="bool"):
        K.cs_rank(x, mask=np.ones((3, 4)))
    with pytest.raises(ValueError, match="shape"):
        K.cs_zscore(x, mask=np.ones((3, 3), bool))


def test_momentum_holds_top_k_of_the_members_not_members_of_the_top_k():
    # 8 symbols; the universe holds the 4 with the *lowest* drift, so ranking everything and
    # then dropping non-members (the old way) would hold nothing from the top 2
    T, S = 120, 8
    t = np.arange(T)[:, None]
    drift = np.linspace(0.004, -0.003, S)[None, :]
    close = 50.0 * np.exp(drift * t)
    ds = pg.synthetic_prices(T, S, seed=0)
    ds = ds.assign(close=(("time", "symbol"), close), open=(("time", "symbol"), close))
    symbols = [str(s) for s in ds["symbol"].values]
    import polars as pl
    universes = pl.DataFrame({"universe_id": "low", "symbol": symbols[4:],
                              "start_date": [pd.Timestamp(ds["time"].values[0])] * 4,
                              "end_date": [None] * 4})
    market = pg.MarketData(ds, universes=universes)
    res = pg.backtest(market, CrossSectionalMomentum(lookback=20, top=2, every=10, universe="low"))
    held = res.positions.values > 0
    assert held[-1].sum() == 2
    assert held[-1, 4:6].all()   # the two best members
