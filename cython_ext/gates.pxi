cdef bint _admit(Core self, int t, int p, int s, double q, bint opening) noexcept nogil:
    """The risk gates an order passes before it is placed; a refusal is logged with its reason.

    ``opening`` orders add exposure (a new or larger position); closing orders pass
    the stops and limits that only restrain new risk.
    """
    cdef int a = _acct(self, s), reason = R_NONE
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
        _log(self, t, p, s, KIND_FILTERED, reason, q, NAN, 0.0, 0.0)
        return False
    self.last_order[p, s] = t
    self.n_orders[a] += 1
    if opening and self.shares[p, s] == 0.0:
        self.n_open[a] += 1
    return True


cdef void _start_decisions(Core self, int p) noexcept nogil:
    """Per-bar counters of the gates: open positions and orders placed so far."""
    cdef int a, s
    if self.max_trades == 0 and self.max_positions == 0:
        # no gate reads the counters: clearing them would be a pass over every account
        return
    for a in range(self.A):
        self.n_orders[a] = 0
        self.n_open[a] = 0
    if self.max_positions > 0:
        for s in range(self.S):
            if self.shares[p, s] != 0.0:
                self.n_open[_acct(self, s)] += 1


cdef void _drawdown_stop(Core self, int t, int p, const double[:, ::1] close,
                         const unsigned char[:, ::1] valid) noexcept nogil:
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
        if self.halted[p, _acct(self, s)] != 0.0 and valid[t, s]:
            q = -self.shares[p, s]
            if self.orders_on:
                # a halted account's limit and stop orders are cancelled with the rest
                _cancel(self, p, s)
            if self.fill_close:
                if q != 0.0:
                    _fill(self, t, p, s, q, close[t, s], True, R_DRAWDOWN)
            else:
                self.pending[p, s] = q
