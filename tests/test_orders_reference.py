"""Hold the core's orders beyond the market to the reference simulator.

Stop-loss, take-profit, trailing (on highs or on closes) and time stops (fractions,
multiples of a unit array, per cell or per parameter set), limit and stop orders for
entries and exits, and short signals, drawn by hypothesis on top of the random universes of
``tests/test_core_reference.py`` (bars with wicks); ``pg.simulate`` must agree with
``tests/reference_sim.py`` exactly as the plain core does (docs/simulation.md, B2).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_core_reference import Case, cases, compare, run_core

SL = [0.0, 0.02, 0.05, 0.1]
TP = [0.0, 0.03, 0.08, 0.15]
TRAIL = [0.0, 0.03, 0.06]
TIME = [0, 0, 2, 5]
MULTIPLES = [0.0, 1.0, 2.0, 3.0]
WICKS = [0.0, 0.01, 0.03, 0.08]


def _cells(draw, name, values, shape, rng):
    """A setting as a scalar, one value per parameter set, or one per (time, symbol)."""
    P, T, S = shape
    form = draw(st.sampled_from(["scalar", "scalar", "cells"] + (["param"] if P > 1 else [])),
                label=f"{name}_form")
    if form == "scalar":
        return draw(st.sampled_from(values), label=name)
    if form == "param":
        return np.array([draw(st.sampled_from(values), label=f"{name}_{p}") for p in range(P)],
                        dtype=float)
    return rng.choice(np.asarray(values, dtype=float), size=(T, S))


@st.composite
def order_cases(draw, mode=None, max_T=30, max_S=4, max_P=3) -> Case:
    base = draw(cases(max_T=max_T, max_S=max_S, max_P=max_P, mode=mode))
    P, T, S = base.shape
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    orders: dict = {}
    # bars with wicks beyond open and close
    up = rng.choice(WICKS, size=(T, S))
    down = rng.choice(WICKS, size=(T, S))
    orders["high"] = np.fmax(base.open, base.close) * (1 + up)
    orders["low"] = np.fmin(base.open, base.close) * (1 - down)
    sets = dict(base.settings)
    unit = draw(st.booleans(), label="unit_mode")
    if unit:
        orders["stop_unit"] = base.close * rng.choice([0.01, 0.02, 0.05, np.nan], size=(T, S))
    for name, values in (("sl_stop", MULTIPLES if unit else SL),
                         ("tp_stop", MULTIPLES if unit else TP),
                         ("sl_trail", MULTIPLES if unit else TRAIL), ("time_stop", TIME)):
        orders[name] = _cells(draw, name, values, (P, T, S), rng)
    sets["stop_first"] = draw(st.booleans(), label="stop_first")
    sets["trail_on"] = draw(st.sampled_from(["high", "close"]), label="trail_on")
    sets["order_ttl"] = draw(st.sampled_from([1, 2, 4]), label="order_ttl")
    if base.weights is None:
        if draw(st.booleans(), label="shorts"):
            sets["allow_short"] = True
            orders["short_entries"] = rng.random((P, T, S)) < 0.15
            orders["short_exits"] = rng.random((P, T, S)) < 0.15
        for side in ("entry", "exit"):
            kind = draw(st.sampled_from(["market", "limit", "stop", "both"]), label=f"{side}_kind")
            if kind == "market":
                continue
            offset = rng.choice([-0.03, -0.01, 0.0, 0.01, 0.03, np.nan], size=(T, S))
            level = base.close * (1 + offset)
            if kind == "both":   # limit on some cells, stop on others, never both on one
                which = rng.random((T, S)) < 0.5
                orders[f"{side}_limit"] = np.where(which, level, np.nan)
                orders[f"{side}_stop"] = np.where(which, np.nan, level)
            else:
                orders[f"{side}_{kind}"] = level
    return dataclasses.replace(base, settings=sets, orders=orders,
                               param_dim=base.param_dim or any(
                                   np.ndim(v) == 1 for v in orders.values()))


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(case=order_cases(mode="signals"))
def test_orders_match_reference_signals(case: Case):
    ds = case.dataset()
    compare(case, run_core(case), case.reference(), ds)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=order_cases(mode="weights"))
def test_orders_match_reference_weights(case: Case):
    ds = case.dataset()
    compare(case, run_core(case), case.reference(), ds)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=order_cases(max_T=25, max_S=4, max_P=3).filter(lambda c: c.shape[0] > 1))
def test_parameter_sets_with_orders_in_one_call_equal_separate_calls(case: Case):
    """Stops per parameter set (a grid) run on the parameter axis exactly as one run per set."""
    from test_core_reference import _frame_for

    together = run_core(case)
    for p in range(case.shape[0]):
        alone = run_core(case, p)
        for name in ("account_equity", "cash", "positions"):
            a = getattr(together, name).isel(param=p).values
            b = getattr(alone, name).values
            assert np.array_equal(a, b, equal_nan=True), f"{name}, param {p}"
        for name in ("trades", "unfilled", "filtered"):
            assert _frame_for(getattr(together, name), p).equals(
                _frame_for(getattr(alone, name), 0)), f"{name}, param {p}"
