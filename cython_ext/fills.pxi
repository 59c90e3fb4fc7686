cdef inline void _log(Core self, int t, int p, int s, int kind, int reason, double shares,
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


cdef inline int _acct(Core self, int s) noexcept nogil:
    return s if self.per_symbol else 0


cdef double _fill(Core self, int t, int p, int s, double q, double pref,
                  bint valid, int why) noexcept nogil:
    """Fill ``q`` shares (signed) at reference price ``pref`` on bar ``t``; return the remainder.

    ``why`` is the fill's reason; a delisting close-out (R_DELIST) bypasses
    validity, the volume cap, shorting, cash and impact.
    """
    cdef int a = _acct(self, s)
    cdef bint delist = why == R_DELIST
    cdef double req = q, held = self.shares[p, s], cap, px, impact, fee, cost, budget
    cdef double qmax, gross_other, room, new_short, vol = 0.0
    cdef int cut = R_NONE, s2
    # the bar's volume only where a rule reads it: a cell of a (time, symbol) array
    # read once is a cache miss per fill
    if isfinite(self.max_part) or self.impact_k > 0.0:
        vol = self.b_volume[t, s]
    if not delist:
        if not valid:
            _log(self, t, p, s, KIND_UNFILLED, R_INVALID, req, NAN, 0.0, 0.0)
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
            if s2 != s and _acct(self, s2) == a and self.shares[p, s2] != 0.0:
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
        _log(self, t, p, s, KIND_UNFILLED, cut, req, NAN, 0.0, 0.0)
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
    _touch(self, p, s)
    self.cash[p, a] += cash_flow
    self.shares[p, s] = held + q
    if self.orders_on:
        _track(self, t, p, s, held, held + q, pref)
    _round_trip(self, t, p, s, held, held + q, cash_flow)
    self.stats[p, ST_NOTIONAL] += fabs(q) * px
    self.stats[p, ST_FILLS] += 1.0
    self.stats[p, ST_FEES] += fee
    self.stats[p, ST_SLIPPAGE] += fabs(q) * fabs(px - pref)
    _log(self, t, p, s, KIND_FILL, why, q, px, fee,
              fabs(q) * fabs(px - pref))
    if q != req:
        _log(self, t, p, s, KIND_UNFILLED, cut, req - q, NAN, 0.0, 0.0)
        self.stats[p, ST_UNFILLED] += 1.0
    return req - q


cdef inline void _split_to_lots(Core self, int t, int p, int s, double open_px,
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
    _touch(self, p, s)
    self.cash[p, _acct(self, s)] += cash_flow
    self.shares[p, s] = kept
    if self.orders_on:
        _track(self, t, p, s, held, kept, px)
    _round_trip(self, t, p, s, held, kept, cash_flow)


cdef inline void _round_trip(Core self, int t, int p, int s, double old, double new,
                             double cash_flow) noexcept nogil:
    """Accumulate cash flows per position; a position back to zero or flipped closes a trade."""
    cdef double frac, pnl
    cdef int a
    if old != 0.0 and (new == 0.0 or (new > 0.0) != (old > 0.0)):
        frac = fabs(old) / fabs(new - old)
        pnl = self.flow[p, s] + cash_flow * frac
        self.stats[p, ST_CLOSED] += 1.0
        a = _acct(self, s)
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


cdef inline double _size_entry(Core self, int p, int s, double price, double budget,
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


cdef inline bint _placed(Core self, double q, double price) noexcept nogil:
    return q != 0.0 and fabs(q) * price >= self.min_order
