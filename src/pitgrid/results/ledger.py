"""Profit and loss of each fill and each symbol, from a run's fills on an average-cost basis.

A fill that adds to a position (or opens one) adds its notional and fees to the
position's cost; a fill that reduces it realises ``(price - average cost) x shares
closed - fees``; a fill that flips it does both. Share counts changed without a fill
(a split, cash in lieu) are taken from the run's positions when it kept them, the
cost staying the same, so the average cost per share follows the split. An open
position is marked at the given closing prices. Per symbol, realised plus
unrealised P&L is exactly the symbol's cash flows (sells - buys - fees) plus the
value of what is still held; its dividends (shares held on each ex-date times the
dividend, paid by shorts) are a column of their own and count in its total. Borrow
costs go to the account and are in no symbol's P&L.

Example:
    >>> import polars as pl
    >>> fills = pl.DataFrame({"time": [0, 1], "symbol": ["A", "A"], "side": ["buy", "sell"],
    ...                       "shares": [10.0, 10.0], "price": [5.0, 6.0], "fees": [0.0, 1.0],
    ...                       "reason": ["order", "order"]})
    >>> fill_pnl(fills).realized_pnl.tolist()
    [nan, 9.0]
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

@dataclass
class Ledger:
    """Per-fill realised P&L, round trips, and what each symbol holds after the last fill.

    ``realized_pnl`` is NaN for a fill that closes nothing; ``held`` and ``cost``
    map a symbol to its shares (negative: short) and their cost after the run.
    ``trips`` has one row per round trip (see :func:`fill_pnl`).
    """

    realized_pnl: np.ndarray
    held: dict[str, float]
    cost: dict[str, float]
    trips: pl.DataFrame


@dataclass
class _Trip:
    """A position from flat (or a flip) back to flat: what went in and what came out."""

    symbol: str
    entry: Any
    side: str
    shares: float = 0.0  # the largest holding
    bought: float = 0.0  # shares and notional of opening fills
    paid: float = 0.0
    sold: float = 0.0  # shares and notional of closing fills
    got: float = 0.0
    cost: float = 0.0  # opening notional and fees: what the trip put at risk
    pnl: float = 0.0

    def row(self, exit_time: Any, reason: str | None) -> dict[str, Any]:
        return {"symbol": self.symbol, "side": self.side, "entry": self.entry, "exit": exit_time,
                "shares": self.shares,
                "entry price": self.paid / self.bought if self.bought else None,
                "exit price": self.got / self.sold if self.sold else None, "invested": self.cost,
                "P&L": self.pnl if reason is not None else None,
                "return": self.pnl / self.cost if reason is not None and self.cost else None,
                "exit reason": reason}


def _trip_schema(fills: pl.DataFrame) -> dict[str, Any]:
    when = fills.schema["time"]
    return {"symbol": pl.String, "side": pl.String, "entry": when, "exit": when,
            "shares": pl.Float64, "entry price": pl.Float64, "exit price": pl.Float64,
            "invested": pl.Float64, "P&L": pl.Float64, "return": pl.Float64,
            "exit reason": pl.String}


def fill_pnl(fills: pl.DataFrame, positions: xr.DataArray | None = None) -> Ledger:
    """Average-cost ledger over ``fills`` (one parameter set, in the order they happened).

    ``positions`` (``time, symbol`` shares after each bar), when given, supplies share
    counts changed without a fill. A round trip runs from a fill that opens a position
    to the fill that takes it back to zero or through it (the rest opens the next
    trip), as the core counts trades; its P&L is the realised P&L of its closing fills
    (opening fees are in the cost), its return that over ``invested`` (the opening
    notional and fees). Trips still open after the last fill have no exit, P&L or return.
    """
    n = fills.height
    realized = np.full(n, np.nan)
    held: dict[str, float] = {}
    cost: dict[str, float] = {}
    if not n:
        return Ledger(realized, held, cost, pl.DataFrame(schema=_trip_schema(fills)))
    symbols = fills["symbol"].to_list()
    times = fills["time"].to_list()
    reasons = fills["reason"].to_list()
    signed = np.where(fills["side"].to_numpy() == "buy", 1.0, -1.0) * fills["shares"].to_numpy()
    price = fills["price"].to_numpy()
    fee = fills["fees"].to_numpy()
    before = _held_before_fills(fills, signed, positions)
    trips: list[dict[str, Any]] = []
    open_trips: dict[str, _Trip] = {}
    for i, s in enumerate(symbols):
        qty, basis = held.get(s, 0.0), cost.get(s, 0.0)
        # exact zeros, as the core counts positions: a dust fill of 1e-15 shares is a trade
        if before is not None and not np.isnan(before[i]) and qty != 0:
            if before[i] == 0:  # cut to nothing without a fill: cash in lieu
                trips.append(open_trips.pop(s).row(times[i], "cash in lieu"))
                basis = 0.0
            qty = before[i]  # a split moved the count; the money paid stays the cost
        d = signed[i]
        same_way = qty == 0 or np.sign(d) == np.sign(qty)
        closing = 0.0 if same_way else np.sign(d) * min(abs(d), abs(qty))
        opening = d - closing
        if closing:
            avg = basis / qty
            share = abs(closing) / abs(d)
            realized[i] = (price[i] - avg) * -closing - fee[i] * share
            trip = open_trips[s]
            trip.sold += abs(closing)
            trip.got += abs(closing) * price[i]
            trip.pnl += realized[i]
            qty += closing
            if qty != 0:
                basis = avg * qty
            else:
                qty, basis = 0.0, 0.0
                trips.append(open_trips.pop(s).row(times[i], reasons[i]))
        if opening:
            fee_part = fee[i] * abs(opening) / abs(d)
            basis += opening * price[i] + fee_part
            qty += opening
            trip = open_trips.setdefault(s, _Trip(s, times[i], "long" if opening > 0 else "short"))
            trip.bought += abs(opening)
            trip.paid += abs(opening) * price[i]
            trip.cost += abs(opening) * price[i] + fee_part
            trip.shares = max(trip.shares, abs(qty))
        held[s], cost[s] = qty, basis
    if positions is not None:  # splits after a symbol's last fill
        last = positions.isel(time=-1)
        for s in held:
            if held[s] != 0:
                held[s] = float(last.sel(symbol=s))
    trips.extend(t.row(None, None) for t in open_trips.values())
    table = pl.DataFrame(trips, schema=_trip_schema(fills)).sort("entry", "symbol",
                                                                 maintain_order=True)
    return Ledger(realized, held, cost, table)


def _held_before_fills(fills: pl.DataFrame, signed: np.ndarray, positions: xr.DataArray | None
                       ) -> np.ndarray | None:
    """Shares of each fill's symbol just before the first fill of its bar (NaN after that)."""
    if positions is None:
        return None
    times = positions["time"].values
    at = np.searchsorted(times, fills["time"].to_numpy())
    col = {s: j for j, s in enumerate(np.asarray(positions["symbol"].values).astype(str))}
    sym = np.array([col.get(s, -1) for s in fills["symbol"].to_list()])
    shares = np.asarray(positions.values, dtype=np.float64)
    out = np.full(len(signed), np.nan)
    key = pl.DataFrame({"t": at, "s": sym, "d": signed})
    first = key.with_row_index("i").group_by("t", "s", maintain_order=True).agg(
        pl.col("i").first(), pl.col("d").sum())
    for i, t, s, d in zip(first["i"], first["t"], first["s"], first["d"]):
        if s >= 0 and t < len(times):
            out[i] = shares[t, s] - d
    return out


def symbol_pnl(fills: pl.DataFrame, ledger: Ledger, marks: Mapping[str, float] | None,
               dividends: Mapping[str, float] | None = None) -> pl.DataFrame:
    """One row per traded symbol: fills, closing fills, fees, realised, dividends, unrealised
    and total P&L.

    ``marks`` (symbol -> last close) values open positions; without it their
    unrealised P&L is null. ``dividends`` (symbol -> dividends received, from
    :func:`dividends_received`); without it the column is left out.
    """
    if not fills.height:
        return pl.DataFrame(schema={"symbol": pl.String, "fills": pl.Int64})
    per = (fills.with_columns(pl.Series("realized", ledger.realized_pnl))
           .group_by("symbol").agg(
               pl.len().alias("fills"),
               pl.col("realized").is_not_nan().sum().alias("closing fills"),
               pl.col("fees").sum(), pl.col("realized").fill_nan(0.0).sum().alias("realized P&L")))
    syms = per["symbol"].to_list()
    held = [ledger.held.get(s, 0.0) for s in syms]
    unreal = [0.0 if h == 0 else
              (h * marks[s] - ledger.cost[s] if marks is not None and s in marks else None)
              for s, h in zip(syms, held)]
    out = per.with_columns(pl.Series("held", held),
                           pl.Series("unrealized P&L", unreal, dtype=pl.Float64))
    total = pl.col("realized P&L") + pl.col("unrealized P&L")
    if dividends is not None:
        out = out.insert_column(out.columns.index("realized P&L") + 1, pl.Series(
            "dividends", [dividends.get(s, 0.0) for s in syms], dtype=pl.Float64))
        total = total + pl.col("dividends")
    out = out.with_columns(total.alias("total P&L"))
    return out.sort(pl.coalesce("total P&L", "realized P&L"), descending=True)


def dividend_cash(shares: np.ndarray, split_ratio: np.ndarray, dividend: np.ndarray) -> np.ndarray:
    """Dividends paid to each holding on each bar ``(time, symbol)``: shares held into the
    ex-date (after that bar's split, as the core credits them) times the dividend per share;
    shorts pay them."""
    shares = np.asarray(shares, dtype=np.float64)
    out = np.zeros_like(shares)
    split = np.nan_to_num(np.asarray(split_ratio, dtype=np.float64)[1:], nan=1.0)
    out[1:] = shares[:-1] * split * np.nan_to_num(np.asarray(dividend, dtype=np.float64)[1:])
    return out


def dividends_received(cash: np.ndarray, symbols: np.ndarray) -> dict[str, float]:
    """Each symbol's dividends over the run, from :func:`dividend_cash`."""
    paid = cash.sum(axis=0)
    return {str(s): float(v) for s, v in zip(symbols, paid) if v != 0}


def trips_with_dividends(trips: pl.DataFrame, cash: np.ndarray, times: np.ndarray,
                         symbols: np.ndarray) -> pl.DataFrame:
    """Round trips with the dividends paid while they were open (bars after the entry up to
    the exit) added to their P&L and return, as the core counts a trade's P&L."""
    if not trips.height:
        return trips.with_columns(pl.lit(None, dtype=pl.Float64).alias("dividends"))
    cum = np.cumsum(cash, axis=0)
    col = {str(s): j for j, s in enumerate(symbols)}
    j = np.array([col[s] for s in trips["symbol"].to_list()])
    entry = np.searchsorted(times, trips["entry"].to_numpy())
    closed = trips["exit"].is_not_null().to_numpy()
    exits = trips["exit"].fill_null(trips["entry"]).to_numpy()
    exit_ = np.where(closed, np.searchsorted(times, exits), len(times) - 1)
    paid = cum[exit_, j] - cum[entry, j]
    return trips.with_columns(pl.Series("dividends", paid)).with_columns(
        (pl.col("P&L") + pl.col("dividends")).alias("P&L")).with_columns(
        (pl.col("P&L") / pl.col("invested")).alias("return"))


def exits_by_reason(fills: pl.DataFrame, ledger: Ledger) -> pl.DataFrame:
    """Closing fills grouped by their ``reason``: how many, how many won, and their P&L.

    Any reason the engine writes appears as its own row, so new exit kinds need no change here.
    """
    closing = (fills.with_columns(pl.Series("pnl", ledger.realized_pnl))
               .filter(pl.col("pnl").is_not_nan()))
    if not closing.height:
        return pl.DataFrame(schema={"reason": pl.String, "closing fills": pl.Int64})
    return (closing.group_by("reason")
            .agg(pl.len().alias("closing fills"), (pl.col("pnl") > 0).sum().alias("wins"),
                 (pl.col("shares") * pl.col("price")).sum().alias("notional"),
                 pl.col("pnl").sum().alias("realized P&L"), pl.col("pnl").mean().alias("avg P&L"))
            .with_columns((pl.col("wins") / pl.col("closing fills")).alias("win_rate"))
            .sort("closing fills", descending=True))
