"""Orders beyond the market refuse bad input with one line that names the input and the rule."""
from __future__ import annotations

import numpy as np
import pytest

import pitgrid as pg
from pitgrid.cycle.strategy import Intents


@pytest.fixture(scope="module")
def ds():
    return pg.synthetic_prices(40, 3, seed=0)


def signals(ds):
    c = ds["close"].values
    return {"entries": c > np.roll(c, 1, axis=0), "exits": c < np.roll(c, 1, axis=0)}


@pytest.mark.parametrize("kw, match", [
    ({"short_entries": True}, "need allow_short=True"),
    ({"sl_stop": -0.1}, "sl_stop=-0.1 must be a finite number >= 0"),
    ({"sl_stop": np.full((40, 3), -0.1)}, "sl_stop has a negative value"),
    ({"tp_stop": np.zeros((39, 3))}, r"tp_stop must be a scalar, \(param,\), \(time, symbol\)"),
    ({"order_ttl": 0}, "order_ttl=0 must be a whole number of bars >= 1"),
    ({"time_stop": 1.5}, "time_stop=1.5 must be a whole number"),
    ({"entry_limit": np.ones((40, 3)), "entry_stop": np.ones((40, 3))},
     "a stop-limit entry order is not supported"),
    ({"sl_stop": np.array([0.01, 0.02]), "tp_stop": np.array([0.01, 0.02, 0.03])},
     "order arrays have"),
])
def test_bad_order_inputs_are_refused(ds, kw, match):
    kw = dict(kw)
    if "short_entries" in kw:
        kw["short_entries"] = np.ones((40, 3), bool)
    with pytest.raises(ValueError, match=match):
        pg.simulate(ds, **signals(ds), **kw)


def test_levels_and_shorts_need_signals(ds):
    w = np.full((40, 3), 0.3)
    with pytest.raises(ValueError, match="limit and stop orders go with entries/exits"):
        pg.simulate(ds, weights=w, entry_limit=np.ones((40, 3)))
    with pytest.raises(ValueError, match="go with entries/exits, not with weights"):
        pg.simulate(ds, weights=w, short_exits=np.ones((40, 3), bool), allow_short=True)


def test_unknown_order_field_of_a_strategy_is_refused():
    with pytest.raises(ValueError, match=r"Intents.orders has unknown key\(s\) \['stoploss'\]"):
        Intents(entries=np.ones((2, 2), bool), orders={"stoploss": np.ones((2, 2))})
