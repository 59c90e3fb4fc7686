"""``pitgrid.kernels.crosses``: crossover and crossunder in one pass.

Checked against a slow reference written cell by cell from the documented rule (no
shared code with the kernels), on random panels with ties, NaNs, infinities and
whole missing rows; batch, blocks of random sizes (advance) and bar-by-bar updates
agree bit for bit, also when they are mixed and the state is saved between them; the
two outputs are the separate kernels' results; and the moving-average rule that
reads them still traces into the step driver's stream graph.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pitgrid as pg
import pitgrid.kernels as K
from pitgrid.kernels import Stream
from pitgrid.kernels.graph import Graph, Node
from pitgrid.strategies import MovingAverageCross

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])


def slow_crosses(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rule of docs/kernels.md, one cell at a time in Python floats."""
    n_time, n_sym = a.shape
    over = np.zeros((n_time, n_sym), dtype=bool)
    under = np.zeros((n_time, n_sym), dtype=bool)
    for t in range(1, n_time):
        for j in range(n_sym):
            a1, b1, a0, b0 = float(a[t, j]), float(b[t, j]), float(a[t - 1, j]), float(b[t - 1, j])
            if not all(math.isfinite(v) for v in (a1, b1, a0, b0)):
                continue
            over[t, j] = a1 > b1 and a0 <= b0
            under[t, j] = a1 < b1 and a0 >= b0
    return over, under


@st.composite
def pairs(draw):
    """Two panels whose values collide often (small integers, shared values, signed zeros),
    with NaN, +inf, -inf and whole missing rows."""
    n_time = draw(st.integers(1, 40))
    n_sym = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = draw(st.sampled_from(["ties", "walk", "huge"]))
    if style == "ties":
        a = rng.integers(-2, 3, size=(n_time, n_sym)).astype(np.float64)
        b = rng.integers(-2, 3, size=(n_time, n_sym)).astype(np.float64)
        a[a == 0] = rng.choice([0.0, -0.0], size=int((a == 0).sum()))
    elif style == "walk":
        a = 100 + np.cumsum(rng.standard_normal((n_time, n_sym)), axis=0)
        b = 100 + np.cumsum(rng.standard_normal((n_time, n_sym)), axis=0)
    else:  # near the largest float: differences overflow, comparisons must not
        a = rng.choice([-1.0, 1.0], size=(n_time, n_sym)) * 1.7e308
        b = rng.choice([-1.0, 1.0, 0.0], size=(n_time, n_sym)) * 1.7e308
    for x in (a, b):
        for value, p in ((np.nan, draw(st.sampled_from([0.0, 0.1]))),
                         (np.inf, draw(st.sampled_from([0.0, 0.05]))),
                         (-np.inf, draw(st.sampled_from([0.0, 0.05])))):
            x[rng.random(x.shape) < p] = value
    if draw(st.booleans()) and n_time > 1:
        a[int(rng.integers(0, n_time))] = np.nan
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


@SETTINGS
@given(ab=pairs())
def test_crosses_matches_the_slow_rule_and_the_separate_kernels(ab):
    a, b = ab
    want_over, want_under = slow_crosses(a, b)
    got = K.crosses(a, b)
    assert isinstance(got, K.Crosses)
    np.testing.assert_array_equal(got.over, want_over)
    np.testing.assert_array_equal(got.under, want_under)
    np.testing.assert_array_equal(K.crossover(a, b), want_over)
    np.testing.assert_array_equal(K.crossunder(a, b), want_under)
    over, under = np.ones(a.shape, bool), np.ones(a.shape, bool)
    K.crosses_nb(a, b, over, under)
    np.testing.assert_array_equal(over, want_over)
    np.testing.assert_array_equal(under, want_under)


@SETTINGS
@given(ab=pairs(), data=st.data())
def test_blocks_updates_and_saved_state_agree_with_the_batch_bit_for_bit(ab, data):
    """Random block edges (empty blocks included), each block advanced in one compiled call
    or bar by bar, the state saved and restored at each edge."""
    a, b = ab
    n_time, n_sym = a.shape
    batch = K.crosses(a, b)
    edges = sorted(set(data.draw(st.lists(st.integers(0, n_time), max_size=5), label="edges"))
                   | {0, n_time})
    s = Stream("crosses", n_sym)
    over, under = [], []
    for lo, hi in zip(edges, edges[1:]):
        if data.draw(st.booleans(), label="bar by bar"):
            for t in range(lo, hi):
                row = s.update(a[t], b[t])
                over.append(row.over.copy()[None])
                under.append(row.under.copy()[None])
        else:
            block = s.advance(a[lo:hi], b[lo:hi])
            over.append(block.over)
            under.append(block.under)
        s = Stream.from_state("crosses", s.state())
    assert s.n_updates == n_time
    np.testing.assert_array_equal(np.concatenate(over or [np.zeros((0, n_sym), bool)]),
                                  batch.over)
    np.testing.assert_array_equal(np.concatenate(under or [np.zeros((0, n_sym), bool)]),
                                  batch.under)


def test_a_block_edge_reads_the_row_before_it_from_the_state():
    """Row 0 of a block crosses against the last row of the previous block (its state), not
    against a missing row."""
    a = np.array([[1.0, 3.0], [3.0, 1.0]])
    b = np.full((2, 2), 2.0)
    s = Stream("crosses", 2)
    s.advance(a[:1], b[:1])
    second = s.advance(a[1:], b[1:])
    assert second.over.tolist() == [[True, False]]
    assert second.under.tolist() == [[False, True]]
    assert set(s.state()) == {"prev_rel", "n_updates", "n_symbols"}
    assert s.state()["prev_rel"].tolist() == [2, 3]  # a above b, then below


def test_wrappers_broadcast_check_and_refuse_shared_outputs():
    a = np.array([[1.0, 3.0], [3.0, 1.0], [1.0, 3.0]])
    c = K.crosses(a, 2.0)
    assert c.over.tolist() == [[False, False], [True, False], [False, True]]
    assert c.under.tolist() == [[False, False], [False, True], [True, False]]
    one = K.crosses(a[:, 0], 2.0)  # 1-D in, 1-D out
    assert one.over.tolist() == [False, True, False] and one.under.tolist() == [False, False, True]
    over, under = np.empty(a.shape, bool), np.empty(a.shape, bool)
    got = K.crosses_into(a, 2.0, over, under)
    assert got.over is over and got.under is under
    np.testing.assert_array_equal(over, c.over)
    with pytest.raises(ValueError, match="overlap each other"):
        K.crosses_into(a, 2.0, over, over)
    with pytest.raises(TypeError, match="under must have dtype bool"):
        K.crosses_into(a, 2.0, over, np.empty(a.shape))
    with pytest.raises(ValueError, match="1-D"):
        K.crosses(a, np.ones(3))
    with pytest.raises(ValueError, match="same shape"):
        K.crosses_nb(a, a, over, np.empty((2, 2), bool))


def test_the_moving_average_rule_traces_into_one_stream_graph():
    """MovingAverageCross's rule is a graph node (the step driver streams it), and the graph,
    fed bar by bar, gives the batch intents."""
    market = pg.MarketData(pg.synthetic_prices(120, 4, seed=3))
    strategy = MovingAverageCross(fast=3, slow=9)
    close = Node.source("close")

    class Trace:
        def adjusted(self, field):
            return close

    nodes = strategy.features(Trace())
    intents = strategy.intents(Trace(), nodes)
    graph = Graph({"entries": intents.entries, "exits": intents.exits}, 4)
    assert graph.kernels() == ["sma", "sma", "crosses"]
    x = np.ascontiguousarray(market.ds["close"].values)
    rows = [{k: v.copy() for k, v in graph.update({"close": x[t]}).items()}  # reused rows
            for t in range(x.shape[0])]
    batch = strategy.intents(None, {"fast": K.sma(x, 3), "slow": K.sma(x, 9)})
    np.testing.assert_array_equal(np.stack([r["entries"] for r in rows]), batch.entries)
    np.testing.assert_array_equal(np.stack([r["exits"] for r in rows]), batch.exits)
