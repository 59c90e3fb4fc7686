"""Data a strategy brings along: found in parameters and in code shipped by value; market
stores closed to a check's runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import pitgrid as pg
from pitgrid import strategies as S
from pitgrid.cycle.strategy import Intents, Strategy
from pitgrid.data.store import write_market
from pitgrid.drivers import forked
from pitgrid.drivers.carried import carried_data

T = 50


@dataclass(frozen=True, kw_only=True)
class WithArray(Strategy):
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        return {"c": data.adjusted("close")}

    def intents(self, data, f):
        return Intents(entries=np.isfinite(f["c"]))


def local_strategies():
    cache: dict[str, np.ndarray] = {}
    table = np.arange(3.0)  # a constant, not a cache and not one row per bar

    @dataclass(frozen=True, kw_only=True)
    class ClosureCache(WithArray):
        def features(self, data):
            cache.setdefault("m", np.asarray(data.adjusted("close"))[0])
            return {"c": data.adjusted("close") - cache["m"]}

    @dataclass(frozen=True, kw_only=True)
    class UsesConstant(WithArray):
        def features(self, data):
            return {"c": data.adjusted("close") * table[1]}

    return cache, ClosureCache(), UsesConstant()


@pytest.mark.parametrize("cls", [S.MovingAverageCross, S.RSIMeanReversion, S.EqualWeight,
                                 S.CrossSectionalMomentum, S.EventDriven])
def test_the_shipped_strategies_carry_nothing(cls):
    assert carried_data(cls(), T) is None


@pytest.mark.parametrize("value, found", [
    (np.ones(7), None),                       # one value per symbol
    (np.ones(T), "one row per bar"),
    (np.ones((T, 7)), "one row per bar"),
    (pd.DataFrame({"x": [1.0]}), "pandas DataFrame"),
])
def test_parameters_holding_data_are_found(value, found):
    got = carried_data(WithArray(values=value), T)
    assert (got is None) if found is None else (found in got and "'values'" in got)


def test_a_cache_is_found_once_a_run_filled_it_and_a_constant_never():
    cache, filled, constant = local_strategies()
    market = pg.MarketData(pg.synthetic_prices(T, 3, seed=1))
    assert carried_data(filled, T) is None  # empty until a run fills it
    pg.backtest(market, filled)
    assert cache and "closure variable 'cache'" in carried_data(filled, T)
    pg.backtest(market, constant)
    assert carried_data(constant, T) is None


def _open_store(path: str) -> str:
    from pitgrid.drivers.carried import ForbiddenRead, forbid_stores

    forbid_stores()
    try:
        pg.open_market(path).load()
    except ForbiddenRead as exc:
        return str(exc)
    return "opened"


def test_a_checked_run_cannot_open_a_market_store(tmp_path):
    store = write_market(pg.MarketData(pg.synthetic_prices(T, 2, seed=0)), tmp_path / "s")
    assert "may not read a market store" in forked.submit(_open_store, str(store)).result()
    assert pg.open_market(store).load() is not None  # the caller's process is untouched
