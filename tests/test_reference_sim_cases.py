"""Hand-computed cases for the reference simulator (tests/reference_sim.py).

Every expected number is written out from docs/simulation.md's formulas, not
copied from a run, so the reference is checked independently of the core.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from reference_sim import reference_simulate

NAN = math.nan
INIT = 100_000.0


def market(close, open=None, volume=None, valid=None, split=None, dividend=None, delist=None):
    """(T, S) arrays from nested lists; defaults: open = close, volume 1e9, valid = finite."""
    close = np.asarray(close, dtype=float)
    if close.ndim == 1:
        close = close[:, None]
    T, S = close.shape
    open_ = close.copy() if open is None else np.asarray(open, float).reshape(T, S)
    vol = np.full((T, S), 1e9) if volume is None else np.asarray(volume, float).reshape(T, S)
    val = (np.isfinite(close) & np.isfinite(open_)) if valid is None \
        else np.asarray(valid, bool).reshape(T, S)
    spl = np.ones((T, S)) if split is None else np.asarray(split, float).reshape(T, S)
    div = np.zeros((T, S)) if dividend is None else np.asarray(dividend, float).reshape(T, S)
    dl = np.full(S, -1, np.int64) if delist is None else np.asarray(delist, np.int64)
    return dict(open=open_, close=close, volume=vol, valid=val, split_ratio=spl,
                dividend=div, delist_bar=dl)


def sig(T, S, on):
    """A (1, T, S) bool array true at the (t, s) pairs in ``on``."""
    a = np.zeros((1, T, S), bool)
    for t, s in on:
        a[0, t, s] = True
    return a


def run(mk, **kw):
    return reference_simulate(mk["open"], mk["close"], mk["volume"], mk["valid"],
                              mk["split_ratio"], mk["dividend"], mk["delist_bar"], **kw)


approx = lambda x: pytest.approx(x, rel=1e-12, abs=1e-9)  # noqa: E731


# --------------------------------------------------------------------------- costs


def test_all_close_per_symbol_fees_and_slippage():
    # one symbol, buy at close of t0 (10), hold at t1 (12), sell at close of t2 (11)
    mk = market([10.0, 12.0, 11.0])
    f, slip = 10 / 1e4, 5 / 1e4
    r = run(mk, entries=sig(3, 1, [(0, 0)]), exits=sig(3, 1, [(2, 0)]), fill="close",
            accounts="per_symbol", size="all", fees_bps=10, slippage_bps=5)
    q = INIT / (1 + f) / (10.0 * (1 + slip))
    buy_cost = q * 10.0 * (1 + slip) * (1 + f)          # == INIT
    cash0 = INIT - buy_cost
    assert r["shares"][0, :, 0].tolist() == pytest.approx([q, q, 0.0], rel=1e-12)
    assert r["cash"][0, 0, 0] == approx(cash0)
    assert abs(r["cash"][0, 0, 0]) < 1e-6
    assert r["equity"][0, 0, 0] == approx(cash0 + q * 10.0)
    assert r["equity"][0, 1, 0] == approx(cash0 + q * 12.0)
    proceeds = q * 11.0 * (1 - slip) * (1 - f)
    assert r["cash"][0, 2, 0] == approx(cash0 + proceeds)
    assert r["equity"][0, 2, 0] == approx(cash0 + proceeds)
    (b, s) = r["trades"]
    assert b[:4] == (0, 0, 0, 1) and b[8] == "order"
    assert b[4] == approx(q) and b[5] == approx(10.0 * (1 + slip))
    assert b[6] == approx(q * 10.0 * (1 + slip) * f)
    assert b[7] == approx(q * 10.0 * slip)
    assert s[:4] == (2, 0, 0, -1)
    assert s[5] == approx(11.0 * (1 - slip))
    assert s[6] == approx(q * 11.0 * (1 - slip) * f)
    assert s[7] == approx(q * 11.0 * slip)
    assert r["unfilled"] == []


def test_next_open_fills_at_next_open():
    # decision at close of t0 (10): size = cash/(10*(1+slip)); fill at open of t1 (10.5)
    mk = market([10.0, 11.0, 12.0], open=[9.0, 10.5, 11.5])
    slip = 5 / 1e4
    r = run(mk, entries=sig(3, 1, [(0, 0)]), slippage_bps=5, size="all", lot_size=1)
    q_sized = math.trunc(INIT / (10.0 * (1 + slip)))      # 9995 shares
    assert q_sized == 9995
    px = 10.5 * (1 + slip)
    # at 10.5 those 9995 shares cost more than the cash: cut to lot(cash / px)
    q = math.trunc(INIT / px)                              # 9518
    assert r["shares"][0, :, 0].tolist() == [0.0, q, q]
    assert r["cash"][0, 1, 0] == approx(INIT - q * px)
    assert r["equity"][0, 2, 0] == approx(INIT - q * px + q * 12.0)
    assert len(r["trades"]) == 1 and r["trades"][0][0] == 1
    assert r["unfilled"] == [(1, 0, 0, float(q_sized - q), "cash")]


def test_per_share_commission_minimum_spread_impact():
    # buy 100 shares at close 10: spread 20 bps (half paid), impact_k 0.1 at v = 10000
    mk = market([10.0, 10.0], volume=[10_000.0, 10_000.0])
    r = run(mk, entries=sig(2, 1, [(0, 0)]), fill="close", size="shares", size_value=100,
            spread_bps=20, impact_k=0.1, commission_per_share=0.01, min_commission=5.0)
    impact = 0.1 * math.sqrt(100 / 10_000)                 # 0.01
    px = 10.0 * (1 + 10 / 1e4 + impact)                    # 10.11
    fee = max(5.0, 100 * 0.01)                             # the minimum, 5
    (tr,) = r["trades"]
    assert tr[5] == approx(px) and tr[6] == approx(fee)
    assert tr[7] == approx(100 * (px - 10.0))
    assert r["cash"][0, 0, 0] == approx(INIT - 100 * px - fee)
    assert r["equity"][0, 1, 0] == approx(INIT - 100 * px - fee + 100 * 10.0)


# --------------------------------------------------------------------------- signals


def test_entry_while_holding_and_exit_while_flat_do_nothing():
    mk = market([10.0, 10.0, 10.0, 10.0])
    ent = sig(4, 1, [(1, 0), (2, 0)])
    ext = sig(4, 1, [(0, 0)])
    r = run(mk, entries=ent, exits=ext, fill="close", size="shares", size_value=100)
    assert r["shares"][0, :, 0].tolist() == [0.0, 100.0, 100.0, 100.0]
    assert [tr[0] for tr in r["trades"]] == [1]


def test_shared_all_splits_cash_among_entering_symbols():
    # close fills: first symbol gets cash/2, the second the cash left / 1
    mk = market([[10.0, 20.0], [10.0, 20.0]])
    ent = sig(2, 2, [(0, 0), (0, 1)])
    r = run(mk, entries=ent, fill="close", size="all", lot_size=1)
    q0 = math.trunc((INIT / 2) / 10.0)                     # 5000
    q1 = math.trunc((INIT - q0 * 10.0) / 20.0)             # 2500
    assert r["shares"][0, 0].tolist() == [q0, q1]
    assert r["cash"][0, 0, 0] == approx(INIT - q0 * 10.0 - q1 * 20.0)
    # next_open: both sized with cash/2 at the decision close, filled at the next open
    mk = market([[10.0, 20.0], [10.0, 20.0], [10.0, 20.0]])
    ent = sig(3, 2, [(0, 0), (0, 1)])
    r = run(mk, entries=ent, size="all", lot_size=1)
    assert r["shares"][0, 1].tolist() == [5000.0, 2500.0]
    assert r["cash"][0, 1, 0] == approx(0.0)


def test_all_with_lot_rounding_leaves_cash_to_the_next_symbol():
    # lot 10: symbol 0 at 30 gets lot(50000/30) = 1660 shares, costing 49800
    mk = market([[30.0, 7.0], [30.0, 7.0]])
    r = run(mk, entries=sig(2, 2, [(0, 0), (0, 1)]), fill="close", lot_size=10)
    q0 = math.trunc(50_000 / 30 / 10) * 10                 # 1660
    left = INIT - q0 * 30.0                                # 50200
    q1 = math.trunc(left / 7.0 / 10) * 10                  # 7170
    assert (q0, q1) == (1660, 7170)
    assert r["shares"][0, 0].tolist() == [q0, q1]
    assert r["cash"][0, 0, 0] == approx(left - q1 * 7.0)


def test_value_and_percent_sizes_and_min_order_value():
    mk = market([[25.0, 50.0], [25.0, 50.0]])
    r = run(mk, entries=sig(2, 2, [(0, 0), (0, 1)]), fill="close", size="value",
            size_value=1000, lot_size=1)
    assert r["shares"][0, 0].tolist() == [40.0, 20.0]
    r = run(mk, entries=sig(2, 2, [(0, 0), (0, 1)]), fill="close", size="percent",
            size_value=0.1, lot_size=10)
    assert r["shares"][0, 0].tolist() == [400.0, 200.0]     # 10000/25, 10000/50
    # 40 shares * 25 = 1000 < 1500: not placed, and not counted as unfilled
    r = run(mk, entries=sig(2, 2, [(0, 0)]), fill="close", size="value", size_value=1000,
            lot_size=1, min_order_value=1500)
    assert r["shares"][0, 0].tolist() == [0.0, 0.0]
    assert r["trades"] == [] and r["unfilled"] == []


# --------------------------------------------------------------------------- weights


def test_weights_targets_and_rebalance():
    mk = market([[20.0, 40.0], [25.0, 40.0], [25.0, 40.0]])
    w = np.array([[[0.5, 0.25], [0.5, NAN], [0.0, NAN]]])
    r = run(mk, weights=w, fill="close", lot_size=10)
    # t0: E = 100000 -> 2500 shares of s0, 620 (lot(625)) of s1
    assert r["shares"][0, 0].tolist() == [2500.0, 620.0]
    cash0 = INIT - 2500 * 20.0 - 620 * 40.0                # 25200
    # t1: E = cash0 + 2500*25 + 620*40 = 112500; target s0 = lot(56250/25) = 2250
    e1 = cash0 + 2500 * 25.0 + 620 * 40.0
    assert e1 == 112_500.0
    assert r["equity"][0, 0, 0] == approx(cash0 + 2500 * 20.0 + 620 * 40.0)
    assert r["shares"][0, 1].tolist() == [2250.0, 620.0]
    assert r["cash"][0, 1, 0] == approx(cash0 + 250 * 25.0)
    # t2: weight 0 sells everything of s0; NaN leaves s1
    assert r["shares"][0, 2].tolist() == [0.0, 620.0]
    assert r["cash"][0, 2, 0] == approx(cash0 + 2500 * 25.0)


def test_negative_weight_without_shorts_means_zero_and_sells_capped_at_holdings():
    mk = market([10.0, 10.0, 10.0])
    w = np.array([[[0.5], [-0.5], [NAN]]])
    r = run(mk, weights=w, fill="close", lot_size=1)
    assert r["shares"][0, :, 0].tolist() == [5000.0, 0.0, 0.0]
    assert r["unfilled"] == []


def test_short_sale_limited_by_gross_exposure_and_borrow():
    # allow_short, L = 1: a -1.5 weight at 20 asks for -7500 shares (150000 gross);
    # gross may not exceed L * E_ref = 100000 -> -5000; the other 2500 unfilled "leverage"
    mk = market([20.0, 20.0, 20.0])
    w = np.array([[[-1.5], [NAN], [NAN]]])
    r = run(mk, weights=w, fill="close", lot_size=1, allow_short=True,
            borrow_bps=252.0, bars_per_year=252.0)
    assert r["shares"][0, :, 0].tolist() == [-5000.0] * 3
    assert r["unfilled"] == [(0, 0, 0, -2500.0, "leverage")]
    borrow = 5000 * 20.0 * 252.0 / 1e4 / 252.0              # 10 per bar
    assert borrow == 10.0
    cash = [INIT + 5000 * 20.0 - borrow * (i + 1) for i in range(3)]
    assert r["cash"][0, :, 0].tolist() == pytest.approx(cash, rel=1e-12)
    assert r["equity"][0, :, 0].tolist() == pytest.approx([c - 5000 * 20.0 for c in cash])


def test_leverage_lets_buys_use_more_than_cash():
    mk = market([10.0, 10.0])
    r = run(mk, weights=np.array([[[1.5], [NAN]]]), fill="close", lot_size=1,
            max_leverage=2.0)
    # budget cash + (L-1) * E_ref = 200000 >= 15000 shares * 10
    assert r["shares"][0, :, 0].tolist() == [15000.0, 15000.0]
    assert r["cash"][0, 0, 0] == approx(-50_000.0)
    assert r["equity"][0, 1, 0] == approx(INIT)


def test_dividend_credits_longs_and_debits_shorts():
    mk = market([[10.0, 10.0], [10.0, 10.0]], dividend=[[0.0, 0.0], [0.5, 0.5]])
    w = np.array([[[0.1, -0.1], [NAN, NAN]]])
    r = run(mk, weights=w, fill="close", lot_size=1, allow_short=True)
    # +1000 shares of s0, -1000 of s1; the dividend of t1: +500 and -500
    assert r["shares"][0, 0].tolist() == [1000.0, -1000.0]
    assert r["cash"][0, 1, 0] == approx(INIT + 500.0 - 500.0)
    mk = market([10.0, 10.0], dividend=[0.0, 0.25])
    r = run(mk, weights=np.array([[[0.2], [NAN]]]), fill="close", lot_size=1)
    assert r["cash"][0, 1, 0] == approx(INIT - 2000 * 10.0 + 2000 * 0.25)
    assert r["equity"][0, 1, 0] == approx(INIT + 500.0)


# --------------------------------------------------------------------------- corporate actions


def test_split_doubles_shares_and_keeps_equity():
    # split 2:1 effective at the open of t1; the price halves
    mk = market([10.0, 5.0, 5.0], split=[1.0, 2.0, 1.0])
    r = run(mk, entries=sig(3, 1, [(0, 0)]), fill="close", size="shares", size_value=100)
    assert r["shares"][0, :, 0].tolist() == [100.0, 200.0, 200.0]
    assert r["equity"][0, :, 0].tolist() == pytest.approx([INIT] * 3)


def test_split_on_an_invalid_bar_rescales_the_mark():
    # the split bar has no price: the mark 10 becomes 10/2 = 5, equity unchanged
    mk = market([10.0, NAN, 5.0], split=[1.0, 2.0, 1.0])
    r = run(mk, entries=sig(3, 1, [(0, 0)]), fill="close", size="shares", size_value=100)
    assert r["shares"][0, :, 0].tolist() == [100.0, 200.0, 200.0]
    assert r["equity"][0, :, 0].tolist() == pytest.approx([INIT] * 3)


def test_split_rescales_a_pending_order():
    # decided at t0 (buy 100), split 3 at t1's open before the open fill: 300 shares fill
    mk = market([9.0, 3.0, 3.0], split=[1.0, 3.0, 1.0])
    r = run(mk, entries=sig(3, 1, [(0, 0)]), size="shares", size_value=100)
    assert r["shares"][0, :, 0].tolist() == [0.0, 300.0, 300.0]
    assert r["cash"][0, 1, 0] == approx(INIT - 300 * 3.0)


def test_reverse_split_pays_the_fraction_of_a_lot_as_cash_in_lieu():
    # 1,514 shares, 1-for-20 at t1's open (19.8): 75.7 shares -> 75 held, 0.7 paid at 19.8
    mk = market([20.0, 20.0, 20.0], open=[20.0, 19.8, 20.0], split=[1.0, 0.05, 1.0])
    r = run(mk, entries=sig(3, 1, [(0, 0)]), fill="close", size="shares", size_value=1514,
            lot_size=1)
    assert r["shares"][0, :, 0].tolist() == [1514.0, 75.0, 75.0]
    cash0 = INIT - 1514 * 20.0
    assert r["cash"][0, 1, 0] == approx(cash0 + (1514 * 0.05 - 75) * 19.8)


def test_split_without_lots_keeps_the_fraction():
    mk = market([20.0, 20.0], split=[1.0, 0.05])
    r = run(mk, entries=sig(2, 1, [(0, 0)]), fill="close", size="shares", size_value=1514)
    assert r["shares"][0, 1, 0] == approx(75.7)
    assert r["cash"][0, 1, 0] == approx(INIT - 1514 * 20.0)


def test_split_by_a_third_of_whole_lots_is_whole_lots():
    # 300 * (1/3) is 99.99999999999999 in floats: a whole lot of 100 shares, no cash
    mk = market([30.0, 10.0], split=[1.0, 1.0 / 3.0])
    r = run(mk, entries=sig(2, 1, [(0, 0)]), fill="close", size="shares", size_value=300,
            lot_size=100)
    assert r["shares"][0, 1, 0] == 100.0
    assert r["cash"][0, 1, 0] == INIT - 300 * 30.0


def test_cash_in_lieu_that_empties_the_position_closes_the_trade():
    # 10 shares, 1-for-20: 0.5 shares, all of it paid out at the open 100; the round trip
    # (-10*5 + 0.5*100 = 0) is a loss (pnl <= 0), which starts a 1-loss cooldown
    mk = market([5.0, 100.0, 100.0, 100.0], split=[1.0, 0.05, 1.0, 1.0])
    r = run(mk, entries=sig(4, 1, [(0, 0), (1, 0)]), fill="close", size="shares",
            size_value=10, lot_size=1, cooldown_losses=1, cooldown_bars=5)
    assert r["shares"][0, :, 0].tolist() == [10.0, 0.0, 0.0, 0.0]
    assert r["cash"][0, 1, 0] == approx(INIT - 50.0 + 50.0)
    assert [f[4] for f in r["filtered"]] == ["cooldown"]


def test_delisting_closes_out_at_last_valid_close():
    slip = 5 / 1e4
    mk = market([10.0, 12.0, NAN, NAN], delist=[2])
    r = run(mk, entries=sig(4, 1, [(0, 0)]), fill="close", size="shares", size_value=100,
            slippage_bps=5, fees_bps=10)
    buy_px = 10.0 * (1 + slip)
    cash0 = INIT - 100 * buy_px * (1 + 10 / 1e4)
    sell_px = 12.0 * (1 - slip)
    cash2 = cash0 + 100 * sell_px - 100 * sell_px * 10 / 1e4
    assert r["shares"][0, :, 0].tolist() == [100.0, 100.0, 0.0, 0.0]
    assert r["cash"][0, 2, 0] == approx(cash2)
    assert r["equity"][0, 3, 0] == approx(cash2)
    d = r["trades"][-1]
    assert d[0] == 2 and d[3] == -1 and d[4] == 100.0 and d[8] == "delist"
    assert d[5] == approx(sell_px)


def test_delisting_cancels_a_pending_order():
    # an order decided at the last valid close (t1) would fill at t2's open: the
    # data has ended, so it is unfilled "invalid_bar" and then cancelled by the delisting
    mk = market([10.0, 10.0, NAN, NAN], delist=[2])
    r = run(mk, entries=sig(4, 1, [(1, 0)]), size="shares", size_value=100, unfilled="carry")
    assert r["shares"][0, :, 0].tolist() == [0.0] * 4
    assert r["trades"] == []
    assert r["unfilled"] == [(2, 0, 0, 100.0, "invalid_bar")]


# --------------------------------------------------------------------------- fill rule


def test_volume_cap_with_carry_fills_over_two_bars():
    # 1000 shares wanted, 10% of 6000 = 600 per bar
    mk = market([10.0, 10.0, 10.0, 10.0], volume=[6000.0] * 4)
    kw = dict(entries=sig(4, 1, [(0, 0)]), size="shares", size_value=1000,
              max_participation=0.1, lot_size=1)
    r = run(mk, unfilled="carry", **kw)
    assert r["shares"][0, :, 0].tolist() == [0.0, 600.0, 1000.0, 1000.0]
    assert [(tr[0], tr[4]) for tr in r["trades"]] == [(1, 600.0), (2, 400.0)]
    assert r["unfilled"] == [(1, 0, 0, 400.0, "volume")]
    r = run(mk, unfilled="drop", **kw)
    assert r["shares"][0, :, 0].tolist() == [0.0, 600.0, 600.0, 600.0]
    assert r["unfilled"] == [(1, 0, 0, 400.0, "volume")]


def test_zero_volume_fills_nothing_under_a_cap():
    mk = market([10.0, 10.0, 10.0], volume=[100.0, 0.0, 100.0])
    r = run(mk, entries=sig(3, 1, [(0, 0)]), size="shares", size_value=10,
            max_participation=0.5, unfilled="carry")
    assert r["shares"][0, :, 0].tolist() == [0.0, 0.0, 10.0]
    assert r["unfilled"] == [(1, 0, 0, 10.0, "volume")]


def test_invalid_bar_fills_nothing():
    mk = market([10.0, NAN, 11.0, 11.0], open=[10.0, NAN, 10.5, 11.0])
    kw = dict(entries=sig(4, 1, [(0, 0)]), size="shares", size_value=100)
    r = run(mk, **kw)                                      # drop
    assert r["shares"][0, :, 0].tolist() == [0.0] * 4
    assert r["unfilled"] == [(1, 0, 0, 100.0, "invalid_bar")]
    assert r["equity"][0, :, 0].tolist() == [INIT] * 4
    r = run(mk, unfilled="carry", **kw)                    # carried to t2's open (10.5)
    assert r["shares"][0, :, 0].tolist() == [0.0, 0.0, 100.0, 100.0]
    assert r["cash"][0, 2, 0] == approx(INIT - 100 * 10.5)
    # an intent on an invalid bar is ignored
    r = run(mk, entries=sig(4, 1, [(1, 0)]), fill="close", size="shares", size_value=100)
    assert r["trades"] == []


def test_no_negative_cash_without_leverage():
    # 20000 shares at 10 with 10 bps fee and a 1 minimum: cut to what the cash buys
    mk = market([10.0, 10.0])
    r = run(mk, entries=sig(2, 1, [(0, 0)]), fill="close", size="shares", size_value=20_000,
            fees_bps=10, min_commission=1.0, lot_size=1)
    q = math.trunc(min(INIT / (10.0 * (1 + 10 / 1e4)), (INIT - 1.0) / 10.0))   # 9990
    assert q == 9990
    assert r["shares"][0, 0, 0] == q
    assert r["cash"][0, 0, 0] == approx(INIT - q * 10.0 * (1 + 10 / 1e4))
    assert r["cash"][0, 0, 0] >= 0.0
    assert r["unfilled"] == [(0, 0, 0, 20_000.0 - q, "cash")]


def test_sells_fill_before_buys_at_the_open():
    # shared account, all cash in s1; at t1 decide to rotate into s0. At t2's open the
    # sell of s1 fills first, so the buy of s0 finds the cash.
    mk = market([[10.0, 10.0], [10.0, 10.0], [10.0, 10.0]])
    w = np.array([[[0.0, 1.0], [1.0, 0.0], [NAN, NAN]]])
    r = run(mk, weights=w, lot_size=1)
    assert r["shares"][0, 1].tolist() == [0.0, 10_000.0]
    assert r["shares"][0, 2].tolist() == [10_000.0, 0.0]
    assert [tr[2:4] for tr in r["trades"]] == [(1, 1), (1, -1), (0, 1)]


def test_parameter_sets_are_independent():
    mk = market([[10.0, 20.0], [11.0, 19.0], [12.0, 18.0]])
    w = np.array([[[0.5, 0.5], [NAN, NAN], [0.0, 1.0]],
                  [[0.2, NAN], [0.3, 0.3], [NAN, NAN]]])
    both = run(mk, weights=w, fees_bps=3, lot_size=1)
    for p in range(2):
        one = run(mk, weights=w[p:p + 1], fees_bps=3, lot_size=1)
        for k in ("equity", "cash", "shares"):
            assert np.array_equal(both[k][p], one[k][0])
        assert [tr[:1] + tr[2:] for tr in both["trades"] if tr[1] == p] == \
            [tr[:1] + tr[2:] for tr in one["trades"]]
