"""The positions and accounts of a batch run, rebuilt from the core's journal when first read.

A run that keeps them (``keep="full"``) has the compiled core journal, at the end of
each bar, the holdings and cash that bar changed (``Core.start_journal``); the dense
``(param, time, symbol)`` arrays are replayed from that journal the first time a
result's ``positions``, ``cash`` or ``account_equity`` is read, bit for bit what the
core would have written bar by bar (the step driver still writes them so, and a test
holds the two together).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pitgrid._core import replay_account_equity, replay_journal

SHARES, CASH = 0, 1


@dataclass(eq=False)
class Journal:
    """What a journaled run needs to rebuild its positions, cash and account equity.

    ``rows``/``values``/``start`` are ``Core.take_journal()``; bars ``t0 .. t1 - 1`` were
    run; ``first`` is the first bar the result shows (``simulate``'s ``start``); the market
    arrays are those the core read (``market_arrays``). Picklable; the arrays are built on
    first use and kept.

    Example:
        >>> import pitgrid as pg
        >>> ds = pg.synthetic_prices(50, 3, seed=0)
        >>> res = pg.simulate(ds, weights=ds["close"] * 0 + 0.3, fill="close", keep="full")
        >>> res.positions.shape
        (50, 3)
    """

    rows: np.ndarray
    values: np.ndarray
    start: dict[str, np.ndarray]
    per_symbol: bool
    t0: int
    t1: int
    first: int
    close: np.ndarray
    valid: np.ndarray
    split: np.ndarray
    has_action: np.ndarray
    built: dict[str, np.ndarray] = field(default_factory=dict)

    def array(self, name: str) -> np.ndarray:
        """``"shares"``, ``"cash"`` or ``"account_equity"`` as ``(param, time, x)`` from bar ``first``."""
        if name not in self.built:
            self.built[name] = self._replay(name)
        return self.built[name][:, self.first:]

    def _replay(self, name: str) -> np.ndarray:
        T = self.close.shape[0]
        if name == "account_equity":
            cash, shares = self._full("cash"), self._full("shares")
            out = np.empty(cash.shape)
            replay_account_equity(self.per_symbol, cash, shares, self.start["mark"], self.close,
                                  self.valid, self.split, self.has_action, self.t0, self.t1, out)
            return out
        start = self.start[name]
        out = np.empty((start.shape[0], T, start.shape[1]))
        # the values a dense output holds on bars not run: 0 shares, NaN cash
        unwritten = 0.0 if name == "shares" else np.nan
        replay_journal(self.rows, self.values, SHARES if name == "shares" else CASH, start,
                       self.t0, self.t1, unwritten, out)
        return out

    def _full(self, name: str) -> np.ndarray:
        self.array(name)
        return self.built[name]

    def __getstate__(self) -> dict[str, Any]:
        # what was built is rebuilt on the other side rather than shipped
        return {**self.__dict__, "built": {}}
