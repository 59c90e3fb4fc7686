"""What a strategy sees: read-only (time, symbol) arrays of everything known up to a bar."""
from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from pitgrid.data.adjust import cumulative_split_factor, split_columns
from pitgrid.data.market import LOOKAHEAD_FIELDS, MarketData

PRICE_FIELDS = ("open", "high", "low", "close")


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class FeatureData:
    """Bars ``0..upto`` of a market as read-only numpy arrays, plus what was known by then.

    ``raw(field)`` is as traded; ``adjusted(field)`` is split-continuous in units of
    the first bar's share (``price * F`` with ``F`` the cumulative split factor up to
    each row, so row ``u`` reads splits up to ``u`` only): scale-free features
    (returns, ratios, crossovers of averages, RSI) on it equal those on prices
    adjusted as of ``t``, with no look-ahead. ``events(field)`` aligns event values
    by the time they became known.

    Example:
        >>> import pitgrid as pg
        >>> m = pg.MarketData(pg.synthetic_prices(30, 2, seed=0))
        >>> d = FeatureData(m, upto=9)
        >>> d.adjusted("close").shape, d.raw("close").flags.writeable
        ((10, 2), False)
    """

    def __init__(self, market: MarketData, upto: int | None = None) -> None:
        n = len(market.time)
        self.upto = n - 1 if upto is None else int(upto)
        if not 0 <= self.upto < n:
            raise ValueError(f"upto={upto} is outside the market's bars 0..{n - 1}")
        self.market = market
        self.time = market.time[: self.upto + 1]
        self.symbols = market.symbols
        self._cache: dict[Any, np.ndarray] = {}

    @property
    def n_time(self) -> int:
        return self.upto + 1

    @property
    def bars(self) -> np.ndarray:
        """The bar number (0 = the market's first bar) of each row: rebalance on
        ``data.bars % 21 == 0``, never on a row count, so a rule reads the same on a
        window of recent rows (the step driver) as on the whole history."""
        return _readonly(np.arange(self.upto + 1))

    def raw(self, field: str) -> np.ndarray:
        """Field ``field`` as traded, bars ``0..upto`` (read-only float64)."""
        if field not in self._cache:
            if field not in self.market.fields:
                why = (" (a vendor's back-adjusted close is dropped: it is a look-ahead; "
                       "data.adjusted('close') adjusts as of each bar)"
                       if field.lower() in LOOKAHEAD_FIELDS else "")
                raise KeyError(f"the market has no field {field!r}{why}; it has {self.market.fields}")
            values = np.asarray(self.market.ds[field].values[: self.upto + 1])
            if field != "valid":
                values = values.astype(np.float64, copy=False)
            self._cache[field] = _readonly(values)
        return self._cache[field]

    @cached_property
    def valid(self) -> np.ndarray:
        return _readonly(np.asarray(self.raw("valid"), dtype=bool))

    @cached_property
    def split_factor(self) -> np.ndarray:
        """Cumulative split factor ``F`` up to each bar."""
        if "split_ratio" not in self.market.fields:
            return _readonly(np.ones((self.n_time, len(self.symbols))))
        return _readonly(cumulative_split_factor(np.asarray(self.raw("split_ratio"))))

    @cached_property
    def has_splits(self) -> bool:
        """Whether any symbol splits up to this view's last bar (else ``F`` is all ones)."""
        if "split_ratio" not in self.market.fields or not self.market.facts["has_actions"]:
            return False
        return split_columns(self.raw("split_ratio")).size > 0

    def adjusted(self, field: str) -> np.ndarray:
        """Split-continuous ``field`` (prices times ``F``, volume divided by ``F``); NaN on invalid bars."""
        key = f"adjusted:{field}"
        if key not in self._cache:
            values = self.raw(field)
            if self.has_splits:
                values = values / self.split_factor if field == "volume" else values * self.split_factor
            if not self.market.facts["gapless"]:  # recorded at ingest: no bar to blank
                values = np.where(self.valid, values, np.nan)
            self._cache[key] = _readonly(values)
        return self._cache[key]

    def universe(self, universe_id: str | None) -> np.ndarray:
        """Membership ``(time, symbol)``: a snapshot applies from its own date on; all True without one."""
        key = ("universe", universe_id)
        if key not in self._cache:
            if universe_id is None:
                mask = np.ones((self.n_time, len(self.symbols)), dtype=bool)
            else:
                mask = np.asarray(self.market.universe_mask(universe_id).values[: self.upto + 1])
            self._cache[key] = _readonly(mask)
        return self._cache[key]

    def events(self, field: str, *, by: str = "knowledge_time") -> np.ndarray:
        """``(time, symbol)``: the latest value of event ``field`` known at each bar (NaN before any).

        An event counts from the first bar at or after its ``knowledge_time``. Among
        the events of one symbol and field that become known at the same bar, the one
        with the latest ``knowledge_time`` wins, then the latest ``event_time``, then
        the one later in the events table (input order). ``by``
        exists so a leak can be planted in tests; reading by ``event_time`` uses
        values before they were published.
        """
        if by not in ("knowledge_time", "event_time"):
            raise ValueError(f"by={by!r} is not 'knowledge_time' or 'event_time'")
        ev = self.market.events.filter(pl.col("field") == field)
        out = np.full((self.n_time, len(self.symbols)), np.nan)
        if ev.height == 0:
            return _readonly(out)
        col = {s: i for i, s in enumerate(self.symbols)}
        rows = np.searchsorted(self.time, ev[by].to_numpy().astype("datetime64[ns]"), side="left")
        syms = np.array([col[s] for s in ev["symbol"].to_list()])
        vals = ev["value"].to_numpy().astype(np.float64)
        keep = rows < self.n_time
        rows, syms, vals = rows[keep], syms[keep], vals[keep]
        # Of the events known by one bar, the latest known wins, then the latest about,
        # then the later row of the table: a total order that rows added after this bar
        # cannot change (lexsort is stable; its last key is the first).
        order = np.lexsort((ev["event_time"].to_numpy()[keep].astype("datetime64[ns]"),
                            ev[by].to_numpy()[keep].astype("datetime64[ns]"), rows))
        flat = (rows * len(self.symbols) + syms)[order]
        last = len(flat) - 1 - np.unique(flat[::-1], return_index=True)[1]
        stamp = np.full((self.n_time, len(self.symbols)), np.nan)
        stamp.reshape(-1)[flat[last]] = vals[order][last]
        # carry the last known value forward per symbol
        idx = np.where(np.isfinite(stamp), np.arange(self.n_time)[:, None], -1)
        np.maximum.accumulate(idx, axis=0, out=idx)
        has = idx >= 0
        out[has] = stamp[idx[has], np.nonzero(has)[1]]
        return _readonly(out)
