"""The compiled core against its floor: ``Core.run`` on W1 beside a tight numba loop.

    python benches/core_floor.py [--repeat 21] [--fill close|next_open] [--size 2520x500]

The floor is the least a simulation of W1 can do: one loop over bars and symbols,
per-symbol accounts, all cash into each entry, 10 bps fees and 5 bps slippage,
filled at the bar's close (W1's rule, ``--fill close``) or at the next bar's open
(pitgrid's default, ``--fill next_open``), with the same sizing and cash check as
docs/simulation.md, and the total equity per bar as its only output. It knows
nothing else (no gaps, actions, gates, logs), so it is a floor, not an engine;
it must end with the same equity as the core to the cent, or the timing means
nothing.

Timed in one process, alternating, median of ``--repeat`` (the machine is shared):
``Core.run`` with ``keep="equity"`` and with ``keep="full"`` (as ``simulate`` keeps
positions and accounts: the core journals what each bar changed; outputs allocated
outside the timing, as ``benches.workloads.core_only`` does), and the floor.
Prints JSON with the medians and the ratios to the floor, of wall time and of the
thread's CPU time (steadier when other work shares the cores).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from benches import workloads as W  # noqa: E402

FEES = W.COSTS["fees_bps"] / 1e4
SLIP = W.COSTS["slippage_bps"] / 1e4


@njit(cache=True, nogil=True)
def floor_close(close, entries, exits, cash0, fees, slip, equity):
    """W1 at the close: decide and fill on bar t, mark at its close."""
    T, S = close.shape
    cash = np.full(S, cash0)
    shares = np.zeros(S)
    for t in range(T):
        ent = entries[t]
        ext = exits[t]
        c = close[t]
        eq = 0.0
        for s in range(S):
            v = shares[s]
            # the signal bytes first: rare and predictable, where the holding is not
            if ent[s] | ext[s]:
                if v > 0.0:
                    if ext[s]:
                        px = c[s] * (1.0 - slip)
                        cash[s] += v * px - v * px * fees
                        shares[s] = 0.0
                        v = 0.0
                elif ent[s] and cash[s] > 0.0:
                    pe = c[s] * (1.0 + slip)
                    q = cash[s] / (pe * (1.0 + fees))
                    cash[s] -= q * pe + q * pe * fees
                    shares[s] = q
                    v = q
            eq += cash[s] + v * c[s]
        equity[t] = eq


@njit(cache=True, nogil=True)
def floor_next_open(open_, close, entries, exits, cash0, fees, slip, equity):
    """W1 at the next open: orders sized at the close of t, filled at the open of t + 1."""
    T, S = close.shape
    cash = np.full(S, cash0)
    shares = np.zeros(S)
    pending = np.zeros(S)
    for t in range(T):
        ent = entries[t]
        ext = exits[t]
        c = close[t]
        o = open_[t]
        eq = 0.0
        for s in range(S):
            q = pending[s]
            if q != 0.0:
                pending[s] = 0.0
                if q < 0.0:
                    px = o[s] * (1.0 - slip)
                    cash[s] += -q * px - (-q) * px * fees
                    shares[s] += q
                else:
                    px = o[s] * (1.0 + slip)
                    cost = q * px + q * px * fees
                    if cost > cash[s] + 1e-12 * abs(cash[s]):
                        q = cash[s] / (px * (1.0 + fees))
                        cost = q * px + q * px * fees
                    cash[s] -= cost
                    shares[s] += q
            v = shares[s]
            if ent[s] | ext[s]:
                if v > 0.0:
                    if ext[s]:
                        pending[s] = -v
                elif ent[s] and cash[s] > 0.0:
                    pe = c[s] * (1.0 + slip)
                    pending[s] = cash[s] / (pe * (1.0 + fees))
            eq += cash[s] + v * c[s]
        equity[t] = eq


def core_run(prep, settings: dict, keep_full: bool):
    """A function timing one ``Core.run`` over every bar (outputs allocated before it),
    and the equity it wrote."""
    import pitgrid as pg
    from pitgrid.engine import simulate as sim
    from pitgrid.engine.codes import INTENT_SIGNALS

    cfg = pg.SimConfig(**settings)
    arrays = sim.market_arrays(prep.ds, cfg)
    T, S = arrays["close"].shape
    delist = np.full(S, -1, dtype=np.int64)
    idx = np.zeros(1, dtype=np.int64)
    intents = (prep.entries[None].view(np.uint8), prep.exits[None].view(np.uint8),
               np.zeros((1, 1, 1)), idx, idx)
    last = {}

    def once() -> float:
        core = sim.make_core(cfg, 1, S, INTENT_SIGNALS, sim.size_values(cfg, None, 1))
        out = sim.allocate_outputs(1, T, S, core.A, False)
        # the order log and journal sized as simulate sizes them, outside the timing
        signals = sim._signal_count(INTENT_SIGNALS, intents, 1)
        core.ensure_log_room(signals)
        if keep_full:  # as simulate keeps them: journaled, rebuilt when read
            core.start_journal(2 * signals + core.journal_rows_per_bar + 4096)
        t0, c0 = time.perf_counter(), time.thread_time()
        sim.run_core(core, arrays, delist, intents, out, 0, T)
        dt = time.perf_counter() - t0, time.thread_time() - c0
        last["equity"] = out["equity"][0]
        return dt

    return once, last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--fill", default="close", choices=("close", "next_open"))
    ap.add_argument("--size", default="2520x500", help="bars x symbols (W1: 2520x500)")
    args = ap.parse_args()
    T, S = (int(x) for x in args.size.split("x"))
    ds = W.data(T, S)
    prep = W.ma_signals(ds)
    settings = {**W.W1_SETTINGS, "fill": args.fill}
    close = np.ascontiguousarray(ds["close"].values)
    open_ = np.ascontiguousarray(ds["open"].values)
    cash0 = 100_000.0
    floor_eq = np.empty(T)

    def floor() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.thread_time()
        if args.fill == "close":
            floor_close(close, prep.entries, prep.exits, cash0, FEES, SLIP, floor_eq)
        else:
            floor_next_open(open_, close, prep.entries, prep.exits, cash0, FEES, SLIP, floor_eq)
        return time.perf_counter() - t0, time.thread_time() - c0

    runs = {"core_equity": core_run(prep, settings, False), "core_full": core_run(prep, settings, True)}
    floor()
    for once, _ in runs.values():
        once()
    times: dict[str, list[tuple[float, float]]] = {"floor": [], **{k: [] for k in runs}}
    for _ in range(args.repeat):
        times["floor"].append(floor())
        for k, (once, _) in runs.items():
            times[k].append(once())
    med = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    core_eq = runs["core_equity"][1]["equity"]
    diff = float(np.max(np.abs(core_eq - floor_eq)))
    out = {
        "size": [T, S], "fill": args.fill, "repeat": args.repeat,
        "load_average": os.getloadavg(),
        "median_ms": {k: round(v * 1e3, 3) for k, v in med.items()},
        "ratio_to_floor": {k: round(med[k] / med["floor"], 2) for k in runs},
        "median_cpu_ms": {k: round(v * 1e3, 3) for k, v in cpu.items()},
        "cpu_ratio_to_floor": {k: round(cpu[k] / cpu["floor"], 2) for k in runs},
        "final_equity": {"core": float(core_eq[-1]), "floor": float(floor_eq[-1])},
        "largest_equity_difference": diff,
        "same_to_the_cent": diff < 0.01,
    }
    print(json.dumps(out, indent=1))
    if not out["same_to_the_cent"]:
        sys.exit("the floor does not reproduce the core's equity to the cent: its timing means nothing")


if __name__ == "__main__":
    main()
