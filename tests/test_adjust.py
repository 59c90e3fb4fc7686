"""Split adjustment as of t: never uses a split after t; the causal series agrees with it."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid.data.adjust import cumulative_split_factor, split_adjusted_causal

N_TIME, N_SYM = 25, 3
BASE = pg.synthetic_prices(N_TIME, N_SYM, seed=11)
TIME = BASE["time"].values
FIELDS = ("open", "high", "low", "close", "volume")

_ratio = st.sampled_from([1.0, 1.0, 1.0, 2.0, 3.0, 0.5, 0.05, 1.5])
_ratios = st.lists(_ratio, min_size=N_TIME * N_SYM, max_size=N_TIME * N_SYM).map(
    lambda r: np.array(r).reshape(N_TIME, N_SYM)
)


def _with_splits(ratio: np.ndarray) -> xr.Dataset:
    ds = BASE.copy()
    ds["split_ratio"] = (("time", "symbol"), ratio)
    return ds


def reference_adjusted(ds: xr.Dataset, k: int, field: str) -> np.ndarray:
    """Rows 0..k of ``field``, walking each split at or before bar k and rescaling earlier rows."""
    out = ds[field].values[: k + 1].copy()
    ratio = ds["split_ratio"].values
    for e in range(1, k + 1):
        for s in range(ratio.shape[1]):
            if ratio[e, s] != 1.0:
                out[:e, s] = out[:e, s] * ratio[e, s] if field == "volume" else out[:e, s] / ratio[e, s]
    return out


@settings(max_examples=80, deadline=None)
@given(ratio=_ratios, other=_ratios, k=st.integers(0, N_TIME - 1))
def test_adjusted_as_of_ignores_splits_after_t(ratio, other, k):
    ds = _with_splits(ratio)
    later = ratio.copy()
    later[k + 1 :] = other[k + 1 :]  # any splits at all after t
    t = TIME[k]
    got = pg.adjusted_as_of(ds, t, fields=FIELDS)
    again = pg.adjusted_as_of(_with_splits(later), t, fields=FIELDS)
    assert got.sizes["time"] == k + 1
    for field in FIELDS:
        np.testing.assert_array_equal(got[field].values, again[field].values)
        np.testing.assert_allclose(got[field].values, reference_adjusted(ds, k, field), rtol=1e-12)
    # the causal series over F[t] is the same thing
    factor = cumulative_split_factor(ratio)
    close = split_adjusted_causal(BASE["close"].values, ratio)[: k + 1] / factor[k]
    volume = split_adjusted_causal(BASE["volume"].values, ratio, volume=True)[: k + 1] * factor[k]
    np.testing.assert_allclose(got["close"].values, close, rtol=1e-12)
    np.testing.assert_allclose(got["volume"].values, volume, rtol=1e-12)


def test_causal_series_makes_returns_exact_and_continuous():
    ratio = np.ones((N_TIME, N_SYM))
    ratio[10, 0] = 4.0
    close = BASE["close"].values.copy()
    close[10:, 0] /= 4.0  # the as-traded price drops at the split
    raw_return = close[10, 0] / close[9, 0] - 1
    causal = split_adjusted_causal(close, ratio)
    adj_return = causal[10, 0] / causal[9, 0] - 1
    assert raw_return < -0.5 and adj_return == pytest.approx(BASE["close"].values[10, 0] / BASE["close"].values[9, 0] - 1)
    np.testing.assert_allclose(causal[:10], close[:10])  # nothing before the split moves


def test_accepts_market_and_dataarrays_and_checks_range():
    ratio = np.ones((N_TIME, N_SYM))
    ratio[5, 1] = 2.0
    market = pg.MarketData(_with_splits(ratio))
    adjusted = pg.adjusted_as_of(market, TIME[7])
    assert list(adjusted.data_vars) == ["open", "high", "low", "close"]
    assert adjusted["close"].values[4, 1] == BASE["close"].values[4, 1] / 2
    factor = cumulative_split_factor(market["split_ratio"])
    assert isinstance(factor, xr.DataArray) and factor.values[-1, 1] == 2.0
    with pytest.raises(ValueError, match="outside"):
        pg.adjusted_as_of(market, TIME[0] - np.timedelta64(1, "D"))


@settings(max_examples=60, deadline=None)
@given(ratio=_ratios)
def test_split_factor_is_the_running_product_for_panels_and_single_series(ratio):
    ratio = ratio.copy()
    ratio[ratio == 0.05] = np.nan  # a missing ratio counts as no split
    expected = np.ones_like(ratio)
    for s in range(ratio.shape[1]):
        running = 1.0
        for t in range(ratio.shape[0]):
            running *= 1.0 if np.isnan(ratio[t, s]) else ratio[t, s]
            expected[t, s] = running
    assert np.array_equal(cumulative_split_factor(ratio), expected)
    assert np.array_equal(cumulative_split_factor(ratio[:, 0]), expected[:, 0])
    close = BASE["close"].values
    assert np.array_equal(split_adjusted_causal(close[:, 1], ratio[:, 1]), close[:, 1] * expected[:, 1])
