# cython: language_level=3
"""Row scan of long-format bars: the compiled half of ingest validation.

One pass over the rows in file order finds the first row that breaks a rule and
returns ``(row, rule)``; ``(-1, OK)`` means every row is clean. The loop holds no
Python objects and runs without the GIL. ``pitgrid.data.validate`` turns the
result into a ``ValidationError`` naming file, line, symbol and rule; the tests
check this scan against a pure-Python reference.
"""
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint8_t, INT64_MIN

# rule codes, in the order they are checked within a row; RULE_NAMES[code] names each
cdef enum:
    R_OK = 0
    R_UNPARSEABLE_TIME
    R_MISSING_SYMBOL
    R_DUPLICATE
    R_UNSORTED
    R_MIXED_FREQUENCY
    R_NONFINITE_PRICE
    R_NONPOSITIVE_PRICE
    R_HIGH_BELOW_LOW
    R_OPEN_OUTSIDE_RANGE
    R_CLOSE_OUTSIDE_RANGE
    R_NONFINITE_VOLUME
    R_NEGATIVE_VOLUME

OK = R_OK
UNPARSEABLE_TIME = R_UNPARSEABLE_TIME
MISSING_SYMBOL = R_MISSING_SYMBOL
DUPLICATE = R_DUPLICATE
UNSORTED = R_UNSORTED
MIXED_FREQUENCY = R_MIXED_FREQUENCY
NONFINITE_PRICE = R_NONFINITE_PRICE
NONPOSITIVE_PRICE = R_NONPOSITIVE_PRICE
HIGH_BELOW_LOW = R_HIGH_BELOW_LOW
OPEN_OUTSIDE_RANGE = R_OPEN_OUTSIDE_RANGE
CLOSE_OUTSIDE_RANGE = R_CLOSE_OUTSIDE_RANGE
NONFINITE_VOLUME = R_NONFINITE_VOLUME
NEGATIVE_VOLUME = R_NEGATIVE_VOLUME

RULE_NAMES = (
    "ok",
    "unparseable time",
    "missing symbol",
    "duplicate (time, symbol)",
    "unsorted time within symbol",
    "mixed bar frequency",
    "non-finite price",
    "non-positive price",
    "high < low",
    "open outside [low, high]",
    "close outside [low, high]",
    "non-finite volume",
    "negative volume",
)

# the time value that marks a row whose time did not parse (and "no time yet" in last_time)
cdef int64_t NO_TIME_C = INT64_MIN
NO_TIME = NO_TIME_C

cdef int64_t NS_PER_DAY = 86_400_000_000_000


cdef inline int64_t _floor_mod(int64_t a, int64_t m) noexcept nogil:
    cdef int64_t r = a % m
    return r + m if r < 0 else r


cdef inline int _row_rule(
    int64_t s, int64_t t, int64_t prev, uint8_t date_only,
    double o, double h, double l, double c, double v,
    int64_t step, int64_t phase, bint intraday,
) noexcept nogil:
    if t == NO_TIME_C:
        return R_UNPARSEABLE_TIME
    if s < 0:
        return R_MISSING_SYMBOL
    if t == prev:
        return R_DUPLICATE
    if t < prev:
        return R_UNSORTED
    # a plain date in intraday data has no time of day to place it on the grid
    if intraday and date_only:
        return R_MIXED_FREQUENCY
    if _floor_mod(_floor_mod(t, NS_PER_DAY) - phase, step) != 0:
        return R_MIXED_FREQUENCY
    if not (isfinite(o) and isfinite(h) and isfinite(l) and isfinite(c)):
        return R_NONFINITE_PRICE
    if o <= 0.0 or h <= 0.0 or l <= 0.0 or c <= 0.0:
        return R_NONPOSITIVE_PRICE
    if h < l:
        return R_HIGH_BELOW_LOW
    if o < l or o > h:
        return R_OPEN_OUTSIDE_RANGE
    if c < l or c > h:
        return R_CLOSE_OUTSIDE_RANGE
    if not isfinite(v):
        return R_NONFINITE_VOLUME
    if v < 0.0:
        return R_NEGATIVE_VOLUME
    return R_OK


def scan_bars(
    const int64_t[::1] symbol,
    const int64_t[::1] time,
    const uint8_t[::1] date_only,
    const double[::1] open,
    const double[::1] high,
    const double[::1] low,
    const double[::1] close,
    const double[::1] volume,
    int64_t[::1] last_time,
    int64_t step,
    int64_t phase,
    bint intraday,
):
    """Return ``(row, rule)`` of the first row breaking a rule, or ``(-1, OK)``.

    ``symbol`` holds codes ``0..n_symbols-1`` (``-1`` = missing), ``time`` is in
    nanoseconds (``NO_TIME`` = did not parse), ``date_only`` flags times written
    without a time of day. ``last_time[code]`` is the last time seen per symbol; it is
    read and updated, so a scan can continue over several files (start it filled
    with ``NO_TIME``). The bar grid: every time of day ``tod`` must satisfy
    ``(tod - phase) mod step == 0``; pass ``step = 86400e9`` for daily data.

    Example:
        >>> import numpy as np
        >>> one = np.ones(1)
        >>> row, rule = scan_bars(np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1, np.uint8),
        ...                       one, one, one, one, -one, np.full(1, NO_TIME), 86400 * 10**9, 0, False)
        >>> row, RULE_NAMES[rule]
        (0, 'negative volume')
    """
    cdef Py_ssize_t n = symbol.shape[0]
    cdef Py_ssize_t i, bad = -1
    cdef int rule = 0
    cdef int64_t s, prev, n_sym = last_time.shape[0]
    if not (time.shape[0] == n and date_only.shape[0] == n and open.shape[0] == n
            and high.shape[0] == n and low.shape[0] == n and close.shape[0] == n
            and volume.shape[0] == n):
        raise ValueError("scan_bars: all row arrays must have the same length")
    if step <= 0:
        raise ValueError(f"scan_bars: step must be positive, got {step}")
    with nogil:
        for i in range(n):
            s = symbol[i]
            if s >= n_sym:
                bad = i
                rule = -1  # a caller bug, not a data rule: raised below, outside nogil
                break
            prev = last_time[s] if s >= 0 else NO_TIME_C
            rule = _row_rule(
                s, time[i], prev, date_only[i], open[i], high[i], low[i], close[i], volume[i],
                step, phase, intraday,
            )
            if rule != R_OK:
                bad = i
                break
            last_time[s] = time[i]
    if rule == -1:
        raise ValueError(f"scan_bars: symbol code {symbol[bad]} at row {bad} >= {n_sym}")
    return (bad, rule)
