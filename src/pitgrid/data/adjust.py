"""Split adjustment without look-ahead.

A split with ratio ``r`` (new shares per old share) on ex-date ``e`` takes effect at
the open of bar ``e``. Adjusted *as of t*, a price at bar ``u <= t`` is divided by the
ratio of every split with ``u < e <= t``, and a volume is multiplied by it. Splits
after ``t`` are not known at ``t`` and never enter; back-adjusting a whole history
with all splits (what vendors' ``adjusted_close`` does) is a look-ahead.

**Batch features.** Re-adjusting the whole history at every ``t`` is quadratic. With
the cumulative factor ``F[t] = prod(ratio[0..t])`` (``cumulative_split_factor``):

    price adjusted as of t, at bar u  ==  price[u] * F[u] / F[t]        (u <= t)

so ``P = split_adjusted_causal(price, split_ratio) = price * F`` is one causal series
(row ``u`` reads ratios up to ``u`` only) and a window at ``t`` over prices adjusted as
of ``t`` is the same window over ``P`` divided by ``F[t]``:

* scale-free features (returns, log returns, ratios such as ``close / sma``, z-scores
  of returns, RSI, drawdown in percent) are identical on ``P`` and need nothing more;
* price-level features of degree one (a moving average in dollars, ATR) computed on
  ``P`` must be divided by ``F[t]`` at their own row ``t``: ``sma_t = sma(P)[t] / F[t]``;
* volume works the same way with ``V = volume / F`` and a final ``* F[t]``.

Either way row ``t`` of the feature reads only bars and splits up to ``t``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import xarray as xr

from pitgrid.data.market import MarketData, TimeLike

ArrayLike = TypeVar("ArrayLike", np.ndarray, xr.DataArray)

VOLUME_FIELDS = frozenset({"volume"})


def _ratios(split_ratio: np.ndarray) -> np.ndarray:
    # a missing ratio (no bar) is no split
    ratio = np.asarray(split_ratio, dtype=np.float64)
    return np.where(np.isfinite(ratio), ratio, 1.0)


def _like(template: ArrayLike, values: np.ndarray) -> ArrayLike:
    if isinstance(template, xr.DataArray):
        return template.copy(data=values)
    return values


def cumulative_split_factor(split_ratio: ArrayLike) -> ArrayLike:
    """``F[t] = prod(split_ratio[0..t])`` per symbol (NaN ratios count as 1).

    Example:
        >>> cumulative_split_factor(np.array([[1.0], [2.0], [1.0], [3.0]]))[:, 0].tolist()
        [1.0, 2.0, 2.0, 6.0]
    """
    return _like(split_ratio, _cumulative(_ratios(split_ratio)))


def split_columns(split_ratio: np.ndarray) -> np.ndarray:
    """Indices of the columns of a ``(time, symbol)`` ratio array that split at least once
    (a finite ratio other than 1; NaN is no split).

    Example:
        >>> split_columns(np.array([[1.0, 1.0], [np.nan, 2.0]])).tolist()
        [1]
    """
    ratio = np.asarray(split_ratio, dtype=np.float64)
    return np.flatnonzero(((ratio != 1.0) & np.isfinite(ratio)).any(axis=0))


def _cumulative(ratio: np.ndarray) -> np.ndarray:
    # most symbols never split: only the columns that do pay for the running product
    if ratio.ndim != 2:
        return np.cumprod(ratio, axis=0)
    factor = np.ones_like(ratio)
    cols = split_columns(ratio)
    if cols.size:
        factor[:, cols] = np.cumprod(ratio[:, cols], axis=0)
    return factor


def split_adjusted_causal(values: ArrayLike, split_ratio: ArrayLike, *, volume: bool = False) -> ArrayLike:
    """The causal split-continuous series: ``values * F`` (prices) or ``values / F`` (volume).

    Row ``u`` depends on splits up to ``u`` only. For ``u <= t`` the price adjusted as
    of ``t`` is ``result[u] / F[t]`` (volume: ``result[u] * F[t]``); see the module
    docstring for how a feature pipeline uses it.

    Example:
        >>> close = np.array([[100.0], [50.0], [51.0]])       # a 2:1 split at bar 1
        >>> ratio = np.array([[1.0], [2.0], [1.0]])
        >>> split_adjusted_causal(close, ratio)[:, 0].tolist()
        [100.0, 100.0, 102.0]
    """
    factor = _cumulative(_ratios(split_ratio))
    raw = np.asarray(values, dtype=np.float64)
    return _like(values, raw / factor if volume else raw * factor)


def adjusted_as_of(
    market_or_ds: MarketData | xr.Dataset,
    t: TimeLike,
    fields: Sequence[str] = ("open", "high", "low", "close"),
) -> xr.Dataset:
    """Bars up to ``t`` adjusted for the splits with ex-date ``<= t`` only.

    Prices at bar ``u`` are divided by the ratios of splits at bars ``u < e <= t``;
    ``volume`` (if listed in ``fields``) is multiplied. Rows after ``t`` are not
    returned, and splits after ``t`` cannot change the result.

    Example:
        >>> import pitgrid as pg
        >>> ds = pg.synthetic_prices(4, 1)
        >>> ds["split_ratio"] = ds["close"] * 0 + [[1.0], [1.0], [2.0], [1.0]]
        >>> a = adjusted_as_of(ds, ds["time"].values[2], fields=("close",))
        >>> bool(a["close"][0] == ds["close"][0] / 2), a.sizes["time"]
        (True, 3)
    """
    market = market_or_ds if isinstance(market_or_ds, MarketData) else MarketData(market_or_ds)
    view = market.as_of(t)
    ratio = _ratios(view.array("split_ratio"))
    # later[u] = product of ratios at bars u+1..t: the splits bar u has not yet seen
    after = np.cumprod(ratio[::-1], axis=0)[::-1]
    later = np.vstack([after[1:], np.ones((1, ratio.shape[1]))])
    out = {}
    for name in fields:
        raw = np.asarray(view.array(name), dtype=np.float64)
        out[name] = (("time", "symbol"), raw * later if name in VOLUME_FIELDS else raw / later)
    return xr.Dataset(out, coords={"time": view.time, "symbol": view.symbols},
                      attrs={"split_adjusted_as_of": str(view.t)})
