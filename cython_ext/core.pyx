# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled step core: execution, costs, partial fills and accounting.

One implementation for both drivers. ``Core.run(t0, t1, ...)`` advances the whole
universe and every parameter set over bars ``[t0, t1)``; the batch engine calls it
once for all bars, the step driver once per bar. docs/simulation.md is the
contract, bar step by bar step (the letters A to G below are its sections).

Everything inside ``run`` is nogil over typed memoryviews: no Python objects.
"""
import numpy as np

from libc.math cimport sqrt, fabs, trunc, round, fmax, isfinite, INFINITY, NAN

# intent modes
DEF SIGNALS = 0
DEF WEIGHTS = 1
DEF CROSS = 2

# size rules
DEF SIZE_ALL = 0
DEF SIZE_SHARES = 1
DEF SIZE_VALUE = 2
DEF SIZE_PERCENT = 3

# log kinds and reasons (mirrored in pitgrid/engine/codes.py)
DEF KIND_FILL = 1
DEF KIND_UNFILLED = 2
DEF R_ORDER = 0
DEF R_DELIST = 1
DEF R_INVALID = 2
DEF R_VOLUME = 3
DEF R_CASH = 4
DEF R_SHORT = 5
DEF R_LEVERAGE = 6
DEF R_MIN_BARS = 7
DEF R_MAX_POSITIONS = 8
DEF R_MAX_TRADES = 9
DEF R_DAILY_LOSS = 10
DEF R_DRAWDOWN = 11
DEF R_COOLDOWN = 12
DEF R_NONE = -1
DEF KIND_FILTERED = 3

# trade statistic columns (mirrored in pitgrid/engine/codes.py)
DEF ST_CLOSED = 0
DEF ST_WINS = 1
DEF ST_GROSS_WIN = 2
DEF ST_GROSS_LOSS = 3
DEF ST_NOTIONAL = 4
DEF ST_FILLS = 5
DEF ST_UNFILLED = 6
DEF ST_FEES = 7
DEF ST_SLIPPAGE = 8
DEF N_STATS = 9

# the relative slack under which a buy still fits its budget: sizing and the
# cash check evaluate the same bound in a different order of operations
DEF FIT_EPS = 1e-12

LOG_INT_COLS = 6    # t, param, symbol, kind, reason, side
LOG_FLOAT_COLS = 4  # shares, price, fee, slippage cost


cdef struct IntentRows:
    # bar t of one parameter set: validity, signals, or the cross rule's fast/slow rows
    const unsigned char* valid
    const unsigned char* entries
    const unsigned char* exits
    const double* fast
    const double* slow
    const double* fast_prev
    const double* slow_prev


cdef inline double _lot(double x, double lot) noexcept nogil:
    if lot > 0.0:
        return trunc(x / lot) * lot
    return x


cdef inline double _split_lot(double x, double lot) noexcept nogil:
    # a split of whole lots by a ratio like 1/3 lands a rounding error off a lot
    # boundary; that is a whole lot, not a fraction to pay out
    cdef double n = x / lot, k = round(n)
    if fabs(n - k) <= 1e-9 * fmax(1.0, fabs(n)):
        return k * lot
    return trunc(n) * lot


cdef inline double _sign(double x) noexcept nogil:
    return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0)


cdef class Core:
    """State and settings of one simulation: O(params x symbols) memory.

    The state arrays are public numpy arrays so the step driver can save and
    restore them; ``run`` mutates them in place.
    """
    # settings
    cdef public int P, S, A
    cdef public bint fill_close, carry, allow_short, per_symbol
    cdef public int intent_mode, size_mode
    cdef public double f, slip, hs, impact_k, cps, minc, max_part, lot, min_order
    cdef public double lev, borrow_per_bar
    # risk gates (0 = off)
    cdef public int min_bars, max_positions, max_trades, cool_losses, cool_bars
    cdef public double daily_loss, dd_stop
    # whether decisions or fills read the pre-decision equity (step D); when none
    # does, step D's mark is skipped, which changes no result
    cdef public bint eref_read
    cdef double[::1] size_value
    # state
    cdef double[:, ::1] cash, shares, pending, eref, flow, stats, last_order
    cdef double[:, ::1] peak, prev_eq, halted, losses, cool_until
    cdef double[::1] mark
    # per-bar scratch
    cdef signed char[::1] sig
    cdef double[::1] qbuf, tbuf
    cdef long[::1] n_open, n_orders
    cdef public dict state
    # logging
    cdef int[:, ::1] log_i
    cdef double[:, ::1] log_f
    cdef public Py_ssize_t n_log
    # without the log (grids keep only metrics), fills and refusals are counted, not listed
    cdef public bint record_log
    cdef public object log_i_arr, log_f_arr
    # arrays bound once (``bind``) for ``run_bound``: a per-bar caller does not convert
    # twenty arrays to memoryviews on every bar
    cdef const double[:, ::1] b_open, b_close, b_volume, b_split, b_div
    cdef const unsigned char[:, ::1] b_valid
    cdef const unsigned char[::1] b_has_action, b_has_delist
    cdef const long[::1] b_delist, b_ia, b_ib
    cdef const unsigned char[:, :, ::1] b_ent, b_ext
    cdef const double[:, :, ::1] b_bank
    cdef double[:, ::1] b_eq, b_long, b_short
    cdef double[:, :, ::1] b_cash, b_aeq, b_shares
    cdef bint b_keep, bound

    def __init__(self, int P, int S, *, bint per_symbol, bint fill_close, int intent_mode,
                 int size_mode, size_value, double init_cash, double fees_bps=0.0,
                 double slippage_bps=0.0, double spread_bps=0.0, double impact_k=0.0,
                 double commission_per_share=0.0, double min_commission=0.0,
                 double max_participation=INFINITY, bint carry=False, double lot_size=0.0,
                 double min_order_value=0.0, bint allow_short=False, double max_leverage=1.0,
                 double borrow_bps=0.0, double bars_per_year=252.0, int min_bars_between=0,
                 int max_positions=0, int max_trades_per_bar=0, double daily_loss_stop=0.0,
                 double max_drawdown_stop=0.0, int cooldown_losses=0, int cooldown_bars=0,
                 bint record_log=True, Py_ssize_t log_capacity=4096):
        self.record_log = record_log
        self.P = P
        self.S = S
        self.per_symbol = per_symbol
        self.A = S if per_symbol else 1
        self.fill_close = fill_close
        self.intent_mode = intent_mode
        self.size_mode = size_mode
        self.size_value = np.ascontiguousarray(size_value, dtype=np.float64)
        self.f = fees_bps / 1e4
        self.slip = slippage_bps / 1e4
        self.hs = spread_bps / 2e4
        self.impact_k = impact_k
        self.cps = commission_per_share
        self.minc = min_commission
        self.max_part = max_participation
        self.carry = carry
        self.lot = lot_size
        self.min_order = min_order_value
        self.allow_short = allow_short
        self.lev = max_leverage
        self.borrow_per_bar = borrow_bps / 1e4 / bars_per_year
        self.min_bars = min_bars_between
        self.max_positions = max_positions
        self.max_trades = max_trades_per_bar
        self.daily_loss = daily_loss_stop
        self.dd_stop = max_drawdown_stop
        self.cool_losses = cooldown_losses
        self.cool_bars = cooldown_bars
        self.eref_read = (intent_mode == WEIGHTS or size_mode == SIZE_PERCENT
                          or max_leverage != 1.0 or allow_short or daily_loss_stop > 0.0
                          or max_drawdown_stop > 0.0)
        A = self.A
        self.set_state({
            "cash": np.full((P, A), init_cash), "shares": np.zeros((P, S)),
            "pending": np.zeros((P, S)), "eref": np.full((P, A), init_cash),
            "flow": np.zeros((P, S)), "stats": np.zeros((P, N_STATS)),
            "last_order": np.full((P, S), -np.inf), "peak": np.full((P, A), init_cash),
            "prev_eq": np.full((P, A), init_cash), "halted": np.zeros((P, A)),
            "losses": np.zeros((P, A)), "cool_until": np.full((P, A), -np.inf),
            "mark": np.full(S, NAN),
        })
        self.sig = np.zeros(S, dtype=np.int8)
        self.qbuf = np.zeros(S)
        self.tbuf = np.zeros(S)
        self.n_open = np.zeros(A, dtype=np.int64)
        self.n_orders = np.zeros(A, dtype=np.int64)
        self._alloc_log(log_capacity)

    def set_state(self, state):
        """Install the state arrays (copied), e.g. from a checkpoint; see ``get_state``."""
        st = {k: np.array(v, dtype=np.float64, order="C") for k, v in state.items()}
        self.state = st
        self.cash = st["cash"]
        self.shares = st["shares"]
        self.pending = st["pending"]
        self.eref = st["eref"]
        self.flow = st["flow"]
        self.stats = st["stats"]
        self.last_order = st["last_order"]
        self.peak = st["peak"]
        self.prev_eq = st["prev_eq"]
        self.halted = st["halted"]
        self.losses = st["losses"]
        self.cool_until = st["cool_until"]
        self.mark = st["mark"]

    def get_state(self):
        """Copies of every state array by name: all a run needs to continue."""
        return {k: v.copy() for k, v in self.state.items()}

    @property
    def stats_arr(self):
        return self.state["stats"]

    def _alloc_log(self, Py_ssize_t capacity):
        self.log_i_arr = np.zeros((capacity, LOG_INT_COLS), dtype=np.int32)
        self.log_f_arr = np.zeros((capacity, LOG_FLOAT_COLS), dtype=np.float64)
        self.log_i = self.log_i_arr
        self.log_f = self.log_f_arr
        self.n_log = 0

    def take_log(self):
        """Return and clear the filled part of the order log."""
        li = self.log_i_arr[: self.n_log].copy()
        lf = self.log_f_arr[: self.n_log].copy()
        self.n_log = 0
        return li, lf

    def ensure_log_room(self, Py_ssize_t need):
        """Grow the log so that ``need`` more rows fit."""
        cdef Py_ssize_t cap = self.log_i_arr.shape[0]
        if self.n_log + need <= cap:
            return
        new_cap = max(2 * cap, self.n_log + need)
        li = np.zeros((new_cap, LOG_INT_COLS), dtype=np.int32)
        lf = np.zeros((new_cap, LOG_FLOAT_COLS), dtype=np.float64)
        li[: self.n_log] = self.log_i_arr[: self.n_log]
        lf[: self.n_log] = self.log_f_arr[: self.n_log]
        self.log_i_arr, self.log_f_arr = li, lf
        self.log_i = li
        self.log_f = lf

    # ------------------------------------------------------------------ logging
    cdef inline void _log(self, int t, int p, int s, int kind, int reason, double shares,
                          double price, double fee, double slipcost) noexcept nogil:
        cdef Py_ssize_t i = self.n_log
        if not self.record_log:
            return
        self.log_i[i, 0] = t
        self.log_i[i, 1] = p
        self.log_i[i, 2] = s
        self.log_i[i, 3] = kind
        self.log_i[i, 4] = reason
        self.log_i[i, 5] = <int>_sign(shares)
        self.log_f[i, 0] = shares
        self.log_f[i, 1] = price
        self.log_f[i, 2] = fee
        self.log_f[i, 3] = slipcost
        self.n_log = i + 1

    cdef inline int _acct(self, int s) noexcept nogil:
        return s if self.per_symbol else 0

    # ------------------------------------------------------------------ fill rule
    cdef double _fill(self, int t, int p, int s, double q, double pref, double vol,
                      bint valid, int why) noexcept nogil:
        """Fill ``q`` shares (signed) at reference price ``pref``; return the remainder.

        ``why`` is the fill's reason; a delisting close-out (R_DELIST) bypasses
        validity, the volume cap, shorting, cash and impact.
        """
        cdef int a = self._acct(s)
        cdef bint delist = why == R_DELIST
        cdef double req = q, held = self.shares[p, s], cap, px, impact, fee, cost, budget
        cdef double qmax, gross_other, room, new_short
        cdef int cut = R_NONE, s2
        if not delist:
            if not valid:
                self._log(t, p, s, KIND_UNFILLED, R_INVALID, req, NAN, 0.0, 0.0)
                self.stats[p, ST_UNFILLED] += 1.0
                return req
            if isfinite(self.max_part):
                cap = _lot(self.max_part * vol, self.lot) if vol > 0.0 else 0.0
                if fabs(q) > cap:
                    q = _sign(q) * cap
                    cut = R_VOLUME
            if q < 0.0 and not self.allow_short and -q > held:
                q = -held if held > 0.0 else 0.0
                if cut == R_NONE:
                    cut = R_SHORT
        impact = 0.0
        if self.impact_k > 0.0 and not delist and vol > 0.0 and isfinite(vol):
            impact = self.impact_k * sqrt(fabs(q) / vol)
        if q > 0.0:
            px = pref * (1.0 + self.slip + self.hs + impact)
        else:
            px = pref * (1.0 - self.slip - self.hs - impact)
        if q > 0.0 and not delist:
            budget = self.cash[p, a] + (self.lev - 1.0) * self.eref[p, a]
            fee = fabs(q) * px * self.f + fabs(q) * self.cps
            if fee < self.minc:
                fee = self.minc
            cost = q * px + fee
            if cost > budget + FIT_EPS * fabs(budget):
                qmax = budget / (px * (1.0 + self.f) + self.cps)
                if (budget - self.minc) / px < qmax:
                    qmax = (budget - self.minc) / px
                qmax = _lot(qmax, self.lot)
                if qmax < 0.0:
                    qmax = 0.0
                if qmax < q:
                    q = qmax
                    if cut == R_NONE:
                        cut = R_CASH
        elif q < 0.0 and not delist and self.allow_short and held + q < 0.0:
            gross_other = 0.0
            for s2 in range(self.S):
                if s2 != s and self._acct(s2) == a and self.shares[p, s2] != 0.0:
                    gross_other += fabs(self.shares[p, s2]) * self.mark[s2]
            room = (self.lev * self.eref[p, a] - gross_other) / pref
            if room < 0.0:
                room = 0.0
            if -(held + q) > room:
                new_short = _lot(room, self.lot)
                q = -new_short - held
                if q > 0.0:
                    q = 0.0
                if cut == R_NONE:
                    cut = R_LEVERAGE
        if q == 0.0:
            self._log(t, p, s, KIND_UNFILLED, cut, req, NAN, 0.0, 0.0)
            self.stats[p, ST_UNFILLED] += 1.0
            return req
        fee = fabs(q) * px * self.f + fabs(q) * self.cps
        if fee < self.minc:
            fee = self.minc
        cdef double cash_flow
        if q > 0.0:
            cash_flow = -(q * px + fee)
        else:
            cash_flow = -q * px - fee
        self.cash[p, a] += cash_flow
        self.shares[p, s] = held + q
        self._round_trip(t, p, s, held, held + q, cash_flow)
        self.stats[p, ST_NOTIONAL] += fabs(q) * px
        self.stats[p, ST_FILLS] += 1.0
        self.stats[p, ST_FEES] += fee
        self.stats[p, ST_SLIPPAGE] += fabs(q) * fabs(px - pref)
        self._log(t, p, s, KIND_FILL, why, q, px, fee,
                  fabs(q) * fabs(px - pref))
        if q != req:
            self._log(t, p, s, KIND_UNFILLED, cut, req - q, NAN, 0.0, 0.0)
            self.stats[p, ST_UNFILLED] += 1.0
        return req - q

    cdef inline void _split_to_lots(self, int t, int p, int s, double open_px,
                                    bint valid) noexcept nogil:
        """Holdings stay whole lots: the fraction a split leaves is paid out as cash in lieu.

        At the ex-date's open, as a broker does; on a bar without a valid open, at the
        split-adjusted last close. No fee: it is a settlement, not an order.
        """
        cdef double held = self.shares[p, s], kept = _split_lot(held, self.lot)
        cdef double px, cash_flow
        self.pending[p, s] = _split_lot(self.pending[p, s], self.lot)
        if kept == held:
            return
        px = open_px if (valid and isfinite(open_px)) else self.mark[s]
        cash_flow = (held - kept) * px
        self.cash[p, self._acct(s)] += cash_flow
        self.shares[p, s] = kept
        self._round_trip(t, p, s, held, kept, cash_flow)

    cdef inline void _round_trip(self, int t, int p, int s, double old, double new,
                                 double cash_flow) noexcept nogil:
        """Accumulate cash flows per position; a position back to zero or flipped closes a trade."""
        cdef double frac, pnl
        cdef int a
        if old != 0.0 and (new == 0.0 or (new > 0.0) != (old > 0.0)):
            frac = fabs(old) / fabs(new - old)
            pnl = self.flow[p, s] + cash_flow * frac
            self.stats[p, ST_CLOSED] += 1.0
            a = self._acct(s)
            if pnl > 0.0:
                self.stats[p, ST_WINS] += 1.0
                self.stats[p, ST_GROSS_WIN] += pnl
                self.losses[p, a] = 0.0
            else:
                self.stats[p, ST_GROSS_LOSS] -= pnl
                self.losses[p, a] += 1.0
                # every loss of a streak at least cool_losses long restarts the cooldown
                if self.cool_losses > 0 and self.losses[p, a] >= self.cool_losses:
                    self.cool_until[p, a] = t + self.cool_bars
            self.flow[p, s] = cash_flow * (1.0 - frac)
        else:
            self.flow[p, s] += cash_flow

    cdef bint _admit(self, int t, int p, int s, double q, bint opening) noexcept nogil:
        """The risk gates an order passes before it is placed; a refusal is logged with its reason.

        ``opening`` orders add exposure (a new or larger position); closing orders pass
        the stops and limits that only restrain new risk.
        """
        cdef int a = self._acct(s), reason = R_NONE
        if self.min_bars > 0 and t - self.last_order[p, s] < self.min_bars:
            reason = R_MIN_BARS
        elif self.max_trades > 0 and self.n_orders[a] >= self.max_trades:
            reason = R_MAX_TRADES
        elif opening:
            if self.halted[p, a] != 0.0:
                reason = R_DRAWDOWN
            elif self.daily_loss > 0.0 and self.eref[p, a] < self.prev_eq[p, a] * (1.0 - self.daily_loss):
                reason = R_DAILY_LOSS
            elif t < self.cool_until[p, a]:
                reason = R_COOLDOWN
            elif (self.max_positions > 0 and self.shares[p, s] == 0.0
                  and self.n_open[a] >= self.max_positions):
                reason = R_MAX_POSITIONS
        if reason != R_NONE:
            self._log(t, p, s, KIND_FILTERED, reason, q, NAN, 0.0, 0.0)
            return False
        self.last_order[p, s] = t
        self.n_orders[a] += 1
        if opening and self.shares[p, s] == 0.0:
            self.n_open[a] += 1
        return True

    cdef void _start_decisions(self, int p) noexcept nogil:
        """Per-bar counters of the gates: open positions and orders placed so far."""
        cdef int a, s
        for a in range(self.A):
            self.n_orders[a] = 0
            self.n_open[a] = 0
        if self.max_positions > 0:
            for s in range(self.S):
                if self.shares[p, s] != 0.0:
                    self.n_open[self._acct(s)] += 1

    cdef inline double _size_entry(self, int p, int s, double price, double budget,
                                   double equity) noexcept nogil:
        cdef double pe = price * (1.0 + self.slip + self.hs), q, q2
        if self.size_mode == SIZE_ALL:
            if budget <= 0.0:
                return 0.0
            q = budget / (pe * (1.0 + self.f) + self.cps)
            q2 = (budget - self.minc) / pe
            if q2 < q:
                q = q2
        elif self.size_mode == SIZE_SHARES:
            q = self.size_value[p]
        elif self.size_mode == SIZE_VALUE:
            q = self.size_value[p] / price
        else:
            q = self.size_value[p] * equity / price
        q = _lot(q, self.lot)
        return q if q > 0.0 else 0.0

    cdef inline bint _placed(self, double q, double price) noexcept nogil:
        return q != 0.0 and fabs(q) * price >= self.min_order

    # ------------------------------------------------------------------ the loop
    def run(self, Py_ssize_t t0, Py_ssize_t t1, *arrays):
        """Advance bars ``[t0, t1)``; returns the first bar not run.

        ``arrays`` are those of :meth:`bind`, which holds them: row ``t`` of the price
        arrays is bar ``t``. Intents: ``entries[idx_a[p]]`` and ``exits[idx_b[p]]``
        (signals), ``bank[idx_a[p]]`` (weights), or the cross rule over
        ``bank[idx_a[p]]`` (fast) and ``bank[idx_b[p]]`` (slow). Outputs are written at
        row ``t``. Stops early when the order log might overflow; the caller grows it
        and calls again from the returned bar.
        """
        self.bind(*arrays)
        return self.run_bound(t0, t1)

    def bind(self, const double[:, ::1] open_, const double[:, ::1] close,
             const double[:, ::1] volume, const unsigned char[:, ::1] valid,
             const double[:, ::1] split_ratio, const double[:, ::1] dividend,
             const unsigned char[::1] has_action, const long[::1] delist_bar,
             const unsigned char[::1] has_delist,
             const unsigned char[:, :, ::1] entries, const unsigned char[:, :, ::1] exits,
             const double[:, :, ::1] bank, const long[::1] idx_a, const long[::1] idx_b,
             double[:, ::1] total_equity, double[:, ::1] long_exposure,
             double[:, ::1] short_exposure, bint keep,
             double[:, :, ::1] cash_out, double[:, :, ::1] equity_out,
             double[:, :, ::1] shares_out):
        """Hold the arguments of :meth:`run` (after ``t0, t1``) for :meth:`run_bound`.

        The arrays are held, not copied: writing into a bound intents array before a
        bar is how a per-bar driver hands the core that bar's decisions.
        """
        self.b_open, self.b_close, self.b_volume, self.b_valid = open_, close, volume, valid
        self.b_split, self.b_div, self.b_has_action = split_ratio, dividend, has_action
        self.b_delist, self.b_has_delist = delist_bar, has_delist
        self.b_ent, self.b_ext, self.b_bank, self.b_ia, self.b_ib = entries, exits, bank, idx_a, idx_b
        self.b_eq, self.b_long, self.b_short, self.b_keep = total_equity, long_exposure, short_exposure, keep
        self.b_cash, self.b_aeq, self.b_shares = cash_out, equity_out, shares_out
        self.bound = True

    def run_bound(self, Py_ssize_t t0, Py_ssize_t t1):
        """:meth:`run` on the arrays of :meth:`bind`; returns the first bar not run."""
        if not self.bound:
            raise RuntimeError("run_bound before bind")
        cdef Py_ssize_t t, need = 3 * <Py_ssize_t>self.P * self.S + 1 if self.record_log else 0
        with nogil:
            t = t0
            while t < t1:
                if self.n_log + need > self.log_i.shape[0]:
                    break
                self._bar(t)
                t += 1
        return t

    cdef void _bar(self, Py_ssize_t t) noexcept nogil:
        # the arrays are those of ``bind``
        cdef int p, s, a, S = self.S, P = self.P
        cdef int ti = <int>t
        cdef double r, d, q, eq, v, lg, sh
        cdef const unsigned char* vrow
        cdef const double* crow
        cdef double* mk
        # A. corporate actions: marks once, holdings per parameter set
        if self.b_has_action[t]:
            for s in range(S):
                r = self.b_split[t, s]
                if r != 1.0:
                    self.mark[s] /= r
            for p in range(P):
                for s in range(S):
                    r = self.b_split[t, s]
                    if r != 1.0:
                        self.shares[p, s] *= r
                        self.pending[p, s] *= r
                        if self.lot > 0.0:
                            self._split_to_lots(ti, p, s, self.b_open[t, s], self.b_valid[t, s])
                    d = self.b_div[t, s]
                    if d != 0.0 and self.shares[p, s] != 0.0:
                        a = self._acct(s)
                        self.cash[p, a] += self.shares[p, s] * d
                        self.flow[p, s] += self.shares[p, s] * d
        for p in range(P):
            # B. open fills: sells, then buys
            if not self.fill_close:
                for s in range(S):
                    q = self.pending[p, s]
                    if q < 0.0:
                        self.pending[p, s] = 0.0
                        q = self._fill(ti, p, s, q, self.b_open[t, s], self.b_volume[t, s], self.b_valid[t, s], R_ORDER)
                        if self.carry:
                            self.pending[p, s] = q
                for s in range(S):
                    q = self.pending[p, s]
                    if q > 0.0:
                        self.pending[p, s] = 0.0
                        q = self._fill(ti, p, s, q, self.b_open[t, s], self.b_volume[t, s], self.b_valid[t, s], R_ORDER)
                        if self.carry:
                            self.pending[p, s] = q
            # C. delisting close-out at the last valid close
            if self.b_has_delist[t]:
                for s in range(S):
                    if self.b_delist[s] == t:
                        self.pending[p, s] = 0.0
                        if self.shares[p, s] != 0.0:
                            self._fill(ti, p, s, -self.shares[p, s], self.mark[s], self.b_volume[t, s],
                                       False, R_DELIST)
        # D. marks, then equity before decisions
        vrow = &self.b_valid[t, 0]
        crow = &self.b_close[t, 0]
        mk = &self.mark[0]
        for s in range(S):
            if vrow[s]:
                mk[s] = crow[s]
        for p in range(P):
            if self.eref_read:
                self._mark(p, &lg, &sh)
            # E. decisions (and close fills), after the drawdown stop
            if self.dd_stop > 0.0:
                self._drawdown_stop(ti, p, self.b_close, self.b_volume, self.b_valid)
            self._start_decisions(p)
            if self.intent_mode == WEIGHTS:
                self._decide_weights(t, p, self.b_close, self.b_volume, self.b_valid, self.b_bank, self.b_ia[p])
            elif self.per_symbol:
                # signals never go short, so there is no borrow (F), and step G's mark of
                # each one-symbol account is taken right after its decision
                self._decide_signals_per_symbol(t, p, self.b_close, self.b_volume, self.b_valid, self.b_ent, self.b_ext, self.b_bank,
                                                self.b_ia[p], self.b_ib[p], &eq, &lg, &sh)
            else:
                self._decide_signals(t, p, self.b_close, self.b_volume, self.b_valid, self.b_ent, self.b_ext, self.b_bank,
                                     self.b_ia[p], self.b_ib[p])
            if self.intent_mode == WEIGHTS or not self.per_symbol:
                # F. borrow on shorts
                if self.borrow_per_bar > 0.0:
                    for s in range(S):
                        if self.shares[p, s] < 0.0:
                            self.cash[p, self._acct(s)] -= (-self.shares[p, s]) * self.mark[s] * self.borrow_per_bar
                # G. mark and record
                eq = self._mark(p, &lg, &sh)
            self.b_eq[p, t] = eq
            if self.daily_loss > 0.0:
                for a in range(self.A):
                    self.prev_eq[p, a] = self.eref[p, a]
            self.b_long[p, t] = lg
            self.b_short[p, t] = sh
            if self.b_keep:
                for a in range(self.A):
                    self.b_cash[p, t, a] = self.cash[p, a]
                    self.b_aeq[p, t, a] = self.eref[p, a]
                for s in range(S):
                    self.b_shares[p, t, s] = self.shares[p, s]

    cdef void _drawdown_stop(self, int t, int p, const double[:, ::1] close,
                             const double[:, ::1] volume, const unsigned char[:, ::1] valid) noexcept nogil:
        """Halt an account whose equity fell max_drawdown_stop below its peak, and flatten it.

        ``halted`` holds the bar of the halt plus one (0 = trading). A halted account
        places no other order for the rest of the run.
        """
        cdef int a, s
        cdef double q
        for a in range(self.A):
            if self.halted[p, a] == 0.0:
                if self.eref[p, a] > self.peak[p, a]:
                    self.peak[p, a] = self.eref[p, a]
                elif self.eref[p, a] < self.peak[p, a] * (1.0 - self.dd_stop):
                    self.halted[p, a] = t + 1.0
        for s in range(self.S):
            if self.halted[p, self._acct(s)] != 0.0 and valid[t, s]:
                q = -self.shares[p, s]
                if self.fill_close:
                    if q != 0.0:
                        self._fill(t, p, s, q, close[t, s], volume[t, s], True, R_DRAWDOWN)
                else:
                    self.pending[p, s] = q

    cdef inline double _mark(self, int p, double* long_value, double* short_value) noexcept nogil:
        """Account equity at the current marks, the long and short market values; returns the total."""
        # raw row pointers: the writes to eref would otherwise make the compiler reload
        # every memoryview's data pointer on each iteration
        cdef double* sh = &self.shares[p, 0]
        cdef double* mk = &self.mark[0]
        cdef double* er = &self.eref[p, 0]
        cdef double* ca = &self.cash[p, 0]
        cdef int s
        cdef double v, x, e, total = 0.0, lg = 0.0, sht = 0.0
        if self.per_symbol:
            for s in range(self.S):
                v = sh[s]
                e = ca[s]
                if v != 0.0:
                    x = v * mk[s]
                    e += x
                    if v > 0.0:
                        lg += x
                    else:
                        sht -= x
                er[s] = e
                total += e
        else:
            e = ca[0]
            for s in range(self.S):
                v = sh[s]
                if v != 0.0:
                    x = v * mk[s]
                    e += x
                    if v > 0.0:
                        lg += x
                    else:
                        sht -= x
            er[0] = e
            total = e
        long_value[0] = lg
        short_value[0] = sht
        return total

    cdef inline IntentRows _rows(self, Py_ssize_t t, const unsigned char[:, ::1] valid,
                                 const unsigned char[:, :, ::1] entries,
                                 const unsigned char[:, :, ::1] exits,
                                 const double[:, :, ::1] bank, long ia, long ib) noexcept nogil:
        """Row pointers of bar ``t``'s intents for one parameter set."""
        cdef IntentRows r
        r.valid = &valid[t, 0]
        r.entries = NULL
        r.exits = NULL
        r.fast = NULL
        r.slow = NULL
        r.fast_prev = NULL
        r.slow_prev = NULL
        if self.intent_mode == SIGNALS:
            r.entries = &entries[ia, t, 0]
            r.exits = &exits[ib, t, 0]
        else:
            r.fast = &bank[ia, t, 0]
            r.slow = &bank[ib, t, 0]
            if t > 0:
                r.fast_prev = &bank[ia, t - 1, 0]
                r.slow_prev = &bank[ib, t - 1, 0]
        return r

    cdef inline int _signal(self, int p, double held, int s, const IntentRows* r) noexcept nogil:
        """-1 exiting, +1 entering, 0 neither, from the holding before this bar's decisions."""
        cdef bint ent, ext
        if not r.valid[s] or held < 0.0 or (self.dd_stop > 0.0 and self.halted[p, self._acct(s)] != 0.0):
            return 0
        if self.intent_mode == SIGNALS:
            ent = r.entries[s] != 0
            ext = r.exits[s] != 0
        else:
            if r.fast_prev == NULL:
                return 0
            ent = r.fast[s] > r.slow[s] and r.fast_prev[s] <= r.slow_prev[s]
            ext = r.fast[s] < r.slow[s] and r.fast_prev[s] >= r.slow_prev[s]
        if held > 0.0:
            return -1 if ext else 0
        return 1 if ent else 0

    cdef inline void _exit_order(self, int ti, int p, int s, double price, double vol) noexcept nogil:
        cdef double q = -self.shares[p, s]
        if not self._placed(q, price) or not self._admit(ti, p, s, q, False):
            if not self.fill_close:
                self.pending[p, s] = 0.0
            return
        if self.fill_close:
            if self._placed(q, price):
                self._fill(ti, p, s, q, price, vol, True, R_ORDER)
        else:
            self.pending[p, s] = q if self._placed(q, price) else 0.0

    cdef inline void _entry_order(self, int ti, int p, int s, double price, double vol,
                                  double budget) noexcept nogil:
        cdef int a = self._acct(s)
        cdef double q = self._size_entry(p, s, price, budget, self.eref[p, a])
        if not self._placed(q, price) or not self._admit(ti, p, s, q, True):
            q = 0.0
        if self.fill_close:
            if q != 0.0:
                self._fill(ti, p, s, q, price, vol, True, R_ORDER)
        else:
            self.pending[p, s] = q

    cdef void _decide_signals_per_symbol(
            self, Py_ssize_t t, int p, const double[:, ::1] close, const double[:, ::1] volume,
            const unsigned char[:, ::1] valid, const unsigned char[:, :, ::1] entries,
            const unsigned char[:, :, ::1] exits, const double[:, :, ::1] bank, long ia, long ib,
            double* total, double* long_value, double* short_value) noexcept nogil:
        """Signals with one account per symbol: decide, fill, and mark (step G) in one pass.

        Each account holds one symbol, so the order of symbols changes nothing and the
        sums come out as ``_mark`` makes them.
        """
        cdef int s, sig, ti = <int>t
        cdef double v, e, eq = 0.0, lg = 0.0
        cdef IntentRows r = self._rows(t, valid, entries, exits, bank, ia, ib)
        cdef double* held = &self.shares[p, 0]
        cdef double* ca = &self.cash[p, 0]
        cdef double* er = &self.eref[p, 0]
        cdef double* mk = &self.mark[0]
        for s in range(self.S):
            sig = self._signal(p, held[s], s, &r)
            if sig < 0:
                self._exit_order(ti, p, s, close[t, s], volume[t, s])
            elif sig > 0:
                self._entry_order(ti, p, s, close[t, s], volume[t, s], ca[s])
            v = held[s]
            e = ca[s]
            if v != 0.0:
                e += v * mk[s]
                lg += v * mk[s]
            er[s] = e
            eq += e
        total[0] = eq
        long_value[0] = lg
        short_value[0] = 0.0

    cdef void _decide_signals(self, Py_ssize_t t, int p, const double[:, ::1] close,
                              const double[:, ::1] volume, const unsigned char[:, ::1] valid,
                              const unsigned char[:, :, ::1] entries,
                              const unsigned char[:, :, ::1] exits,
                              const double[:, :, ::1] bank, long ia, long ib) noexcept nogil:
        cdef int s, sig, ti = <int>t
        cdef double budget
        cdef Py_ssize_t k = 0
        cdef IntentRows r = self._rows(t, valid, entries, exits, bank, ia, ib)
        cdef double* held = &self.shares[p, 0]
        # shared cash: classify first, then exits (whose close-fill proceeds fund
        # this bar's entries), then entries sized on the cash left
        for s in range(self.S):
            sig = self._signal(p, held[s], s, &r)
            self.sig[s] = sig
            if sig > 0:
                k += 1
        for s in range(self.S):
            if self.sig[s] < 0:
                self._exit_order(ti, p, s, close[t, s], volume[t, s])
        for s in range(self.S):
            if self.sig[s] > 0:
                if self.size_mode != SIZE_ALL:
                    budget = self.cash[p, 0]
                elif self.fill_close:
                    # each entry fills before the next is sized: split what is left
                    budget = self.cash[p, 0] / k
                    k -= 1
                else:
                    # nothing fills until the open: every entry gets an equal share
                    budget = self.cash[p, 0] / k
                self._entry_order(ti, p, s, close[t, s], volume[t, s], budget)

    cdef void _decide_weights(self, Py_ssize_t t, int p, const double[:, ::1] close,
                              const double[:, ::1] volume, const unsigned char[:, ::1] valid,
                              const double[:, :, ::1] bank, long ia) noexcept nogil:
        cdef int s, side, ti = <int>t
        cdef double w, q, target, held
        # every order is decided from the holdings before this bar's fills; then sells
        # are placed (and with close fills, filled), then buys
        for s in range(self.S):
            self.qbuf[s] = NAN
            self.tbuf[s] = 0.0
            if not valid[t, s] or (self.dd_stop > 0.0 and self.halted[p, self._acct(s)] != 0.0):
                continue
            w = bank[ia, t, s]
            if not isfinite(w):
                continue
            if w < 0.0 and not self.allow_short:
                w = 0.0
            held = self.shares[p, s]
            target = _lot(w * self.eref[p, self._acct(s)] / close[t, s], self.lot)
            q = target - held
            if not self._placed(q, close[t, s]):
                q = 0.0
            self.qbuf[s] = q
            # opening: the order adds exposure
            self.tbuf[s] = 1.0 if (fabs(target) > fabs(held) or target * held < 0.0) else 0.0
            if q == 0.0 and not self.fill_close:
                self.pending[p, s] = 0.0
        for side in range(2):
            for s in range(self.S):
                q = self.qbuf[s]
                if not ((side == 0 and q < 0.0) or (side == 1 and q > 0.0)):
                    continue
                if not self._admit(ti, p, s, q, self.tbuf[s] != 0.0):
                    if not self.fill_close:
                        self.pending[p, s] = 0.0
                    continue
                if self.fill_close:
                    self._fill(ti, p, s, q, close[t, s], volume[t, s], True, R_ORDER)
                else:
                    self.pending[p, s] = q
