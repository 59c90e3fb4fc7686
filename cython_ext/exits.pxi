# Inside the bar (step B2 of docs/simulation.md): per-position exits (stop-loss,
# take-profit, trailing and time stops) and limit and stop orders, filled by the
# intrabar rules on the bar's open, high and low.


cdef inline double _flex(const double[:, :, ::1] a, int p, Py_ssize_t t, int s) noexcept nogil:
    """``a[p, t, s]`` with every axis of length 1 broadcast (a grid passes (param, 1, 1))."""
    return a[p if a.shape[0] > 1 else 0, t if a.shape[1] > 1 else 0, s if a.shape[2] > 1 else 0]


cdef inline void _cancel(Core self, int p, int s) noexcept nogil:
    self.pending[p, s] = 0.0
    self.ord_kind[p, s] = ORD_MARKET


cdef inline void _place_level(Core self, int t, int p, int s, double q, int kind,
                              double level) noexcept nogil:
    """A limit or stop order: live from the next bar for ``order_ttl`` bars."""
    self.pending[p, s] = q
    self.ord_kind[p, s] = kind
    self.ord_px[p, s] = level
    self.ord_until[p, s] = t + self.order_ttl


cdef inline int _level_of(Core self, int p, Py_ssize_t t, int s, bint entry, double* level) noexcept nogil:
    """The kind of order a decision places: market, or limit / stop at ``level``."""
    cdef double lim = _flex(self.b_elim if entry else self.b_xlim, p, t, s)
    cdef double stp = _flex(self.b_estop if entry else self.b_xstop, p, t, s)
    if isfinite(lim):
        level[0] = lim
        return ORD_LIMIT
    if isfinite(stp):
        level[0] = stp
        return ORD_STOP
    return ORD_MARKET


cdef void _track(Core self, int t, int p, int s, double old, double new, double pref) noexcept nogil:
    """The exit state of a position after a fill from ``old`` to ``new`` shares.

    A position opened (or flipped) at reference price ``pref`` takes its stop, target,
    trailing and time settings from the bar its order was decided on (the last
    order placed for the symbol), so no setting is read later than the decision.
    An increase keeps the levels; a position back to zero drops them.
    """
    cdef double d, unit, sl, tp, tr, ts
    cdef bint long_ = new > 0.0
    if new == 0.0:
        self.entry_px[p, s] = NAN
        self.entry_bar[p, s] = INFINITY
        self.sl_lvl[p, s] = NAN
        self.tp_lvl[p, s] = NAN
        self.tr_k[p, s] = NAN
        self.tr_ext[p, s] = NAN
        self.ts_bar[p, s] = INFINITY
        return
    if old != 0.0 and (old > 0.0) == long_:
        return
    d = self.last_order[p, s]
    if not (d >= 0.0 and d <= t):
        d = t
    unit = _flex(self.b_unit, p, <Py_ssize_t>d, s) if self.unit_mode else pref
    sl = _flex(self.b_sl, p, <Py_ssize_t>d, s)
    tp = _flex(self.b_tp, p, <Py_ssize_t>d, s)
    tr = _flex(self.b_tr, p, <Py_ssize_t>d, s)
    ts = _flex(self.b_ts, p, <Py_ssize_t>d, s)
    self.entry_px[p, s] = pref
    self.entry_bar[p, s] = t
    self.sl_lvl[p, s] = NAN
    self.tp_lvl[p, s] = NAN
    self.tr_k[p, s] = NAN
    self.tr_ext[p, s] = NAN
    self.ts_bar[p, s] = INFINITY
    # as a fraction of the entry price, or as a multiple of the strategy's unit (e.g. ATR)
    if sl > 0.0:
        if self.unit_mode:
            self.sl_lvl[p, s] = pref - sl * unit if long_ else pref + sl * unit
        else:
            self.sl_lvl[p, s] = pref * (1.0 - sl) if long_ else pref * (1.0 + sl)
    if tp > 0.0:
        if self.unit_mode:
            self.tp_lvl[p, s] = pref + tp * unit if long_ else pref - tp * unit
        else:
            self.tp_lvl[p, s] = pref * (1.0 + tp) if long_ else pref * (1.0 - tp)
    if tr > 0.0:
        self.tr_k[p, s] = tr * unit if self.unit_mode else tr
        # trailing closes (backtrader's StopTrail) starts from the fill bar's close; the
        # level is live from the next bar, so that close is known before it is used
        self.tr_ext[p, s] = self.b_close[t, s] if self.trail_close else pref
    if ts >= 1.0:
        self.ts_bar[p, s] = t + trunc(ts)


cdef inline void _split_levels(Core self, int p, int s, double r) noexcept nogil:
    """A split rescales every price level of the symbol (and a trailing distance in price units)."""
    self.entry_px[p, s] /= r
    self.sl_lvl[p, s] /= r
    self.tp_lvl[p, s] /= r
    self.tr_ext[p, s] /= r
    if self.unit_mode:
        self.tr_k[p, s] /= r
    self.ord_px[p, s] /= r


cdef inline int _stop_hit(Core self, Py_ssize_t t, int p, int s, double held,
                          double* px) noexcept nogil:
    """Which exit of a position bar ``t`` triggers, and its reference price.

    The open comes first: a stop (or target) the open gaps through fills at the open,
    then a time stop that is due fills there. Inside the range a level fills at the
    level; when the stop and the target both lie inside, ``stop_first`` decides.
    """
    cdef double o = self.b_open[t, s], hi = self.b_high[t, s], lo = self.b_low[t, s]
    cdef double stop = self.sl_lvl[p, s], tl, tgt = self.tp_lvl[p, s], k = self.tr_k[p, s]
    cdef double ext = self.tr_ext[p, s]
    cdef bint long_ = held > 0.0, has_t = isfinite(tgt), s_open, t_open, s_in, t_in
    cdef int why = R_STOP_LOSS if isfinite(stop) else R_NONE
    if isfinite(k):
        if long_:
            tl = ext - k if self.unit_mode else ext * (1.0 - k)
        else:
            tl = ext + k if self.unit_mode else ext * (1.0 + k)
        # the tighter of the two stops is the one the price meets first
        if why == R_NONE or (long_ and tl > stop) or (not long_ and tl < stop):
            stop = tl
            why = R_TRAILING
    if long_:
        s_open = why != R_NONE and o <= stop
        t_open = has_t and o >= tgt
        s_in = why != R_NONE and lo <= stop
        t_in = has_t and hi >= tgt
    else:
        s_open = why != R_NONE and o >= stop
        t_open = has_t and o <= tgt
        s_in = why != R_NONE and hi >= stop
        t_in = has_t and lo <= tgt
    if s_open:
        px[0] = o
        return why
    if t_open:
        px[0] = o
        return R_TAKE_PROFIT
    if t >= self.ts_bar[p, s]:
        px[0] = o
        return R_TIME_STOP
    if s_in and (self.stop_first or not t_in):
        px[0] = stop
        return why
    if t_in:
        px[0] = tgt
        return R_TAKE_PROFIT
    return R_NONE


cdef inline double _level_price(double q, int kind, double level, double o, double hi,
                                double lo) noexcept nogil:
    """Where a limit or stop order fills inside the bar; NaN when the bar does not reach it."""
    # a buy limit and a sell stop fill at the level or below it, the others at or above
    if (q > 0.0) == (kind == ORD_LIMIT):
        if o <= level:
            return o
        if lo <= level:
            return level
    else:
        if o >= level:
            return o
        if hi >= level:
            return level
    return NAN


cdef void _intrabar(Core self, int t, int p) noexcept nogil:
    """Step B2: exits of positions held since before this bar, then limit and stop orders."""
    cdef int s, side, why
    cdef double h, px, rem, q, ext
    # raw rows: the loop visits every symbol and most hold nothing
    cdef const unsigned char* vrow = &self.b_valid[t, 0]
    cdef double* held = &self.shares[p, 0]
    cdef double* since = &self.entry_bar[p, 0]
    for s in range(self.S):
        h = held[s]
        # a level set at bar t is live from bar t + 1
        if h == 0.0 or not vrow[s] or since[s] >= t:
            continue
        why = _stop_hit(self, t, p, s, h, &px)
        if why != R_NONE:
            _cancel(self, p, s)
            rem = _fill(self, t, p, s, -h, px, True, why)
            if self.carry and not self.fill_close:
                self.pending[p, s] = rem
        if self.shares[p, s] != 0.0 and isfinite(self.tr_k[p, s]):
            # the trailing extreme takes this bar's range (or close) after the check, as
            # known at its close
            if self.shares[p, s] > 0.0:
                ext = self.b_close[t, s] if self.trail_close else self.b_high[t, s]
                if ext > self.tr_ext[p, s]:
                    self.tr_ext[p, s] = ext
            else:
                ext = self.b_close[t, s] if self.trail_close else self.b_low[t, s]
                if ext < self.tr_ext[p, s]:
                    self.tr_ext[p, s] = ext
    if not self.levels_on:
        return
    for side in range(2):
        for s in range(self.S):
            q = self.pending[p, s]
            if self.ord_kind[p, s] == ORD_MARKET or not ((side == 0 and q < 0.0) or (side == 1 and q > 0.0)):
                continue
            if self.b_valid[t, s]:
                px = _level_price(q, <int>self.ord_kind[p, s], self.ord_px[p, s], self.b_open[t, s],
                                  self.b_high[t, s], self.b_low[t, s])
                if isfinite(px):
                    q = _fill(self, t, p, s, q, px, True,
                              R_LIMIT if self.ord_kind[p, s] == ORD_LIMIT else R_STOP)
                    self.pending[p, s] = q if self.carry else 0.0
            q = self.pending[p, s]
            if q != 0.0 and t >= self.ord_until[p, s]:
                _log(self, t, p, s, KIND_UNFILLED, R_EXPIRED, q, NAN, 0.0, 0.0)
                self.stats[p, ST_UNFILLED] += 1.0
                q = 0.0
            if q == 0.0:
                _cancel(self, p, s)
