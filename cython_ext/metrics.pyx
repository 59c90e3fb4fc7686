# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Performance and tail metrics of equity curves, one row per parameter set or account.

``equity_metrics`` reads a (rows, time) equity array and writes a (rows, N_METRICS)
array in the column order of ``METRIC_NAMES``; docs/metrics.md gives each formula.
No Python objects inside; the GIL is released.
"""
import numpy as np

from libc.math cimport sqrt, log, pow, ceil, floor, NAN, isfinite
from libc.stdlib cimport malloc, free, qsort

METRIC_NAMES = (
    "total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar",
    "max_drawdown", "max_drawdown_duration", "var_95", "cvar_95", "var_99", "cvar_99",
    "tail_index",
)
DEF N_METRICS = 13
# bar-return variance below this is rounding noise of a constant return: the Sharpe
# ratio is then undefined rather than a huge number
DEF MIN_VAR = 1e-24


cdef int _cmp(const void* a, const void* b) noexcept nogil:
    cdef double x = (<const double*>a)[0], y = (<const double*>b)[0]
    return (x > y) - (x < y)


cdef inline void _var_cvar(const double* sorted_r, Py_ssize_t n, double level,
                           double* var, double* cvar) noexcept nogil:
    # the k worst returns, k = ceil(n * (1 - level)): VaR is the k-th worst loss, CVaR their mean
    cdef Py_ssize_t k = <Py_ssize_t>ceil(n * (1.0 - level) - 1e-9), i
    cdef double acc = 0.0
    if k < 1:
        k = 1
    for i in range(k):
        acc += sorted_r[i]
    var[0] = -sorted_r[k - 1]
    cvar[0] = -acc / k


cdef inline double _hill(const double* sorted_r, Py_ssize_t n) noexcept nogil:
    # Hill estimator on losses: k = floor(sqrt(number of losses)) largest, needs k >= 2
    cdef Py_ssize_t n_loss = 0, k, i
    cdef double acc = 0.0, xk
    while n_loss < n and sorted_r[n_loss] < 0.0:
        n_loss += 1
    k = <Py_ssize_t>floor(sqrt(<double>n_loss))
    if k < 2 or n_loss <= k:
        return NAN
    xk = -sorted_r[k]
    for i in range(k):
        acc += log(-sorted_r[i] / xk)
    if acc <= 0.0:
        return NAN
    return k / acc


def equity_metrics(const double[:, ::1] equity, const double[::1] initial, double bars_per_year,
                   double[:, ::1] out):
    """Fill ``out[i]`` with the metrics of ``equity[i]`` that started from ``initial[i]``."""
    cdef Py_ssize_t rows = equity.shape[0], n = equity.shape[1], i, t, dd_start, dur, longest
    cdef double prev, r, s1, s2, down2, peak, dd, mdd, mean, var, total, years
    cdef double* buf
    if out.shape[0] != rows or out.shape[1] != N_METRICS or initial.shape[0] != rows:
        raise ValueError("out must be (rows, %d) and initial (rows,)" % N_METRICS)
    if n == 0:
        out[:, :] = NAN
        return
    buf = <double*>malloc(n * sizeof(double))
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            for i in range(rows):
                prev = initial[i]
                s1 = 0.0
                s2 = 0.0
                down2 = 0.0
                peak = initial[i]
                mdd = 0.0
                dd_start = -1
                longest = 0
                for t in range(n):
                    r = equity[i, t] / prev - 1.0 if prev != 0.0 else NAN
                    buf[t] = r
                    s1 += r
                    if r < 0.0:
                        down2 += r * r
                    prev = equity[i, t]
                    if equity[i, t] >= peak:
                        peak = equity[i, t]
                        if dd_start >= 0 and t - dd_start > longest:
                            longest = t - dd_start
                        dd_start = -1
                    else:
                        if dd_start < 0:
                            dd_start = t
                        dd = 1.0 - equity[i, t] / peak
                        if dd > mdd:
                            mdd = dd
                if dd_start >= 0 and n - dd_start > longest:
                    longest = n - dd_start
                mean = s1 / n
                for t in range(n):
                    s2 += (buf[t] - mean) * (buf[t] - mean)
                var = s2 / (n - 1) if n > 1 else NAN
                total = equity[i, n - 1] / initial[i] - 1.0
                years = n / bars_per_year
                out[i, 0] = total
                out[i, 1] = pow(1.0 + total, 1.0 / years) - 1.0 if total > -1.0 else -1.0
                out[i, 2] = sqrt(var * bars_per_year)
                out[i, 3] = mean / sqrt(var) * sqrt(bars_per_year) if var > MIN_VAR else NAN
                out[i, 4] = mean / sqrt(down2 / n) * sqrt(bars_per_year) if down2 > 0.0 else NAN
                out[i, 5] = out[i, 1] / mdd if mdd > 0.0 else NAN
                out[i, 6] = mdd
                out[i, 7] = longest
                qsort(buf, n, sizeof(double), _cmp)
                _var_cvar(buf, n, 0.95, &out[i, 8], &out[i, 9])
                _var_cvar(buf, n, 0.99, &out[i, 10], &out[i, 11])
                out[i, 12] = _hill(buf, n)
    finally:
        free(buf)
