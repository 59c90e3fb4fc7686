"""A zoo of strategies for the point-in-time check: leaks people write by accident, and
honest strategies that look suspicious. Used by tests/test_leak_zoo.py.

Every class here lives at module level (so the check's runs import it afresh, as a
user's module would be), except what :func:`notebook_strategies` builds: classes
defined in a function, which cloudpickle ships by value, as it does for a class
written in a notebook or a script's ``__main__``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

import pitgrid as pg
from pitgrid import kernels as K
from pitgrid.cycle.sizing import equal_weight
from pitgrid.cycle.strategy import Intents, Strategy


def _cross(fast: np.ndarray, slow: np.ndarray) -> Intents:
    return Intents(entries=K.crossover(fast, slow), exits=K.crossunder(fast, slow))


def _sign_rule(score: np.ndarray) -> Intents:
    """Enter on a positive score, exit on a negative one (NaN: nothing)."""
    finite = np.isfinite(score)
    return Intents(entries=finite & (score > 0), exits=finite & (score < 0))


@dataclass(frozen=True, kw_only=True)
class _OnScore(Strategy):
    """Base of the zoo's signal strategies: ``features`` returns ``{"score": ...}``; the rule
    is its sign on the last row."""

    intent_rows: ClassVar[int | None] = 1

    def intents(self, data: Any, f: dict[str, np.ndarray]) -> Intents:
        return _sign_rule(np.asarray(f["score"]))

    def settings(self) -> dict[str, Any]:
        return {"size": "percent", "size_value": 0.15}


# =========================================================================================== leaks
@dataclass(frozen=True, kw_only=True)
class PandasShiftMinusOne(_OnScore):
    """LEAK: tomorrow's return with ``shift(-1)``, the classic off-by-one of pandas."""

    def features(self, data):
        close = pd.DataFrame(data.adjusted("close"))
        return {"score": (close.shift(-1) / close - 1).to_numpy()}


@dataclass(frozen=True, kw_only=True)
class CentredMedian(_OnScore):
    """LEAK: price against its centred rolling median (``center=True``)."""

    def features(self, data):
        close = pd.DataFrame(data.adjusted("close"))
        return {"score": (close - close.rolling(7, center=True, min_periods=1).median()).to_numpy()}


@dataclass(frozen=True, kw_only=True)
class GradientSlope(_OnScore):
    """LEAK: ``np.gradient`` takes central differences, so row t reads row t+1."""

    def features(self, data):
        close = data.adjusted("close")
        if close.shape[0] < 2:
            return {"score": np.full(close.shape, np.nan)}
        return {"score": np.gradient(close, axis=0)}


@dataclass(frozen=True, kw_only=True)
class FullSampleZScore(_OnScore):
    """LEAK: z-score of the price against the mean and std of the whole history."""

    def features(self, data):
        close = data.adjusted("close")
        return {"score": (close - np.nanmean(close, axis=0)) / np.nanstd(close, axis=0) + 0.3}


@dataclass(frozen=True, kw_only=True)
class NormalisedByFullMax(_OnScore):
    """LEAK: price divided by its all-time (whole data) maximum, bought near the top."""

    def features(self, data):
        close = data.adjusted("close")
        return {"score": close / np.nanmax(close, axis=0) - 0.9}


@dataclass(frozen=True, kw_only=True)
class BackfilledEvents(_OnScore):
    """LEAK: events forward- then back-filled: before the first release, its value is used."""

    def features(self, data):
        sig = pd.DataFrame(data.events("sentiment")).ffill().bfill()
        return {"score": sig.to_numpy() - 0.3}


@dataclass(frozen=True, kw_only=True)
class BackfilledGaps(_OnScore):
    """LEAK: missing bars back-filled with the next price, then a one-bar return."""

    def features(self, data):
        close = pd.DataFrame(data.raw("close")).bfill()
        return {"score": close.pct_change(fill_method=None).to_numpy() + 0.002}


@dataclass(frozen=True, kw_only=True)
class InterpolatedGaps(_OnScore):
    """LEAK: missing bars filled by linear interpolation, which reads the next present bar."""

    def features(self, data):
        close = pd.DataFrame(data.raw("close")).interpolate(limit_area="inside")
        return {"score": close.pct_change(fill_method=None).to_numpy() + 0.002}


@dataclass(frozen=True, kw_only=True)
class MonthlyMeanVolume(_OnScore):
    """LEAK: volume against its calendar month's mean (``groupby(month).transform``), which
    takes in the days of the month still to come."""

    def features(self, data):
        volume = pd.DataFrame(data.adjusted("volume"))
        month = pd.DatetimeIndex(data.time).to_period("M")
        rel = volume / volume.groupby(month).transform("mean").to_numpy()
        return {"score": rel.to_numpy() - 1.0}


@dataclass(frozen=True, kw_only=True)
class RankAcrossTime(_OnScore):
    """LEAK: each price ranked against the whole history of its symbol (``rank`` along time)."""

    def features(self, data):
        close = pd.DataFrame(data.adjusted("close"))
        return {"score": close.rank(pct=True).to_numpy() - 0.5}


@dataclass(frozen=True, kw_only=True)
class ReadsDataMarket(_OnScore):
    """LEAK: reads the close from ``data.market`` (the whole dataset) and shifts it."""

    def features(self, data):
        close = data.market.ds["close"].values
        ahead = np.full(close.shape, np.nan)
        ahead[:-1] = close[1:] / close[:-1] - 1
        return {"score": ahead[: data.n_time]}


@dataclass(frozen=True, kw_only=True)
class ReadsEventsTableByEventTime(_OnScore):
    """LEAK: builds its own event signal from the market's events table, keyed by event_time."""

    def features(self, data):
        ev = data.market.events
        out = np.full((data.n_time, len(data.symbols)), np.nan)
        col = {s: i for i, s in enumerate(data.symbols)}
        rows = np.searchsorted(data.time, ev["event_time"].to_numpy().astype("datetime64[ns]"))
        for r, s, v in zip(rows, ev["symbol"].to_list(), ev["value"].to_list()):
            if r < data.n_time:
                out[r, col[s]] = v
        return {"score": pd.DataFrame(out).ffill().to_numpy() - 0.3}


@dataclass(frozen=True, kw_only=True)
class EventTimeWeights(Strategy):
    """LEAK: target weights on an events field aligned by event time, not knowledge time."""

    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        return {"sig": data.events("sentiment", by="event_time")}

    def intents(self, data, f):
        sig = f["sig"]
        return Intents(weights=np.where(np.isfinite(sig) & (sig > 0.3), 0.2, 0.0))


@dataclass(frozen=True, kw_only=True)
class LastRowLevel(_OnScore):
    """LEAK: price against the last row of the array (the data's final close), not row t's."""

    def features(self, data):
        close = data.adjusted("close")
        return {"score": 1.0 - close / close[-1]}


@dataclass(frozen=True, kw_only=True)
class ExitBeforeDataEnds(_OnScore):
    """LEAK: closes every position five bars before the data end (it knows where they end)."""

    def features(self, data):
        close = data.adjusted("close")
        left = (data.n_time - 1 - np.arange(data.n_time))[:, None]
        return {"score": np.where(left < 5, -1.0, K.momentum(close, 5))}


@dataclass(frozen=True, kw_only=True)
class BackAdjustedPennyFilter(_OnScore):
    """LEAK: history back-adjusted by every split in the data (a reverse cumulative product
    of the split ratios), then a fixed minimum-price filter on it."""

    def features(self, data):
        split = data.raw("split_ratio")
        future = np.cumprod(split[::-1], axis=0)[::-1]  # splits at or after each bar
        later = future / split  # splits strictly after each bar
        back = data.raw("close") / later
        level = np.nanmedian(data.raw("close")[:5], axis=0)  # known at bar 4
        return {"score": np.where(back < 0.75 * level, 1.0, -1.0)}


@dataclass(frozen=True, kw_only=True)
class SurvivorsOnly(Strategy):
    """LEAK: equal weights over the symbols that still trade at the last bar (survivorship)."""

    intent_rows: ClassVar[int | None] = None

    def features(self, data):
        return {"close": data.adjusted("close")}

    def intents(self, data, f):
        alive = data.valid[-1]
        held = np.isfinite(f["close"]) & alive[None, :]
        return Intents(weights=equal_weight(held, rebalance=data.bars % 5 == 0))


@dataclass(frozen=True, kw_only=True)
class FinalMembersRank(Strategy):
    """LEAK: cross-sectional momentum ranked among the universe's members at the last bar."""

    universe: str | None = "u"
    intent_rows: ClassVar[int | None] = None

    def features(self, data):
        return {"mom": K.momentum(data.adjusted("close"), 10)}

    def intents(self, data, f):
        members = np.broadcast_to(data.universe("u")[-1], f["mom"].shape)
        rank = K.cs_rank(-f["mom"], pct=False, mask=np.ascontiguousarray(members))
        selected = np.isfinite(rank) & (rank <= 2)
        return Intents(weights=equal_weight(selected, rebalance=data.bars % 5 == 0))


@dataclass(frozen=True, kw_only=True)
class MembershipEvePeek(_OnScore):
    """LEAK on membership changes only: buys a symbol the bar before it joins the universe
    and sells it the bar before it leaves (reads the next bar's membership)."""

    def features(self, data):
        member = data.universe("u")
        nxt = np.r_[member[1:], member[-1:]]
        return {"score": np.where(~member & nxt, 1.0, np.where(member & ~nxt, -1.0, 0.0))}


_MODULE_CACHE: dict[str, np.ndarray] = {}


@dataclass(frozen=True, kw_only=True)
class ModuleLevelCache(_OnScore):
    """LEAK: a module-level cache of the full-history mean, filled on the first call."""

    def features(self, data):
        close = data.adjusted("close")
        if "mean" not in _MODULE_CACHE:
            _MODULE_CACHE["mean"] = np.nanmean(close, axis=0)
        return {"score": close / _MODULE_CACHE["mean"] - 1.0}


@dataclass(frozen=True, kw_only=True)
class ClassAttributeMemo(_OnScore):
    """LEAK: the all-time high kept in a mutable class attribute, filled on the first call."""

    memo: ClassVar[dict[str, np.ndarray]] = {}

    def features(self, data):
        close = data.adjusted("close")
        if "high" not in type(self).memo:
            type(self).memo["high"] = np.nanmax(close, axis=0)
        return {"score": close / type(self).memo["high"] - 0.9}


@dataclass(frozen=True, kw_only=True)
class SelfMemo(_OnScore):
    """LEAK: the full-history mean stored on the frozen instance with ``object.__setattr__``
    on the first call, and reused after."""

    def features(self, data):
        close = data.adjusted("close")
        if "_mean" not in self.__dict__:
            object.__setattr__(self, "_mean", np.nanmean(close, axis=0))
        return {"score": close / self.__dict__["_mean"] - 1.0}


@dataclass(frozen=True, kw_only=True)
class WritesAfterSetflags(_OnScore):
    """LEAK: makes the raw close it was given writeable and shifts tomorrow into today."""

    def features(self, data):
        close = data.raw("close")
        close.setflags(write=True)
        close[:-1] = close[1:].copy()
        return {"score": pd.DataFrame(close).pct_change(fill_method=None).to_numpy()}


@dataclass(frozen=True, kw_only=True)
class QuarterEndPeek(_OnScore):
    """LEAK on rare dates: on the last bar of each quarter, buys what rises the next bar."""

    def features(self, data):
        close = data.adjusted("close")
        quarter = pd.DatetimeIndex(data.time).quarter.to_numpy()
        last = np.r_[quarter[1:] != quarter[:-1], False]
        score = np.zeros(close.shape)
        score[:-1][last[:-1]] = np.sign(close[1:] - close[:-1])[last[:-1]]
        return {"score": score}


@dataclass(frozen=True, kw_only=True)
class OneBarPeek(_OnScore):
    """LEAK on one bar only: at bar 137 (late, after the split and the delisting) the rule
    sees bar 138."""

    bar: int = 137

    def features(self, data):
        close = data.adjusted("close")
        score = np.zeros(close.shape)
        if data.n_time > self.bar + 1:
            score[self.bar] = np.sign(close[self.bar + 1] - close[self.bar])
        return {"score": score}


@dataclass(frozen=True, kw_only=True)
class WarmupPeek(_OnScore):
    """LEAK early only: during the first 8 bars (the warm-up) the score is bar 8's return."""

    def features(self, data):
        close = data.adjusted("close")
        score = np.zeros(close.shape)
        if data.n_time > 8:
            score[:8] = close[8] / close[0] - 1
        return {"score": score}


@dataclass(frozen=True, kw_only=True)
class TomorrowWeights(Strategy):
    """LEAK in weights: target weight proportional to the next bar's return."""

    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        close = pd.DataFrame(data.adjusted("close"))
        return {"nxt": close.pct_change(fill_method=None).shift(-1).to_numpy()}

    def intents(self, data, f):
        w = np.clip(np.nan_to_num(f["nxt"]) * 20, 0, 0.3)
        return Intents(weights=w)


@dataclass(frozen=True, kw_only=True)
class LruCachedRange(_OnScore):
    """LEAK via ``functools.lru_cache``: the full-history price range of the market, cached
    per symbol set; the first call's data decide every later call."""

    def features(self, data):
        close = data.adjusted("close")
        lo, hi = _price_range(tuple(str(s) for s in data.symbols), close)
        return {"score": 0.5 - (close - lo) / (hi - lo)}


_LAST_CLOSE: list[np.ndarray] = []


def _price_range(symbols: tuple[str, ...], close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _LAST_CLOSE[:] = [close]
    return _range_of(symbols)


@functools.lru_cache(maxsize=8)
def _range_of(symbols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    close = _LAST_CLOSE[0]
    return np.nanmin(close, axis=0), np.nanmax(close, axis=0)


@dataclass(frozen=True, kw_only=True)
class RngSeededFromData(_OnScore):
    """LEAK via the global RNG: seeded from a checksum of the whole price history, then a
    random tie-break that therefore depends on every future price."""

    def features(self, data):
        close = data.adjusted("close")
        np.random.seed(int(np.nansum(close) * 1000) % 2**32)
        noise = np.random.random(close.shape) - 0.5
        return {"score": K.momentum(close, 5) + 0.05 * noise}


@dataclass(frozen=True, kw_only=True)
class RegimeFromFutureVolatility(Strategy):
    """LEAK: a market regime (risk-on when the average volatility is below its full-sample
    median), then equal weights when risk-on."""

    intent_rows: ClassVar[int | None] = None

    def features(self, data):
        vol = K.rolling_std(K.simple_returns(data.adjusted("close")), 10)
        return {"vol": vol}

    def intents(self, data, f):
        mkt = np.nanmean(f["vol"], axis=1)
        on = mkt < np.nanmedian(mkt)
        held = np.isfinite(f["vol"]) & on[:, None]
        return Intents(weights=equal_weight(held, rebalance=data.bars % 3 == 0))


@dataclass(frozen=True, kw_only=True)
class MarketRegimeVector(Strategy):
    """LEAK in a one-dimensional feature: a market-wide risk-on flag per bar (shape
    ``(time,)``), the average volatility against its full-sample median."""

    intent_rows: ClassVar[int | None] = None

    def features(self, data):
        vol = K.rolling_std(K.simple_returns(data.adjusted("close")), 10)
        mkt = np.nanmean(np.where(np.isfinite(vol), vol, np.nan), axis=1)
        return {"risk_on": (mkt < np.nanmedian(mkt)).astype(float), "vol": vol}

    def intents(self, data, f):
        held = np.isfinite(f["vol"]) & (f["risk_on"][:, None] > 0)
        return Intents(weights=equal_weight(held, rebalance=data.bars % 3 == 0))


@dataclass(frozen=True, kw_only=True)
class HookReadsDataMarket(Strategy):
    """LEAK attempt inside a hook: vetoes entries whose next close (from ``data.market``) is
    lower. Hooks run bar by bar on views whose market holds no data, so it fails in every
    driver."""

    intent_rows: ClassVar[int | None] = 2

    def features(self, data):
        close = data.adjusted("close")
        return {"fast": K.sma(close, 3), "slow": K.sma(close, 12)}

    def intents(self, data, f):
        return _cross(f["fast"], f["slow"])

    def on_step(self, t, data, intents):
        close = np.asarray(data.market["close"].values)
        if t + 1 >= close.shape[0]:
            return intents
        return Intents(entries=intents.entries & (close[t + 1] > close[t]), exits=intents.exits)


@dataclass(frozen=True, kw_only=True)
class ReadsStoreFromDisk(_OnScore):
    """LEAK via the disk: opens the market's store by path and reads tomorrow's close there."""

    store: str = ""

    def features(self, data):
        full = pg.open_market(self.store)
        close = np.asarray(full["close"].values, dtype=float)
        ahead = np.full(close.shape, np.nan)
        ahead[:-1] = close[1:] / close[:-1] - 1
        return {"score": ahead[: data.n_time]}


@dataclass(frozen=True, kw_only=True)
class PrecomputedSignal(_OnScore):
    """LEAK carried in as a parameter: a signal precomputed outside with pandas ``shift(-1)``
    and looked up by bar number."""

    signal: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def features(self, data):
        return {"score": np.asarray(self.signal)[data.bars]}


@dataclass(frozen=True, kw_only=True)
class HookOnPrecomputedSignal(Strategy):
    """LEAK in a hook carried in as a parameter: the hook keeps only the entries that a
    signal precomputed with ``shift(-1)`` says will rise."""

    signal: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    intent_rows: ClassVar[int | None] = 2

    def features(self, data):
        close = data.adjusted("close")
        return {"fast": K.sma(close, 3), "slow": K.sma(close, 12)}

    def intents(self, data, f):
        return _cross(f["fast"], f["slow"])

    def on_step(self, t, data, intents):
        return Intents(entries=intents.entries & (self.signal[t] > 0), exits=intents.exits)


def tomorrow_signal(market: pg.MarketData) -> np.ndarray:
    """What a user computes in a notebook and passes in: the next bar's return."""
    close = pd.DataFrame(np.asarray(market["close"].values, dtype=float))
    return close.pct_change(fill_method=None).shift(-1).fillna(0.0).to_numpy()


def notebook_strategies(market: pg.MarketData) -> dict[str, Strategy]:
    """Leaks through state defined where cloudpickle ships it by value (a notebook, a
    script's ``__main__``): a closure cache, a class attribute, and the market itself
    read from the enclosing scope (a notebook's global ``market``). The caches leak once
    a first run in the caller's process has filled them."""
    cache: dict[str, np.ndarray] = {}

    @dataclass(frozen=True, kw_only=True)
    class NotebookClosureCache(_OnScore):
        """LEAK: the full-history mean cached in a closure's dict."""

        def features(self, data):
            close = data.adjusted("close")
            if "mean" not in cache:
                cache["mean"] = np.nanmean(close, axis=0)
            return {"score": close / cache["mean"][None, :] - 1.0}

    @dataclass(frozen=True, kw_only=True)
    class NotebookClassMemo(_OnScore):
        """LEAK: the all-time high in a mutable class attribute."""

        memo: ClassVar[dict[str, np.ndarray]] = {}

        def features(self, data):
            close = data.adjusted("close")
            if "high" not in type(self).memo:
                type(self).memo["high"] = np.nanmax(close, axis=0)
            return {"score": close / type(self).memo["high"] - 0.9}

    @dataclass(frozen=True, kw_only=True)
    class NotebookGlobalMarket(_OnScore):
        """LEAK: reads tomorrow's close from the notebook's ``market`` instead of ``data``."""

        def features(self, data):
            close = np.asarray(market["close"].values, dtype=float)
            ahead = np.full(close.shape, np.nan)
            ahead[:-1] = close[1:] / close[:-1] - 1
            return {"score": ahead[: data.n_time]}

    return {"closure_cache": NotebookClosureCache(), "class_memo": NotebookClassMemo(),
            "global_market": NotebookGlobalMarket()}


@dataclass(frozen=True, kw_only=True)
class VendorAdjustedLevel(_OnScore):
    """LEAK baked into the data: a minimum-price filter on the vendor's back-adjusted close,
    whose early values are divided by a split that happens later."""

    def features(self, data):
        adj = data.raw("adj_close")
        level = np.nanmedian(data.raw("close")[:5], axis=0)  # known at bar 4
        return {"score": np.where(adj < 0.75 * level, 1.0, -1.0)}


def reset_caches() -> None:
    """Empty the zoo's module and class caches (for the in-process reference runs)."""
    _MODULE_CACHE.clear()
    ClassAttributeMemo.memo.clear()
    _range_of.cache_clear()
    _LAST_CLOSE.clear()


# =============================================================================== honest strategies
@dataclass(frozen=True, kw_only=True)
class ExpandingZScore(_OnScore):
    """Clean: z-score against the expanding mean and std (pandas, min_periods)."""

    def features(self, data):
        close = pd.DataFrame(data.adjusted("close"))
        ex = close.expanding(min_periods=20)
        return {"score": ((close - ex.mean()) / ex.std()).to_numpy() + 0.2}


@dataclass(frozen=True, kw_only=True)
class SeededRandomEntries(_OnScore):
    """Clean: random entries from a generator seeded by a parameter; row t of the draw does
    not depend on how many rows follow."""

    seed: int = 7

    def features(self, data):
        rng = np.random.default_rng(self.seed)
        return {"score": rng.random((data.n_time, len(data.symbols))) - 0.5}


@dataclass(frozen=True, kw_only=True)
class PandasRollingMinPeriods(_OnScore):
    """Clean: price against a trailing pandas rolling mean with min_periods."""

    def features(self, data):
        close = pd.DataFrame(data.adjusted("close"))
        return {"score": (close / close.rolling(15, min_periods=5).mean() - 1).to_numpy()}


@dataclass(frozen=True, kw_only=True)
class PandasEwmCross(Strategy):
    """Clean: fast and slow pandas EWMs (adjust=True, the default) crossing."""

    intent_rows: ClassVar[int | None] = 2

    def features(self, data):
        close = pd.DataFrame(data.adjusted("close"))
        return {"fast": close.ewm(span=5).mean().to_numpy(),
                "slow": close.ewm(span=20, min_periods=10).mean().to_numpy()}

    def intents(self, data, f):
        return _cross(f["fast"], f["slow"])


@dataclass(frozen=True, kw_only=True)
class ExpandingHighNormalised(_OnScore):
    """Clean: price over its running maximum so far (``np.fmax.accumulate``)."""

    def features(self, data):
        close = data.adjusted("close")
        return {"score": close / np.fmax.accumulate(close, axis=0) - 0.97}


@dataclass(frozen=True, kw_only=True)
class CrossSectionalDemean(_OnScore):
    """Clean: each return against the bar's mean return over its members (a row-wise mean
    written with the array method)."""

    universe: str | None = "u"

    def features(self, data):
        ret = K.momentum(data.adjusted("close"), 3)
        member = data.universe("u")
        masked = np.where(member & np.isfinite(ret), ret, np.nan)
        return {"score": ret - np.nanmean(masked, axis=1, keepdims=True)}


@dataclass(frozen=True, kw_only=True)
class RowMeanMethod(_OnScore):
    """Clean: momentum against the bar's average momentum, written ``x.mean(axis=1)``."""

    def features(self, data):
        mom = np.nan_to_num(K.momentum(data.adjusted("close"), 5))
        return {"score": mom - mom.mean(axis=1, keepdims=True)}


@dataclass(frozen=True, kw_only=True)
class ArrayMethods(_OnScore):
    """Clean: everyday ndarray methods on the data and on a kernel's output (``astype``,
    ``clip``, ``copy``)."""

    def features(self, data):
        close = data.adjusted("close").astype(np.float64)
        mom = K.momentum(close, 5).clip(-0.05, 0.05).copy()
        return {"score": mom}


@dataclass(frozen=True, kw_only=True)
class MemberRankWeights(Strategy):
    """Clean: RSI ranked within each bar's members, top two in equal weights every 4 bars."""

    universe: str | None = "u"
    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        return {"rsi": K.rsi(data.adjusted("close"), 8)}

    def intents(self, data, f):
        rank = K.cs_rank(f["rsi"], pct=False, mask=data.universe(self.universe))
        return Intents(weights=equal_weight(np.isfinite(rank) & (rank <= 2),
                                            rebalance=data.bars % 4 == 0))


@dataclass(frozen=True, kw_only=True)
class MonthEndByCalendar(Strategy):
    """Clean: rebalance on the last business day of each month, told by the calendar from
    the bar's own date (the next business day is in another month), not by the next bar."""

    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        return {"mom": K.momentum(data.adjusted("close"), 20)}

    def intents(self, data, f):
        day = pd.DatetimeIndex(data.time)
        month_end = np.asarray((day + pd.offsets.BDay(1)).month != day.month)
        held = np.isfinite(f["mom"]) & (f["mom"] > 0)
        return Intents(weights=equal_weight(held, rebalance=month_end))


@dataclass(frozen=True, kw_only=True)
class MonthStartByPreviousBar(Strategy):
    """Clean: rebalance on the first bar of each month (its month differs from the bar
    before), reading two rows."""

    intent_rows: ClassVar[int | None] = 2

    def features(self, data):
        return {"close": data.adjusted("close")}

    def intents(self, data, f):
        month = np.asarray(data.time, "datetime64[M]")
        first = np.r_[data.bars[0] == 0, month[1:] != month[:-1]]
        held = np.isfinite(f["close"])
        return Intents(weights=equal_weight(held, rebalance=first))


@dataclass(frozen=True, kw_only=True)
class EventsNewReleaseCount(_OnScore):
    """Clean: events by knowledge time; a new release (the known value changed) counts, and
    the score is the value when at least one release came in the last 10 bars."""

    def features(self, data):
        sig = pd.DataFrame(data.events("sentiment"))
        new = sig.ne(sig.shift(1)) & sig.notna()
        recent = new.astype(float).rolling(10, min_periods=1).sum()
        return {"score": np.where(recent.to_numpy() > 0, sig.to_numpy() - 0.3, np.nan)}


@dataclass(frozen=True, kw_only=True)
class ChecksFieldsOnMarket(_OnScore):
    """Clean: looks up which fields the market has (``data.market.fields``, metadata only)
    to add dividends to a momentum score when there are any."""

    def features(self, data):
        close = data.adjusted("close")
        bonus = data.raw("dividend") if "dividend" in data.market.fields else np.zeros(close.shape)
        return {"score": K.momentum(close, 5) + bonus}


@dataclass(frozen=True, kw_only=True)
class BarsRebalance(Strategy):
    """Clean: rebalance on ``data.bars % 7 == 0`` to the names above their 10-bar average."""

    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        close = data.adjusted("close")
        return {"above": close / K.sma(close, 10)}

    def intents(self, data, f):
        return Intents(weights=equal_weight(f["above"] > 1.0, rebalance=data.bars % 7 == 0))


@dataclass(frozen=True, kw_only=True)
class KernelMix(Strategy):
    """Clean: RSI, Bollinger bands, MACD, ATR and a rolling correlation to the first symbol,
    all library kernels."""

    intent_rows: ClassVar[int | None] = 2

    def features(self, data):
        close = data.adjusted("close")
        bands = K.bollinger(close, 15, 2.0)
        macd = K.macd(close, 6, 13, 5)
        atr = K.atr(data.adjusted("high"), data.adjusted("low"), close, 10)
        return {"rsi": K.rsi(close, 10), "lower": bands.lower, "upper": bands.upper,
                "hist": macd.hist,
                "atr_pct": atr / close, "close": close}

    def intents(self, data, f):
        close = f["close"]
        entries = (f["rsi"] < 45) & (f["hist"] > 0) & (f["atr_pct"] < 0.2)
        exits = K.crossover(close, f["upper"]) | (close < f["lower"])
        return Intents(entries=np.nan_to_num(entries).astype(bool), exits=exits)


@dataclass(frozen=True, kw_only=True)
class LongShortWeights(Strategy):
    """Clean: long the two best and short the two worst 10-bar momentum names, 0.4 gross on
    each side, rebalanced every 5 bars (needs ``allow_short`` and leverage)."""

    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        return {"mom": K.momentum(data.adjusted("close"), 10)}

    def intents(self, data, f):
        rank = K.cs_rank(f["mom"], pct=False)
        n = np.isfinite(rank).sum(axis=1, keepdims=True)
        w = np.where(rank <= 2, -0.2, np.where(rank > n - 2, 0.2, 0.0))
        w = np.where(np.isfinite(rank), w, 0.0)
        return Intents(weights=np.where((data.bars % 5 == 0)[:, None], w, np.nan))

    def settings(self):
        return {"allow_short": True, "max_leverage": 1.5, "borrow_bps": 50}


@dataclass(frozen=True, kw_only=True)
class HookEntryBudget(Strategy):
    """Clean hook with state: at most ``budget`` entries per symbol over the run, counted in
    a dict made fresh for each instance."""

    budget: int = 2
    counts: dict = field(default_factory=dict, compare=False)
    intent_rows: ClassVar[int | None] = 2

    def features(self, data):
        close = data.adjusted("close")
        return {"fast": K.sma(close, 4), "slow": K.sma(close, 12)}

    def intents(self, data, f):
        return _cross(f["fast"], f["slow"])

    def on_step(self, t, data, intents):
        entries = intents.entries.copy()
        for s in np.flatnonzero(entries[0]):
            if self.counts.get(int(s), 0) >= self.budget:
                entries[0, s] = False
            else:
                self.counts[int(s)] = self.counts.get(int(s), 0) + 1
        return Intents(entries=entries, exits=intents.exits)


@dataclass(frozen=True, kw_only=True)
class HookVolatilityGate(Strategy):
    """Clean hook reading data: drops entries on a bar whose close is more than 3% from the
    bar before (reads two rows of the view it is handed), on target weights."""

    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        return {"mom": K.momentum(data.adjusted("close"), 8)}

    def intents(self, data, f):
        held = np.isfinite(f["mom"]) & (f["mom"] > 0)
        return Intents(weights=equal_weight(held, rebalance=data.bars % 3 == 0))

    def on_step(self, t, data, intents):
        close = data.adjusted("close")
        if close.shape[0] < 2:
            return intents
        jump = np.abs(close[-1] / close[-2] - 1) > 0.03
        return Intents(weights=np.where(jump[None, :] & (intents.weights > 0), 0.0,
                                        intents.weights))


@dataclass(frozen=True, kw_only=True)
class HookPeeksSelfFeatures(Strategy):
    """Clean in effect, though written to leak: ``features`` keeps the close on the instance
    and the hook looks for the next bar's close there. A strategy with a hook runs bar by
    bar in every driver, so what ``features`` kept holds rows up to t only and the peek
    never fires: the backtest is causal and the check rightly passes it."""

    intent_rows: ClassVar[int | None] = 2

    def features(self, data):
        close = data.adjusted("close")
        object.__setattr__(self, "_close", np.asarray(close))
        return {"fast": K.sma(close, 3), "slow": K.sma(close, 12)}

    def intents(self, data, f):
        return _cross(f["fast"], f["slow"])

    def on_step(self, t, data, intents):
        close = self.__dict__.get("_close")
        if close is None or t + 1 >= len(close):
            return intents
        entries = intents.entries & (close[t + 1] > close[t])
        return Intents(entries=entries, exits=intents.exits)


@dataclass(frozen=True, kw_only=True)
class SlidingWindowSlope(_OnScore):
    """Clean: a trailing 10-bar least-squares slope with ``sliding_window_view`` (NaN in the
    warm-up), on the whole history each call."""

    window: int = 10

    def features(self, data):
        close = np.log(data.adjusted("close"))
        out = np.full(close.shape, np.nan)
        if close.shape[0] >= self.window:
            win = np.lib.stride_tricks.sliding_window_view(close, self.window, axis=0)
            x = np.arange(self.window) - (self.window - 1) / 2
            out[self.window - 1:] = (win * x).sum(axis=-1) / (x * x).sum()
        return {"score": out}


@dataclass(frozen=True, kw_only=True)
class UnguardedSlidingSlope(_OnScore):
    """Clean but written for the whole history: a trailing 10-bar slope with
    ``sliding_window_view`` and no guard for fewer than 10 rows."""

    window: int = 10

    def features(self, data):
        close = np.log(data.adjusted("close"))
        out = np.full(close.shape, np.nan)
        win = np.lib.stride_tricks.sliding_window_view(close, self.window, axis=0)
        x = np.arange(self.window) - (self.window - 1) / 2
        out[self.window - 1:] = (win * x).sum(axis=-1) / (x * x).sum()
        return {"score": out}


@dataclass(frozen=True, kw_only=True)
class FfillGapsThenReturns(_OnScore):
    """Clean: missing bars forward-filled (the last known price), then a 3-bar return."""

    def features(self, data):
        close = pd.DataFrame(data.raw("close")).ffill()
        return {"score": close.pct_change(3, fill_method=None).to_numpy()}


@dataclass(frozen=True, kw_only=True)
class FactorExposureMatmul(_OnScore):
    """Clean: each bar's returns times a fixed loadings matrix (a BLAS product), the
    exposure's sign."""

    def features(self, data):
        ret = np.nan_to_num(K.simple_returns(data.adjusted("close")))
        loadings = np.random.default_rng(3).normal(size=(ret.shape[1], ret.shape[1]))
        return {"score": ret @ loadings}


@dataclass(frozen=True, kw_only=True)
class CausalFftFilter(_OnScore):
    """Clean: a causal 8-tap moving average computed with ``scipy.signal.fftconvolve`` and
    cut to the first T rows (each row reads rows <= t; the FFT's rounding depends on T)."""

    def features(self, data):
        from scipy.signal import fftconvolve

        close = np.nan_to_num(data.adjusted("close"))
        taps = np.full((8, 1), 1 / 8)
        smooth = fftconvolve(close, taps, axes=0)[: close.shape[0]]
        return {"score": close / smooth - 1.0}


@dataclass(frozen=True, kw_only=True)
class PandasVolTargetInRule(Strategy):
    """Clean: volatility-targeted weights from a pandas 20-bar rolling std computed in the
    rule, which declares the 25 rows it reads."""

    intent_rows: ClassVar[int | None] = 25

    def features(self, data):
        return {"ret": K.simple_returns(data.adjusted("close"))}

    def intents(self, data, f):
        vol = pd.DataFrame(f["ret"]).rolling(20).std().to_numpy()
        w = np.where(np.isfinite(vol), np.clip(0.002 / vol, 0, 0.2), 0.0)
        return Intents(weights=np.where((data.bars % 5 == 0)[:, None], w, np.nan))


@dataclass(frozen=True, kw_only=True)
class EwmVolInRuleShortWindow(Strategy):
    """Causal, but declares fewer rows than it reads: an EWM volatility (infinite memory)
    in the rule with ``intent_rows = 30``."""

    intent_rows: ClassVar[int | None] = 30

    def features(self, data):
        return {"ret": K.simple_returns(data.adjusted("close"))}

    def intents(self, data, f):
        vol = pd.DataFrame(f["ret"]).ewm(span=10, min_periods=10).std().to_numpy()
        w = np.where(np.isfinite(vol), np.clip(0.002 / vol, 0, 0.2), 0.0)
        return Intents(weights=np.where((data.bars % 5 == 0)[:, None], w, np.nan))


# ========================================================================================= markets
def with_vendor_adjusted_close(market: pg.MarketData) -> xr.Dataset:
    """``market``'s fields plus ``adj_close``: the close back-adjusted by every split and
    dividend in the data, as a vendor delivers it (yfinance's "Adj Close"), in memory."""
    ds = market.ds
    close = np.asarray(ds["close"].values, dtype=float)
    split = np.asarray(ds["split_ratio"].values, dtype=float)
    div = np.asarray(ds["dividend"].values, dtype=float)
    prev = pd.DataFrame(close).ffill().shift(1).to_numpy()
    step = np.where(div > 0, 1 - div / prev, 1.0) / split  # applies to the bars before
    factor = np.cumprod(np.r_[step[1:], np.ones((1, close.shape[1]))][::-1], axis=0)[::-1]
    return ds.assign(adj_close=(("time", "symbol"), close * factor))


def fortran_ordered(market: pg.MarketData) -> pg.MarketData:
    """``market`` with every field in column-major (Fortran) order, as selecting symbols
    from a larger Dataset (``ds.sel(symbol=[...])``) can leave it."""
    ds = market.ds
    ds = ds.assign({k: (ds[k].dims, np.asfortranarray(np.asarray(ds[k].values)))
                    for k in ds.data_vars})
    return pg.MarketData(ds, universes=market.universes, events=market.events)
