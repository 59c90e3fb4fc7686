"""W2 spread over Dask workers, and a grid's peak memory as it grows.

Speed: W2 (100 moving-average pairs on 2520 x 500, ``benches/workloads.py``) from a store,
in one process and on two single-threaded Dask workers, each warm (one run first: imports,
numba's cache, the store's fields), the three one after another in each of ``--repeat``
rounds (so they see about the same load; the rounds go through the six orders of the
three in turn), medians over the rounds:

* ``one process``: ``pg.grid(store, ...)``; CPU time of the process and wall time;
* ``LocalCluster``: ``pg.grid(store, ..., client=)`` on ``LocalCluster(n_workers=2)``;
* ``loopback``: the same on ``dask scheduler`` and two ``dask worker`` processes on
  127.0.0.1 (subprocesses, as on a real cluster).

For Dask runs the CPU time of each worker process (``client.run(time.process_time)``
before and after) and of the client (the whole process, and its main thread). The
CPU-time speedup is the one-process CPU time over ``client main thread + busiest worker``:
the main thread plans, submits and assembles, which is serial, while the client's other
threads (Dask's communication) run beside the workers; so it is what the wall time would
be on free cores. "Work" is the one-process CPU time over the sum of the whole client and
the workers (1.0: spreading added no work at all). Wall times are reported too; on a
shared machine they move with the other work on it. Results are checked bit for bit.

Memory: peak RSS (``getrusage`` in a fresh process per case) of an in-process grid at
the default ``memory_budget_mb`` (and ``--budget``) for 10 / 100 / 400 pairs and for
10 / 100 distinct windows.

Run: ``.venv/bin/python benches/grid_scale.py [--repeat 12] [--skip-memory] [--json out]``.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import pitgrid as pg  # noqa: E402
from benches import workloads as W  # noqa: E402

W2_PARAMS = {"fast": W.W2_FAST, "slow": W.W2_SLOW}


def w2_store(folder: Path) -> Path:
    """W2's data as a store (what Dask workers open)."""
    from pitgrid.data.store import write_market

    path = folder / "w2.pitgrid"
    if not path.exists():
        write_market(pg.MarketData(W.data()), path)
    return path


def run_w2(store: Path, client=None):
    from pitgrid.strategies import MovingAverageCross

    return pg.grid(store, MovingAverageCross(), W2_PARAMS, config=W.W1_SETTINGS, keep=5,
                   progress=False, client=client)


@contextlib.contextmanager
def loopback_cluster(n_workers: int) -> Iterator[str]:
    """``dask scheduler`` and ``n_workers`` single-threaded ``dask worker`` processes on
    127.0.0.1; yields the scheduler's address, stops the processes it started."""
    from dask.distributed import Client

    dask_cli = [sys.executable, "-m", "dask"]
    folder = Path(tempfile.mkdtemp(prefix="pitgrid-loopback-"))
    info = folder / "scheduler.json"
    procs = [subprocess.Popen([*dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(info)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for _ in range(n_workers):
            procs.append(subprocess.Popen(
                [*dask_cli, "worker", address, "--nthreads", "1", "--nworkers", "1",
                 "--host", "127.0.0.1", "--no-dashboard"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(address) as c:
            c.wait_for_workers(n_workers, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(folder, ignore_errors=True)


def same(a, b) -> bool:
    return a.table.equals(b.table) and np.array_equal(a.equity.values, b.equity.values)


def one_process_run(store: Path) -> tuple[dict, object]:
    c0, t0 = time.process_time(), time.perf_counter()
    g = run_w2(store)
    return {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0,
            "chunks": g.info["chunks"]}, g


def dask_run(store: Path, client) -> tuple[dict, object]:
    before = client.run(time.process_time)
    c0, m0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    g = run_w2(store, client)
    wall = time.perf_counter() - t0
    main, mine = time.thread_time() - m0, time.process_time() - c0
    after = client.run(time.process_time)
    workers = sorted(after[w] - before[w] for w in after)
    # the client's main thread plans, submits and assembles: serial; its other threads
    # (Dask's communication) run while the workers do
    return {"wall_s": wall, "client_cpu_s": mine, "client_main_thread_cpu_s": main,
            "workers_cpu_s": workers, "busiest_worker_cpu_s": max(workers),
            "workers_cpu_sum_s": sum(workers), "critical_cpu_s": main + max(workers),
            "chunks": g.info["chunks"]}, g


def compared(one: dict, run: dict) -> dict:
    """Ratios of one Dask run against the one-process run beside it."""
    return {"cpu_speedup": one["cpu_s"] / run["critical_cpu_s"],
            "work_ratio": one["cpu_s"] / (run["client_cpu_s"] + run["workers_cpu_sum_s"]),
            "wall_speedup": one["wall_s"] / run["wall_s"]}


def medians(rows: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]
            if isinstance(rows[0][k], (int, float))}


def speed(folder: Path, repeat: int) -> dict:
    """Each round runs one process, the LocalCluster and the loopback cluster, so the three
    see about the same load, the rounds going through the six orders of the three; ratios
    are per round, then their median."""
    from dask.distributed import Client, LocalCluster

    store = w2_store(folder)
    names = ("LocalCluster, 2 workers", "dask scheduler + 2 dask workers, loopback")
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None))
        clients = [stack.enter_context(Client(cluster)),
                   stack.enter_context(Client(stack.enter_context(loopback_cluster(2))))]
        reference = run_w2(store)  # warm: imports, numba's cache, the store's fields
        for c in clients:
            run_w2(store, c)
        rows: dict[str, list[dict]] = {"one process": [], **{n: [] for n in names}}
        identical = {n: True for n in names}
        # the rounds go through every order of the three: a run measured slower right after
        # the one-process run here, whichever it was
        orders = list(itertools.permutations([("one process", None), *zip(names, clients)]))
        for r in range(repeat):
            runs = {}
            for name, c in orders[r % len(orders)]:
                runs[name], g = one_process_run(store) if c is None else dask_run(store, c)
                identical[name] = identical.get(name, True) and same(g, reference)
            one = runs["one process"]
            rows["one process"].append(one)
            for name in names:
                rows[name].append({**runs[name], **compared(one, runs[name])})
    out = {"one process": {**medians(rows["one process"]), "identical": identical["one process"],
                           "runs": rows["one process"]}}
    for name in names:
        out[name] = {**medians(rows[name]), "identical": identical[name], "runs": rows[name]}
    return out


# ---------------------------------------------------------------------- memory
def memory_cases() -> dict[str, list[dict[str, int]]]:
    fast20, slow20 = list(range(5, 101, 5)), list(range(110, 491, 20))
    return {
        "10 pairs (11 windows)": [{"fast": f, "slow": 60} for f in W.W2_FAST],
        "100 pairs (20 windows, W2)": [{"fast": f, "slow": s}
                                       for f in W.W2_FAST for s in W.W2_SLOW],
        "400 pairs (40 windows)": [{"fast": f, "slow": s} for f in fast20 for s in slow20],
        "5 pairs (10 distinct windows)": [{"fast": 5 + i, "slow": 100 + 20 * i} for i in range(5)],
        "50 pairs (100 distinct windows)": [{"fast": 5 + i, "slow": 100 + 4 * i}
                                            for i in range(50)],
    }


def memory_case(name: str, budget_mb: float) -> dict:
    """One case in this (fresh) process: peak RSS and time of the in-process grid."""
    from pitgrid.strategies import MovingAverageCross

    market = pg.MarketData(W.data())
    t0 = time.perf_counter()
    g = pg.grid(market, MovingAverageCross(), memory_cases()[name], config=W.W1_SETTINGS,
                progress=False, memory_budget_mb=budget_mb)
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": time.perf_counter() - t0, "chunks": g.info["chunks"]}


def memory(budgets: list[float]) -> dict:
    out = {}
    for budget in budgets:
        for name in memory_cases():
            run = subprocess.run([sys.executable, __file__, "--memory-case", name, "--budget",
                                  str(budget)], capture_output=True, text=True, check=True)
            out[f"{name}, memory_budget_mb={budget:g}"] = json.loads(run.stdout.splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=12)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--budget", type=float, action="append")
    ap.add_argument("--memory-case", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.memory_case:
        print(json.dumps(memory_case(args.memory_case, (args.budget or [256.0])[0])))
        return
    out = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_speed:
            out["speed"] = speed(Path(tmp), args.repeat)
    if not args.skip_memory:
        out["memory"] = memory(args.budget or [256.0, 64.0])
    out["load_after"] = os.getloadavg()
    text = json.dumps(out, indent=2, default=float)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
