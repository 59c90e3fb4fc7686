"""Kernel speed on a 2520 x 500 panel (10 years of daily bars, 500 symbols).

    .venv/bin/python benches/kernel_speed.py [--repeat N] [--window W]

Prints the median and the best time of each raw kernel (``name_nb``, preallocated
output; the best is the steadier figure on a shared, noisy machine) next to a plain
numba rolling mean (``s += x[t] - x[t-w]; out = s / w``, no missing-value
handling, no error control): the floor a moving sum can reach. Issue #16's target:
``sma`` within 1.5x of it. Also the per-bar cost of a ``Stream`` update. Speed
targets live here, never in timed unit tests.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

import pitgrid.kernels as K


@njit(cache=True, nogil=True)
def plain_rolling_mean_nb(x, w, out):
    n_time, n_sym = x.shape
    s = np.zeros(n_sym)
    for t in range(n_time):
        for j in range(n_sym):
            s[j] += x[t, j] - (x[t - w, j] if t >= w else 0.0)
            out[t, j] = s[j] / w


def times_ms(f, repeat):
    """(median, best) of ``repeat`` timed calls after one warm-up, in ms."""
    f()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts)), 1e3 * min(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--window", type=int, default=20)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    n_time, n_sym, w = 2520, 500, a.window
    x = 100 * np.exp(np.cumsum(0.01 * rng.standard_normal((n_time, n_sym)), axis=0))
    y = rng.standard_normal(n_time)
    hi, lo = x * 1.01, x * 0.99
    out = [np.empty_like(x) for _ in range(3)]
    bout = np.empty(x.shape, dtype=np.bool_)
    calls = {
        "sma": lambda: K.sma_nb(x, w, out[0]),
        "wma": lambda: K.wma_nb(x, w, out[0]),
        "ema": lambda: K.ema_nb(x, w, out[0]),
        "rolling_max": lambda: K.rolling_max_nb(x, w, out[0]),
        "rolling_min": lambda: K.rolling_min_nb(x, w, out[0]),
        "rolling_std": lambda: K.rolling_std_nb(x, w, 1, out[0]),
        "rolling_zscore": lambda: K.rolling_zscore_nb(x, w, 1, out[0]),
        "bollinger": lambda: K.bollinger_nb(x, w, 2.0, 0, *out),
        "atr": lambda: K.atr_nb(hi, lo, x, 14, out[0]),
        "rsi": lambda: K.rsi_nb(x, 14, out[0]),
        "macd": lambda: K.macd_nb(x, 12, 26, 9, *out),
        "simple_returns": lambda: K.simple_returns_nb(x, out[0]),
        "log_returns": lambda: K.log_returns_nb(x, out[0]),
        "momentum": lambda: K.momentum_nb(x, w, out[0]),
        "rolling_corr": lambda: K.rolling_corr_nb(x, y, w, out[0]),
        "rolling_beta": lambda: K.rolling_beta_nb(x, y, w, out[0]),
        "cs_rank": lambda: K.cs_rank_nb(x, True, out[0]),
        "cs_zscore": lambda: K.cs_zscore_nb(x, 1, out[0]),
        "crossover": lambda: K.crossover_nb(x, out[1], bout),
        "crossunder": lambda: K.crossunder_nb(x, out[1], bout),
    }
    out[1][:] = x[::-1]
    plain, plain_best = times_ms(lambda: plain_rolling_mean_nb(x, w, out[2]), a.repeat)
    print(f"{n_time} x {n_sym}, window {w}, median and best of {a.repeat} runs")
    print(f"{'plain rolling mean':<20} {plain:8.3f} ms   1.00x {plain_best:8.3f} ms   1.00x")
    for name, f in calls.items():
        ms, best = times_ms(f, a.repeat)
        print(f"{name:<20} {ms:8.3f} ms  {ms / plain:5.2f}x {best:8.3f} ms  {best / plain_best:5.2f}x")
    s = K.Stream("sma", n_sym, window=w)
    rows = list(x[:500])
    t0 = time.perf_counter()
    for r in rows:
        s.update(r)
    us = 1e6 * (time.perf_counter() - t0) / len(rows)
    print(f"Stream('sma').update  {us:8.2f} us per bar ({n_sym} symbols)")


if __name__ == "__main__":
    main()
