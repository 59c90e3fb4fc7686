"""Building a MarketData: the fields it adds, the facts it learns on the way, what it leaves
unallocated until read, and that none of it changes a run."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pitgrid as pg
from pitgrid.cycle.strategy import Intents, apply_universe
from pitgrid.data.checks import all_finite
from pitgrid.data.read_once import ReadOnce
from pitgrid.strategies import MovingAverageCross

COSTS = {"fees_bps": 10.0, "slippage_bps": 5.0}


def _float_arrays(dtype: type) -> st.SearchStrategy[np.ndarray]:
    big = float(np.finfo(dtype).max)  # a sum of a few overflows though every cell is finite
    cells = st.one_of(hnp.from_dtype(np.dtype(dtype)),
                      st.sampled_from([np.nan, np.inf, -np.inf, big, -big, 0.0]))
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
                      elements=cells)


def reference_all_finite(values: np.ndarray) -> bool:
    return all(np.isfinite(v) for v in np.asarray(values).ravel().tolist())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([np.float64, np.float32, np.float16]).flatmap(_float_arrays))
def test_all_finite_matches_a_cell_by_cell_check(values):
    assert all_finite(values) == reference_all_finite(values)


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(st.sampled_from([np.int64, np.int8, np.bool_, np.uint16]),
                  hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)))
def test_integers_and_booleans_are_finite(values):
    assert all_finite(values) == reference_all_finite(values)


# --------------------------------------------------------------------- reference building
def reference_facts(arrays: dict[str, np.ndarray]) -> dict[str, bool]:
    """Cell by cell, as the definitions read (as in test_known_facts)."""
    T, S = arrays["close"].shape
    gapless = all(bool(arrays["valid"][t, s]) and np.isfinite(arrays["open"][t, s])
                  and np.isfinite(arrays["close"][t, s]) for t in range(T) for s in range(S))
    has_actions = any(arrays["split_ratio"][t, s] != 1.0 or arrays["dividend"][t, s] != 0.0
                      for t in range(T) for s in range(S))
    return {"gapless": gapless, "has_actions": has_actions}


def reference_fields(ds: xr.Dataset, actions: pl.DataFrame | None) -> dict[str, np.ndarray]:
    """What a market holds, written out plainly: valid where the close is finite unless
    given; each action on the first bar at or after its ex-date, splits multiplying and
    dividends adding where two land on one bar."""
    T, S = ds.sizes["time"], ds.sizes["symbol"]
    out = {name: np.asarray(ds[name].values) for name in ds.data_vars}
    if "valid" not in out:
        out["valid"] = np.array([[bool(np.isfinite(out["close"][t, s])) for s in range(S)]
                                 for t in range(T)])
    ratio, cash = np.ones((T, S)), np.zeros((T, S))
    symbols = [str(s) for s in ds["symbol"].values]
    times = ds["time"].values
    for row in (actions.iter_rows(named=True) if actions is not None else []):
        bars = [t for t in range(T) if times[t] >= np.datetime64(row["ex_date"], "ns")]
        if bars and row["symbol"] in symbols:
            ratio[bars[0], symbols.index(row["symbol"])] *= row["split_ratio"]
            cash[bars[0], symbols.index(row["symbol"])] += row["cash_dividend"]
    out.setdefault("split_ratio", ratio)
    out.setdefault("dividend", cash)
    return out


@st.composite
def panels(draw):
    T, S = draw(st.integers(1, 25)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ds = pg.synthetic_prices(T, S, seed=seed % 1000)
    for name in ("open", "close"):
        if draw(st.booleans()):  # a gap, or a bad value, somewhere in this field
            v = ds[name].values.copy()
            v[rng.random(v.shape) < 0.2] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            ds[name] = (("time", "symbol"), v)
    if draw(st.booleans()):
        ds["valid"] = (("time", "symbol"), rng.random((T, S)) >= draw(st.sampled_from([0.0, 0.2])))
    given_arrays = draw(st.sampled_from(["none", "split_ratio", "dividend", "both"]))
    if given_arrays in ("split_ratio", "both"):
        ds["split_ratio"] = (("time", "symbol"),
                             np.where(rng.random((T, S)) < 0.1, rng.choice([2.0, 0.5, np.nan], (T, S)), 1.0))
    if given_arrays in ("dividend", "both"):
        ds["dividend"] = (("time", "symbol"), np.where(rng.random((T, S)) < 0.1, 0.25, 0.0))
    actions = None
    if draw(st.booleans()):
        times = ds["time"].values
        # distinct (symbol, day) keys: a table with a duplicate is refused
        keys = draw(st.sets(st.tuples(st.integers(0, S - 1), st.integers(-2, T + 2)), max_size=4))
        n = len(keys)
        actions = pl.DataFrame({
            "symbol": [str(ds["symbol"].values[k[0]]) for k in keys],
            "ex_date": pl.Series(np.array([times[0] + k[1] * np.timedelta64(1, "D") for k in keys],
                                          dtype="datetime64[ns]")),
            "split_ratio": rng.choice([1.0, 2.0, 0.5], n),
            "cash_dividend": rng.choice([0.0, 0.1], n),
        })
    return ds, actions


@settings(max_examples=120, deadline=None)
@given(panels())
def test_built_fields_and_facts_match_a_plain_construction(panel):
    ds, actions = panel
    market = pg.MarketData(ds, actions=actions)
    table = market.actions if actions is not None else None
    want = reference_fields(ds, table)
    assert market.fields == list(want)  # the given fields first, in order, then the added ones
    for name, values in want.items():
        got = market[name].values
        assert not got.flags.writeable
        np.testing.assert_array_equal(got, values, err_msg=name)
    assert market.facts == reference_facts(want)
    np.testing.assert_array_equal(market.delist_bar, pg.data.market.delist_bars(want["valid"]))
    assert all(ds[name].values.flags.writeable for name in ds.data_vars)  # the user's stay theirs


@settings(max_examples=60, deadline=None)
@given(panels())
def test_the_actions_table_read_off_the_arrays_is_what_it_was(panel):
    ds, _ = panel
    market = pg.MarketData(ds)
    arrays = reference_fields(ds, None)
    rows, cols = np.nonzero(((arrays["split_ratio"] != 1.0) & ~np.isnan(arrays["split_ratio"]))
                            | ((arrays["dividend"] != 0.0) & ~np.isnan(arrays["dividend"])))
    symbols = [str(s) for s in ds["symbol"].values]
    want = sorted((ds["time"].values[r], symbols[c]) for r, c in zip(rows, cols))
    got = list(zip(market.actions["ex_date"].to_numpy().astype("datetime64[ns]"),
                   market.actions["symbol"].to_list()))
    assert got == want


def test_constant_fields_are_allocated_only_when_read():
    market = pg.MarketData(pg.synthetic_prices(300, 6, seed=3).drop_vars("valid"))
    constant = {n: market.ds.variables[n]._data for n in ("valid", "split_ratio", "dividend")}
    assert all(isinstance(c, ReadOnce) for c in constant.values())
    assert market.facts == {"gapless": True, "has_actions": False}
    res = pg.backtest(market, MovingAverageCross(fast=5, slow=20), COSTS)
    assert market.as_of(market.time[100]).array("close").shape == (101, 6)
    # the run and the view took the facts: nothing read the mask of ones, the ratios of 1, the zero dividends
    assert all(c._values is None for c in constant.values())
    # the same run on the same data held as ordinary arrays
    ds = market.ds.copy()
    for name in constant:
        ds[name] = (("time", "symbol"), np.array(market[name].values))
    plain = pg.MarketData(ds)
    assert all(isinstance(plain.ds.variables[n]._data, np.ndarray) for n in constant)
    again = pg.backtest(plain, MovingAverageCross(fast=5, slow=20), COSTS)
    np.testing.assert_array_equal(res.equity.values, again.equity.values)
    assert res.metrics.equals(again.metrics) and res.trades.equals(again.trades)
    assert market.fingerprint() == plain.fingerprint()
    v = market["split_ratio"].values
    assert v is market["split_ratio"].values and not v.flags.writeable and (v == 1.0).all()


def test_a_market_with_gaps_keeps_its_mask_and_says_so():
    ds = pg.synthetic_prices(50, 3, seed=1).drop_vars("valid")
    close = ds["close"].values.copy()
    close[10, 1] = np.nan
    ds["close"] = (("time", "symbol"), close)
    market = pg.MarketData(ds)
    assert isinstance(market.ds.variables["valid"]._data, np.ndarray)
    assert not market["valid"].values[10, 1] and market["valid"].values.sum() == 149
    assert market.facts["gapless"] is False


def test_labels_are_normalised_and_a_transposed_dataset_is_turned():
    ds = pg.synthetic_prices(8, 3, seed=2)
    odd = ds.assign_coords(symbol=np.array(["A", "B", "C"], dtype=object)).transpose("symbol", "time")
    market = pg.MarketData(odd)
    assert market["close"].dims == ("time", "symbol")
    assert market["symbol"].dtype.kind == "U" and market.symbols.tolist() == ["A", "B", "C"]
    np.testing.assert_array_equal(market["close"].values, ds["close"].values)


@pytest.mark.parametrize("change, message", [
    (lambda ds: ds.isel(time=[0, 2, 1, 3]), "time must be strictly increasing"),
    (lambda ds: ds.assign_coords(symbol=["A", "A", "B"]), "symbols must be unique"),
    (lambda ds: ds.drop_vars("volume"), "missing ['volume']"),
])
def test_bad_datasets_are_still_refused(change, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        pg.MarketData(change(pg.synthetic_prices(4, 3, seed=0)))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**32 - 1),
       st.sampled_from(["bool", "int", "weights", "shorts"]))
def test_no_universe_is_the_universe_of_everyone(T, S, seed, kind):
    rng = np.random.default_rng(seed)
    mask = lambda: rng.random((T, S)) < 0.4  # noqa: E731
    intents = {
        "bool": lambda: Intents(entries=mask(), exits=mask()),
        "int": lambda: Intents(entries=mask().astype(np.int64), exits=None),
        "weights": lambda: Intents(weights=rng.random((T, S))),
        "shorts": lambda: Intents(entries=mask(), exits=mask(), short_entries=mask()),
    }[kind]()
    a = apply_universe(intents, None, (T, S))
    b = apply_universe(intents, np.ones((T, S), dtype=bool))
    for name in ("entries", "exits", "weights", "short_entries", "short_exits"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)


def test_cuts_and_views_of_constant_fields_stay_read_only():
    market = pg.MarketData(pg.synthetic_prices(40, 3, seed=5).drop_vars("valid"))
    t = market.time[20]
    cut, view = market.truncate(t), market.as_of(t)
    for name in ("valid", "split_ratio", "dividend"):
        for values in (cut[name].values, view.array(name), view[name].values):
            assert values.shape == (21, 3) and not values.flags.writeable, name
            np.testing.assert_array_equal(values, market[name].values[:21])
            with pytest.raises(ValueError):
                values[0, 0] = 0
    assert cut.facts == market.facts == {"gapless": True, "has_actions": False}
