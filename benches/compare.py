"""Peer comparison: W1 to W4 (and W1S, W1 with stops) on pitgrid and on vectorbt, same data, costs and fill rule.

    python benches/compare.py [--quick] [--peer-python PATH] [--peer-engine auto|rust|numba]
                              [--repeat N] [--only W1,W1S,W4,cold] [--mem-limit-gib 8] [--json FILE]

Run it with pitgrid's interpreter (``.venv/bin/python``). pitgrid always runs in
that interpreter; vectorbt runs in ``--peer-python`` (default: this interpreter),
so vectorbt can live in its own virtualenv (docs/benchmarks.md has the recipe).

Every (engine, workload) runs in a fresh child process that:

1. loads the same close prices from a ``.npy`` file the parent wrote once per size
   (``synthetic_prices(...)["close"]``, seed 42) and builds the engine's container
   (pitgrid: an xarray Dataset / MarketData; vectorbt: a pandas DataFrame);
2. runs the workload once (the untimed warm-up; its wall time from process spawn
   to the end of this first pass is reported as "first run");
3. runs it ``--repeat`` more times and keeps the best and median time of each phase
   (and of the whole pass): data prep, signals/features, simulation, metrics (the
   table shows the phases' best; the JSON has both, and the pg.backtest call's best and
   median are printed below the table);
4. reports its peak RSS (``resource.getrusage`` in the child).

The child runs under ``RLIMIT_AS`` (``--mem-limit-gib``, 3/4 of RAM up to 18 GiB by default) so a
workload that needs more memory fails with a reported error instead of pushing
the machine out of memory. Both engines run single-threaded (NUMBA_NUM_THREADS,
RAYON_NUM_THREADS and the BLAS thread variables are 1).

Settings (W1..W4 as in benches/workloads.py): 10 bps fees, 5 bps slippage, fill at
close, 100,000 initial cash. vectorbt: ``Portfolio.from_signals(close, entries,
exits, fees=0.001, slippage=0.0005, init_cash=100000, size=np.inf,
direction="longonly")`` per column = pitgrid's per-symbol accounts with
``size="all"``; W4 is ``Portfolio.from_orders(size=weights,
size_type="targetpercent", cash_sharing=True, group_by=True, call_seq="auto")``.
Metrics are the same set on both sides (total and annual return, volatility,
Sharpe, Sortino, max drawdown, Calmar, VaR/CVaR 95 %, fills, closed trades, win
rate, profit factor), of total equity (W1, W3), per pair (W2), of the shared
account (W4). pitgrid computes them inside ``simulate`` / ``grid``, so its metrics
column reads "in sim"; compare the totals.

Engines (``WORKLOADS`` lists which run each workload; add a workload there):

* ``pitgrid``: signals or weights from the kernels, then ``pg.simulate`` (W2: ``pg.grid``);
* ``pitgrid-backtest``: what a user calls, ``pg.backtest(market, strategy, settings)``
  with every other setting at its default (``MovingAverageCross`` for W1 and W3,
  ``CrossSectionalMomentum`` for W4) on a ``MarketData``, features rebuilt every pass;
* ``vectorbt``: as above; W2 as one call on 50,000 columns (every pair at once);
* ``vectorbt-loop``: W2 as a careful user runs it when the 50,000 columns do not fit:
  each distinct average once, then one W1-sized ``from_signals`` and its metrics per
  pair (``--loop-repeat`` passes, 2 by default: a pass is tens of seconds).

The ratio rows divide each pitgrid engine by the better (faster) vectorbt form.

W1S is W1 with a 5 % stop-loss and a 10 % take-profit on every position, with the
bars' open, high and low: pitgrid ``simulate(..., sl_stop=0.05, tp_stop=0.10)``,
vectorbt ``from_signals(..., open=, high=, low=, sl_stop=0.05, tp_stop=0.10,
stop_entry_price="price", stop_exit_price="stopmarket")`` (the mapping
tests/test_orders_vectorbt.py holds fill by fill; the two engines differ only where
the open gaps through the target while the low reaches the stop, docs/simulation.md).

W1 check: final value per symbol (1e-6 relative) and fills per symbol must agree
between the engines; the parent prints the result and exits 1 when it fails.

Cold start: W1 once in a fresh process per engine, with ``NUMBA_CACHE_DIR`` a new
empty folder, then again with the folder the first process filled. Two times: spawn
to the end of the W1 pass (interpreter start, imports, data, signals, simulation,
metrics), and the whole process, exit included, as the parent sees it. pitgrid runs
it twice: the simulate path on the same ``.npy`` data as vectorbt, and
``pg.backtest`` on a stored market (``pg.open_market`` of a store written once).
``benches/cold_start.py`` splits pitgrid's side by phase.

``--quick`` runs 1/4 of the symbols (W1, W2, W4: 125; W3: 1250) and 3 repeats.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
GIB = 1 << 30

START = "2010-01-04"  # synthetic_prices' first bar; bars are business days

# workload -> (bars, symbols) at full size, and the engines that run it, in table order
WORKLOADS: dict[str, dict] = {
    "W1": {"size": (2520, 500), "engines": ("pitgrid", "pitgrid-backtest", "vectorbt")},
    "W1S": {"size": (2520, 500), "engines": ("pitgrid", "vectorbt")},
    "W2": {"size": (2520, 500), "engines": ("pitgrid", "vectorbt", "vectorbt-loop")},
    "W3": {"size": (5040, 5000), "engines": ("pitgrid", "pitgrid-backtest", "vectorbt")},
    "W4": {"size": (2520, 500), "engines": ("pitgrid", "pitgrid-backtest", "vectorbt")},
}
PHASES = ("prep", "signals", "sim", "metrics")
THREAD_VARS = ("NUMBA_NUM_THREADS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS", "POLARS_MAX_THREADS")


# =============================================================================== child side
def _now() -> float:
    return time.perf_counter()


FIELDS = ("open", "high", "low", "close", "volume")
OHLC = ("open", "high", "low", "close")
W1S_STOPS = {"sl_stop": 0.05, "tp_stop": 0.10}


def _load_close(job: dict):
    import numpy as np

    return np.load(Path(job["data"]) / "close.npy")


def _load_dataset(job: dict, fields=("close",)):
    """The workload's data as pitgrid takes it: a Dataset with ``fields`` (MarketData needs OHLCV)."""
    import numpy as np
    import xarray as xr

    arrays = {f: np.load(Path(job["data"]) / f"{f}.npy") for f in fields}
    times, symbols = _index(*arrays["close"].shape)
    return xr.Dataset({f: (("time", "symbol"), a) for f, a in arrays.items()},
                      coords={"time": times, "symbol": symbols})


def _index(T: int, S: int):
    """The time and symbol labels synthetic_prices gives."""
    import pandas as pd

    return (pd.bdate_range(START, periods=T).values.astype("datetime64[ns]"),
            [f"S{i:0{max(4, len(str(S)))}d}" for i in range(S)])


# ------------------------------------------------------------------------------- pitgrid
def pitgrid_pass(job: dict, check: bool) -> tuple[dict, dict]:
    import numpy as np

    import pitgrid as pg
    from benches import workloads as W

    ph: dict = {}
    w = job["workload"]
    t0 = _now()
    if w == "W2":  # MarketData needs OHLCV; simulate needs only close
        ds = _load_dataset(job, FIELDS)
        market = pg.MarketData(ds)
    elif w == "W1S":  # stops read each bar's range
        ds = _load_dataset(job, OHLC)
    else:
        ds = _load_dataset(job)
    symbols = ds["symbol"].values
    ph["prep"] = _now() - t0
    info: dict = {}
    if w == "W2":
        # grid computes each distinct average once and runs the 100 pairs as the core's
        # parameter axis, metrics included: features, simulation and metrics are one call
        t0 = _now()
        g = W.run_w2(market)
        ph["sim"] = _now() - t0
        ph["signals"] = ph["metrics"] = None
        info["pairs"] = g.table.height
        info["best_sharpe"] = float(np.nanmax(g.table["sharpe"].to_numpy()))
        return ph, info
    t0 = _now()
    prep = W.momentum_weights(ds, **job["w4"]) if w == "W4" else W.ma_signals(ds, **job["w1"])
    ph["signals"] = _now() - t0
    t0 = _now()
    if w == "W1S":
        res = W.computed(pg.simulate(ds, entries=prep.entries, exits=prep.exits, keep="equity",
                                     **W.W1_SETTINGS, **W1S_STOPS))
    else:
        res = W.run_w4(prep) if w == "W4" else W.run_w1(prep)
    ph["sim"] = _now() - t0
    m = res.metrics.row(0, named=True)  # built inside the timed call (W.computed)
    info = {k: float(m[k]) for k in ("total_return", "sharpe", "max_drawdown", "fills", "trades")}
    info["final_value"] = float(res.equity.values[-1])
    ph["metrics"] = None
    if check and w == "W1":
        full = pg.simulate(ds, entries=prep.entries, exits=prep.exits, keep="full", **W.W1_SETTINGS)
        fills = np.bincount(np.searchsorted(symbols, full.trades["symbol"].to_numpy()),
                            minlength=len(symbols))
        np.savez(job["check"], final_value=full.account_equity.values[-1], fills=fills,
                 entries=prep.entries, exits=prep.exits)
    return ph, info


def _strategy(job: dict):
    """The strategy ``pg.backtest`` runs for a workload, with the workload's own parameters."""
    from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross

    if job["workload"] == "W4":
        return CrossSectionalMomentum(**job["w4"])
    return MovingAverageCross(**job["w1"])


def pitgrid_backtest_pass(job: dict, check: bool) -> tuple[dict, dict]:
    """The user's call: ``pg.backtest(market, strategy, settings)``, other settings at their
    defaults; features, signals, simulation and metrics all inside the call."""
    import pitgrid as pg
    from benches import workloads as W

    ph: dict = {}
    t0 = _now()
    market = pg.open_market(job["store"]) if job.get("store") else pg.MarketData(
        _load_dataset(job, FIELDS))
    ph["prep"] = _now() - t0
    settings = W.W4_SETTINGS if job["workload"] == "W4" else W.W1_SETTINGS
    pg.clear_feature_cache()  # features are part of every pass
    t0 = _now()
    res = W.computed(pg.backtest(market, _strategy(job), settings))
    ph["sim"] = _now() - t0
    ph["signals"] = ph["metrics"] = None
    m = res.metrics.row(0, named=True)
    info = {k: float(m[k]) for k in ("total_return", "sharpe", "max_drawdown", "fills", "trades")}
    info["final_value"] = float(res.equity.values[-1])
    return ph, info


def pitgrid_extra(job: dict, repeat: int) -> dict:
    """W1 end to end through a strategy (pg.backtest with MovingAverageCross), and the core alone."""
    import pitgrid as pg
    from benches import workloads as W
    from pitgrid.strategies import MovingAverageCross

    ds = _load_dataset(job, FIELDS)
    market = pg.MarketData(ds)
    strat = MovingAverageCross(**job["w1"])
    out = {}
    def end_to_end(keep: str) -> None:
        pg.clear_feature_cache()  # features are part of the pass
        W.computed(pg.backtest(market, strat, W.W1_SETTINGS, keep=keep))

    for keep in ("full", "equity"):
        end_to_end(keep)
        out[f"backtest_keep_{keep}_s"], out[f"backtest_keep_{keep}_median_s"] = _best_median(
            lambda: end_to_end(keep), repeat)
    prep = W.ma_signals(ds, **job["w1"])
    core = [W.core_only(prep, W.W1_SETTINGS) for _ in range(max(repeat, 3))]
    out["core_s"], out["core_median_s"] = min(core), statistics.median(core)
    out["core_cells_per_s"] = ds["close"].size / out["core_s"]
    return out


def _best_median(fn, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t0 = _now()
        fn()
        times.append(_now() - t0)
    return min(times), statistics.median(times)


# ------------------------------------------------------------------------------ vectorbt
def _vbt_engine(job: dict) -> str:
    import vectorbt as vbt
    from vectorbt._engine import is_rust_available, resolve_engine

    vbt.settings["engine"] = job["peer_engine"]
    eng = resolve_engine()
    return f"{eng} (vectorbt {vbt.__version__}, vectorbt-rust {'yes' if is_rust_available() else 'no'})"


def _vbt_metrics(pf, group_by) -> dict:
    ra = pf.get_returns_acc(group_by=group_by)
    tr = pf.trades
    return {
        "total_return": ra.total(), "annual_return": ra.annualized(),
        "volatility": ra.annualized_volatility(), "sharpe": ra.sharpe_ratio(),
        "sortino": ra.sortino_ratio(), "max_drawdown": ra.max_drawdown(),
        "calmar": ra.calmar_ratio(), "var_95": ra.value_at_risk(), "cvar_95": ra.cond_value_at_risk(),
        "fills": pf.orders.count(group_by=group_by),
        "trades": tr.closed.count(group_by=group_by),
        "win_rate": tr.win_rate(group_by=group_by), "profit_factor": tr.profit_factor(group_by=group_by),
    }


def vectorbt_pass(job: dict, check: bool) -> tuple[dict, dict]:
    import numpy as np
    import pandas as pd
    import vectorbt as vbt

    ph: dict = {}
    w = job["workload"]
    fees, slip, init_cash = job["fees"], job["slippage"], job["init_cash"]
    lookback, top, every = job["w4"]["lookback"], job["w4"]["top"], job["w4"]["every"]
    t0 = _now()
    close_np = _load_close(job)
    times, symbols = _index(*close_np.shape)
    close = pd.DataFrame(close_np, index=pd.DatetimeIndex(times), columns=symbols)
    ph["prep"] = _now() - t0
    info: dict = {}
    if w == "W4":
        t0 = _now()
        mom = close / close.shift(lookback) - 1.0
        rank = (-mom).rank(axis=1, method="average")
        selected = rank.le(top)
        n = selected.sum(axis=1).clip(lower=1)
        wts = selected.astype(float).div(n, axis=0)
        rebalance = np.arange(len(close)) % every == 0
        wts[~rebalance] = np.nan
        ph["signals"] = _now() - t0
        t0 = _now()
        pf = vbt.Portfolio.from_orders(close, size=wts, size_type="targetpercent", fees=fees,
                                       slippage=slip, init_cash=init_cash, cash_sharing=True,
                                       group_by=True, call_seq="auto", freq="1D")
        ph["sim"] = _now() - t0
        group_by = None
    elif job["engine"] == "vectorbt-loop":
        return _vbt_w2_loop(job, close, ph)
    else:
        t0 = _now()
        if w == "W2":
            fw = [f for f, _ in job["pairs"]]
            sw = [s for _, s in job["pairs"]]
            fast = vbt.MA.run(close, window=fw, short_name="fast")
            slow = vbt.MA.run(close, window=sw, short_name="slow")
        else:
            fast = vbt.MA.run(close, window=job["w1"]["fast"], short_name="fast")
            slow = vbt.MA.run(close, window=job["w1"]["slow"], short_name="slow")
        entries = fast.ma_crossed_above(slow)
        exits = fast.ma_crossed_below(slow)
        ph["signals"] = _now() - t0
        del fast, slow
        kw = {}
        if job.get("max_orders"):
            # at most one fill per signal, and never more than one per bar
            per_col = int((entries.values.sum(axis=0) + exits.values.sum(axis=0)).max()) + 1
            kw = {"max_orders": per_col * entries.shape[1], "max_logs": 0}
        if w == "W1S":
            kw.update({f: pd.DataFrame(np.load(Path(job["data"]) / f"{f}.npy"), index=close.index,
                                       columns=close.columns) for f in ("open", "high", "low")})
            kw.update(W1S_STOPS, stop_entry_price="price", stop_exit_price="stopmarket")
        t0 = _now()
        pf = vbt.Portfolio.from_signals(close, entries, exits, fees=fees, slippage=slip,
                                        init_cash=init_cash, size=np.inf, direction="longonly",
                                        freq="1D", **kw)
        ph["sim"] = _now() - t0
        group_by = list(pf.wrapper.columns.names[:2]) if w == "W2" else True
        if check and w == "W1":
            np.savez(job["check"], final_value=pf.final_value().to_numpy(),
                     fills=pf.orders.count().to_numpy(), entries=entries.to_numpy(),
                     exits=exits.to_numpy())
        del entries, exits
    t0 = _now()
    m = _vbt_metrics(pf, group_by)
    ph["metrics"] = _now() - t0
    if w == "W2":
        info["pairs"] = len(job["pairs"])
        info["best_sharpe"] = float(np.nanmax(np.asarray(m["sharpe"])))
    else:
        info = {k: float(np.asarray(m[k]).sum()) for k in ("total_return", "sharpe", "max_drawdown",
                                                            "fills", "trades")}
        info["final_value"] = float(np.asarray(pf.final_value(group_by=group_by)).sum())
    return ph, info


def _vbt_w2_loop(job: dict, close, ph: dict) -> tuple[dict, dict]:
    """W2 one pair at a time: each distinct average once, then per pair its signals, a
    W1-sized ``from_signals`` and its metrics; memory stays near one W1 run's."""
    import numpy as np
    import vectorbt as vbt

    t0 = _now()
    windows = sorted({w for pair in job["pairs"] for w in pair})
    ma = {w: vbt.MA.run(close, window=w).ma.droplevel(0, axis=1) for w in windows}
    ph["signals"], ph["sim"], ph["metrics"] = _now() - t0, 0.0, 0.0
    sharpe = []
    for f, s in job["pairs"]:
        t0 = _now()
        entries = ma[f].vbt.crossed_above(ma[s])
        exits = ma[f].vbt.crossed_below(ma[s])
        t1 = _now()
        pf = vbt.Portfolio.from_signals(close, entries, exits, fees=job["fees"],
                                        slippage=job["slippage"], init_cash=job["init_cash"],
                                        size=np.inf, direction="longonly", freq="1D")
        t2 = _now()
        sharpe.append(float(_vbt_metrics(pf, True)["sharpe"]))
        ph["signals"] += t1 - t0
        ph["sim"] += t2 - t1
        ph["metrics"] += _now() - t2
    return ph, {"pairs": len(job["pairs"]), "best_sharpe": float(np.nanmax(sharpe))}


# ----------------------------------------------------------------------------- the child
def child(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    out: dict = {"engine": job["engine"], "workload": job["workload"]}
    try:
        if job.get("mem_limit_gib"):
            cap = int(job["mem_limit_gib"] * GIB)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        t_imp = _now()
        if job["engine"].startswith("pitgrid"):
            sys.path.insert(0, str(ROOT))
            import pitgrid  # noqa: F401
            from benches import workloads  # noqa: F401  (imports numba and the kernels)

            run = pitgrid_backtest_pass if job["engine"] == "pitgrid-backtest" else pitgrid_pass
            out["engine_detail"] = "pitgrid " + pitgrid.__version__
        else:
            out["engine_detail"] = _vbt_engine(job)
            run = vectorbt_pass
        out["import_s"] = _now() - t_imp
        out["rss_after_import_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ph, info = run(job, check=False)
        out["first_run_wall_s"] = time.time() - job["spawn_time"]
        if job["workload"] == "W1" and job["engine"] in ("pitgrid", "vectorbt") and job["repeat"]:
            run(job, check=True)  # writes the W1 check file, outside every timing
        out["first_run"] = ph
        out["info"] = info
        passes = []
        for _ in range(job["repeat"]):
            passes.append(run(job, check=False)[0])
        if passes:  # none in a cold-start run
            out["best"] = {p: (None if passes[0][p] is None else min(x[p] for x in passes))
                           for p in PHASES}
            # a phase's median (pg.backtest's call is its "sim"; its total counts the prep)
            out["median"] = {p: (None if passes[0][p] is None
                                 else statistics.median(x[p] for x in passes)) for p in PHASES}
            totals = [sum(v for v in x.values() if v is not None) for x in passes]
            out["best_total_s"] = min(totals)
            out["median_total_s"] = statistics.median(totals)
        if job["engine"] == "pitgrid" and job["workload"] == "W1" and passes:
            out["extra"] = pitgrid_extra(job, job["repeat"])
        out["ok"] = True
    except BaseException as e:  # MemoryError under the RLIMIT_AS cap included
        out["ok"] = False
        out["error"] = f"{type(e).__name__}: {e}"[:500]
        out["traceback"] = traceback.format_exc()[-3000:]
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(job["out"]).write_text(json.dumps(out))
    return 0 if out["ok"] else 3


# ============================================================================== parent side
def make_data(tmp: Path, T: int, S: int) -> Path:
    """workloads.data(T, S) (seed 42) as one .npy per field, written once per size by a child
    process (keeps the parent small)."""
    path = tmp / f"data_{T}x{S}"
    if not path.exists():
        path.mkdir()
        code = ("import sys, numpy as np; sys.path.insert(0, %r); from benches import workloads as W; "
                "ds = W.data(%d, %d); [np.save(%r + '/' + f + '.npy', np.ascontiguousarray(ds[f].values)) "
                "for f in %r]" % (str(ROOT), T, S, str(path), FIELDS))
        subprocess.run([sys.executable, "-c", code], check=True)
    return path


def make_store(data: Path) -> Path:
    """The same data as an ingested store (``write_market``), for ``pg.open_market``."""
    path = data / "store"
    if not path.exists():
        code = ("import sys, numpy as np, xarray as xr; sys.path.insert(0, %r); import pitgrid as pg; "
                "from benches import compare as C; from pitgrid.data.store import write_market; "
                "write_market(pg.MarketData(C._load_dataset({'data': %r}, C.FIELDS)), %r)"
                % (str(ROOT), str(data), str(path)))
        subprocess.run([sys.executable, "-c", code], check=True)
    return path


def run_child(python: str, job: dict, tmp: Path, timeout: float) -> dict:
    name = f"{job['engine']}_{job['workload']}_{len(job.get('pairs') or [])}_{int(time.time() * 1e3)}"
    job = {**job, "out": str(tmp / f"{name}.out.json"), "check": str(tmp / f"{job['engine']}_check.npz")}
    job_path = tmp / f"{name}.job.json"
    env = {**os.environ, **{v: "1" for v in THREAD_VARS}}
    if job.get("numba_cache"):
        env["NUMBA_CACHE_DIR"] = job["numba_cache"]
    if job["engine"].startswith("pitgrid"):  # for ``benches``; pitgrid itself is installed (editable)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    job["spawn_time"] = time.time()
    job_path.write_text(json.dumps(job))
    t0 = _now()
    try:
        proc = subprocess.run([python, str(HERE), "--child", str(job_path)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        rc, err = None, f"timed out after {timeout:.0f} s"
    wall = _now() - t0
    out_path = Path(job["out"])
    if out_path.exists():
        res = json.loads(out_path.read_text())
    else:
        why = f"signal {-rc}" if rc is not None and rc < 0 else f"exit code {rc}"
        last = [ln for ln in (err or "").splitlines() if "alloc" in ln or "Error" in ln]
        res = {"ok": False, "engine": job["engine"], "workload": job["workload"],
               "error": f"child died without a result ({why}): "
                        f"{(last[0] if last else (err or '').strip()[-300:]).strip()}"}
    res["process_wall_s"] = wall
    if not res.get("ok"):
        res.setdefault("stderr_tail", (err or "")[-2000:])
    return res


def cold_start(pythons: dict[str, str], base: dict, tmp: Path, timeout: float) -> list[dict]:
    """W1 once in a fresh process per engine, numba's on-disk cache first empty, then filled
    by that first process; ``first_run_wall_s`` runs from spawn to the end of the W1 pass,
    ``process_wall_s`` (the parent's clock) to the end of the process, exit included."""
    rows = []
    for eng, python in pythons.items():
        cache = Path(tempfile.mkdtemp(prefix=f"numba-cache-{eng}-", dir=tmp))
        for state in ("empty", "filled"):
            print(f"[cold start] {eng}, numba cache {state} ...", file=sys.stderr, flush=True)
            job = {**base, "engine": eng, "repeat": 0, "numba_cache": str(cache)}
            if eng == "pitgrid-backtest":
                job["store"] = str(make_store(Path(base["data"])))
            res = run_child(python, job, tmp, timeout)
            rows.append({**res, "workload": "cold start", "cache": state})
    return rows


COLD_LABELS = {"pitgrid": "pitgrid (simulate, .npy)", "pitgrid-backtest": "pitgrid (pg.backtest, store)",
               "vectorbt": "vectorbt (.npy)"}


def print_cold_table(rows: list[dict]) -> str:
    head = ["cold start (W1 once)", "numba cache", "imports", "spawn to W1 done",
            "whole process (exit included)", "peak RSS"]
    body = [[COLD_LABELS[r["engine"]], r["cache"], _fmt_s(r["import_s"]), _fmt_s(r["first_run_wall_s"]),
             _fmt_s(r["process_wall_s"]), f"{r['peak_rss_mib']:.0f} MiB"] if r.get("ok")
            else [COLD_LABELS[r["engine"]], r["cache"], "FAILED (below)", "", "", ""] for r in rows]
    by = {(r["engine"], r["cache"]): r for r in rows if r.get("ok")}
    for eng in ("pitgrid", "pitgrid-backtest"):
        for state in ("empty", "filled"):
            a, v = by.get((eng, state)), by.get(("vectorbt", state))
            if a and v:
                body.append([f"{COLD_LABELS[eng]} / vectorbt", state, _ratio(a["import_s"], v["import_s"]),
                             _ratio(a["first_run_wall_s"], v["first_run_wall_s"]),
                             _ratio(a["process_wall_s"], v["process_wall_s"]),
                             _ratio(a["peak_rss_mib"], v["peak_rss_mib"])])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = [" | ".join(str(x).ljust(n) for x, n in zip(head, widths)),
             "-+-".join("-" * n for n in widths)]
    lines += [" | ".join(str(x).ljust(n) for x, n in zip(row, widths)) for row in body]
    return "\n".join(lines)


def check_w1(tmp: Path) -> dict:
    import numpy as np

    a = np.load(tmp / "pitgrid_check.npz")
    b = np.load(tmp / "vectorbt_check.npz")
    fv_a, fv_b = a["final_value"], b["final_value"]
    rel = np.abs(fv_a - fv_b) / np.abs(fv_b)
    out = {
        "symbols": int(fv_a.size),
        "entry_signal_mismatches": int((a["entries"] != b["entries"]).sum()),
        "exit_signal_mismatches": int((a["exits"] != b["exits"]).sum()),
        "max_rel_diff_final_value": float(rel.max()),
        "symbols_over_1e-6": int((rel > 1e-6).sum()),
        "fills_pitgrid": int(a["fills"].sum()), "fills_vectorbt": int(b["fills"].sum()),
        "symbols_with_different_fills": int((a["fills"] != b["fills"]).sum()),
    }
    out["pass"] = out["symbols_over_1e-6"] == 0 and out["symbols_with_different_fills"] == 0
    return out


def _fmt_s(x) -> str:
    if x is None:
        return "in sim"
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def _ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


ENGINE_LABELS = {"pitgrid": "pitgrid", "pitgrid-backtest": "pitgrid (pg.backtest)",
                 "vectorbt": "vectorbt", "vectorbt-loop": "vectorbt, loop of W1 runs"}


def _better_peer(pair: dict[str, dict], pairs: int | None) -> dict | None:
    """The faster vectorbt form that ran the same number of pairs (None if none did)."""
    ok = [r for e, r in pair.items() if e.startswith("vectorbt") and r.get("ok")
          and r["info"].get("pairs") == pairs]
    return min(ok, key=lambda r: r["best_total_s"]) if ok else None


def print_table(results: list[dict], sizes: dict) -> str:
    head = ["workload", "engine", "prep", "signals", "sim", "metrics", "total (best)",
            "total (median)", "first run (proc)", "peak RSS"]
    rows = []
    for w in sizes:
        pair = {r["engine"]: r for r in results if r["workload"] == w}
        if not pair:
            continue
        T, S = sizes[w]
        for eng in WORKLOADS[w]["engines"]:
            r = pair.get(eng)
            if r is None:
                continue
            label = f"{w} {T}x{S}"
            if w == "W2":
                n = (r.get("info") or {}).get("pairs") or r.get("pairs_requested")
                label += f" {n} pairs"
            name = ENGINE_LABELS[eng]
            if eng == "vectorbt" and r.get("ok"):
                name += " (" + r["engine_detail"].split(" (")[0] + ")"
            if not r.get("ok"):
                rows.append([label, name, "FAILED (below)", "", "", "", "", "", "",
                             f"{r.get('peak_rss_mib', float('nan')):.0f} MiB" if "peak_rss_mib" in r else "-"])
                continue
            b = r["best"]
            rows.append([label, name, *(_fmt_s(b[p]) for p in PHASES), _fmt_s(r["best_total_s"]),
                         _fmt_s(r["median_total_s"]), _fmt_s(r["first_run_wall_s"]),
                         f"{r['peak_rss_mib']:.0f} MiB"])
        for eng in (e for e in WORKLOADS[w]["engines"] if e.startswith("pitgrid")):
            a = pair.get(eng)
            if not (a and a.get("ok")):
                continue
            v = _better_peer(pair, a["info"].get("pairs"))
            if v is not None:
                rows.append([w, f"{ENGINE_LABELS[eng]} / {ENGINE_LABELS[v['engine']]}",
                             *(_ratio(a["best"][p], v["best"][p]) for p in PHASES),
                             _ratio(a["best_total_s"], v["best_total_s"]),
                             _ratio(a["median_total_s"], v["median_total_s"]),
                             _ratio(a["first_run_wall_s"], v["first_run_wall_s"]),
                             _ratio(a["peak_rss_mib"], v["peak_rss_mib"])])
                continue
            v = _better_peer(pair, next((r["info"].get("pairs") for e, r in pair.items()
                                         if e.startswith("vectorbt") and r.get("ok")), None))
            if v is not None:  # vectorbt ran a reduced grid: compare time per pair, nothing else
                per = (v["info"]["pairs"] or 1) / (a["info"]["pairs"] or 1)
                rows.append([w, f"{ENGINE_LABELS[eng]} / {ENGINE_LABELS[v['engine']]} per pair "
                             f"({a['info']['pairs']} vs {v['info']['pairs']} pairs)", "-", "-",
                             _ratio(a["best"]["sim"] * per, v["best"]["sim"]), "-",
                             _ratio(a["best_total_s"] * per, v["best_total_s"]),
                             _ratio(a["median_total_s"] * per, v["median_total_s"]), "-", "-"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = [" | ".join(str(x).ljust(n) for x, n in zip(head, widths)),
             "-+-".join("-" * n for n in widths)]
    lines += [" | ".join(str(x).ljust(n) for x, n in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _defaults(fn) -> dict:
    """The keyword defaults of a workloads.py builder (W1's 10/50, W4's 126/50/21)."""
    import inspect

    return {k: v.default for k, v in inspect.signature(fn).parameters.items()
            if v.default is not inspect.Parameter.empty}


def _default_cap_gib() -> float:
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return round(min(18.0, 0.75 * physical), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="1/4 of the symbols, 3 repeats")
    ap.add_argument("--peer-python", default=sys.executable,
                    help="interpreter with vectorbt installed (default: this one)")
    ap.add_argument("--peer-engine", default="auto", choices=("auto", "rust", "numba"),
                    help="vectorbt engine (auto = Rust where vectorbt-rust is installed and supports the call)")
    ap.add_argument("--repeat", type=int, default=None, help="timed warm repeats (default 5, quick 3)")
    ap.add_argument("--only", default=",".join([*WORKLOADS, "cold"]), help="comma-separated workloads; "
                    "cold = cold start (W1 once, numba cache empty then filled)")
    ap.add_argument("--engines", default=None, help="comma-separated engines to run (default: every "
                    "engine of each workload), e.g. pitgrid,pitgrid-backtest to time pitgrid alone")
    ap.add_argument("--mem-limit-gib", type=float, default=_default_cap_gib(),
                    help="RLIMIT_AS per child (default: 3/4 of physical memory, at most 18)")
    ap.add_argument("--w2-pairs-fallback", type=int, default=20,
                    help="pairs for vectorbt W2 when the full grid does not fit under the cap")
    ap.add_argument("--loop-repeat", type=int, default=2,
                    help="timed passes of vectorbt's W2 loop form (each runs the 100 pairs)")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per child")
    ap.add_argument("--json", help="write every child's result here")
    args = ap.parse_args()
    if args.child:
        return child(args.child)

    div = 4 if args.quick else 1
    repeat = args.repeat or (3 if args.quick else 5)
    sizes = {w: (spec["size"][0], spec["size"][1] // div) for w, spec in WORKLOADS.items()}
    sys.path.insert(0, str(ROOT))
    import pitgrid as pg
    from benches import workloads as W

    costs = pg.SimConfig(**W.W1_SETTINGS)
    if (costs.fill, costs.accounts, costs.size) != ("close", "per_symbol", "all"):
        raise SystemExit(f"compare.py maps W1 to vectorbt as fill=close, per-symbol, size=all; got {costs}")
    settings = {"fees": costs.fees_bps / 1e4, "slippage": costs.slippage_bps / 1e4,
                "init_cash": costs.init_cash, "w1": _defaults(W.ma_signals),
                "w4": _defaults(W.momentum_weights)}
    pairs = [[f, s] for f in W.W2_FAST for s in W.W2_SLOW]
    wanted = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="pitgrid-compare-"))
    # the data written for the children (about 1 GiB for W3) goes when the comparison ends
    atexit.register(shutil.rmtree, tmp, True)
    load_start = os.getloadavg()
    results: list[dict] = []
    notes: list[str] = []
    for w in (w for w in wanted if w != "COLD"):
        data = make_data(tmp, *sizes[w])
        base = {**settings, "workload": w, "data": str(data), "repeat": repeat, "peer_engine": args.peer_engine,
                "mem_limit_gib": args.mem_limit_gib, "pairs": pairs if w == "W2" else None}
        for eng in WORKLOADS[w]["engines"]:
            if args.engines and eng not in args.engines.split(","):
                continue
            python = sys.executable if eng.startswith("pitgrid") else args.peer_python
            print(f"[{w}] {eng} ...", file=sys.stderr, flush=True)
            job = {**base, "engine": eng}
            if eng == "vectorbt-loop":
                job["repeat"] = min(repeat, args.loop_repeat)
            res = run_child(python, job, tmp, args.timeout)
            res["pairs_requested"] = len(pairs) if w == "W2" else None
            if w in ("W2", "W3") and eng == "vectorbt" and not res.get("ok"):
                cols = len(pairs) * sizes[w][1] if w == "W2" else sizes[w][1]
                notes.append(f"vectorbt {w} ({cols} columns), default max_orders: {res.get('error')} "
                             f"(cap {args.mem_limit_gib:g} GiB address space)")
                results.append({**res, "workload": f"{w} (default)"})
                print(f"[{w}] {eng} failed, retrying with max_orders bounded by the signals",
                      file=sys.stderr, flush=True)
                res = run_child(python, {**base, "engine": eng, "max_orders": True}, tmp, args.timeout)
                res["pairs_requested"] = len(pairs) if w == "W2" else None
                if res.get("ok"):
                    notes.append(f"vectorbt {w} ran with max_orders = (most signals in a column + 1) x "
                                 "columns and max_logs=0, which vectorbt documents for large runs.")
                else:
                    notes.append(f"vectorbt {w} with bounded max_orders: {res.get('error')}")
                if w == "W2" and not res.get("ok"):
                    results.append({**res, "workload": "W2 (max_orders)"})
                    k = args.w2_pairs_fallback
                    sub = pairs[:: max(1, len(pairs) // k)][:k]
                    print(f"[{w}] {eng} retrying on {len(sub)} pairs", file=sys.stderr, flush=True)
                    res = run_child(python, {**base, "engine": eng, "pairs": sub, "max_orders": True},
                                    tmp, args.timeout)
                    res["pairs_requested"] = len(sub)
                    if res.get("ok"):
                        floor = res["rss_after_import_mib"]
                        est = floor + (res["peak_rss_mib"] - floor) * len(pairs) / len(sub)
                        notes.append(f"vectorbt W2 reported on {len(sub)} of {len(pairs)} pairs "
                                     f"(peak RSS {res['peak_rss_mib']:.0f} MiB there, {floor:.0f} MiB after "
                                     f"imports; scaled to the full grid ~{est / 1024:.1f} GiB); the ratio "
                                     "row compares time per pair.")
            results.append(res)
            if not res.get("ok"):
                print(f"[{w}] {eng} failed: {res.get('error')}", file=sys.stderr, flush=True)
        if w == "W1" and not args.engines:
            try:
                chk = check_w1(tmp)
            except FileNotFoundError as e:
                chk = {"pass": False, "error": str(e)}
            results.append({"workload": "W1 check", "engine": "both", "check": chk})

    cold = []
    if "COLD" in wanted:
        cold_base = {**settings, "workload": "W1", "data": str(make_data(tmp, *sizes["W1"])),
                     "peer_engine": args.peer_engine, "mem_limit_gib": args.mem_limit_gib, "pairs": None}
        cold = cold_start({"pitgrid": sys.executable, "pitgrid-backtest": sys.executable,
                           "vectorbt": args.peer_python}, cold_base, tmp, args.timeout)
        results += cold
    table = print_table([r for r in results if r.get("workload") in sizes], sizes)
    print(f"\npitgrid vs vectorbt ({'quick, ' if args.quick else ''}best and median of {repeat} warm "
          f"passes after one warm-up, fresh process per engine and workload, single-threaded; "
          f"load average {load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)\n")
    print(table)
    if cold:
        print(f"\n{print_cold_table(cold)}")
    for r in results:
        if r.get("workload") == "W1" and r.get("engine") == "pitgrid" and r.get("ok"):
            e = r["extra"]
            print(f"\npitgrid W1 extras (best / median): core {e['core_s'] * 1e3:.1f} / "
                  f"{e['core_median_s'] * 1e3:.1f} ms ({e['core_cells_per_s'] / 1e6:.0f} M cell-steps/s); "
                  f"pg.backtest(MovingAverageCross) {e['backtest_keep_full_s'] * 1e3:.1f} / "
                  f"{e['backtest_keep_full_median_s'] * 1e3:.1f} ms (keep='full'), "
                  f"{e['backtest_keep_equity_s'] * 1e3:.1f} / "
                  f"{e['backtest_keep_equity_median_s'] * 1e3:.1f} ms (keep='equity')")
        if r.get("engine") == "pitgrid-backtest" and r.get("ok") and r.get("median"):
            print(f"{r['workload']} pg.backtest call alone (best / median): "
                  f"{r['best']['sim'] * 1e3:.1f} / {r['median']['sim'] * 1e3:.1f} ms "
                  f"(prep, a new MarketData, {r['best']['prep'] * 1e3:.1f} / "
                  f"{r['median']['prep'] * 1e3:.1f} ms)")
        if r.get("engine") == "vectorbt" and r.get("ok") and r["workload"] == "W1":
            print(f"vectorbt engine: {r['engine_detail']}")
        if r.get("workload") == "W1 check":
            c = r["check"]
            print("\nW1 check (final value per symbol to 1e-6 relative, fills per symbol): "
                  + ("PASS" if c.get("pass") else "FAIL") + "  " + json.dumps(c))
    finals = {(r["workload"], r["engine"]): r["info"] for r in results
              if r.get("ok") and r.get("workload") in sizes and "final_value" in (r.get("info") or {})}
    for (w, eng), a in finals.items():
        b = finals.get((w, "vectorbt"))
        if eng.startswith("pitgrid") and b is not None:
            print(f"{w} total final value: {ENGINE_LABELS[eng]} {a['final_value']:.2f}, vectorbt "
                  f"{b['final_value']:.2f} (rel diff "
                  f"{abs(a['final_value'] - b['final_value']) / abs(b['final_value']):.1e}); "
                  f"fills {a['fills']:.0f} vs {b['fills']:.0f}")
    for n in notes:
        print("note: " + n)
    for r in results:
        if r.get("ok") is False:
            print(f"failed: {r['workload']} {r['engine']}{' ' + r['cache'] if 'cache' in r else ''}: "
                  f"{r.get('error')}")
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": sizes, "repeat": repeat, "results": results,
                                               "notes": notes}, indent=1, default=str))
    chk = next((r["check"] for r in results if r.get("workload") == "W1 check"), None)
    pitgrid_failed = any(r.get("engine") == "pitgrid" and r.get("ok") is False for r in results)
    return 1 if pitgrid_failed or (chk is not None and not chk.get("pass")) else 0


if __name__ == "__main__":
    sys.exit(main())
