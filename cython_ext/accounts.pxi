cdef void _bar(Core self, Py_ssize_t t) noexcept nogil:
    # the arrays are those of ``bind``
    cdef int p, s, a, S = self.S, P = self.P
    cdef int ti = <int>t
    cdef double r, d, q, eq, v, lg, sh
    # A. corporate actions: marks once, holdings per parameter set
    if self.b_has_action[t]:
        _split_marks(&self.mark[0], &self.b_split[t, 0], S)
        for p in range(P):
            for s in range(S):
                r = self.b_split[t, s]
                if r != 1.0:
                    _touch(self, p, s)
                    self.shares[p, s] *= r
                    self.pending[p, s] *= r
                    if self.orders_on:
                        _split_levels(self, p, s, r)
                    if self.lot > 0.0:
                        _split_to_lots(self, ti, p, s, self.b_open[t, s], self.b_valid[t, s])
                d = self.b_div[t, s]
                if d != 0.0 and self.shares[p, s] != 0.0:
                    a = _acct(self, s)
                    _touch(self, p, s)
                    self.cash[p, a] += self.shares[p, s] * d
                    self.flow[p, s] += self.shares[p, s] * d
    for p in range(P):
        # B. open fills of market orders: sells, then buys (limit and stop orders wait for B2)
        if not self.fill_close:
            for s in range(S):
                q = self.pending[p, s]
                if q < 0.0 and self.ord_kind[p, s] == ORD_MARKET:
                    self.pending[p, s] = 0.0
                    q = _fill(self, ti, p, s, q, self.b_open[t, s], self.b_valid[t, s], R_ORDER)
                    if self.carry:
                        self.pending[p, s] = q
            for s in range(S):
                q = self.pending[p, s]
                if q > 0.0 and self.ord_kind[p, s] == ORD_MARKET:
                    self.pending[p, s] = 0.0
                    q = _fill(self, ti, p, s, q, self.b_open[t, s], self.b_valid[t, s], R_ORDER)
                    if self.carry:
                        self.pending[p, s] = q
        # B2. inside the bar: per-position exits, then limit and stop orders
        if self.orders_on:
            _intrabar(self, ti, p)
        # C. delisting close-out at the last valid close
        if self.b_has_delist[t]:
            for s in range(S):
                if self.b_delist[s] == t:
                    self.pending[p, s] = 0.0
                    self.ord_kind[p, s] = ORD_MARKET
                    if self.shares[p, s] != 0.0:
                        _fill(self, ti, p, s, -self.shares[p, s], self.mark[s], False, R_DELIST)
    # D. marks, then equity before decisions; with one parameter set of one-symbol
    # accounts and nothing that reads the equity before decisions, each symbol's mark is
    # taken in the decision pass (no other symbol reads it): one pass over the bar, not two
    cdef bint marks_in_decisions = (P == 1 and self.per_symbol and not self.shorts
                                    and self.intent_mode != WEIGHTS and not self.eref_read
                                    and self.dd_stop == 0.0)
    if not marks_in_decisions:
        _close_marks(&self.mark[0], &self.b_valid[t, 0], &self.b_close[t, 0], S)
    for p in range(P):
        if self.eref_read:
            _mark(self, p, &lg, &sh)
        # E. decisions (and close fills), after the drawdown stop
        if self.dd_stop > 0.0:
            _drawdown_stop(self, ti, p, self.b_close, self.b_valid)
        _start_decisions(self, p)
        if self.intent_mode == WEIGHTS:
            _decide_weights(self, t, p, self.b_close, self.b_valid, self.b_bank, self.b_ia[p])
        elif self.per_symbol and not self.shorts:
            # long-only signals never go short, so there is no borrow (F), and step G's
            # mark of each one-symbol account is taken right after its decision
            _decide_signals_per_symbol(self, t, p, self.b_close, self.b_valid, self.b_ent, self.b_ext, self.b_bank,
                                            self.b_ia[p], self.b_ib[p], marks_in_decisions, &eq, &lg, &sh)
        else:
            _decide_signals(self, t, p, self.b_close, self.b_valid, self.b_ent, self.b_ext, self.b_bank,
                                 self.b_ia[p], self.b_ib[p])
        if self.intent_mode == WEIGHTS or not self.per_symbol or self.shorts:
            # F. borrow on shorts
            if self.borrow_per_bar > 0.0:
                for s in range(S):
                    if self.shares[p, s] < 0.0:
                        _touch(self, p, s)
                        self.cash[p, _acct(self, s)] -= (-self.shares[p, s]) * self.mark[s] * self.borrow_per_bar
            # G. mark and record
            eq = _mark(self, p, &lg, &sh)
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
        elif self.journal_on:
            _journal_bar(self, ti, p)


cdef inline void _split_marks(double* mk, const double* split_row, int S) noexcept nogil:
    """Step A's marks: a split divides the last price (the bar's own comes at step D)."""
    cdef int s
    cdef double r
    for s in range(S):
        r = split_row[s]
        if r != 1.0:
            mk[s] /= r


cdef inline void _close_marks(double* mk, const unsigned char* valid_row, const double* close_row,
                              int S) noexcept nogil:
    """Step D's marks: the close of every symbol valid on the bar."""
    cdef int s
    for s in range(S):
        if valid_row[s]:
            mk[s] = close_row[s]


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* x where keep is true, +0.0 elsewhere (x may be NaN there), by a bit mask: written
       as a select, gcc makes a branch of it, which no predictor follows across symbols */
    static inline double pg_keep_if(double x, int keep) {
        uint64_t bits, mask = (uint64_t)0 - (uint64_t)(keep != 0);
        memcpy(&bits, &x, sizeof bits);
        bits &= mask;
        memcpy(&x, &bits, sizeof x);
        return x;
    }
    """
    double _keep_if "pg_keep_if" (double x, bint keep) noexcept nogil


cdef inline double _mark(Core self, int p, double* long_value, double* short_value) noexcept nogil:
    """Account equity at the current marks, the long and short market values; returns the total."""
    return _account_values(self.per_symbol, self.S, &self.shares[p, 0], &self.mark[0],
                           &self.cash[p, 0], &self.eref[p, 0], long_value, short_value)


cdef inline double _account_values(bint per_symbol, int S, const double* sh, const double* mk,
                                   const double* ca, double* er, double* long_value,
                                   double* short_value) noexcept nogil:
    """Each account's equity into ``er`` from its cash ``ca`` and the holdings ``sh`` at the
    marks ``mk``; the long and short market values; returns the total."""
    # raw pointers: through memoryviews, the writes to ``er`` would make the compiler
    # reload every view's data pointer on each iteration
    cdef int s
    cdef double v, x, e, total = 0.0, lg = 0.0, sht = 0.0
    # no branch on the holding, which no predictor follows across symbols: a flat
    # symbol adds +0.0, which leaves every sum as it was (none is ever -0.0: cash
    # starts above 0, and x + (-x) is +0.0)
    if per_symbol:
        for s in range(S):
            v = sh[s]
            x = _keep_if(v * mk[s], v != 0.0)
            e = ca[s] + x
            lg += _keep_if(x, v > 0.0)
            sht -= _keep_if(x, v < 0.0)
            er[s] = e
            total += e
    else:
        e = ca[0]
        for s in range(S):
            v = sh[s]
            x = _keep_if(v * mk[s], v != 0.0)
            e += x
            lg += _keep_if(x, v > 0.0)
            sht -= _keep_if(x, v < 0.0)
        er[0] = e
        total = e
    long_value[0] = lg
    short_value[0] = sht
    return total
