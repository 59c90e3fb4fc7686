cdef inline IntentRows _rows(Core self, Py_ssize_t t, int p, const unsigned char[:, ::1] valid,
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
    r.short_entries = NULL
    r.short_exits = NULL
    if self.shorts:
        r.short_entries = &self.b_sent[p if self.b_sent.shape[0] > 1 else 0, t, 0]
        r.short_exits = &self.b_sext[p if self.b_sext.shape[0] > 1 else 0, t, 0]
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


cdef inline bint _quiet_decides_nothing(Core self) noexcept nogil:
    """Whether a symbol whose signal bytes are all zero on the bar decides nothing: true of
    signals (see ``_signal``), not of the cross rule, which reads prices."""
    return self.intent_mode == SIGNALS


cdef inline bint _quiet(const IntentRows* r, int s) noexcept nogil:
    """No entry, exit, short entry or short exit for symbol ``s`` on the bar."""
    cdef unsigned char any_ = r.entries[s] | r.exits[s]
    if r.short_entries != NULL:
        any_ |= r.short_entries[s] | r.short_exits[s]
    return any_ == 0


cdef inline int _signal(Core self, int p, double held, int s, const IntentRows* r) noexcept nogil:
    """The symbol's signal class (SIG_*), or 0, from the holding before this bar's decisions.

    Entries act on a flat symbol only, exits on a long, short exits on a short; a long
    and a short entry on one bar cancel out.
    """
    cdef bint ent, ext, sent = False
    if not r.valid[s] or (self.dd_stop > 0.0 and self.halted[p, _acct(self, s)] != 0.0):
        return 0
    if held < 0.0:
        return SIG_COVER if (r.short_exits != NULL and r.short_exits[s] != 0) else 0
    if self.intent_mode == SIGNALS:
        ent = r.entries[s] != 0
        ext = r.exits[s] != 0
    else:
        if r.fast_prev == NULL:
            return 0
        ent = r.fast[s] > r.slow[s] and r.fast_prev[s] <= r.slow_prev[s]
        ext = r.fast[s] < r.slow[s] and r.fast_prev[s] >= r.slow_prev[s]
    if held > 0.0:
        return SIG_EXIT if ext else 0
    if r.short_entries != NULL:
        sent = r.short_entries[s] != 0
    if ent and sent:
        return 0
    return SIG_ENTER if ent else (SIG_SHORT if sent else 0)


cdef inline void _exit_order(Core self, int ti, int p, int s, double price) noexcept nogil:
    cdef double q = -self.shares[p, s], level
    cdef int kind = ORD_MARKET
    if self.orders_on:
        _cancel(self, p, s)
        kind = _level_of(self, p, ti, s, False, &level)
    if not _placed(self, q, price) or not _admit(self, ti, p, s, q, False):
        if not self.fill_close:
            self.pending[p, s] = 0.0
        return
    if kind != ORD_MARKET:
        _place_level(self, ti, p, s, q, kind, level)
    elif self.fill_close:
        if _placed(self, q, price):
            _fill(self, ti, p, s, q, price, True, R_ORDER)
    else:
        self.pending[p, s] = q if _placed(self, q, price) else 0.0


cdef inline void _entry_order(Core self, int ti, int p, int s, double price, double budget,
                              double side) noexcept nogil:
    """An entry of ``side`` +1 (long) or -1 (short), sized as a buy of the same value."""
    cdef int a = _acct(self, s), kind = ORD_MARKET
    cdef double q = side * _size_entry(self, p, s, price, budget, self.eref[p, a]), level
    if self.orders_on:
        _cancel(self, p, s)
        kind = _level_of(self, p, ti, s, True, &level)
    if not _placed(self, q, price) or not _admit(self, ti, p, s, q, True):
        q = 0.0
    if kind != ORD_MARKET:
        if q != 0.0:
            _place_level(self, ti, p, s, q, kind, level)
    elif self.fill_close:
        if q != 0.0:
            _fill(self, ti, p, s, q, price, True, R_ORDER)
    else:
        self.pending[p, s] = q


cdef void _decide_signals_per_symbol(
        Core self, Py_ssize_t t, int p, const double[:, ::1] close,
        const unsigned char[:, ::1] valid, const unsigned char[:, :, ::1] entries,
        const unsigned char[:, :, ::1] exits, const double[:, :, ::1] bank, long ia, long ib,
        bint marks_here, double* total, double* long_value, double* short_value) noexcept nogil:
    """Signals with one account per symbol: decide, fill, and mark (step G) in one pass.

    Each account holds one symbol, so the order of symbols changes nothing and the
    sums come out as ``_mark`` makes them. ``marks_here``: step D's mark of each symbol
    is taken here, just before its decision (see ``_bar``).
    """
    cdef int s, sig, ti = <int>t, S = self.S
    cdef double v, x, e, eq = 0.0, lg = 0.0
    cdef IntentRows r = _rows(self, t, p, valid, entries, exits, bank, ia, ib)
    cdef double* held = &self.shares[p, 0]
    cdef double* ca = &self.cash[p, 0]
    cdef double* er = &self.eref[p, 0]
    cdef double* mk = &self.mark[0]
    cdef bint quiet_ok = _quiet_decides_nothing(self)
    cdef const double* crow = &close[t, 0]
    for s in range(S):
        if marks_here and r.valid[s]:
            mk[s] = crow[s]
        # most symbols have no signal on a bar: testing the signal bytes first keeps
        # the branch predictable, where the holding (long or flat) is not
        if not (quiet_ok and _quiet(&r, s)):
            sig = _signal(self, p, held[s], s, &r)
            if sig == SIG_EXIT:
                _exit_order(self, ti, p, s, close[t, s])
            elif sig == SIG_ENTER:
                _entry_order(self, ti, p, s, close[t, s], ca[s], 1.0)
        # step G without a branch on the holding (see ``_mark``)
        v = held[s]
        x = _keep_if(v * mk[s], v != 0.0)
        e = ca[s] + x
        lg += x
        er[s] = e
        eq += e
    total[0] = eq
    long_value[0] = lg
    short_value[0] = 0.0


cdef void _decide_signals(Core self, Py_ssize_t t, int p, const double[:, ::1] close,
                          const unsigned char[:, ::1] valid,
                          const unsigned char[:, :, ::1] entries,
                          const unsigned char[:, :, ::1] exits,
                          const double[:, :, ::1] bank, long ia, long ib) noexcept nogil:
    cdef int s, sig, ti = <int>t
    cdef double budget
    cdef Py_ssize_t k = 0
    cdef IntentRows r = _rows(self, t, p, valid, entries, exits, bank, ia, ib)
    cdef double* held = &self.shares[p, 0]
    cdef bint quiet_ok = _quiet_decides_nothing(self)
    # shared cash: classify first, then exits (whose close-fill proceeds fund
    # this bar's entries), then entries sized on the cash left
    for s in range(self.S):
        sig = 0 if (quiet_ok and _quiet(&r, s)) else _signal(self, p, held[s], s, &r)
        self.sig[s] = sig
        if sig == SIG_ENTER or sig == SIG_SHORT:
            k += 1
    for s in range(self.S):
        if self.sig[s] == SIG_EXIT or self.sig[s] == SIG_COVER:
            _exit_order(self, ti, p, s, close[t, s])
    for s in range(self.S):
        if self.sig[s] == SIG_ENTER or self.sig[s] == SIG_SHORT:
            if self.per_symbol:
                # (short signals) each symbol is its own account: all of its cash
                budget = self.cash[p, s]
            elif self.size_mode != SIZE_ALL:
                budget = self.cash[p, 0]
            elif self.fill_close:
                # each entry fills before the next is sized: split what is left
                budget = self.cash[p, 0] / k
                k -= 1
            else:
                # nothing fills until the open: every entry gets an equal share
                budget = self.cash[p, 0] / k
            _entry_order(self, ti, p, s, close[t, s], budget,
                         1.0 if self.sig[s] == SIG_ENTER else -1.0)


cdef void _decide_weights(Core self, Py_ssize_t t, int p, const double[:, ::1] close,
                          const unsigned char[:, ::1] valid,
                          const double[:, :, ::1] bank, long ia) noexcept nogil:
    cdef int s, side, ti = <int>t
    cdef double w, q, target, held
    # every order is decided from the holdings before this bar's fills; then sells
    # are placed (and with close fills, filled), then buys
    cdef const double* wrow = &bank[ia, t, 0]
    cdef double* qb = &self.qbuf[0]
    cdef double* tb = &self.tbuf[0]
    cdef int n_orders = 0
    for s in range(self.S):
        qb[s] = NAN
        tb[s] = 0.0
        # the weight first: NaN (leave as is) on most bars of a periodic rebalance
        w = wrow[s]
        if not isfinite(w):
            continue
        if not valid[t, s] or (self.dd_stop > 0.0 and self.halted[p, _acct(self, s)] != 0.0):
            continue
        if w < 0.0 and not self.allow_short:
            w = 0.0
        held = self.shares[p, s]
        target = _lot(w * self.eref[p, _acct(self, s)] / close[t, s], self.lot)
        q = target - held
        if not _placed(self, q, close[t, s]):
            q = 0.0
        qb[s] = q
        n_orders += q != 0.0
        # opening: the order adds exposure
        tb[s] = 1.0 if (fabs(target) > fabs(held) or target * held < 0.0) else 0.0
        if q == 0.0 and not self.fill_close:
            self.pending[p, s] = 0.0
    if n_orders == 0:
        return
    for side in range(2):
        for s in range(self.S):
            q = qb[s]
            if not ((side == 0 and q < 0.0) or (side == 1 and q > 0.0)):
                continue
            if not _admit(self, ti, p, s, q, tb[s] != 0.0):
                if not self.fill_close:
                    self.pending[p, s] = 0.0
                continue
            if self.fill_close:
                _fill(self, ti, p, s, q, close[t, s], True, R_ORDER)
            else:
                self.pending[p, s] = q
