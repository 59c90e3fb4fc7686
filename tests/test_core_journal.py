"""The positions and accounts a batch run rebuilds from the core's journal equal, bit for
bit, the dense arrays the core writes bar by bar (what the step driver keeps).

Hypothesis draws the random universes, intents and settings of the core-vs-reference
tests (splits, dividends, gaps, delistings, shorts and borrow, stops and limit orders,
several parameter sets), with a random ``start`` and ``stop_after``; the same run is
made twice, once as ``simulate`` makes it (journaled) and once with the dense outputs
forced on, and every kept array must be the same bits.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid.engine import simulate as sim
from pitgrid.engine.result import LazyTable
from test_core_reference import cases
from test_orders_reference import order_cases

KEPT = ("positions", "cash", "account_equity")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def _same(journaled, dense) -> None:
    for name in KEPT:
        j, d = getattr(journaled, name), getattr(dense, name)
        assert j.dims == d.dims and j.shape == d.shape, (name, j.dims, d.dims)
        for dim in j.dims:
            assert np.array_equal(j[dim].values, d[dim].values), (name, dim)
        bad = np.argwhere(_bits(j.values) != _bits(d.values))
        assert not len(bad), f"{name} differs first at {tuple(bad[0])}: " \
                             f"{j.values[tuple(bad[0])]!r} journaled, {d.values[tuple(bad[0])]!r} dense"
    assert np.array_equal(_bits(journaled.equity.values), _bits(dense.equity.values))


@pytest.fixture
def dense_outputs(monkeypatch):
    """A context in which ``simulate`` has the core write the dense arrays bar by bar."""
    real = sim.allocate_outputs

    class Dense:
        def __enter__(self):
            monkeypatch.setattr(sim, "allocate_outputs", lambda P, T, S, A, keep: real(P, T, S, A, True))

        def __exit__(self, *exc):
            monkeypatch.setattr(sim, "allocate_outputs", real)

    return Dense()


@st.composite
def windows(draw, case_strategy):
    case = draw(case_strategy)
    T = case.shape[1]
    first = draw(st.sampled_from([0, 0, 1, T // 2]), label="first")
    stop = draw(st.one_of(st.none(), st.integers(first, T - 1)), label="stop_after")
    return case, first, stop


def _run(case, first, stop):
    """``run_core`` of the reference tests, from bar ``first``, stopped after bar ``stop``."""
    ds = case.dataset()
    times = ds["time"].values
    kw = dict(case.settings)
    if kw.get("size", "all") == "all":
        kw.pop("size_value", None)
    if first:
        kw["start"] = times[first]
    if stop is not None:
        kw["stop_after"] = times[stop]
    return pg.simulate(ds, **case.intents(), delist_bar=case.delist_bar, keep="full", **kw)


SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@SETTINGS
@given(drawn=windows(st.one_of(cases(), order_cases())))
def test_journaled_positions_and_accounts_equal_the_dense_ones(drawn, dense_outputs):
    case, first, stop = drawn
    journaled = _run(case, first, stop)
    assert all(isinstance(journaled.__dict__["_" + k], LazyTable) for k in KEPT)
    with dense_outputs:
        dense = _run(case, first, stop)
    assert not any(isinstance(dense.__dict__["_" + k], LazyTable) for k in KEPT)
    _same(journaled, dense)


def test_a_journaled_result_pickles_unbuilt_and_builds_the_same_arrays():
    ds = pg.synthetic_prices(120, 6, seed=1)
    c = ds["close"]
    res = pg.simulate(ds, entries=c > c.shift(time=1), exits=c < c.shift(time=1),
                      accounts="per_symbol", fees_bps=10, keep="full")
    again = pickle.loads(pickle.dumps(res))
    assert isinstance(again.__dict__["_positions"], LazyTable)
    for name in KEPT:
        assert np.array_equal(_bits(getattr(again, name).values), _bits(getattr(res, name).values))


def test_the_journal_holds_only_what_changed():
    """A run that never trades journals nothing: its arrays are the starting state."""
    ds = pg.synthetic_prices(40, 3, seed=2)
    never = np.zeros((40, 3), dtype=bool)
    res = pg.simulate(ds, entries=never, exits=never, fill="close", keep="full",
                      accounts="per_symbol", init_cash=1000.0)
    journal = res.__dict__["_positions"].build.args[1]
    assert len(journal.rows) == 0
    assert (res.positions.values == 0).all() and (res.cash.values == 1000.0).all()
    assert (res.account_equity.values == 1000.0).all()
