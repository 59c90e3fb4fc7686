"""The core hands its order log and journal out without copying them when that is safe.

``take_log`` gives a log at least half full as views of its buffer and goes on in a
new one; a mostly empty log comes out as a copy. ``take_journal`` gives views of a
journal that only grows. Either way what was handed out must never change when the
core runs on, and must equal what a run taken in one piece gives.
"""
from __future__ import annotations

import numpy as np
import pytest

import pitgrid as pg
from pitgrid import kernels as K
from pitgrid._core import Core
from pitgrid.engine import simulate as sim
from pitgrid.engine.codes import INTENT_SIGNALS, SIZE_RULES

SETTINGS = {"fill": "close", "fees_bps": 10, "slippage_bps": 5, "accounts": "per_symbol",
            "size": "all"}


def _run(journal: bool, log_capacity: int, cut: int):
    """W1-like crosses on a small universe, run as bars [0, cut) then [cut, T): the logs
    and journals taken after each part (kept as handed out, plus copies made at once)."""
    ds = pg.synthetic_prices(300, 12, seed=5)
    close = np.ascontiguousarray(ds["close"].values)
    cross = K.crosses(K.sma(close, 3), K.sma(close, 9))
    cfg = pg.SimConfig(**SETTINGS)
    data = sim.market_arrays(ds, cfg)
    T, S = close.shape
    idx = np.zeros(1, dtype=np.int64)
    intents = (cross.over[None].view(np.uint8), cross.under[None].view(np.uint8),
               np.zeros((1, 1, 1)), idx, idx)
    core = Core(1, S, per_symbol=True, fill_close=True, intent_mode=INTENT_SIGNALS,
                size_mode=SIZE_RULES["all"], size_value=np.full(1, np.nan),
                init_cash=cfg.init_cash, fees_bps=cfg.fees_bps, slippage_bps=cfg.slippage_bps,
                log_capacity=log_capacity)
    core.order_inputs = sim.order_arrays(cfg, {}, INTENT_SIGNALS, 1, 1, S, False)[0]
    out = sim.allocate_outputs(1, T, S, core.A, False)
    if journal:
        core.start_journal(16)
    delist = np.full(S, -1, dtype=np.int64)
    taken, copies = [], []
    for t0, t1 in ((0, cut), (cut, T)):
        sim.run_core(core, data, delist, intents, out, t0, t1)
        got = core.take_journal()[:2] if journal else core.take_log()
        taken.append(got)
        copies.append(tuple(a.copy() for a in got))
    return taken, copies


@pytest.mark.parametrize("log_capacity", [1, 40, 4096])
@pytest.mark.parametrize("cut", [1, 150, 299])
def test_a_taken_log_never_changes_and_the_parts_make_the_whole(log_capacity, cut):
    taken, copies = _run(False, log_capacity, cut)
    whole, _ = _run(False, 4096, 300)
    for got, copy in zip(taken, copies):
        for a, b in zip(got, copy):
            np.testing.assert_array_equal(a, b)  # the core's later bars did not write into it
    li = np.concatenate([taken[0][0], taken[1][0]])
    lf = np.concatenate([taken[0][1], taken[1][1]])
    assert len(li) > 40  # enough fills that a small log is handed over, a large one copied
    np.testing.assert_array_equal(li, whole[0][0])
    np.testing.assert_array_equal(lf.view(np.uint64), whole[0][1].view(np.uint64))


def test_a_log_mostly_empty_is_copied_and_a_full_one_handed_over():
    taken, _ = _run(False, 4096, 150)
    assert all(a.base is None for a in taken[0])  # a step's few rows hold no 4096-row buffer
    taken, _ = _run(False, 1, 150)  # grown to fit, so at least half full
    assert all(a.base is not None for a in taken[0])


@pytest.mark.parametrize("cut", [1, 150, 299])
def test_a_taken_journal_never_changes(cut):
    taken, copies = _run(True, 4096, cut)
    for got, copy in zip(taken, copies):
        for a, b in zip(got, copy):
            np.testing.assert_array_equal(a, b)
    first, second = taken
    assert len(second[0]) > len(first[0])  # the journal so far: the first part, then more
    np.testing.assert_array_equal(second[0][: len(first[0])], first[0])
