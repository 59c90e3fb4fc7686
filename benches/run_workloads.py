"""Time W1 to W4 on this machine, warm, one process; print JSON (and keep it in benches/results/).

    python benches/run_workloads.py [--skip-w3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches import workloads as W  # noqa: E402


def best_of(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def w2_on_local_cluster(ds) -> dict:
    """W2 from an ingested store: one process, then two LocalCluster workers (two chunks)."""
    import tempfile

    import pitgrid as pg
    from pitgrid.strategies import MovingAverageCross

    from dask.distributed import Client, LocalCluster

    # the default budget: pg.grid plans at least two chunks per worker (benches/grid_scale.py
    # has the full measure)
    kw = dict(config=W.W1_SETTINGS, progress=False)
    params = {"fast": W.W2_FAST, "slow": W.W2_SLOW}
    with tempfile.TemporaryDirectory(prefix="pitgrid-bench-") as folder:
        tmp = Path(folder)
        pg.long_bars(ds).write_csv(tmp / "w2.csv")
        store = pg.ingest(tmp / "w2.csv", tmp / "w2.pitgrid", progress=False)
        t0 = time.perf_counter()
        single = pg.grid(store, MovingAverageCross(), params, **kw)
        t1 = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            client.run(lambda: __import__("pitgrid.strategies"))
            t2 = time.perf_counter()
            dask = pg.grid(store, MovingAverageCross(), params, client=client, **kw)
            t3 = time.perf_counter()
    return {"chunks": single.info["chunks"], "dask_chunks": dask.info["chunks"],
            "single_process_s": t1 - t0,
            "cluster_start_s": t2 - t1, "local_cluster_s": t3 - t2,
            "identical": dask.table.equals(single.table)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-w3", action="store_true")
    ap.add_argument("--dask", action="store_true", help="also W2 on a 2-worker LocalCluster")
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    out: dict = {"machine": {"cpu": platform.processor() or platform.machine(),
                             "cores": os.cpu_count(), "python": platform.python_version()}}
    ds = W.data()
    cells = ds.sizes["time"] * ds.sizes["symbol"]
    w1 = W.ma_signals(ds)
    W.run_w1(w1)
    core = min(W.core_only(w1, W.W1_SETTINGS) for _ in range(7))
    out["W1"] = {"core_s": core, "core_cells_per_s": cells / core,
                 "simulate_s": best_of(lambda: W.run_w1(w1))}
    w4 = W.momentum_weights(ds)
    W.run_w4(w4)
    out["W4"] = {"core_s": min(W.core_only(w4, W.W4_SETTINGS) for _ in range(7)),
                 "simulate_s": best_of(lambda: W.run_w4(w4))}
    import pitgrid as pg

    market = pg.MarketData(ds)
    W.run_w1_strategy(market)
    out["W1"]["strategy_end_to_end_s"] = best_of(lambda: W.run_w1_strategy(market))
    W.run_w2(market)
    out["W2"] = {"grid_s": best_of(lambda: W.run_w2(market), 3), "pairs": 100}
    if args.dask:
        out["W2"]["dask_2_workers"] = w2_on_local_cluster(ds)
    if not args.skip_w3:
        ds3 = W.data(5040, 5000)
        w3 = W.ma_signals(ds3)
        core3 = min(W.core_only(w3, W.W1_SETTINGS) for _ in range(3))
        out["W3"] = {"core_s": core3, "core_cells_per_s": ds3.sizes["time"] * ds3.sizes["symbol"] / core3,
                     "ratio_to_W1_rate": (cells / core) / (ds3.sizes["time"] * ds3.sizes["symbol"] / core3)}
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = json.dumps(out, indent=1)
    print(text)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "workloads.json").write_text(text)


if __name__ == "__main__":
    main()
