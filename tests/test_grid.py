"""Grids equal single runs exactly, on one process or a two-worker LocalCluster; they resume
bit-identically after SIGKILL and come back partial, flagged, when cancelled."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import pitgrid as pg
from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross, RSIMeanReversion

CFG = {"fill": "close", "fees_bps": 10, "slippage_bps": 5, "accounts": "per_symbol"}
MA_PARAMS = {"fast": [3, 5, 8], "slow": [20, 30]}


@pytest.fixture(scope="module")
def market() -> pg.MarketData:
    return pg.MarketData(pg.synthetic_prices(250, 12, seed=3))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """The same synthetic market as an ingested zarr store (what Dask workers open)."""
    ds = pg.synthetic_prices(250, 12, seed=3)
    root = tmp_path_factory.mktemp("store")
    csv = root / "bars.csv"
    pg.long_bars(ds).write_csv(csv)
    return pg.ingest(csv, root / "market.pitgrid", progress=False)


def same_metrics(row: dict, m: dict) -> bool:
    return all(m[k] == row[k] or (np.isnan(m[k]) and np.isnan(row[k])) for k in m if k != "param")


@pytest.mark.parametrize("strategy,params,config", [
    (MovingAverageCross(), MA_PARAMS, CFG),
    (RSIMeanReversion(), {"window": [7, 14], "low": [25.0, 35.0]}, {"fill": "next_open"}),
    (CrossSectionalMomentum(), [{"lookback": 20, "top": 3, "every": 5}, {"lookback": 40, "top": 5, "every": 10}],
     {"fees_bps": 5}),
], ids=["cross_bank", "signals", "weights"])
def test_grid_equals_separate_runs(market, strategy, params, config):
    g = pg.grid(market, strategy, params, config=config, keep=2, progress=False)
    assert not g.partial
    for settings, row in zip(g.params, g.table.iter_rows(named=True)):
        single = pg.backtest(market, type(strategy)(**{**strategy.params(), **settings}), config)
        assert same_metrics(row, single.metrics.row(0, named=True)), settings
    for p in g.equity["param"].values:
        s = g.params[int(p)]
        single = pg.backtest(market, type(strategy)(**{**strategy.params(), **s}), config)
        assert np.array_equal(g.equity.sel(param=p).values, single.equity.values)


def test_product_grid_has_one_dim_per_parameter(market):
    g = pg.grid(market, MovingAverageCross(), MA_PARAMS, config=CFG, progress=False)
    assert g.metrics["sharpe"].dims == ("fast", "slow")
    assert g.metrics["sharpe"].sel(fast=5, slow=30).item() == g.table.filter(
        (pl.col("fast") == 5) & (pl.col("slow") == 30))["sharpe"].item()


def test_small_memory_budget_chunks_without_changing_results(market):
    whole = pg.grid(market, MovingAverageCross(), MA_PARAMS, config=CFG, keep=3, progress=False)
    chunked = pg.grid(market, MovingAverageCross(), MA_PARAMS, config=CFG, keep=3, progress=False,
                      memory_budget_mb=0.01)
    assert chunked.info["chunks"] == 6 and whole.info["chunks"] == 1
    assert chunked.table.equals(whole.table)
    assert np.array_equal(chunked.equity.values, whole.equity.values)


def test_two_worker_local_cluster_matches_single_process(store):
    single = pg.grid(store, MovingAverageCross(), MA_PARAMS, config=CFG, keep=2, progress=False,
                     memory_budget_mb=0.01)
    dask = pg.grid(store, MovingAverageCross(), MA_PARAMS, config=CFG, keep=2, progress=False,
                   memory_budget_mb=0.01, n_workers=2)
    assert dask.table.equals(single.table)
    assert np.array_equal(dask.equity.values, single.equity.values)


def test_sigkill_then_resume_is_bit_identical(tmp_path, market):
    ckpt = tmp_path / "ckpt"
    script = textwrap.dedent(f"""
        import time, pitgrid as pg
        from pitgrid.strategies import MovingAverageCross
        from pitgrid.drivers import grid as G
        run_chunk = G.run_chunk
        def slow_chunk(*a, **k):
            time.sleep(0.3)
            return run_chunk(*a, **k)
        G.run_chunk = slow_chunk
        market = pg.MarketData(pg.synthetic_prices(250, 12, seed=3))
        pg.grid(market, MovingAverageCross(), {MA_PARAMS!r}, config={CFG!r}, keep=2, progress=False,
                memory_budget_mb=0.01, checkpoint={str(ckpt)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while len(list(ckpt.glob("chunk_*.parquet"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(list(ckpt.glob("chunk_*.parquet")))
    assert 2 <= written < 6, written
    with pytest.raises(FileExistsError):
        pg.grid(market, MovingAverageCross(), MA_PARAMS, config=CFG, keep=2, progress=False,
                memory_budget_mb=0.01, checkpoint=ckpt)
    resumed = pg.grid(market, MovingAverageCross(), MA_PARAMS, config=CFG, keep=2, progress=False,
                      memory_budget_mb=0.01, checkpoint=ckpt, resume=True)
    full = pg.grid(market, MovingAverageCross(), MA_PARAMS, config=CFG, keep=2, progress=False,
                   memory_budget_mb=0.01)
    assert not resumed.partial
    assert resumed.table.equals(full.table)
    assert np.array_equal(resumed.equity.values, full.equity.values)


def test_cancel_returns_a_partial_result_flagged(market):
    cancel = threading.Event()
    cancel.set()
    g = pg.grid(market, MovingAverageCross(), MA_PARAMS, config=CFG, progress=False,
                memory_budget_mb=0.01, cancel=cancel)
    full = pg.grid(market, MovingAverageCross(), MA_PARAMS, config=CFG, progress=False)
    assert g.partial and g.table.height == 1
    assert g.table.row(0) == full.table.row(0)


def test_ctrl_c_stops_cleanly_with_a_partial_result(market, monkeypatch):
    from pitgrid.drivers import grid as G

    run_chunk, calls = G.run_chunk, []

    def interrupted_on_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C does
        return run_chunk(*args, **kwargs)

    monkeypatch.setattr(G, "run_chunk", interrupted_on_third_chunk)
    g = pg.grid(market, MovingAverageCross(), MA_PARAMS, config=CFG, progress=False,
                memory_budget_mb=0.01)
    assert g.partial and g.table.height == 2
