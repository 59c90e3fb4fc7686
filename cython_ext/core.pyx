# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled step core: execution, costs, partial fills, per-position exits and accounting.

One implementation for both drivers. ``Core.run(t0, t1, ...)`` advances the whole
universe and every parameter set over bars ``[t0, t1)``; the batch engine calls it
once for all bars, the step driver once per bar. docs/simulation.md is the
contract, bar step by bar step (the letters A to G below are its sections).

Everything inside ``run`` is nogil over typed memoryviews: no Python objects. The
nogil parts live by concern in the included files: fills and costs (fills.pxi), risk
gates (gates.pxi), the bar loop and accounts (accounts.pxi), decisions
(decisions.pxi), intrabar exits and limit/stop orders (exits.pxi), and the journal
of changed holdings and cash with its replays (journal.pxi).
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
DEF R_STOP_LOSS = 13
DEF R_TAKE_PROFIT = 14
DEF R_TRAILING = 15
DEF R_TIME_STOP = 16
DEF R_LIMIT = 17
DEF R_STOP = 18
DEF R_EXPIRED = 19
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

# signal classes of a symbol on a bar (decisions.pxi)
DEF SIG_EXIT = -1     # sell a long position
DEF SIG_ENTER = 1     # buy into a new long position
DEF SIG_SHORT = -2    # sell into a new short position
DEF SIG_COVER = 2     # buy back a short position

# kinds of a pending order (exits.pxi): at the open, or at a price level inside a bar
DEF ORD_MARKET = 0
DEF ORD_LIMIT = 1
DEF ORD_STOP = 2

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
    const unsigned char* short_entries
    const unsigned char* short_exits
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
    # per position (exits.pxi): entry price and bar, stop and target levels, the
    # trailing distance and the extreme it trails, the bar of the time stop; per
    # pending order: its kind, level and last live bar
    cdef double[:, ::1] entry_px, entry_bar, sl_lvl, tp_lvl, tr_k, tr_ext, ts_bar
    cdef double[:, ::1] ord_kind, ord_px, ord_until
    # orders beyond the market: stops, targets, limit/stop orders, short signals
    cdef public bint orders_on, levels_on, shorts, stop_first, unit_mode, trail_close
    # the order inputs the core was made for (pitgrid.engine.orders), bound by run_core
    cdef public object order_inputs
    cdef public int order_ttl
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
    # the journal of changed holdings and cash (journal.pxi), when a run keeps them
    cdef public bint journal_on
    cdef int[:, ::1] jr_i
    cdef double[::1] jr_f
    cdef double[:, ::1] jr_sh, jr_ca
    cdef unsigned char[:, ::1] jr_touched
    cdef int[:, ::1] jr_list
    cdef long[::1] jr_n
    cdef public Py_ssize_t n_jr
    cdef public object jr_i_arr, jr_f_arr, jr_start
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
    cdef bint b_keep, bound, bound_orders
    # arrays of ``bind_orders``: bar ranges, short signals, stop settings and order
    # levels, each (param or 1, time or 1, symbol or 1), read with broadcasting
    cdef const double[:, ::1] b_high, b_low
    cdef const unsigned char[:, :, ::1] b_sent, b_sext
    cdef const double[:, :, ::1] b_sl, b_tp, b_tr, b_ts, b_unit
    cdef const double[:, :, ::1] b_elim, b_estop, b_xlim, b_xstop

    def __init__(self, int P, int S, *, bint per_symbol, bint fill_close, int intent_mode,
                 int size_mode, size_value, double init_cash, double fees_bps=0.0,
                 double slippage_bps=0.0, double spread_bps=0.0, double impact_k=0.0,
                 double commission_per_share=0.0, double min_commission=0.0,
                 double max_participation=INFINITY, bint carry=False, double lot_size=0.0,
                 double min_order_value=0.0, bint allow_short=False, double max_leverage=1.0,
                 double borrow_bps=0.0, double bars_per_year=252.0, int min_bars_between=0,
                 int max_positions=0, int max_trades_per_bar=0, double daily_loss_stop=0.0,
                 double max_drawdown_stop=0.0, int cooldown_losses=0, int cooldown_bars=0,
                 bint orders=False, bint levels=False, bint shorts=False, bint stop_first=True,
                 bint stop_unit=False, int order_ttl=1, bint trail_close=False,
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
        self.orders_on = orders
        # limit and stop orders exist only where a level was given (B2's second pass)
        self.levels_on = levels
        self.shorts = shorts
        self.stop_first = stop_first
        self.unit_mode = stop_unit
        self.trail_close = trail_close
        self.order_ttl = order_ttl
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
        """Install the state arrays (copied), e.g. from a checkpoint; see ``get_state``.

        The per-position exit state may be missing (a checkpoint from before it
        existed): it then starts as "no position levels, no level orders".
        """
        st = {k: np.array(v, dtype=np.float64, order="C") for k, v in state.items()}
        shape = st["shares"].shape
        for k, v in (("entry_px", NAN), ("entry_bar", INFINITY), ("sl_lvl", NAN), ("tp_lvl", NAN),
                     ("tr_k", NAN), ("tr_ext", NAN), ("ts_bar", INFINITY), ("ord_kind", 0.0),
                     ("ord_px", NAN), ("ord_until", -INFINITY)):
            if k not in st:
                st[k] = np.full(shape, v)
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
        self.entry_px = st["entry_px"]
        self.entry_bar = st["entry_bar"]
        self.sl_lvl = st["sl_lvl"]
        self.tp_lvl = st["tp_lvl"]
        self.tr_k = st["tr_k"]
        self.tr_ext = st["tr_ext"]
        self.ts_bar = st["ts_bar"]
        self.ord_kind = st["ord_kind"]
        self.ord_px = st["ord_px"]
        self.ord_until = st["ord_until"]

    def get_state(self):
        """Copies of every state array by name: all a run needs to continue."""
        return {k: v.copy() for k, v in self.state.items()}

    @property
    def stats_arr(self):
        return self.state["stats"]

    def _alloc_log(self, Py_ssize_t capacity):
        # empty, not zeros: only rows below n_log, each written first, are ever read, and
        # zeroing a large log costs milliseconds when the allocator reuses memory
        self.log_i_arr = np.empty((capacity, LOG_INT_COLS), dtype=np.int32)
        self.log_f_arr = np.empty((capacity, LOG_FLOAT_COLS), dtype=np.float64)
        self.log_i = self.log_i_arr
        self.log_f = self.log_f_arr
        self.n_log = 0

    def take_log(self):
        """Return and clear the filled part of the order log.

        A log at least half full (a batch run's, sized from its signals) is handed over
        as it is, no copy (which would cost a batch run about what writing the log did),
        and the core goes on in an empty one that ``ensure_log_room`` grows when a run
        needs it. A log mostly empty (a step's rows) is copied, so the rows kept never
        hold on to a large buffer."""
        cdef Py_ssize_t n = self.n_log, cap = self.log_i_arr.shape[0]
        if 2 * n >= cap and n > 0:
            li, lf = self.log_i_arr[:n], self.log_f_arr[:n]
            self._alloc_log(0)
            return li, lf
        li = self.log_i_arr[:n].copy()
        lf = self.log_f_arr[:n].copy()
        self.n_log = 0
        return li, lf

    def ensure_log_room(self, Py_ssize_t need):
        """Grow the log so that ``need`` more rows fit."""
        cdef Py_ssize_t cap = self.log_i_arr.shape[0]
        if self.n_log + need <= cap:
            return
        new_cap = max(2 * cap, self.n_log + need)
        li = np.empty((new_cap, LOG_INT_COLS), dtype=np.int32)
        lf = np.empty((new_cap, LOG_FLOAT_COLS), dtype=np.float64)
        li[: self.n_log] = self.log_i_arr[: self.n_log]
        lf[: self.n_log] = self.log_f_arr[: self.n_log]
        self.log_i_arr, self.log_f_arr = li, lf
        self.log_i = li
        self.log_f = lf

    def start_journal(self, Py_ssize_t capacity=4096):
        """Journal the holdings and cash each later bar changes (see ``take_journal``),
        from the state as it stands; the dense outputs of ``bind`` are then not written."""
        self.jr_start = {"shares": self.state["shares"].copy(), "cash": self.state["cash"].copy(),
                         "mark": self.state["mark"].copy()}
        self.jr_sh = self.jr_start["shares"].copy()
        self.jr_ca = self.jr_start["cash"].copy()
        self.jr_touched = np.zeros((self.P, self.S), dtype=np.uint8)
        self.jr_list = np.zeros((self.P, self.S), dtype=np.int32)
        self.jr_n = np.zeros(self.P, dtype=np.int64)
        # as the log: rows below n_jr only, each written before it is read
        self.jr_i_arr = np.empty((capacity, JOURNAL_INT_COLS), dtype=np.int32)
        self.jr_f_arr = np.empty(capacity, dtype=np.float64)
        self.jr_i = self.jr_i_arr
        self.jr_f = self.jr_f_arr
        self.n_jr = 0
        self.journal_on = True

    @property
    def journal_rows_per_bar(self):
        """The most journal rows one bar can write: the room ``run_bound`` keeps free."""
        return self.P * (self.S + self.A) if self.journal_on else 0

    def ensure_journal_room(self):
        """Grow the journal (doubling) so that one more bar fits."""
        cdef Py_ssize_t cap, need = self.journal_rows_per_bar
        if not self.journal_on:
            return
        cap = self.jr_i_arr.shape[0]
        if self.n_jr + need <= cap:
            return
        new_cap = max(2 * cap, self.n_jr + need)
        ji = np.empty((new_cap, JOURNAL_INT_COLS), dtype=np.int32)
        jf = np.empty(new_cap, dtype=np.float64)
        ji[: self.n_jr] = self.jr_i_arr[: self.n_jr]
        jf[: self.n_jr] = self.jr_f_arr[: self.n_jr]
        self.jr_i_arr, self.jr_f_arr = ji, jf
        self.jr_i = ji
        self.jr_f = jf

    def take_journal(self):
        """The journal so far: ``(rows, values, start)``, rows ``(t, param, x, kind)`` with
        kind 0 for holdings (x a symbol) and 1 for cash (x an account), ``start`` the
        holdings, cash and marks it started from."""
        # views, not copies: the journal only grows (later rows go after these, or into a
        # larger buffer), so what is handed out never changes
        return self.jr_i_arr[: self.n_jr], self.jr_f_arr[: self.n_jr], self.jr_start

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

    def bind_orders(self, const double[:, ::1] high, const double[:, ::1] low,
                    const unsigned char[:, :, ::1] short_entries,
                    const unsigned char[:, :, ::1] short_exits,
                    const double[:, :, ::1] sl_stop, const double[:, :, ::1] tp_stop,
                    const double[:, :, ::1] sl_trail, const double[:, :, ::1] time_stop,
                    const double[:, :, ::1] stop_unit,
                    const double[:, :, ::1] entry_limit, const double[:, :, ::1] entry_stop,
                    const double[:, :, ::1] exit_limit, const double[:, :, ::1] exit_stop):
        """Hold the arrays of orders beyond the market (with ``orders=True`` or ``shorts=True``).

        ``high``/``low`` are ``(time, symbol)``; every other array is ``(param or 1, time
        or 1, symbol or 1)`` and is read with broadcasting, so a grid over stop levels
        passes ``(param, 1, 1)``. NaN (or 0 for the stops) means "none" at that cell.
        The caller checks the shapes (``pitgrid.engine.simulate`` does).
        """
        self.b_high, self.b_low = high, low
        self.b_sent, self.b_sext = short_entries, short_exits
        self.b_sl, self.b_tp, self.b_tr, self.b_ts, self.b_unit = sl_stop, tp_stop, sl_trail, time_stop, stop_unit
        self.b_elim, self.b_estop, self.b_xlim, self.b_xstop = entry_limit, entry_stop, exit_limit, exit_stop
        self.bound_orders = True

    @property
    def log_rows_per_bar(self):
        """The most log rows one bar can write: the room ``run_bound`` keeps free."""
        per_symbol = 6 if (self.orders_on or self.shorts) else 3
        return per_symbol * self.P * self.S + 1 if self.record_log else 0

    def run_bound(self, Py_ssize_t t0, Py_ssize_t t1):
        """:meth:`run` on the arrays of :meth:`bind`; returns the first bar not run."""
        if not self.bound:
            raise RuntimeError("run_bound before bind")
        if (self.orders_on or self.shorts) and not self.bound_orders:
            raise RuntimeError("run_bound before bind_orders, which orders beyond the market need")
        cdef Py_ssize_t t, need = self.log_rows_per_bar, jneed = self.journal_rows_per_bar
        with nogil:
            t = t0
            while t < t1:
                if self.n_log + need > self.log_i.shape[0]:
                    break
                if self.journal_on and self.n_jr + jneed > self.jr_i.shape[0]:
                    break
                _bar(self, t)
                t += 1
        return t

include "fills.pxi"
include "gates.pxi"
include "accounts.pxi"
include "decisions.pxi"
include "exits.pxi"
include "journal.pxi"
