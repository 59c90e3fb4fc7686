"""A slow, obviously correct reference simulator for ``docs/simulation.md``.

Plain Python loops over bar ``t``, parameter set ``p`` and symbol ``s``, with
Python floats, following the page step by step (A corporate actions, B open
fills, C delisting close-out, D mark, E decisions, F borrow, G mark and record)
and the fill rule 1-7. Clarity over speed: it is the oracle the compiled core
is held to by ``tests/test_core_reference.py`` and is itself checked by the
hand-computed cases in ``tests/test_reference_sim_cases.py``.

Readings of docs/simulation.md
------------------------------
Where the page is silent or ambiguous this file reads it as follows.

R1  Marks start as NaN; a symbol contributes ``shares * mark`` to an account's
    equity (steps D and G) and to its gross exposure (fill rule 5) only while
    ``shares != 0``. Sums run over the account's symbols in ascending order;
    the equity is accumulated from the cash: ``((cash + v0) + v1) + ...`` with
    ``v = shares * mark``; gross exposure from 0.0.
R2  A non-finite ``split_ratio`` is read as 1 and a non-finite ``dividend`` as 0.
    Without ``lot_size`` a split may leave a fractional count, which is kept.
    With ``lot_size`` holdings and pending orders stay whole lots: each is cut
    toward zero to a lot (a count within 1e-9 of a lot boundary, relative, is
    that lot), and the cut fraction of the holding is paid out as cash in lieu at
    ``open[t]`` (or the split-adjusted mark when bar t is not valid), without a
    fee; that cash counts in the position's round trip.
R3  Which E_ref a fill sees: the stored one, "the equity at its last mark".
    During B (open fills) that is the value from step G of the previous bar
    (``init_cash`` on the first bar); during close fills (E) the value from D
    of this bar. E_ref is not refreshed between fills, nor by A's dividends.
R4  Decisions replace pending orders symbol by symbol: a symbol that *decides*
    on a valid bar (signals: it is entering or exiting; weights: its weight is
    finite) has its pending order replaced by the new order, which is "none"
    (0) when the order is not placed (q == 0 or below ``min_order_value``).
    Symbols that do not decide (entry while holding, exit while flat, NaN
    weight, invalid bar) keep their pending order.
R5  ``size="all"`` with ``fill="next_open"``: nothing fills while the account
    sizes its entering symbols, so each of the k entering symbols of the
    account gets the same budget ``B = cash / k`` (cash as it stands in step E,
    k = all entering symbols of the account on this bar). Literally applying
    "cash / number not yet sized" with unchanged cash would give cash/k,
    cash/(k-1), ..., cash/1, i.e. more than the cash; that is not the intent.
    With ``fill="close"`` it is ``cash / k_left`` with the cash after the fills
    already made on this bar (sells, then earlier entering buys), exactly as
    written.
R6  Entering sizes are clamped at 0 (an entering symbol orders a *buy*): when
    ``B < minc``, ``cash <= 0`` or ``E_ref <= 0`` the size is 0 and nothing
    is placed. Size rules other than "all" are sized in step E, before any
    close fill, with E_ref from step D.
R7  ``fill="close"``: all orders of the account are decided first (weights:
    ``target - shares`` with the shares before any fill), then the sells
    (q < 0) fill in ascending symbol order, then the buys in ascending symbol
    order; a ``size="all"`` entering symbol is sized just before its fill and
    the min-order check is applied to it then (at ``p = close[t]``). Orders
    are not re-derived between the two passes: a symbol that sold on this bar
    does not also buy (no "target - shares" residue of 1e-13 shares).
R8  Volume cap: applies only when ``max_participation`` is finite;
    ``cap = lot(max_participation * v)``, and a zero (or NaN) volume gives
    cap 0. With ``max_participation = inf`` there is no cap at all, even at
    zero volume.
R9  Impact is ``impact_k * sqrt(|q| / v)`` only when ``impact_k != 0`` and
    ``v`` is finite and > 0; otherwise 0 (zero-volume bars with no cap, and
    delisting close-outs, whose bar has no data). ``q`` is the order after
    step 3. The price is not recomputed after a cut in step 5. ``px`` is not
    clamped (keep ``impact`` small).
R10 Cash cut (rule 5, buys): the cut size is
    ``max(0, min(q, lot(min(B/(px*(1+f)+cps), (B-minc)/px))))``; when that is
    not smaller than q (possible by one ulp) the buy is left uncut. The check
    is ``cost(q) > B + 1e-12*|B|`` with ``cost(q) = q*px + fee(q)`` (the page's
    slack for rounding between sizing and the check).
R11 Short cut (rule 5, short sales, only with ``allow_short``): with ``h`` the
    shares held and ``others`` = sum of ``|shares| * mark`` of the account's
    other symbols (shares != 0), a sell q with ``h + q < 0`` is cut when
    ``others + |h + q| * p > L * E_ref``; the largest allowed short position is
    ``a = lot(max(0, (L*E_ref - others) / p))`` and the sell becomes
    ``max(q, min(0, -a - h))`` (never a buy). Its remainder reason is
    "leverage". Without ``allow_short`` rule 3 cuts a sell to
    ``-max(h, 0)`` (reason "short").
R12 Delisting close-out (C) closes the whole position: it skips rules 1, 2, 3
    and 5 (validity, volume cap, shorting and cash) - a forced buy-in of a
    short may take cash negative. Slippage, half-spread and fees apply, impact
    does not (R9). The pending order of a symbol with ``delist_bar == t`` is
    cancelled whether or not it holds shares, without being counted again
    (it was already counted as unfilled "invalid_bar" in step B of that bar).
R13 Unfilled: every fill attempt that leaves a non-zero remainder records one
    entry ``(t, p, s, remainder_signed, reason)``, the reason being the first
    rule (in the order 1, 2, 3, 5) that cut the order. A carried order that
    fails again on a later bar is counted again on that bar. Orders not placed
    in step E (q == 0 or below min_order_value) are not "unfilled".
R14 Rule 3 and 5's short check use the shares held at the moment of the fill
    (after the fills already made on this bar).
R15 Borrow (F) is charged on every short position, valid bar or not, at its
    current mark: ``cash -= |shares| * mark * borrow_bps / 1e4 / bars_per_year``.
R16 Signals are long-only: ``exits`` only acts on ``shares > 0``. ``entries``
    and ``exits`` both true on a flat symbol: it is entering.
R17 ``lot(x) = trunc(x / lot_size) * lot_size`` (toward zero), identity when
    ``lot_size == 0``; ``lot(inf) = inf``.
R18 Floating point: every formula is evaluated as the page writes it, left to
    right (``p*(1+slip+hs)*(1+f)+cps``, ``w*E_ref/close``, ``size_value*E_ref/p``,
    ``cost = q*px + fee``, ``cash -= q*px + fee``, ``cash += |q|*px - fee``,
    fee ``max(minc, |q|*px*f + |q|*cps)``, borrow
    ``|shares|*mark*borrow_bps/1e4/bars_per_year``), so that share counts can be
    compared bit for bit even with fractional shares. The cash check of rule 5
    allows the page's relative slack of 1e-12 (see R10).

Risk gates (all off at their default 0; with every gate off nothing below changes a result)
R19 Round trips: per symbol, ``flows`` accumulates the cash flows of the open
    position: each fill's ``-(q*px + fee)`` / ``|q|*px - fee`` (order, delist
    and drawdown-stop fills alike) and A's dividends. A fill from ``old`` to
    ``new`` shares with ``old != 0`` and ``new == 0`` or of the other sign
    closes a trade: ``pnl = flows + flow * |old|/|q|``; ``flows`` restarts at
    ``flow * (1 - |old|/|q|)``. ``pnl <= 0`` is a loss. Borrow is not a flow.
R20 The gates run in E on every order about to be placed (after the
    ``q == 0`` / ``min_order_value`` check), in the page's order; the first
    that refuses logs ``(t, p, s, q_signed, reason)`` in ``filtered`` with reason
    "min_bars", "max_trades", "daily_loss_stop", "cooldown" or "max_positions".
    A refused order is not placed: the symbol decided, so its pending order
    becomes none (R4). Visiting order: signals exits then entries, weights sells
    then buys, each in ascending symbol order. With ``fill="close"`` each order
    passes the gates just before it fills, so the round trips closed by this
    bar's earlier fills count for the cooldown of later orders.
R21 Drawdown stop (E0), after D: a trading account's ``peak = max(peak, E_ref)``
    (starting at ``init_cash``); ``E_ref < peak * (1 - x)`` halts it at bar t
    (``halted_at``). On that bar and every later one, every symbol of a halted
    account on a valid bar gets the order ``-shares``: with close fills it fills
    at once (when non-zero) at ``close[t]`` by the fill rule with reason
    "drawdown_stop" (leftover dropped); with next-open fills it becomes the
    pending order (0 for a flat symbol, so a carried order is cancelled), filled
    at the next open with reason "order". A halted account takes no decision
    in E. These orders do not pass the gates and are not "placed orders" for
    ``min_bars_between`` / ``max_trades_per_bar``.
R22 ``min_bars_between = n``: refused when the symbol (per parameter set) had an
    order placed (passed the gates) at bar ``t0`` and ``t - t0 < n``.
R23 ``max_trades_per_bar = n``: refused when the account already placed n
    orders on this bar.
R24 Opening orders: every entry; a weight order with ``|target| > |shares|`` or
    ``target * shares < 0``. Exits and pure reductions skip the three gates below.
    ``daily_loss_stop = x``: refused when ``E_ref`` (step D) ``< E_G(t-1) * (1 - x)``,
    ``E_G(t-1)`` the account's equity recorded in step G of the previous bar
    (``init_cash`` on bar 0).
R25 ``cooldown_losses = n`` (> 0), ``cooldown_bars = m``: a losing round trip closed
    at bar ``tl`` that is the last of n (or more) losing round trips in a row of
    the account (in fill order; a winning one ends the streak) starts a cooldown:
    opening orders are refused while ``t - tl < m``. A later win does not end a
    cooldown already started (the account *had* n losses in a row). Each further
    loss of a streak already >= n restarts it (the last n round trips were
    losses).
R26 ``max_positions = n``: an opening order of a symbol with ``shares == 0`` is
    refused when the account's count is ``>= n``; the count is the positions it
    holds when E starts (before this bar's decisions and close fills) plus the
    orders of flat symbols placed on this bar.
"""
from __future__ import annotations

import math

import numpy as np

REASONS = ("invalid_bar", "volume", "cash", "short", "leverage")


def _as_ptS(x, dtype):
    if x is None:
        return None
    a = np.asarray(x, dtype=dtype)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError("intents must be (T, S) or (P, T, S)")
    return a


def reference_simulate(open, close, volume, valid, split_ratio, dividend, delist_bar, *,
                       entries=None, exits=None, weights=None,
                       fill="next_open", fees_bps=0.0, slippage_bps=0.0, spread_bps=0.0,
                       impact_k=0.0, commission_per_share=0.0, min_commission=0.0,
                       max_participation=float("inf"), unfilled="drop", lot_size=0.0,
                       min_order_value=0.0, allow_short=False, max_leverage=1.0,
                       borrow_bps=0.0, bars_per_year=252.0, init_cash=100_000.0,
                       accounts="shared", size="all", size_value=float("nan"),
                       min_bars_between=0, max_positions=0, max_trades_per_bar=0,
                       daily_loss_stop=0.0, max_drawdown_stop=0.0, cooldown_losses=0,
                       cooldown_bars=0, high=None, low=None, short_entries=None,
                       short_exits=None, sl_stop=0.0, tp_stop=0.0, sl_trail=0.0, time_stop=0,
                       stop_unit=None, entry_limit=None, entry_stop=None, exit_limit=None,
                       exit_stop=None, stop_first=True, order_ttl=1,
                       trail_on="high") -> dict:
    """Simulate one or more parameter sets, bar by bar, exactly as docs/simulation.md says.

    Market inputs are ``(T, S)`` arrays (``valid`` bool, may be None for the
    documented default; ``split_ratio`` / ``dividend`` may be None; ``delist_bar``
    an int array per symbol or None). Intents are ``(P, T, S)`` (or ``(T, S)``).

    Returns a dict of numpy arrays ``equity`` (P, T, A), ``cash`` (P, T, A),
    ``shares`` (P, T, S), and lists ``trades`` of
    ``(t, p, s, side, shares, price, fee, slippage_cost, reason)`` and
    ``unfilled`` of ``(t, p, s, requested_shares_signed, reason)``, ``filtered`` of
    ``(t, p, s, order_shares_signed, reason)`` (orders refused by a risk gate) and
    ``halted_at`` (P, A) int array: the bar at which the drawdown stop halted each
    account, -1 = never.
    """
    assert fill in ("next_open", "close"), fill
    assert unfilled in ("drop", "carry"), unfilled
    assert accounts in ("shared", "per_symbol"), accounts
    assert size in ("all", "shares", "value", "percent"), size

    # ---- inputs as plain Python lists of floats -------------------------------------
    close_a = np.asarray(close, dtype=float)
    T, S = close_a.shape
    close_l = close_a.tolist()
    open_l = np.asarray(open if open is not None else close_a, dtype=float).tolist()
    vol_l = np.asarray(volume, dtype=float).tolist()
    if valid is None:
        v = np.isfinite(close_a)
        if fill == "next_open":
            v &= np.isfinite(np.asarray(open, dtype=float))
        valid = v
    valid_l = np.asarray(valid, dtype=bool).tolist()
    split_l = (np.ones((T, S)) if split_ratio is None else np.asarray(split_ratio, float)).tolist()
    div_l = (np.zeros((T, S)) if dividend is None else np.asarray(dividend, float)).tolist()
    delist_l = ([-1] * S if delist_bar is None
                else [int(x) for x in np.asarray(delist_bar).tolist()])

    ent = _as_ptS(entries, bool)
    ext = _as_ptS(exits, bool)
    sent = _as_ptS(short_entries, bool)
    sext = _as_ptS(short_exits, bool)

    # ---- orders beyond the market (R27) ------------------------------------------------
    def per_cell(x):
        """A scalar, (P,), (T, S) or (P, T, S) setting as a function of (p, t, s)."""
        if x is None:
            return lambda p, t, s: math.nan
        a = np.asarray(x, dtype=float)
        if a.ndim == 0:
            return lambda p, t, s: float(a)
        if a.ndim == 1:
            return lambda p, t, s: float(a[p])
        if a.ndim == 2:
            return lambda p, t, s: float(a[t, s])
        return lambda p, t, s: float(a[p if a.shape[0] > 1 else 0, t, s])

    levels_given = (entry_limit, entry_stop, exit_limit, exit_stop)
    sl_at, tp_at, tr_at, ts_at = (per_cell(x) for x in (sl_stop, tp_stop, sl_trail, time_stop))
    unit_mode = stop_unit is not None
    unit_at = per_cell(stop_unit)
    levels = {k: per_cell(v) for k, v in (("entry_limit", entry_limit), ("entry_stop", entry_stop),
                                           ("exit_limit", exit_limit), ("exit_stop", exit_stop))}
    orders_on = (any(x is not None and np.any(np.nan_to_num(np.asarray(x, float)) != 0)
                     for x in (sl_stop, tp_stop, sl_trail, time_stop))
                 or any(x is not None for x in (entry_limit, entry_stop, exit_limit, exit_stop)))
    o_arr = np.asarray(open if open is not None else close_a, dtype=float)
    o_eff = np.where(np.isfinite(o_arr), o_arr, close_a)
    hi_arr = np.full((T, S), np.nan) if high is None else np.asarray(high, dtype=float)
    lo_arr = np.full((T, S), np.nan) if low is None else np.asarray(low, dtype=float)
    bar_open = o_eff.tolist()
    bar_high = np.where(np.isfinite(hi_arr), hi_arr, np.fmax(o_eff, close_a)).tolist()
    bar_low = np.where(np.isfinite(lo_arr), lo_arr, np.fmin(o_eff, close_a)).tolist()
    stop_first, order_ttl = bool(stop_first), int(order_ttl)
    wts = _as_ptS(weights, float)
    use_weights = wts is not None
    if use_weights:
        assert ent is None and ext is None, "signals or weights, not both"
        P = wts.shape[0]
    else:
        assert ent is not None or ext is not None, "no intents"
        P = (ent if ent is not None else ext).shape[0]
    for x in (sl_stop, tp_stop, sl_trail, time_stop, stop_unit, sent, sext, *levels_given):
        if x is not None and np.ndim(x) in (1, 3) and np.shape(x)[0] > 1:
            P = max(P, np.shape(x)[0])   # a parameter set per stop setting (a grid)
    if use_weights:
        wts_l = np.broadcast_to(wts, (P, T, S)).tolist()
    else:
        def per_set(a):
            a = a if a is not None else np.zeros((1, T, S), bool)
            return np.broadcast_to(a, (P, T, S)).tolist()

        ent_l, ext_l, sent_l, sext_l = (per_set(a) for a in (ent, ext, sent, sext))

    # ---- notation of the page ----------------------------------------------------------
    f = float(fees_bps) / 1e4
    slip = float(slippage_bps) / 1e4
    hs = float(spread_bps) / 2e4
    cps = float(commission_per_share)
    minc = float(min_commission)
    L = float(max_leverage)
    lot_size = float(lot_size)
    mp = float(max_participation)
    impact_k = float(impact_k)
    min_order_value = float(min_order_value)
    size_value = float(size_value)
    borrow_bps = float(borrow_bps)
    bars_per_year = float(bars_per_year)
    init_cash = float(init_cash)
    min_bars_between, max_positions = int(min_bars_between), int(max_positions)
    max_trades_per_bar, cooldown_losses = int(max_trades_per_bar), int(cooldown_losses)
    cooldown_bars = int(cooldown_bars)
    daily_loss_stop, max_drawdown_stop = float(daily_loss_stop), float(max_drawdown_stop)

    def lot(x: float) -> float:
        if lot_size == 0.0 or math.isinf(x):
            return x
        return math.trunc(x / lot_size) * lot_size

    def split_lot(x: float) -> float:
        n = x / lot_size
        k = round(n)
        if abs(n - k) <= 1e-9 * max(1.0, abs(n)):
            return k * lot_size
        return math.trunc(n) * lot_size

    shared = accounts == "shared"
    A = 1 if shared else S
    acct = [0 if shared else s for s in range(S)]          # symbol -> its account
    members = [list(range(S))] if shared else [[s] for s in range(S)]  # account -> symbols

    eq_out = np.zeros((P, T, A))
    cash_out = np.zeros((P, T, A))
    sh_out = np.zeros((P, T, S))
    trades: list[tuple] = []
    unfilled_out: list[tuple] = []

    # ---- state per parameter set ----------------------------------------------------------
    cash = [[init_cash] * A for _ in range(P)]
    shares = [[0.0] * S for _ in range(P)]
    pending = [[0.0] * S for _ in range(P)]
    mark = [[math.nan] * S for _ in range(P)]
    eref = [[init_cash] * A for _ in range(P)]
    # risk-gate state (R19-R26)
    filtered_out: list[tuple] = []
    last_order_bar = [[None] * S for _ in range(P)]     # bar of the last placed order
    peak = [[init_cash] * A for _ in range(P)]           # highest E_ref seen at step E0
    halted = [[False] * A for _ in range(P)]
    halted_at = np.full((P, A), -1, dtype=np.int64)
    prev_g_equity = [[init_cash] * A for _ in range(P)]  # E_ref of the previous bar's step G
    flows = [[0.0] * S for _ in range(P)]                # cash flows of the open position
    loss_streak = [[0] * A for _ in range(P)]            # losing round trips in a row
    cooldown_until = [[None] * A for _ in range(P)]      # opening orders refused while t < this
    # per-position exits (R28) and the kind, level and last live bar of pending orders (R30)
    no_position = {"entry": math.nan, "te": math.inf, "sl": math.nan, "tp": math.nan,
                   "k": math.nan, "ext": math.nan, "ts": math.inf}
    pos = [[dict(no_position) for _ in range(S)] for _ in range(P)]
    order_kind = [["market"] * S for _ in range(P)]
    order_level = [[math.nan] * S for _ in range(P)]
    order_until = [[-math.inf] * S for _ in range(P)]

    def cancel(p: int, s: int) -> None:
        pending[p][s] = 0.0
        order_kind[p][s] = "market"

    def track(t: int, p: int, s: int, old: float, new: float, pref: float) -> None:
        """R28: levels of a position opened (or flipped) by a fill; dropped when it is closed."""
        if new == 0.0:
            pos[p][s] = dict(no_position)
            return
        if old != 0.0 and (old > 0.0) == (new > 0.0):
            return   # an increase keeps the levels
        d = last_order_bar[p][s]
        d = t if d is None else d
        is_long = new > 0.0
        u = unit_at(p, d, s) if unit_mode else pref
        x, y, z, n = sl_at(p, d, s), tp_at(p, d, s), tr_at(p, d, s), ts_at(p, d, s)
        st = dict(no_position, entry=pref, te=t)
        if x > 0.0:
            if unit_mode:
                st["sl"] = pref - x * u if is_long else pref + x * u
            else:
                st["sl"] = pref * (1.0 - x) if is_long else pref * (1.0 + x)
        if y > 0.0:
            if unit_mode:
                st["tp"] = pref + y * u if is_long else pref - y * u
            else:
                st["tp"] = pref * (1.0 + y) if is_long else pref * (1.0 - y)
        if z > 0.0:
            st["k"] = z * u if unit_mode else z
            # trail_on="close" starts from the close of the fill bar (backtrader's StopTrail)
            st["ext"] = close_l[t][s] if trail_on == "close" else pref
        if n >= 1.0:
            st["ts"] = t + math.trunc(n)
        pos[p][s] = st

    def stop_hit(t: int, p: int, s: int, held: float):
        """R29: (reason, reference price) of the exit bar t triggers, or (None, None)."""
        st = pos[p][s]
        o, hi, lo = bar_open[t][s], bar_high[t][s], bar_low[t][s]
        is_long = held > 0.0
        stop, why = (st["sl"], "stop_loss") if math.isfinite(st["sl"]) else (math.nan, None)
        if math.isfinite(st["k"]):
            if is_long:
                trail = st["ext"] - st["k"] if unit_mode else st["ext"] * (1.0 - st["k"])
            else:
                trail = st["ext"] + st["k"] if unit_mode else st["ext"] * (1.0 + st["k"])
            if why is None or (trail > stop if is_long else trail < stop):
                stop, why = trail, "trailing_stop"
        tgt = st["tp"]
        has_tgt = math.isfinite(tgt)
        if is_long:
            stop_open, tgt_open = why is not None and o <= stop, has_tgt and o >= tgt
            stop_in, tgt_in = why is not None and lo <= stop, has_tgt and hi >= tgt
        else:
            stop_open, tgt_open = why is not None and o >= stop, has_tgt and o <= tgt
            stop_in, tgt_in = why is not None and hi >= stop, has_tgt and lo <= tgt
        if stop_open:
            return why, o
        if tgt_open:
            return "take_profit", o
        if t >= st["ts"]:
            return "time_stop", o
        if stop_in and (stop_first or not tgt_in):
            return why, stop
        if tgt_in:
            return "take_profit", tgt
        return None, None

    def level_price(q: float, kind: str, level: float, t: int, s: int):
        """R30: where a limit / stop order fills in bar t, or None."""
        o, hi, lo = bar_open[t][s], bar_high[t][s], bar_low[t][s]
        if (q > 0.0) == (kind == "limit"):     # buy limit, sell stop: at or below the level
            return o if o <= level else (level if lo <= level else None)
        return o if o >= level else (level if hi >= level else None)

    def place_level(t: int, p: int, s: int, q: float, kind: str, level: float) -> None:
        pending[p][s] = q
        order_kind[p][s] = kind
        order_level[p][s] = level
        order_until[p][s] = t + order_ttl

    def level_of(p: int, t: int, s: int, side: str):
        """R31: ("limit" | "stop", level) for a signal of ``side`` ("entry" / "exit"), or None."""
        lim, stp = levels[f"{side}_limit"](p, t, s), levels[f"{side}_stop"](p, t, s)
        if math.isfinite(lim):
            return "limit", lim
        if math.isfinite(stp):
            return "stop", stp
        return None

    def intrabar(t: int, p: int) -> None:
        """B2 (R29, R30)."""
        for s in range(S):
            if not valid_l[t][s]:
                continue
            h = shares[p][s]
            if h == 0.0 or pos[p][s]["te"] >= t:
                continue
            why, px = stop_hit(t, p, s, h)
            if why is not None:
                cancel(p, s)
                rem = fill_rule(t, p, s, -h, px, why)
                if unfilled == "carry" and fill == "next_open":
                    pending[p][s] = rem
            st = pos[p][s]
            if shares[p][s] != 0.0 and math.isfinite(st["k"]):
                on_close = trail_on == "close"
                if shares[p][s] > 0.0:
                    st["ext"] = max(st["ext"], close_l[t][s] if on_close else bar_high[t][s])
                else:
                    st["ext"] = min(st["ext"], close_l[t][s] if on_close else bar_low[t][s])
        for want_sell in (True, False):
            for s in range(S):
                q = pending[p][s]
                if order_kind[p][s] == "market" or q == 0.0 or (q < 0.0) != want_sell:
                    continue
                if valid_l[t][s]:
                    px = level_price(q, order_kind[p][s], order_level[p][s], t, s)
                    if px is not None:
                        rem = fill_rule(t, p, s, q, px, order_kind[p][s])
                        pending[p][s] = rem if unfilled == "carry" else 0.0
                if pending[p][s] != 0.0 and t >= order_until[p][s]:
                    unfilled_out.append((t, p, s, pending[p][s], "expired"))
                    pending[p][s] = 0.0
                if pending[p][s] == 0.0:
                    cancel(p, s)

    def equity(p: int, a: int) -> float:
        e = cash[p][a]   # R1: cash + s0 + s1 + ..., accumulated from the cash
        for s in members[a]:
            if shares[p][s] != 0.0:
                e += shares[p][s] * mark[p][s]
        return e

    # ---- the fill rule ----------------------------------------------------------------
    def fill_rule(t: int, p: int, s: int, q_req: float, pref: float, kind: str) -> float:
        """Fill an order of q_req shares of s at reference price pref; return the remainder.

        kind: "open" / "close" (reason "order"), "drawdown" (a close fill of the
        drawdown stop, reason "drawdown_stop"), "delist" (reason "delist"), or the
        reason of a B2 fill ("stop_loss", ..., "limit", "stop").
        """
        a = acct[s]
        q = q_req
        cut = None
        forced = kind == "delist"
        v = vol_l[t][s]
        # 1. invalid bar (not for delisting)
        if not forced and not valid_l[t][s]:
            unfilled_out.append((t, p, s, q_req, "invalid_bar"))
            return q_req
        if not forced:
            # 2. volume cap (R8)
            if not math.isinf(mp):
                cap = lot(mp * v) if (math.isfinite(v) and v > 0.0) else 0.0
                if abs(q) > cap:
                    q = math.copysign(cap, q)
                    cut = cut or "volume"
            # 3. shorting
            if q < 0.0 and not allow_short:
                held = max(shares[p][s], 0.0)
                if -q > held:
                    q = -held
                    cut = cut or "short"
        # 4. price (R9)
        if impact_k != 0.0 and not forced and math.isfinite(v) and v > 0.0:
            impact = impact_k * math.sqrt(abs(q) / v)
        else:
            impact = 0.0
        if q > 0.0:
            px = pref * (1.0 + slip + hs + impact)
        else:
            px = pref * (1.0 - slip - hs - impact)

        def fee_of(qq: float) -> float:
            return max(minc, abs(qq) * px * f + abs(qq) * cps)

        # 5. cash (buys) and gross exposure (short sales)
        if not forced:
            if q > 0.0:
                B = cash[p][a] + (L - 1.0) * eref[p][a]
                if q * px + fee_of(q) > B + 1e-12 * abs(B):
                    qc = lot(min(B / (px * (1.0 + f) + cps), (B - minc) / px))
                    qc = max(0.0, min(q, qc))
                    if qc < q:
                        q = qc
                        cut = cut or "cash"
            elif q < 0.0 and allow_short:
                h = shares[p][s]
                if h + q < 0.0:
                    others = 0.0
                    for o in members[a]:
                        if o != s and shares[p][o] != 0.0:
                            others += abs(shares[p][o]) * mark[p][o]
                    if others + abs(h + q) * pref > L * eref[p][a]:
                        allowed = lot(max(0.0, (L * eref[p][a] - others) / pref))
                        qn = max(q, min(0.0, -allowed - h))
                        if qn != q:
                            q = qn
                            cut = cut or "leverage"
        # 6. execute what is left
        if q != 0.0:
            fee = fee_of(q)
            old = shares[p][s]
            shares[p][s] += q
            if orders_on:
                track(t, p, s, old, shares[p][s], pref)
            if q > 0.0:
                cash[p][a] -= q * px + fee
                flow = -(q * px + fee)
                side = 1
            else:
                cash[p][a] += abs(q) * px - fee
                flow = abs(q) * px - fee
                side = -1
            round_trip(t, p, s, old, shares[p][s], q, flow)
            reason = ("delist" if forced else "drawdown_stop" if kind == "drawdown"
                      else "order" if kind in ("open", "close") else kind)
            trades.append((t, p, s, side, abs(q), px, fee, abs(q) * abs(px - pref), reason))
        # 7. remainder: counted; the caller keeps it (carry, open fills) or drops it
        rem = q_req - q
        if rem != 0.0:
            unfilled_out.append((t, p, s, rem, cut))
        return rem

    def round_trip(t: int, p: int, s: int, old: float, new: float, q: float,
                   flow: float) -> None:
        """Round trips: accumulate the position's flows; a fill to zero or through it closes one."""
        if old != 0.0 and (new == 0.0 or (new > 0.0) != (old > 0.0)):
            frac = abs(old) / abs(q)
            pnl = flows[p][s] + flow * frac
            a = acct[s]
            if pnl <= 0.0:                       # a loss
                loss_streak[p][a] += 1
                if cooldown_losses > 0 and loss_streak[p][a] >= cooldown_losses:
                    # the last of cooldown_losses losses in a row (R25)
                    cooldown_until[p][a] = t + cooldown_bars
            else:
                loss_streak[p][a] = 0            # a win ends the streak, not a cooldown
            flows[p][s] = flow * (1.0 - frac)    # the rest opens the next trade
        else:
            flows[p][s] += flow

    def admit(t: int, p: int, s: int, q: float, opening: bool, gate: dict) -> bool:
        """Risk gates (R20): True when the order may be placed; a refusal is logged.

        gate: the account's per-bar counters {"orders": placed so far, "open": positions
        held before this bar's fills plus positions opened on this bar}."""
        a = acct[s]
        reason = None
        last = last_order_bar[p][s]
        if min_bars_between > 0 and last is not None and t - last < min_bars_between:
            reason = "min_bars"
        elif max_trades_per_bar > 0 and gate["orders"] >= max_trades_per_bar:
            reason = "max_trades"
        elif opening:
            if daily_loss_stop > 0.0 and eref[p][a] < prev_g_equity[p][a] * (1.0 - daily_loss_stop):
                reason = "daily_loss_stop"
            elif cooldown_until[p][a] is not None and t < cooldown_until[p][a]:
                reason = "cooldown"
            elif max_positions > 0 and shares[p][s] == 0.0 and gate["open"] >= max_positions:
                reason = "max_positions"
        if reason is not None:
            filtered_out.append((t, p, s, q, reason))
            return False
        last_order_bar[p][s] = t
        gate["orders"] += 1
        if opening and shares[p][s] == 0.0:
            gate["open"] += 1
        return True

    def place(q: float, pref: float) -> bool:
        """Step E: an order is placed unless q == 0 or |q| * p < min_order_value."""
        return not (q == 0.0 or abs(q) * pref < min_order_value)

    def size_all(p: int, a: int, k: int, pref: float) -> float:
        B = cash[p][a] / k
        q = lot(min(B / (pref * (1.0 + slip + hs) * (1.0 + f) + cps),
                    (B - minc) / (pref * (1.0 + slip + hs))))
        return max(0.0, q)  # R6

    def size_other(p: int, a: int, pref: float) -> float:
        if size == "shares":
            q = lot(size_value)
        elif size == "value":
            q = lot(size_value / pref)
        else:  # percent
            q = lot(size_value * eref[p][a] / pref)
        return max(0.0, q)  # R6

    # ---- the bars ---------------------------------------------------------------------
    for t in range(T):
        for p in range(P):
            # A. Corporate actions, every symbol whatever its validity
            for s in range(S):
                r = split_l[t][s]
                if math.isfinite(r) and r != 1.0:
                    shares[p][s] *= r
                    pending[p][s] *= r
                    mark[p][s] /= r
                    if orders_on:                        # R32
                        st = pos[p][s]
                        for key in ("entry", "sl", "tp", "ext") + (("k",) if unit_mode else ()):
                            st[key] /= r
                        order_level[p][s] /= r
                    if lot_size > 0.0:                   # R2: cash in lieu
                        pending[p][s] = split_lot(pending[p][s])
                        held, kept = shares[p][s], split_lot(shares[p][s])
                        if kept != held:
                            o = open_l[t][s]
                            px = o if valid_l[t][s] and math.isfinite(o) else mark[p][s]
                            flow = (held - kept) * px
                            cash[p][acct[s]] += flow
                            shares[p][s] = kept
                            if orders_on:
                                track(t, p, s, held, kept, px)
                            round_trip(t, p, s, held, kept, kept - held, flow)
                d = div_l[t][s]
                if math.isfinite(d) and d != 0.0:
                    cash[p][acct[s]] += shares[p][s] * d
                    flows[p][s] += shares[p][s] * d      # a cash flow of the position

            # B. Open fills: per account, pending sells then pending buys, at open[t]
            if fill == "next_open":
                for a in range(A):
                    for want_sell in (True, False):
                        for s in members[a]:
                            q = pending[p][s]
                            if order_kind[p][s] != "market":
                                continue                 # limit and stop orders wait for B2
                            if (q < 0.0) if want_sell else (q > 0.0):
                                rem = fill_rule(t, p, s, q, open_l[t][s], "open")
                                pending[p][s] = rem if unfilled == "carry" else 0.0

            # B2. Inside the bar: per-position exits, then limit and stop orders
            if orders_on:
                intrabar(t, p)

            # C. Delisting close-out at the mark, whole position (R12)
            for s in range(S):
                if delist_l[s] == t:
                    cancel(p, s)
                    if shares[p][s] != 0.0:
                        fill_rule(t, p, s, -shares[p][s], mark[p][s], "delist")

            # D. Mark before decisions
            for s in range(S):
                if valid_l[t][s]:
                    mark[p][s] = close_l[t][s]
            for a in range(A):
                eref[p][a] = equity(p, a)

            # E0. Drawdown stop (R21): halt for good, then flatten on valid bars
            if max_drawdown_stop > 0.0:
                for a in range(A):
                    if not halted[p][a]:
                        peak[p][a] = max(peak[p][a], eref[p][a])
                        if eref[p][a] < peak[p][a] * (1.0 - max_drawdown_stop):
                            halted[p][a] = True
                            halted_at[p, a] = t
                    if halted[p][a]:
                        for s in members[a]:
                            if valid_l[t][s]:
                                if orders_on:
                                    cancel(p, s)
                                q = -shares[p][s]
                                if fill == "close":
                                    if q != 0.0:
                                        fill_rule(t, p, s, q, close_l[t][s], "drawdown")
                                else:
                                    pending[p][s] = q

            # E. Decisions, per account, valid bars only
            for a in range(A):
                if halted[p][a]:
                    continue  # a halted account takes no other decision
                # per-bar gate counters (R23, R25)
                gate = {"orders": 0,
                        "open": sum(1 for s in members[a] if shares[p][s] != 0.0)}
                if use_weights:
                    decided: dict[int, tuple[float, bool]] = {}   # s -> (order, opening)
                    for s in members[a]:
                        if not valid_l[t][s]:
                            continue
                        pref = close_l[t][s]
                        w = wts_l[p][t][s]
                        if not math.isfinite(w):
                            continue  # NaN: leave the symbol as it is
                        if w < 0.0 and not allow_short:
                            w = 0.0
                        target = lot(w * eref[p][a] / pref)
                        pending[p][s] = 0.0  # R4: the decision replaces the pending order
                        h = shares[p][s]
                        q = target - h
                        if place(q, pref):
                            opening = abs(target) > abs(h) or target * h < 0.0
                            decided[s] = (q, opening)
                    # sells, then buys: each passes the gates, then is placed
                    # (close fills: filled at once at close[t], leftovers dropped)
                    for want_sell in (True, False):
                        for s in members[a]:
                            if s not in decided:
                                continue
                            q, opening = decided[s]
                            if (q < 0.0) != want_sell:
                                continue
                            if not admit(t, p, s, q, opening, gate):
                                continue
                            if fill == "close":
                                fill_rule(t, p, s, q, close_l[t][s], "close")
                            else:
                                pending[p][s] = q
                else:
                    exiting: list[int] = []
                    entering: list[tuple[int, float]] = []   # (symbol, +1 long / -1 short)
                    for s in members[a]:
                        if not valid_l[t][s]:
                            continue
                        h = shares[p][s]
                        if h > 0.0:
                            if ext_l[p][t][s]:
                                exiting.append(s)
                        elif h < 0.0:
                            if sext_l[p][t][s]:
                                exiting.append(s)
                        elif ent_l[p][t][s] and not sent_l[p][t][s]:
                            entering.append((s, 1.0))
                        elif sent_l[p][t][s] and not ent_l[p][t][s]:
                            entering.append((s, -1.0))
                    for s in exiting + [x[0] for x in entering]:
                        cancel(p, s)   # R4: the decision replaces the pending order
                    # exits first, then entries
                    for s in exiting:
                        pref = close_l[t][s]
                        q = -shares[p][s]
                        if place(q, pref) and admit(t, p, s, q, False, gate):
                            lvl = level_of(p, t, s, "exit") if orders_on else None
                            if lvl is not None:
                                place_level(t, p, s, q, *lvl)
                            elif fill == "close":
                                fill_rule(t, p, s, q, pref, "close")
                            else:
                                pending[p][s] = q
                    k = len(entering)   # R5: all entering (next_open), or not yet sized (close)
                    for s, side in entering:
                        pref = close_l[t][s]
                        if size == "all":
                            q = size_all(p, a, k, pref)   # close fills: sized just before it fills
                            if fill == "close":
                                k -= 1
                        else:
                            q = size_other(p, a, pref)
                        q = side * q
                        if place(q, pref) and admit(t, p, s, q, True, gate):
                            lvl = level_of(p, t, s, "entry") if orders_on else None
                            if lvl is not None:
                                place_level(t, p, s, q, *lvl)
                            elif fill == "close":
                                fill_rule(t, p, s, q, pref, "close")
                            else:
                                pending[p][s] = q

            # F. Borrow on short positions (R15)
            for s in range(S):
                if shares[p][s] < 0.0:
                    cash[p][acct[s]] -= (abs(shares[p][s]) * mark[p][s]
                                         * borrow_bps / 1e4 / bars_per_year)

            # G. Mark and record
            for a in range(A):
                eref[p][a] = equity(p, a)
                eq_out[p, t, a] = eref[p][a]
                cash_out[p, t, a] = cash[p][a]
                prev_g_equity[p][a] = eref[p][a]   # for the next bar's daily_loss_stop
            for s in range(S):
                sh_out[p, t, s] = shares[p][s]

    return {"equity": eq_out, "cash": cash_out, "shares": sh_out,
            "trades": trades, "unfilled": unfilled_out, "filtered": filtered_out,
            "halted_at": halted_at}
