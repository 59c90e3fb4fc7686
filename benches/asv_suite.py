"""The asv suite: ingest, kernels, W1 to W4, the core against its floor, stops, grids (memory,
Dask), the step driver, model inference, import time.

Time (``time_*``) and peak memory (``peakmem_*``) for each. Run
``asv run --python=same --quick`` from the repository root.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import pitgrid as pg
from pitgrid import kernels as K

from benches import workloads as W


class Kernels:
    def setup(self):
        from benches.kernel_speed import plain_rolling_mean_nb

        self.close = np.ascontiguousarray(W.data()["close"].values)
        self.out = np.empty_like(self.close)
        self.plain = plain_rolling_mean_nb
        K.sma(self.close[:60], 10), K.rsi(self.close[:60], 14), K.cs_rank(self.close[:60])
        K.wma(self.close[:60], 10), plain_rolling_mean_nb(self.close[:60], 10, self.out[:60])

    def time_sma(self):
        K.sma(self.close, 50)

    def _over_plain(self, kernel) -> float:
        """Best of 7 of ``kernel`` into a preallocated output over the plain rolling sum's."""
        import time

        def best(f):
            ts = []
            for _ in range(7):
                t0 = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t0)
            return min(ts)

        return best(lambda: kernel(self.close, 20, self.out)) / best(
            lambda: self.plain(self.close, 20, self.out))

    def track_sma_over_plain_rolling_sum(self):
        return self._over_plain(K.sma_nb)

    track_sma_over_plain_rolling_sum.unit = "ratio"

    def track_wma_over_plain_rolling_sum(self):
        return self._over_plain(K.wma_nb)

    track_wma_over_plain_rolling_sum.unit = "ratio"

    def time_rsi(self):
        K.rsi(self.close, 14)

    def time_cs_rank(self):
        K.cs_rank(self.close)

    def peakmem_sma(self):
        K.sma(self.close, 50)


class Simulation:
    timeout = 300

    def setup(self):
        ds = W.data()
        self.w1 = W.ma_signals(ds)
        self.w4 = W.momentum_weights(ds)
        self.market = pg.MarketData(ds)
        W.run_w1(self.w1)
        W.run_w1_strategy(self.market)

    def time_w1_core(self):
        W.core_only(self.w1, W.W1_SETTINGS)

    def time_w1_simulate(self):
        W.run_w1(self.w1)

    def peakmem_w1_simulate(self):
        W.run_w1(self.w1)

    def time_w1_strategy_end_to_end(self):
        W.run_w1_strategy(self.market)

    def time_w1_backtest_default(self):
        W.run_backtest(self.market, "W1")

    def time_first_backtest_on_a_new_market(self):
        W.run_backtest(pg.MarketData(self.market.ds), "W1")

    def time_w4_simulate(self):
        W.run_w4(self.w4)

    def time_w4_backtest_default(self):
        W.run_backtest(self.market, "W4")


class CoreFloor:
    """``Core.run`` on W1 against the tight numba loop of benches/core_floor.py (same fills,
    same equity to the cent): the ratio of their medians, alternating, with the positions
    kept (``keep="full"``, journaled) and not."""

    timeout = 300

    def setup(self):
        from benches import core_floor as F

        ds = W.data()
        prep = W.ma_signals(ds)
        close = np.ascontiguousarray(ds["close"].values)
        equity = np.empty(close.shape[0])
        self.floor = lambda: F.floor_close(close, prep.entries, prep.exits, 100_000.0, F.FEES,
                                           F.SLIP, equity)
        self.core = {keep: F.core_run(prep, W.W1_SETTINGS, keep == "full")[0]
                     for keep in ("equity", "full")}
        self.floor()

    def _over_floor(self, keep: str) -> float:
        import statistics
        import time

        floor, core = [], []
        for _ in range(15):
            t0 = time.perf_counter()
            self.floor()
            floor.append(time.perf_counter() - t0)
            core.append(self.core[keep]()[0])
        return statistics.median(core) / statistics.median(floor)

    def time_floor(self):
        self.floor()

    def track_core_over_floor(self):
        return self._over_floor("equity")

    track_core_over_floor.unit = "ratio"

    def track_core_keep_full_over_floor(self):
        return self._over_floor("full")

    track_core_keep_full_over_floor.unit = "ratio"


# a 100-point (stop-loss, take-profit) grid: 10 stops x 10 targets
STOP_GRID_SL = np.repeat(np.linspace(0.01, 0.10, 10), 10)
STOP_GRID_TP = np.tile(np.linspace(0.02, 0.20, 10), 10)


class Stops:
    """W1 with a 5 % stop-loss and a 10 % take-profit; a 100-point (stop, target) grid in
    one compiled pass (the parameter axis, memory flat in its size) against the same 100
    runs one by one, and the largest difference of their equity curves (0: equal)."""

    timeout = 900

    def setup(self):
        self.w1 = W.ma_signals(W.data())
        self.time_w1_stops()

    def _run(self, sl, tp, keep="equity"):
        return pg.simulate(self.w1.ds, entries=self.w1.entries, exits=self.w1.exits, keep=keep,
                           record_trades=np.ndim(sl) == 0, sl_stop=sl, tp_stop=tp, **W.W1_SETTINGS)

    def time_w1_stops(self):
        self._run(0.05, 0.10)

    def time_grid_100_stops_one_pass(self):
        self._run(STOP_GRID_SL, STOP_GRID_TP)

    def peakmem_grid_100_stops_one_pass(self):
        self._run(STOP_GRID_SL, STOP_GRID_TP)

    def time_grid_100_stops_separate_runs(self):
        for sl, tp in zip(STOP_GRID_SL, STOP_GRID_TP):
            self._run(float(sl), float(tp))

    def track_grid_one_pass_minus_separate(self):
        together = np.asarray(self._run(STOP_GRID_SL, STOP_GRID_TP).equity.values)
        alone = np.stack([np.asarray(self._run(float(a), float(b)).equity.values)
                          for a, b in zip(STOP_GRID_SL, STOP_GRID_TP)])
        return float(np.max(np.abs(together - alone)))

    track_grid_one_pass_minus_separate.unit = "currency"


class W3:
    timeout = 600

    def setup(self):
        ds = W.data(5040, 5000)
        self.w3 = W.ma_signals(ds)
        self.market = pg.MarketData(ds)

    def time_w3_core(self):
        W.core_only(self.w3, W.W1_SETTINGS)

    def time_w3_simulate(self):
        W.run_w1(W.ma_signals(self.w3.ds))

    def time_w3_backtest_default(self):
        W.run_backtest(self.market, "W3")


class Grid:
    timeout = 600

    def setup(self):
        self.market = pg.MarketData(W.data())

    def time_w2(self):
        W.run_w2(self.market)

    def peakmem_w2(self):
        W.run_w2(self.market)


class GridMemory:
    """Peak memory of grids of 10 and 400 pairs and of 100 distinct windows at the default
    budget: flat, the feature bank counts in ``memory_budget_mb`` (benches/grid_scale.py)."""

    timeout = 600
    params = ["10 pairs (11 windows)", "400 pairs (40 windows)", "50 pairs (100 distinct windows)"]
    param_names = ["grid"]

    def setup(self, case):
        self.market = pg.MarketData(W.data())

    def peakmem_grid(self, case):
        from benches.grid_scale import memory_cases
        from pitgrid.strategies import MovingAverageCross

        pg.grid(self.market, MovingAverageCross(), memory_cases()[case], config=W.W1_SETTINGS,
                progress=False)


class GridOnDask:
    """W2 from a store on a LocalCluster of two single-threaded workers against one process:
    wall times, and the CPU-time speedup (one process's CPU time over the client's main
    thread's and the busiest worker's, median of 4 pairs in alternating order;
    benches/grid_scale.py also runs a loopback cluster)."""

    timeout = 900

    def setup(self):
        from dask.distributed import Client, LocalCluster

        from benches import grid_scale as G

        self.tmp = Path(tempfile.mkdtemp())
        self.store = G.w2_store(self.tmp)
        self.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=None)
        self.client = Client(self.cluster)
        G.run_w2(self.store)
        G.run_w2(self.store, self.client)

    def teardown(self):
        self.client.close()
        self.cluster.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_w2_one_process(self):
        from benches.grid_scale import run_w2

        run_w2(self.store)

    def time_w2_local_cluster_2_workers(self):
        from benches.grid_scale import run_w2

        run_w2(self.store, self.client)

    def track_w2_cpu_speedup_2_workers(self):
        from benches import grid_scale as G

        ratios = []
        for r in range(4):  # which runs first alternates: the second one measured slower
            if r % 2:
                run, _g = G.dask_run(self.store, self.client)
            one, _g = G.one_process_run(self.store)
            if not r % 2:
                run, _g = G.dask_run(self.store, self.client)
            ratios.append(G.compared(one, run)["cpu_speedup"])
        return float(np.median(ratios))

    track_w2_cpu_speedup_2_workers.unit = "ratio"


class StepDriver:
    def setup(self):
        from pitgrid.strategies import MovingAverageCross

        self.driver = pg.StepDriver(pg.MarketData(W.data(300, 500)), MovingAverageCross(fast=10, slow=50))
        for _ in range(100):
            self.driver.step()

    def time_step_500_symbols(self):
        if self.driver.t >= self.driver.n_time:
            self.setup()
        self.driver.step()


def _ma_cross_or_momentum(name: str) -> pg.Strategy:
    """W1's moving-average cross, or the monthly cross-sectional momentum of W4."""
    from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross

    return (MovingAverageCross(fast=10, slow=50) if name == "ma_cross"
            else CrossSectionalMomentum(lookback=126, top=50, every=21))


class _OnW1:
    """W1's market with the moving-average cross or the monthly momentum."""

    timeout = 300
    params = ["ma_cross", "momentum"]
    param_names = ["strategy"]

    def setup(self, strategy):
        self.market = pg.MarketData(W.data()).load()
        self.strategy = _ma_cross_or_momentum(strategy)


class StepOverBatch(_OnW1):
    """A whole step-driver run over the batch run of the same strategy, in one process."""

    def setup(self, strategy):
        super().setup(strategy)
        pg.backtest(self.market, self.strategy)
        pg.StepDriver(self.market, self.strategy).run(progress=False)

    def time_step_run(self, strategy):
        pg.StepDriver(self.market, self.strategy).run(progress=False)

    def track_step_over_batch(self, strategy):
        import time

        pg.clear_feature_cache()
        t0 = time.perf_counter()
        W.computed(pg.backtest(self.market, self.strategy))
        t1 = time.perf_counter()
        pg.StepDriver(self.market, self.strategy).run(progress=False)
        return (time.perf_counter() - t1) / (t1 - t0)

    track_step_over_batch.unit = "ratio"


class Ingest:
    timeout = 300

    def setup(self):
        self.tmp = Path(tempfile.mkdtemp())
        from benches.ingest_5m import write_csv

        self.csv = self.tmp / "bars.csv"
        write_csv(self.csv, 200, 2500)

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_ingest_500k_rows(self):
        pg.ingest(self.csv, self.tmp / f"s{np.random.randint(1 << 30)}.pitgrid", progress=False)


class ModelInference:
    def setup(self):
        import torch

        from pitgrid.models.architectures import build_model

        torch.manual_seed(0)
        feats = [{"name": f"m{w}", "kernel": "momentum", "params": {"window": w}, "field": "close"}
                 for w in range(1, 17)]
        self.tmp = Path(tempfile.mkdtemp())
        self.path = self.tmp / "mlp"
        net = build_model("mlp", {"hidden": [64]}, n_features=16, lookback=1, n_classes=3)
        pg.save_bundle(net, self.path, architecture="mlp", settings={"hidden": [64]}, features=feats,
                       lookback=1, classes=["sell", "hold", "buy"], decision={"threshold": 0.5})
        self.bundle = pg.ModelBundle.load(self.path)
        self.x = np.random.default_rng(0).normal(size=(2520, 500, 16)).astype(np.float32)

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_inference_and_decisions_2520x500(self):
        probs, _ = pg.predict_proba(self.bundle, self.x, threads=1)
        self.bundle.decision.raw_signals(probs)


class Import:
    def time_import_pitgrid(self):
        subprocess.run([sys.executable, "-c", "import pitgrid"], check=True)


class ColdStart:
    """A fresh process: import pitgrid, open a stored market, one pg.backtest, exit (the whole
    process as the parent sees it, numba's cache filled by ``setup``)."""

    timeout = 300

    def setup(self):
        from pitgrid.data.store import write_market

        self.tmp = Path(tempfile.mkdtemp())
        self.store = write_market(pg.MarketData(W.data()), self.tmp / "w1")
        self.time_backtest_on_a_stored_market()  # fills numba's cache

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_backtest_on_a_stored_market(self):
        code = ("import pitgrid as pg; from pitgrid.strategies import MovingAverageCross; "
                f"pg.backtest(pg.open_market({str(self.store)!r}), MovingAverageCross(fast=10, slow=50), "
                "{'fees_bps': 10.0, 'slippage_bps': 5.0, 'fill': 'close'})")
        subprocess.run([sys.executable, "-c", code], check=True)


class PointInTimeCheck(_OnW1):
    """The point-in-time check at every bar over one batch run (issue 14: at most 3x), after a
    first check started the process's server (as a second check in a session does)."""

    def setup(self, strategy):
        super().setup(strategy)
        pg.check_point_in_time(self.market, self.strategy)

    def time_check(self, strategy):
        pg.check_point_in_time(self.market, self.strategy)

    def track_check_over_batch(self, strategy):
        """After a pause, as a user checks one strategy (benches/check_cost.py)."""
        return self._over_batch(0.5)

    def track_back_to_back_check_over_batch(self, strategy):
        """Right after the last check, as a loop over strategies does."""
        return self._over_batch(0.0)

    def _over_batch(self, pause: float) -> float:
        """The median of three rounds, each a batch run and a check timed close together
        (the machine's speed drifts by more than the ratio moves)."""
        import time

        ratios = []
        for _ in range(3):
            # the children waiting after the last check prepare for a moment: the batch
            # run must not share the processors with them (benches/check_cost.py)
            time.sleep(1.0)
            pg.clear_feature_cache()
            t0 = time.perf_counter()
            W.computed(pg.backtest(self.market, self.strategy))
            t1 = time.perf_counter()
            pg.check_point_in_time(self.market, self.strategy)
            time.sleep(pause)
            t2 = time.perf_counter()
            pg.check_point_in_time(self.market, self.strategy)
            ratios.append((time.perf_counter() - t2) / (t1 - t0))
        return float(np.median(ratios))

    track_check_over_batch.unit = "ratio"
    track_back_to_back_check_over_batch.unit = "ratio"
