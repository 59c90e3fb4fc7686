# The journal of a run that keeps its positions and accounts (keep="full" in the batch
# engine): at the end of each bar, the holdings and cash that changed, bit for bit, as
# rows (t, param, symbol or account, kind) and values. Writing the dense (param, time,
# symbol) arrays instead is three stores per cell into fresh memory, most of a W1 run;
# the replays below build those arrays when they are first read, equal bit for bit.

DEF J_SHARES = 0
DEF J_CASH = 1
JOURNAL_INT_COLS = 4  # t, param, symbol or account, kind


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* a and b are the same double bit for bit (-0.0 is not 0.0; NaN is itself) */
    static inline int pg_same_bits(double a, double b) {
        uint64_t x, y;
        memcpy(&x, &a, sizeof x);
        memcpy(&y, &b, sizeof y);
        return x == y;
    }
    """
    bint _same_bits "pg_same_bits" (double a, double b) noexcept nogil


cdef inline void _journal_row(Core self, int t, int p, int x, int kind, double value) noexcept nogil:
    cdef Py_ssize_t i = self.n_jr
    self.jr_i[i, 0] = t
    self.jr_i[i, 1] = p
    self.jr_i[i, 2] = x
    self.jr_i[i, 3] = kind
    self.jr_f[i] = value
    self.n_jr = i + 1


cdef inline void _touch(Core self, int p, int s) noexcept nogil:
    """Symbol ``s`` of parameter set ``p`` may have changed its holding or its account's
    cash this bar: every write to ``shares`` or ``cash`` calls this, so the end of the
    bar looks at the symbols touched, not at every symbol."""
    if self.journal_on and not self.jr_touched[p, s]:
        self.jr_touched[p, s] = 1
        self.jr_list[p, self.jr_n[p]] = s
        self.jr_n[p] += 1


cdef void _journal_bar(Core self, int t, int p) noexcept nogil:
    """Journal what bar ``t`` changed in parameter set ``p``'s holdings and cash."""
    cdef Py_ssize_t k
    cdef int s, a
    for k in range(self.jr_n[p]):
        s = self.jr_list[p, k]
        self.jr_touched[p, s] = 0
        if not _same_bits(self.shares[p, s], self.jr_sh[p, s]):
            _journal_row(self, t, p, s, J_SHARES, self.shares[p, s])
            self.jr_sh[p, s] = self.shares[p, s]
        if self.per_symbol:
            _journal_cash(self, t, p, s)
    self.jr_n[p] = 0
    if not self.per_symbol:
        for a in range(self.A):
            _journal_cash(self, t, p, a)


cdef inline void _journal_cash(Core self, int t, int p, int a) noexcept nogil:
    if not _same_bits(self.cash[p, a], self.jr_ca[p, a]):
        _journal_row(self, t, p, a, J_CASH, self.cash[p, a])
        self.jr_ca[p, a] = self.cash[p, a]


def replay_journal(const int[:, ::1] rows, const double[::1] values, int kind,
                   const double[:, ::1] start, Py_ssize_t t0, Py_ssize_t t1, double unwritten,
                   double[:, :, ::1] out):
    """The dense ``(param, time, x)`` array of one kind of a journal (0 holdings, 1 cash).

    ``start`` is the ``(param, x)`` state before bar ``t0``; bars ``t0 .. t1 - 1`` were run,
    the others hold ``unwritten``, as the dense outputs of a run leave them.
    """
    cdef Py_ssize_t P = out.shape[0], T = out.shape[1], X = out.shape[2], n = rows.shape[0]
    cdef Py_ssize_t i = 0, t, p, x
    cur = np.array(start, dtype=np.float64, order="C")
    cdef double[:, ::1] c = cur
    if start.shape[0] != P or start.shape[1] != X:
        raise ValueError(f"start has shape ({start.shape[0]}, {start.shape[1]}), expected ({P}, {X})")
    with nogil:
        for t in range(T):
            if t < t0 or t >= t1:
                for p in range(P):
                    for x in range(X):
                        out[p, t, x] = unwritten
                continue
            while i < n and rows[i, 0] == t:
                if rows[i, 3] == kind:
                    c[rows[i, 1], rows[i, 2]] = values[i]
                i += 1
            for p in range(P):
                for x in range(X):
                    out[p, t, x] = c[p, x]


def replay_account_equity(bint per_symbol, const double[:, :, ::1] cash,
                          const double[:, :, ::1] shares, const double[::1] mark0,
                          const double[:, ::1] close, const unsigned char[:, ::1] valid,
                          const double[:, ::1] split, const unsigned char[::1] has_action,
                          Py_ssize_t t0, Py_ssize_t t1, double[:, :, ::1] out):
    """Each account's equity per bar, ``(param, time, account)``, from the replayed cash and
    holdings at the marks steps A and D of the run made (``mark0``: before bar ``t0``).

    Bars outside ``t0 .. t1 - 1`` are NaN, as the dense output leaves them.
    """
    cdef Py_ssize_t P = out.shape[0], T = out.shape[1], A = out.shape[2], S = shares.shape[2]
    cdef Py_ssize_t t, p, a
    cdef double lg, sht
    marks = np.array(mark0, dtype=np.float64, order="C")
    cdef double[::1] mk = marks
    with nogil:
        for t in range(T):
            if t < t0 or t >= t1:
                for p in range(P):
                    for a in range(A):
                        out[p, t, a] = NAN
                continue
            if has_action[t]:
                _split_marks(&mk[0], &split[t, 0], <int>S)
            _close_marks(&mk[0], &valid[t, 0], &close[t, 0], <int>S)
            for p in range(P):
                _account_values(per_symbol, <int>S, &shares[p, t, 0], &mk[0], &cash[p, t, 0],
                                &out[p, t, 0], &lg, &sht)
