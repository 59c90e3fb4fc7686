"""What the point-in-time check costs against one batch run (issue #14): medians over
rounds of a few batch runs and checks, each round's ratios taken within the round.

    python benches/check_cost.py [--data ../shared/data]

The check's step driver runs in a process forked from a server that a process starts
once, at its first check (pitgrid.drivers.forked): that first check pays the server's
start-up (a new interpreter importing pitgrid), shown apart as a check of a 10-bar
market; every later check forks in milliseconds, and its cost is the runs themselves
(the batch run in the caller and the step driver side by side on two cores) and the
simulation's replays.

A check is timed as a user calls it, after a pause (``PAUSE``), in which the children
that wait for the next runs prepare their memory; and back to back, one check right
after another (a loop over strategies), where they have no time to. Back to back, the
check is bound by processor time: its runs, the server's fork and the child's
preparation and exit fill both cores, so the script also gives the processor time of
this process, the server and its children per check (on Linux), a figure the machine's
noise moves less than the wall time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pitgrid as pg  # noqa: E402
from benches.workloads import computed  # noqa: E402
from pitgrid.drivers import forked  # noqa: E402
from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross  # noqa: E402


def median_time(fn, n: int = 3, pause: float = 0.0) -> float:
    times = []
    for _ in range(n):
        time.sleep(pause)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


PAUSE = 0.5  # seconds between checks: what the server's waiting children use to prepare
# rounds of batch runs and checks, each round's ratios its own: the machine's speed drifts
# over a minute by more than the ratios differ, so batch and check are timed close together
ROUNDS = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pitgrid-bench-") as folder:
        measure(args.data, Path(folder))


def measure(data: Path | None, tmp: Path) -> None:
    tiny = pg.MarketData(pg.synthetic_prices(10, 2, seed=0))
    t0 = time.perf_counter()
    pg.check_point_in_time(tiny, MovingAverageCross(fast=2, slow=3))
    print(f"first check in a process (a 10-bar market, server start-up included): "
          f"{time.perf_counter() - t0:.2f} s")
    warm = median_time(lambda: pg.check_point_in_time(tiny, MovingAverageCross(fast=2, slow=3)))
    print(f"a later check of the same 10-bar market: {warm * 1e3:.0f} ms")
    synthetic = pg.open_market(pg.ingest(_csv(tmp), tmp / "w1", progress=False)).load()
    cases = [("2520x500 MA cross", synthetic, MovingAverageCross(fast=10, slow=50)),
             ("2520x500 momentum", synthetic, CrossSectionalMomentum(lookback=126, top=50, every=21))]
    if data is not None:
        real = pg.open_market(pg.ingest(data / "prices.csv.gz", tmp / "real", progress=False,
                                        universes=data / "sp500_membership_intervals.csv",
                                        unknown_symbols="drop")).load()
        cases.append(("real sample MA 50/200 sp500", real,
                      MovingAverageCross(fast=50, slow=200, universe="sp500")))
    for name, market, strategy in cases:
        def batch():
            pg.clear_feature_cache()
            computed(pg.backtest(market, strategy))  # a batch run's result, metrics built
        batch()
        # as the batch run is warm, so is the check: the market exported for its runs
        # once, the last runs' memory known to the children that wait
        pg.check_point_in_time(market, strategy)
        rounds = []
        for _ in range(ROUNDS):
            # the children waiting after the last checks prepare for a moment: the batch
            # runs must not share the processors with them
            time.sleep(2 * PAUSE)
            b = median_time(batch, 5)
            c = median_time(lambda: pg.check_point_in_time(market, strategy), 3, PAUSE)
            # the children prepared in the last pause take this one: not counted
            pg.check_point_in_time(market, strategy)
            cpu0 = _check_cpu()
            c2 = median_time(lambda: pg.check_point_in_time(market, strategy), 5)
            time.sleep(PAUSE)  # the last runs' processes exit and are counted
            cpu = (_check_cpu() - cpu0) / 5 if cpu0 is not None else float("nan")
            rounds.append((b, c, c / b, c2, c2 / b, cpu))
        b, c, r, c2, r2, cpu = np.median(np.array(rounds), axis=0)
        lo, hi = (np.array(rounds)[:, 4].min(), np.array(rounds)[:, 4].max())
        print(f"{name:30s} batch {b * 1e3:6.1f} ms  check {c * 1e3:6.1f} ms  check/batch {r:4.1f}x"
              f"   back to back: {c2 * 1e3:6.1f} ms, {r2:4.1f}x ({lo:.1f}-{hi:.1f}x), processor "
              f"time {cpu * 1e3:4.0f} ms a check", flush=True)


def _check_cpu() -> float | None:
    """Seconds of processor time of this process (where the check's batch run runs), of the
    check's server and of the run processes it has reaped (Linux's /proc), or None."""
    try:
        with open(f"/proc/{forked._Server.get().proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK") + time.process_time()


def _csv(tmp: Path) -> Path:
    path = tmp / "w1.csv"
    pg.long_bars(pg.synthetic_prices(2520, 500, seed=42)).write_csv(path)
    return path


if __name__ == "__main__":
    main()
