"""Step driver over batch engine, in one process: the ratio of a whole run bar by bar
(``step()``) and to the end at once (``run()``, which advances a traced rule over blocks of
bars), and whether a bar costs the same late in a run as early (issue #12's numbers).

    python benches/step_vs_batch.py [--data ../shared/data] [--repeat 3]

Workloads: 2520 x 500 moving-average cross (10/50), 2520 x 500 cross-sectional momentum
(126 bars, top 50, monthly), and with ``--data`` the real sample (MA 50/200 in the S&P 500
universe). Each run is timed ``--repeat`` times, warm (kernels compiled, market loaded,
features not cached), and the median is reported. Flatness: the median per-bar time of
the last tenth of the bars over that of the second tenth (the first tenth warms up).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pitgrid as pg  # noqa: E402
from benches.workloads import computed  # noqa: E402
from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross  # noqa: E402

SETTINGS = {"fees_bps": 10, "slippage_bps": 5}


def batch_seconds(market: pg.MarketData, strategy: pg.Strategy) -> float:
    pg.clear_feature_cache()
    t0 = time.perf_counter()
    computed(pg.backtest(market, strategy, SETTINGS))
    return time.perf_counter() - t0


def step_run(market: pg.MarketData, strategy: pg.Strategy) -> tuple[float, np.ndarray, pg.SimResult]:
    t0 = time.perf_counter()
    driver = pg.StepDriver(market, strategy, SETTINGS)
    per_bar = np.empty(driver.n_time)
    for t in range(driver.n_time):
        s = time.perf_counter()
        driver.step()
        per_bar[t] = time.perf_counter() - s
    res = computed(driver.result())
    return time.perf_counter() - t0, per_bar, res


def replay_seconds(market: pg.MarketData, strategy: pg.Strategy) -> float:
    """``run()`` to the last bar: a traced rule advances over blocks of bars."""
    t0 = time.perf_counter()
    computed(pg.StepDriver(market, strategy, SETTINGS).run(progress=False))
    return time.perf_counter() - t0


def measure(name: str, market: pg.MarketData, strategy: pg.Strategy, repeat: int) -> dict:
    batch_seconds(market, strategy)  # warm: compile, load
    step_run(market, strategy)
    replay_seconds(market, strategy)
    b = [batch_seconds(market, strategy) for _ in range(repeat)]
    r = [replay_seconds(market, strategy) for _ in range(repeat)]
    runs = [step_run(market, strategy) for _ in range(repeat)]
    s = [r[0] for r in runs]
    per_bar = np.median(np.stack([r[1] for r in runs]), axis=0)
    tenth = len(per_bar) // 10
    flat = float(np.median(per_bar[-tenth:]) / np.median(per_bar[tenth: 2 * tenth]))
    same = np.array_equal(runs[0][2].equity.values,
                          pg.backtest(market, strategy, SETTINGS).equity.values, equal_nan=True)
    out = {"workload": name, "batch_ms": 1e3 * float(np.median(b)),
           "step_ms": 1e3 * float(np.median(s)), "ratio": float(np.median(s) / np.median(b)),
           "run_ms": 1e3 * float(np.median(r)), "run_ratio": float(np.median(r) / np.median(b)),
           "last_over_first_tenth": flat, "bitwise_equal": bool(same)}
    print(f"{name:32s} batch {out['batch_ms']:8.1f} ms  step {out['step_ms']:8.1f} ms  "
          f"ratio {out['ratio']:5.2f}x  run() {out['run_ms']:8.1f} ms {out['run_ratio']:5.2f}x  "
          f"flat {flat:4.2f}  equal {same}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="the real sample folder (prices.csv.gz, membership)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    synthetic = pg.MarketData(pg.synthetic_prices(2520, 500, seed=42)).load()
    results = [
        measure("2520x500 MA cross 10/50", synthetic, MovingAverageCross(fast=10, slow=50), args.repeat),
        measure("2520x500 momentum 126/50/21", synthetic,
                CrossSectionalMomentum(lookback=126, top=50, every=21), args.repeat),
    ]
    if args.data is not None:
        with tempfile.TemporaryDirectory(prefix="pitgrid-bench-") as folder:
            store = Path(folder) / "sample"
            pg.ingest(args.data / "prices.csv.gz", store, progress=False, unknown_symbols="drop",
                      universes=args.data / "sp500_membership_intervals.csv")
            real = pg.open_market(store).load()
            results.append(measure("real sample MA 50/200 sp500", real,
                                   MovingAverageCross(fast=50, slow=200, universe="sp500"),
                                   args.repeat))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
