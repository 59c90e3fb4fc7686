"""Grids that spread: the plan counts the feature bank in the memory budget and gives every
worker at least two chunks; each bank row is computed once per grid; Dask workers open the
store by fingerprint (a store rewritten at the same path is never served stale) and read only
the fields they use; results are bit-identical to the grid in one process."""
from __future__ import annotations

import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid.drivers.grid_plan import plan_grid
from pitgrid.engine.memory import grid_row_bytes, grid_set_bytes
from pitgrid.strategies import MovingAverageCross, RSIMeanReversion

CFG = {"fill": "close", "fees_bps": 10, "slippage_bps": 5, "accounts": "per_symbol"}
PAIRS = {"fast": [3, 5, 8, 13], "slow": [20, 30, 45]}
T, S = 250, 12


def pairs(fast, slow):
    return [MovingAverageCross(fast=f, slow=s) for f in fast for s in slow]


def ingested(ds, path: Path) -> Path:
    csv = path.with_suffix(".csv")
    pg.long_bars(ds).write_csv(csv)
    return pg.ingest(csv, path, progress=False, overwrite=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return ingested(pg.synthetic_prices(T, S, seed=3),
                    tmp_path_factory.mktemp("store") / "m.pitgrid")


# ---------------------------------------------------------------------- the plan
def reference_ok(plan, variants, budget: int, min_chunks: int, config=None) -> None:
    """What a plan must be, checked the slow way from its chunks."""
    seen = sorted(i for c in plan.chunks for i, _ in c)
    assert seen == list(range(len(variants)))  # every set exactly once
    for c in plan.chunks:
        assert all(variants[i] == v for i, v in c)
        settings_of = {str(pg.SimConfig(**{**v.settings(), **(config or {})}).to_dict())
                       for _, v in c}
        assert len(settings_of) == 1
        rows = {k for _, v in c for k in v.grid_bank_keys()}
        assert plan.rows(c) == [k for k in plan.keys if k in rows]
        held = len(plan.keys) if plan.resident else len(rows)
        if len(c) > 1:  # one set alone may be over the budget: check_grid judges it
            assert held * plan.row_bytes + len(c) * plan.set_bytes <= budget
    assert len(plan.chunks) >= min(min_chunks, len(variants))
    assert len(plan.keys) == len({k for v in variants for k in v.grid_bank_keys()})


def test_the_bank_counts_in_the_budget():
    variants = pairs([5, 10, 15, 20], [60, 80, 100, 120, 140])  # 9 rows, 20 sets
    row, one = grid_row_bytes(2520, 500), grid_set_bytes(2520, 500, True)
    # the whole bank and every set fit: one chunk, the bank resident
    roomy = plan_grid(variants, CFG, (9 * row + 20 * one) / 2**20, 2520, 500)
    assert roomy.resident and len(roomy.chunks) == 1 and roomy.held_rows() == 9
    # the whole bank and 5 sets fit: chunks of 5, the bank resident
    five = plan_grid(variants, CFG, (9 * row + 5 * one) / 2**20, 2520, 500)
    assert five.resident and [len(c) for c in five.chunks] == [5, 5, 5, 5]
    # room for 4 rows and a few sets: chunks are cut by the rows they read, sets sorted by
    # (fast, slow), so a chunk is one fast average and the first three slow ones, then the rest
    tight = plan_grid(variants, CFG, (4 * row + 3 * one) / 2**20, 2520, 500)
    assert not tight.resident
    assert [[(v.fast, v.slow) for _, v in c] for c in tight.chunks[:2]] == [
        [(5, 60), (5, 80), (5, 100)], [(5, 120), (5, 140)]]
    assert tight.held_rows() == 4
    assert tight.peak_bytes() <= tight.budget


def test_peak_is_flat_in_pairs_and_distinct_windows():
    budget_mb = 128
    peaks = []
    for n in (3, 10, 20, 40):  # n x n pairs over 2n distinct windows
        variants = pairs(range(2, 2 + n), range(100, 100 + 5 * n, 5))
        plan = plan_grid(variants, CFG, budget_mb, 2520, 500)
        reference_ok(plan, variants, budget_mb * 2**20, 1)
        peaks.append(plan.peak_bytes())
    assert max(peaks) <= budget_mb * 2**20
    # before, the bank was outside the budget: the 40 x 40 grid held all its 80 rows (800 MB)
    assert peaks[-1] < 80 * grid_row_bytes(2520, 500)


def test_at_least_two_chunks_per_worker():
    variants = pairs([5, 10], [20, 30, 40])
    assert len(plan_grid(variants, CFG, 256, T, S).chunks) == 1
    assert len(plan_grid(variants, CFG, 256, T, S, min_chunks=4).chunks) == 4
    signals = [RSIMeanReversion(window=w) for w in (5, 7, 9, 11, 13)]
    assert len(plan_grid(signals, None, 256, T, S, min_chunks=4).chunks) == 5


def test_sets_of_one_feature_setting_share_a_chunk_where_they_fit():
    signals = [RSIMeanReversion(window=w, low=lo) for w in (5, 9, 14) for lo in (20.0, 30.0)]
    plan = plan_grid(signals, None, 256, T, S, min_chunks=3)
    assert sorted({v.window for _, v in c} == {c[0][1].window} for c in plan.chunks) == [True] * 3
    # a setting with more sets than a chunk takes is cut into whole chunks of it
    tight = plan_grid(signals, None, 2.5 * grid_set_bytes(T, S, False) / 2**20, T, S)
    assert [[v.window for _, v in c] for c in tight.chunks] == [[14, 14], [5, 5], [9, 9]]


@settings(max_examples=60, deadline=None)
@given(fast=st.lists(st.integers(1, 30), min_size=1, max_size=6, unique=True),
       slow=st.lists(st.integers(31, 90), min_size=1, max_size=6, unique=True),
       rows_room=st.floats(0.5, 14.0), sets_room=st.integers(1, 40),
       min_chunks=st.integers(1, 8), fill=st.sampled_from(["close", "next_open"]))
def test_plans_hold_every_set_once_within_the_budget(fast, slow, rows_room, sets_room,
                                                    min_chunks, fill):
    variants = [MovingAverageCross(fast=f, slow=s) for f in fast for s in slow]
    budget = int(rows_room * grid_row_bytes(300, 20) + sets_room * grid_set_bytes(300, 20, True))
    plan = plan_grid(variants, {"fill": fill}, budget / 2**20, 300, 20, min_chunks=min_chunks)
    reference_ok(plan, variants, budget, min_chunks, {"fill": fill})
    assert max(len(c) for c in plan.chunks) <= math.ceil(len(variants) / min_chunks)


# ---------------------------------------------------------------------- features once
def test_each_bank_row_is_computed_once_per_grid(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    market = pg.MarketData(pg.synthetic_prices(T, S, seed=3))
    calls: list[int] = []
    row = MovingAverageCross.grid_bank_row

    def counted(self, data, window, out):
        calls.append(window)
        return row(self, data, window, out)

    monkeypatch.setattr(MovingAverageCross, "grid_bank_row", counted)
    whole = pg.grid(market, MovingAverageCross(), PAIRS, config=CFG, keep=3, progress=False)
    assert sorted(calls) == [3, 5, 8, 13, 20, 30, 45]
    calls.clear()
    # a budget with room for 3 rows and 2 sets: many chunks, the bank in a file they map
    budget = (3 * grid_row_bytes(T, S) + 2 * grid_set_bytes(T, S, True)) / 2**20
    tiled = pg.grid(market, MovingAverageCross(), PAIRS, config=CFG, keep=3, progress=False,
                    memory_budget_mb=budget)
    assert tiled.info["chunks"] >= 6
    assert sorted(calls) == [3, 5, 8, 13, 20, 30, 45]
    assert not list(Path(tempfile.gettempdir()).glob("pitgrid-grid-*"))  # the file is gone
    assert tiled.table.equals(whole.table)
    assert np.array_equal(tiled.equity.values, whole.equity.values)


def test_a_grid_removes_the_scratch_folders_of_killed_grids(monkeypatch, tmp_path):
    import socket
    import subprocess

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = socket.gethostname()
    dead = tmp_path / f"pitgrid-grid-{host}-{gone}-0123abcd"
    living = tmp_path / f"pitgrid-grid-{host}-{os.getpid()}-0123abcd"  # a grid still running
    for folder in (dead, living):
        folder.mkdir()
        (folder / "bank.npy").write_bytes(b"left by a killed grid")
    market = pg.MarketData(pg.synthetic_prices(T, S, seed=3))
    budget = (3 * grid_row_bytes(T, S) + 2 * grid_set_bytes(T, S, True)) / 2**20
    pg.grid(market, MovingAverageCross(), PAIRS, config=CFG, progress=False,
            memory_budget_mb=budget)
    assert not dead.exists() and living.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [living.name]


def test_a_walkforward_window_computes_the_bank_on_the_cut_market(monkeypatch):
    market = pg.MarketData(pg.synthetic_prices(T, S, seed=3))
    end = market.time[180]
    budget = (3 * grid_row_bytes(T, S) + 2 * grid_set_bytes(T, S, True)) / 2**20
    g = pg.grid(market, MovingAverageCross(), PAIRS, config=CFG, keep=2, progress=False,
                memory_budget_mb=budget, start=market.time[60], end=end)
    for s, row in zip(g.params, g.table.iter_rows(named=True)):
        single = pg.backtest(market, MovingAverageCross(**s), CFG, start=market.time[60], end=end)
        assert single.metrics.row(0, named=True)["sharpe"] == row["sharpe"] or (
            np.isnan(row["sharpe"]) and np.isnan(single.metrics["sharpe"][0]))


# ---------------------------------------------------------------------- on Dask
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_two_workers_give_at_least_four_chunks_and_the_same_bits(store, client):
    here = pg.grid(store, MovingAverageCross(), PAIRS, config=CFG, keep=4, progress=False)
    there = pg.grid(store, MovingAverageCross(), PAIRS, config=CFG, keep=4, progress=False,
                    client=client)
    assert here.info["chunks"] == 1 and there.info["chunks"] >= 4
    assert there.table.equals(here.table)
    assert np.array_equal(there.equity.values, here.equity.values)
    assert there.overfitting == here.overfitting


def test_a_strategy_without_a_bank_gives_the_same_bits_on_two_workers(store, client):
    params = {"window": [7, 14], "low": [25.0, 35.0]}
    here = pg.grid(store, RSIMeanReversion(), params, config={"fill": "next_open"}, keep=2,
                   progress=False)
    there = pg.grid(store, RSIMeanReversion(), params, config={"fill": "next_open"}, keep=2,
                    progress=False, client=client)
    assert there.info["chunks"] == 4
    assert there.table.equals(here.table)
    assert np.array_equal(there.equity.values, here.equity.values)


def test_workers_read_only_the_fields_they_use(tmp_path, client):
    # a store of its own: no other test's grid has read its fields on the workers
    store = ingested(pg.synthetic_prices(T, S, seed=5), tmp_path / "m.pitgrid")
    pg.grid(store, MovingAverageCross(), PAIRS, config=CFG, progress=False, client=client)

    def fields_read(fingerprint):
        from pitgrid.data.read_once import ReadOnce
        from pitgrid.drivers.grid_dask import _WORKER_MARKETS

        if fingerprint not in _WORKER_MARKETS:  # this worker ran none of the grid's tasks
            return set()
        return {name for name, var in _WORKER_MARKETS[fingerprint].ds.data_vars.items()
                if not isinstance(var.variable._data, ReadOnce)
                or var.variable._data._values is not None}

    read = set().union(*client.run(fields_read, pg.open_market(store).fingerprint()).values())
    assert "close" in read
    # fills at the close read no open, and nothing reads the high and low (the core takes the
    # volume whatever its settings)
    assert not read & {"open", "high", "low"}, read


def test_a_store_rewritten_at_the_same_path_is_not_served_stale(tmp_path, client):
    path = ingested(pg.synthetic_prices(T, S, seed=3), tmp_path / "m.pitgrid")
    first = pg.grid(path, MovingAverageCross(), PAIRS, config=CFG, progress=False, client=client)
    ingested(pg.synthetic_prices(T, S, seed=4), path)  # other prices, same path
    second = pg.grid(path, MovingAverageCross(), PAIRS, config=CFG, progress=False, client=client)
    here = pg.grid(path, MovingAverageCross(), PAIRS, config=CFG, progress=False)
    assert second.table.equals(here.table)
    assert not second.table.equals(first.table)


def test_a_store_changed_under_a_running_grid_is_refused_by_name(store):
    from pitgrid.drivers.grid_dask import worker_market

    fingerprint = pg.open_market(store).fingerprint()
    assert worker_market(str(store), fingerprint).fingerprint() == fingerprint
    with pytest.raises(ValueError, match=f"{store}: the store changed while the grid ran"):
        worker_market(str(store), "0" * 64)  # what the client planned on is not there now


@dataclass(frozen=True, kw_only=True)
class LoggedRows(MovingAverageCross):
    """Appends each bank row it computes to ``log``: what workers computed, in any process."""

    log: str = ""

    def grid_bank_row(self, data, window, out):
        with open(self.log, "a") as f:
            f.write(f"{window}\n")
        super().grid_bank_row(data, window, out)


def test_workers_compute_each_bank_row_once(store, client, tmp_path):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    try:
        log = tmp_path / "rows.log"
        g = pg.grid(store, LoggedRows(log=str(log)), PAIRS, config=CFG, progress=False,
                    client=client)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert g.info["chunks"] >= 4
    assert sorted(map(int, log.read_text().split())) == [3, 5, 8, 13, 20, 30, 45]
    assert not list(store.parent.glob(f".{store.name}.grid-*"))  # the bank beside it is gone


@dataclass(frozen=True, kw_only=True)
class LoggedFeatures(RSIMeanReversion):
    """Appends the window of each feature set it computes to ``log``, in any process."""

    log: str = ""

    def features(self, data):
        with open(self.log, "a") as f:
            f.write(f"{self.window}\n")
        return super().features(data)


def test_workers_compute_each_feature_setting_once(store, client, tmp_path):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    try:
        log = tmp_path / "features.log"
        # 10 sets in at least 4 chunks: 5 chunks of one window each (4 chunks of near-equal
        # size would cut a window's two sets apart)
        g = pg.grid(store, LoggedFeatures(log=str(log)),
                    {"window": [5, 9, 14, 20, 30], "low": [20.0, 30.0]}, progress=False,
                    client=client)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert g.info["chunks"] == 5
    assert sorted(map(int, log.read_text().split())) == [5, 9, 14, 20, 30]


def test_a_checkpoint_resumes_on_dask_with_its_own_chunks(store, client, tmp_path):
    import threading

    cancel = threading.Event()
    cancel.set()  # stops after the first chunk
    budget = (2 * grid_row_bytes(T, S) + grid_set_bytes(T, S, True)) / 2**20
    first = pg.grid(store, MovingAverageCross(), PAIRS, config=CFG, keep=2, progress=False,
                    memory_budget_mb=budget, checkpoint=tmp_path / "ck", cancel=cancel)
    assert first.partial and first.info["chunks"] == 12
    resumed = pg.grid(store, MovingAverageCross(), PAIRS, config=CFG, keep=2, progress=False,
                      memory_budget_mb=budget, checkpoint=tmp_path / "ck", resume=True,
                      client=client)
    whole = pg.grid(store, MovingAverageCross(), PAIRS, config=CFG, keep=2, progress=False)
    assert not resumed.partial and resumed.info["chunks"] == 12
    assert resumed.table.equals(whole.table)
    assert np.array_equal(resumed.equity.values, whole.equity.values)


def test_a_market_in_memory_is_refused_on_dask(client):
    with pytest.raises(ValueError, match="needs the market as a store"):
        pg.grid(pg.MarketData(pg.synthetic_prices(T, S, seed=3)), MovingAverageCross(), PAIRS,
                config=CFG, progress=False, client=client)


@pytest.mark.slow
def test_a_loopback_scheduler_and_workers_give_the_same_bits(store):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benches.grid_scale import loopback_cluster

    here = pg.grid(store, MovingAverageCross(), PAIRS, config=CFG, keep=4, progress=False)
    with loopback_cluster(2) as address:
        there = pg.grid(store, MovingAverageCross(), PAIRS, config=CFG, keep=4, progress=False,
                        client=address)
    assert there.info["chunks"] >= 4
    assert there.table.equals(here.table)
    assert np.array_equal(there.equity.values, here.equity.values)
