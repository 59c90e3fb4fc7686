"""Cold start: a fresh process imports pitgrid and runs W1 once; print JSON.

    python benches/cold_start.py [--n-time 2520] [--n-symbols 500] [--json FILE]

Two scenarios, each in two fresh processes that share one ``NUMBA_CACHE_DIR``, a new
empty temporary folder:

* ``empty``: numba's on-disk cache is empty, so every kernel W1 calls is compiled;
* ``filled``: the same folder a second time, so the kernels load from the cache.

``simulate``: each process times, from its own start, the imports (``pitgrid`` and the
kernels), the data (``synthetic_prices(2520, 500, seed=42)``), the W1 signals (two
SMAs, the cross rules: numba kernels), the lazy import behind ``pg.simulate``
(pitgrid.engine, polars, the extension modules) and the first ``pg.simulate`` call
(the compiled Cython core: nothing to compile or load).

``backtest``: what a user's script does (issue #16's cold start): import pitgrid,
``pg.open_market`` of a store written beforehand (``write_market`` of the same data),
a first ``pg.backtest(market, MovingAverageCross(fast=10, slow=50), costs)`` at default
settings, exit.

Each step then runs a second time in the same process, which shows what was
one-off. ``process_wall_s`` is measured by the parent, from spawn to the end of the
process, interpreter start-up and exit included (the number the issue's 1.0 s target
is about); ``peak_rss_mib`` is ``getrusage`` in the child. Single-threaded
(NUMBA_NUM_THREADS=1).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


def _stepper(out: dict):
    def step(name, fn):
        t0 = time.perf_counter()
        value = fn()
        out[name + "_s"] = time.perf_counter() - t0
        return value

    return step


def child_backtest(store: str) -> None:
    """The user's script: import, open the stored market, a first pg.backtest."""
    t_start = time.perf_counter()
    out: dict = {}
    step = _stepper(out)

    def imports():
        import pitgrid  # noqa: F401
        from pitgrid.strategies import MovingAverageCross  # noqa: F401  (numba, the kernels)

    step("import", imports)
    import pitgrid as pg
    from benches import workloads as W

    market = step("open_market", lambda: pg.open_market(store))
    res = step("backtest_first", lambda: W.run_backtest(market, "W1"))
    out["in_process_first_run_s"] = time.perf_counter() - t_start
    step("backtest_second", lambda: W.run_backtest(market, "W1"))
    out["final_equity"] = float(res.equity.values[-1])
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def child(n_time: int, n_symbols: int) -> None:
    t_start = time.perf_counter()
    out: dict = {}
    step = _stepper(out)

    def imports():
        import pitgrid  # noqa: F401
        from benches import workloads  # noqa: F401  (pitgrid.kernels: numba)

    step("import", imports)
    import pitgrid as pg
    from benches import workloads as W

    ds = step("data", lambda: W.data(n_time, n_symbols))
    prep = step("signals_first", lambda: W.ma_signals(ds))
    step("import_engine", lambda: pg.simulate)  # the lazy import of pitgrid.engine (polars, the core)
    res = step("simulate_first", lambda: W.run_w1(prep))
    out["in_process_first_run_s"] = time.perf_counter() - t_start
    out["first_run_without_data_s"] = out["in_process_first_run_s"] - out["data_s"]
    step("signals_second", lambda: W.ma_signals(ds))
    step("simulate_second", lambda: W.run_w1(prep))
    out["final_equity"] = float(res.equity.values[-1])
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_once(cache_dir: Path, n_time: int, n_symbols: int, store: Path | None = None) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "NUMBA_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    files_before = sum(1 for p in cache_dir.rglob("*") if p.is_file())
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE), "--child", "--n-time", str(n_time),
                           "--n-symbols", str(n_symbols), *(["--store", str(store)] if store else [])],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"cold-start child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = wall
    res["cache_files_before"] = files_before
    res["cache_files_after"] = sum(1 for p in cache_dir.rglob("*") if p.is_file())
    return res


def _write_store(path: Path, n_time: int, n_symbols: int) -> Path:
    """W1's data as a store, written in a separate process (nothing of it warms the children)."""
    code = ("import sys; sys.path.insert(0, %r); from benches import workloads as W; import pitgrid as pg; "
            "from pitgrid.data.store import write_market; write_market(pg.MarketData(W.data(%d, %d)), %r)"
            % (str(ROOT), n_time, n_symbols, str(path)))
    subprocess.run([sys.executable, "-c", code], check=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n-time", type=int, default=2520)
    ap.add_argument("--n-symbols", type=int, default=500)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the JSON here")
    args = ap.parse_args()
    if args.child:
        if args.store:
            child_backtest(args.store)
        else:
            child(args.n_time, args.n_symbols)
        return
    import platform

    out = {
        "workload": f"W1: synthetic_prices({args.n_time}, {args.n_symbols}, seed=42), SMA 10/50 "
                    "cross, per-symbol accounts, fill at close",
        "python": platform.python_version(),
    }
    tmp = Path(tempfile.mkdtemp(prefix="pitgrid-cold-start-"))
    try:
        store = _write_store(tmp / "w1", args.n_time, args.n_symbols)
        for scenario, where in (("simulate", None), ("backtest", store)):
            cache = tmp / f"numba-cache-{scenario}"
            cache.mkdir()
            out[scenario] = {"numba_cache_empty": run_once(cache, args.n_time, args.n_symbols, where),
                             "numba_cache_filled": run_once(cache, args.n_time, args.n_symbols, where)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
