"""The step driver at batch speed: streams, bounded rule windows, and a view sliced by construction."""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import polars as pl
import pytest

import pitgrid as pg
from pitgrid import kernels as K
from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Intents, Strategy
from pitgrid.drivers.step import SlowPathWarning

from strategies_for_tests import SHIPPED, VetoHook, market_with_everything
from test_drivers import assert_same_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from custom_strategy import Breakout  # noqa: E402

CONFIG = {"fees_bps": 10, "slippage_bps": 5, "lot_size": 1}
FAST = SHIPPED + [VetoHook(fast=5, slow=20), Breakout(window=20, exit_window=10)]


@pytest.fixture(scope="module")
def market() -> pg.MarketData:
    return market_with_everything(n_time=200, n_symbols=7)


@pytest.mark.parametrize("strategy", FAST, ids=lambda s: s.name)
def test_shipped_strategies_and_examples_stream_and_agree_through_save_and_load(
        market, strategy, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowPathWarning)
        driver = pg.StepDriver(market, strategy, CONFIG)
    assert driver.slow_path is None
    half = market.time[len(market.time) // 2]
    driver.run(until=half)
    driver.save(tmp_path / "paper")
    resumed = pg.StepDriver.load(tmp_path / "paper", market, strategy)
    assert_same_run(pg.backtest(market, strategy, CONFIG), resumed.run())


@dataclass(frozen=True, kw_only=True)
class PandasAverage(Strategy):
    """Features through pandas: correct, causal, and not a stream."""

    intent_rows: ClassVar[int | None] = 2

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        close = data.adjusted("close")
        return {"close": close, "mean": pd.DataFrame(close).rolling(8).mean().to_numpy()}

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        return Intents(entries=K.crossover(f["close"], f["mean"]),
                       exits=K.crossunder(f["close"], f["mean"]))


@dataclass(frozen=True, kw_only=True)
class WholeHistoryRule(Strategy):
    """Streamable features, a rule that reads its whole history (a running maximum)."""

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        return {"r": K.simple_returns(data.adjusted("close"))}

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        best = np.fmax.accumulate(np.nan_to_num(f["r"], nan=-np.inf), axis=0)
        return Intents(entries=f["r"] >= best, exits=f["r"] < 0)


@pytest.mark.parametrize("strategy, says", [
    (PandasAverage(), "PandasAverage.features runs on the slow path"),
    (WholeHistoryRule(), "declare intent_rows"),
], ids=["features", "rule"])
def test_the_slow_path_is_named_once_and_still_agrees(market, strategy, says):
    with pytest.warns(SlowPathWarning, match=says) as caught:
        driver = pg.StepDriver(market, strategy, CONFIG)
        step = driver.run()
    assert len(caught) == 1 and says in driver.slow_path
    assert_same_run(pg.backtest(market, strategy, CONFIG), step)


def test_a_rule_with_arithmetic_and_kernels_streams_whole(market):
    # features and rule both trace: the driver never calls intents per bar
    calls = []

    @dataclass(frozen=True, kw_only=True)
    class Spread(Strategy):
        def features(self, data):
            close = data.adjusted("close")
            return {"z": (close - K.sma(close, 10)) / K.rolling_std(close, 10)}

        def intents(self, data, f):
            calls.append(1)
            return Intents(entries=K.crossunder(f["z"], -1.0 + 0 * f["z"]),
                           exits=np.isfinite(f["z"]) & (f["z"] > 0.5))

    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowPathWarning)
        driver = pg.StepDriver(market, Spread(), CONFIG)
    n = len(calls)
    step = driver.run()
    assert len(calls) == n  # traced once, then streamed
    assert_same_run(pg.backtest(market, Spread(), CONFIG), step)


# --------------------------------------------------------------------------- sliced by construction


def _reachable(root: Any, limit: int = 20_000) -> list[Any]:
    """Everything reachable from ``root`` through attributes, slots, containers, array bases,
    closures and bound methods (not gc internals)."""
    seen: dict[int, Any] = {}
    todo = [root]
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None), type)):
            if isinstance(obj, bytes):
                seen[id(obj)] = obj
            continue
        seen[id(obj)] = obj
        if isinstance(obj, np.ndarray):
            todo.append(obj.base)
            continue
        if isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
            continue
        if isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
            continue
        if isinstance(obj, (pl.DataFrame, pg.MarketData)):
            continue
        for name in dir(obj):
            if name in ("__class__", "__doc__", "__module__", "__weakref__"):
                continue
            try:
                value = getattr(obj, name)
            except Exception:  # a property that refuses (e.g. no market to read events from)
                continue
            todo.append(value)
            func = getattr(value, "__func__", value)
            todo.extend(c.cell_contents for c in (getattr(func, "__closure__", None) or ()))
    return list(seen.values())


def test_what_the_strategy_is_handed_holds_nothing_after_its_bar(market):
    t = 120
    seen = {}

    @dataclass(frozen=True, kw_only=True)
    class Spy(VetoHook):
        def on_step(self, step_t, data, intents):
            if step_t == t:
                seen["view"] = data
                seen["arrays"] = [data.raw("close"), data.adjusted("close"), data.valid,
                                  data.universe("u"), data.events("sentiment"),
                                  data.events("sentiment", by="event_time"), data.split_factor,
                                  data.time, data.bars, data.symbols]
            return intents

    pg.StepDriver(market, Spy(fast=5, slow=20), CONFIG).run(until=market.time[t])
    objects = _reachable(seen)
    assert not any(isinstance(o, (pg.MarketData, pl.DataFrame, FeatureData)) for o in objects)
    future = market["close"].values[t + 1:]
    future = set(future[np.isfinite(future)].tolist())
    for o in objects:
        if isinstance(o, np.ndarray) and o.dtype.kind == "f":
            assert o.shape[0] <= t + 1 and not (set(o.ravel().tolist()) & future)
        if isinstance(o, np.ndarray):
            assert not o.flags.writeable
            with pytest.raises(ValueError):
                o.setflags(write=True)
            assert o.base is None or isinstance(o.base, (bytes, np.ndarray))
        if isinstance(o, bytes):
            assert len(o) <= (t + 1) * len(market.symbols) * 8 * 2
    assert seen["view"].upto == t and seen["view"].time[-1] == market.time[t]
