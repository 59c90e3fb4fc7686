"""Cold start: a fresh process imports pitgrid and runs W1 once; print JSON.

    python benches/cold_start.py [--n-time 2520] [--n-symbols 500] [--repeat 5]
                                 [--without-scipy] [--json FILE]

Each scenario runs in fresh processes that share one ``NUMBA_CACHE_DIR``, a new empty
temporary folder:

* ``numba_cache_empty``: the first process, so every kernel W1 calls is compiled;
* ``numba_cache_filled``: ``--repeat`` more processes on the same folder, so the kernels
  load from the cache: each number is the median of those runs (``runs`` has them all).

pitgrid's own modules are byte-compiled first (``compileall``), as an installed package
is: with ``PYTHONDONTWRITEBYTECODE`` set no process would write them, and each would
compile pitgrid's sources afresh.

``simulate``: each process times, from its own start, the imports (``pitgrid`` and the
kernels), the data (``synthetic_prices(2520, 500, seed=42)``), the W1 signals (two
SMAs, the cross rules: numba kernels), the lazy import behind ``pg.simulate``
(pitgrid.engine, polars, the extension modules) and the first ``pg.simulate`` call
(the compiled Cython core: nothing to compile or load).

``backtest``: what a user's script does (issue #16's cold start): import pitgrid,
``pg.open_market`` of a store written beforehand (``write_market`` of the same data),
a first ``pg.backtest(market, MovingAverageCross(fast=10, slow=50), costs)`` at default
settings, exit.

``--without-scipy``: the children run as if scipy were not installed. pitgrid does not
depend on it (the test extra's empyrical-reloaded installs it), but numba imports
``scipy.linalg`` for its BLAS check when it loads its registries, if scipy is there.

``libraries``: the floor under ``backtest``, what pitgrid cannot skip: a process that
imports the libraries W1 uses (numpy, pandas, xarray, polars, zarr, numba), loads
numba's registries (as the first call of any jitted function does) and exits.

``libraries_frozen`` and ``numba_frozen``: the floors of a pitgrid process, which imports
inside :func:`pitgrid.frozen_imports.frozen_imports` (the collector never walks what the
imports made, during them or at exit): the same libraries imported that way, and numba
with its registries alone (what the kernels need, whatever else a process skips).

In the first process (cache empty) each step then runs a second time, which shows
what was one-off; the processes with the cache filled do only what the issue's script
does and exit. ``process_wall_s`` is measured by the parent, from spawn to the end of the
process, interpreter start-up and exit included (the number the issue's 1.0 s target
is about); ``exit_s`` is its part after the script's last line (the interpreter's
teardown); ``process_cpu_s`` is the child's CPU time (user and system), steadier than
wall time on a shared machine; ``peak_rss_mib`` is ``getrusage`` in the child.
Single-threaded (NUMBA_NUM_THREADS=1). ``load_average`` is the machine's 1-minute load
before and after.
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
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


class _NoScipy:
    """A finder that makes scipy look uninstalled (``--without-scipy``)."""

    def find_spec(self, name, path, target=None):
        if name == "scipy" or name.startswith("scipy."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def child_backtest(store: str, again: bool) -> None:
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
    if again:
        step("backtest_second", lambda: W.run_backtest(market, "W1"))
    out["final_equity"] = float(res.equity.values[-1])
    _report(out)


def child_libraries(frozen: bool = False, numba_only: bool = False) -> None:
    """The floor: the libraries W1's process imports and numba's registries, nothing of
    pitgrid's own; ``frozen``: imported as pitgrid imports them; ``numba_only``: numba alone."""
    from contextlib import nullcontext

    t_start = time.perf_counter()
    out: dict = {}
    step = _stepper(out)

    def imports():
        import numba  # noqa: F401
        import numpy  # noqa: F401
        if not numba_only:
            import pandas  # noqa: F401
            import polars  # noqa: F401
            import xarray  # noqa: F401
            import zarr  # noqa: F401

    def registries():
        from numba.core.registry import cpu_target

        cpu_target.typing_context.refresh()
        cpu_target.target_context.refresh()

    if frozen:  # the standard library only, counted in the floor as in pitgrid's process
        from pitgrid.frozen_imports import frozen_imports
    with frozen_imports() if frozen else nullcontext():
        step("import", imports)
        step("numba_registries", registries)
    out["in_process_first_run_s"] = time.perf_counter() - t_start
    _report(out)


# the floors: scenario -> (imported as pitgrid imports, numba alone)
_FLOORS = {"libraries": (False, False), "libraries_frozen": (True, False),
           "numba_frozen": (True, True)}


def _report(out: dict) -> None:
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["script_end_epoch"] = time.time()  # the parent takes the exit's share from it
    print(json.dumps(out))


def child(n_time: int, n_symbols: int, again: bool) -> None:
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
    if again:
        step("signals_second", lambda: W.ma_signals(ds))
        step("simulate_second", lambda: W.run_w1(prep))
    out["final_equity"] = float(res.equity.values[-1])
    _report(out)


def run_once(cache_dir: Path, scenario: str, n_time: int, n_symbols: int,
             store: Path | None = None, without_scipy: bool = False, again: bool = False) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "NUMBA_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    files_before = sum(1 for p in cache_dir.rglob("*") if p.is_file())
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE), "--child", scenario, "--n-time", str(n_time),
                           "--n-symbols", str(n_symbols),
                           *(["--store", str(store)] if store else []),
                           *(["--without-scipy"] if without_scipy else []),
                           *(["--again"] if again else [])],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ended = time.time()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"cold-start child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = wall
    res["exit_s"] = ended - res.pop("script_end_epoch")
    res["process_cpu_s"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    res["cache_files_before"] = files_before
    res["cache_files_after"] = sum(1 for p in cache_dir.rglob("*") if p.is_file())
    return res


def medians(runs: list[dict]) -> dict:
    """Each number the median over ``runs``; ``runs`` kept beside them."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {**{k: statistics.median(r[k] for r in runs) for k in keys}, "runs": runs}


def _write_store(path: Path, n_time: int, n_symbols: int) -> Path:
    """W1's data as a store, written in a separate process (nothing of it warms the children)."""
    code = ("import sys; sys.path.insert(0, %r); from benches import workloads as W; import pitgrid as pg; "
            "from pitgrid.data.store import write_market; write_market(pg.MarketData(W.data(%d, %d)), %r)"
            % (str(ROOT), n_time, n_symbols, str(path)))
    subprocess.run([sys.executable, "-c", code], check=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=("simulate", "backtest", *_FLOORS),
                    help=argparse.SUPPRESS)
    ap.add_argument("--n-time", type=int, default=2520)
    ap.add_argument("--n-symbols", type=int, default=500)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--again", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--without-scipy", action="store_true",
                    help="run the children as if scipy were not installed")
    ap.add_argument("--repeat", type=int, default=5, help="processes with numba's cache filled "
                    "(medians reported)")
    ap.add_argument("--json", help="also write the JSON here")
    args = ap.parse_args()
    if args.child and args.without_scipy:
        sys.meta_path.insert(0, _NoScipy())
    if args.child == "backtest":
        child_backtest(args.store, args.again)
    elif args.child in _FLOORS:
        child_libraries(*_FLOORS[args.child])
    elif args.child:
        child(args.n_time, args.n_symbols, args.again)
    if args.child:
        return
    import platform

    out = {
        "workload": f"W1: synthetic_prices({args.n_time}, {args.n_symbols}, seed=42), SMA 10/50 "
                    "cross, per-symbol accounts, fill at close",
        "python": platform.python_version(),
        "without_scipy": args.without_scipy,
        "load_average_before": os.getloadavg()[0],
    }
    for package in (ROOT / "src" / "pitgrid", ROOT / "kernels", HERE.parent):
        compileall.compile_dir(package, quiet=1)
    tmp = Path(tempfile.mkdtemp(prefix="pitgrid-cold-start-"))
    try:
        store = _write_store(tmp / "w1", args.n_time, args.n_symbols)
        for scenario, where in (("simulate", None), ("backtest", store),
                                *((floor, None) for floor in _FLOORS)):
            cache = tmp / f"numba-cache-{scenario}"
            cache.mkdir()
            once = (cache, scenario, args.n_time, args.n_symbols, where, args.without_scipy)
            empty = run_once(*once, again=True)
            filled = [run_once(*once) for _ in range(args.repeat)]
            out[scenario] = {"numba_cache_empty": empty, "numba_cache_filled": medians(filled)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["load_average_after"] = os.getloadavg()[0]
    filled = {k: out[k]["numba_cache_filled"] for k in ("backtest", *_FLOORS)}
    for floor in _FLOORS:
        out[f"backtest_over_{floor}"] = {
            k: filled["backtest"][k] / filled[floor][k] for k in ("process_wall_s", "process_cpu_s")}
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
