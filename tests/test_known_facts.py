"""What a run takes as known instead of recomputing: facts and fingerprints recorded at
ingest, in-memory markets never hashed to be cached, trade tables built on first read."""
from __future__ import annotations

import pickle

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid.cycle.data import FeatureData
from pitgrid.data import store as store_mod
from pitgrid.data.store import read_manifest
from pitgrid.engine import simulate as sim
from pitgrid.engine.result import LazyTable
from pitgrid.strategies import MovingAverageCross

COSTS = {"fees_bps": 10.0, "slippage_bps": 5.0}


def reference_facts(arrays: dict[str, np.ndarray]) -> dict[str, bool]:
    """Cell by cell, as the definitions read."""
    T, S = arrays["close"].shape
    gapless = all(
        bool(arrays["valid"][t, s]) and all(np.isfinite(arrays[f][t, s])
                                            for f in ("open", "close") if f in arrays)
        for t in range(T) for s in range(S))
    has_actions = any(arrays["split_ratio"][t, s] != 1.0 or arrays["dividend"][t, s] != 0.0
                      for t in range(T) for s in range(S))
    return {"gapless": gapless, "has_actions": has_actions}


def _forbid(monkeypatch, *names: str) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed what the store records")

    for name in names:
        monkeypatch.setattr(store_mod, name, refuse)


@pytest.mark.parametrize("gaps", [0.0, 0.15])
def test_ingest_records_facts_and_opening_never_recomputes_them(long_bars, write_csv, tmp_path,
                                                                 monkeypatch, gaps):
    frame = long_bars(n_time=80, n_symbols=5, seed=2, gaps=gaps)
    store = pg.ingest(write_csv(frame), tmp_path / "store", progress=False)
    loaded = pg.open_market(store).load()
    want = reference_facts({n: np.asarray(loaded[n].values) for n in loaded.fields})
    assert read_manifest(store)["facts"] == want
    assert want["gapless"] == (gaps == 0.0)
    expected = pg.backtest(loaded, MovingAverageCross(fast=3, slow=9), COSTS)

    _forbid(monkeypatch, "data_fingerprint", "data_facts")
    pg.clear_feature_cache()
    market = pg.open_market(store)
    assert market.facts == want and market.fingerprint() == read_manifest(store)["fingerprint"]
    res = pg.backtest(market, MovingAverageCross(fast=3, slow=9), COSTS)
    np.testing.assert_array_equal(res.equity.values, expected.equity.values)
    assert res.trades.equals(expected.trades)


def test_an_append_gets_a_new_fingerprint_and_its_own_facts(long_bars, write_csv, tmp_path):
    frame = long_bars(n_time=60, n_symbols=4, seed=4, gaps=0.0)
    times = frame["time"].unique().sort().to_list()
    first = frame.filter(pl.col("time") < times[40])
    # the appended bars miss one symbol for a while: a gap, not a delisting
    later = frame.filter((pl.col("time") >= times[40])
                         & ~((pl.col("symbol") == "S0001") & (pl.col("time") < times[45])))
    store = pg.ingest(write_csv(first, "a.csv"), tmp_path / "s", progress=False)
    before = read_manifest(store)
    old = pg.open_market(store)
    pg.ingest(write_csv(later, "b.csv"), store, append=True, progress=False)
    after = read_manifest(store)
    grown = pg.open_market(store)
    assert before["facts"]["gapless"] and not after["facts"]["gapless"]
    assert after["fingerprint"] != before["fingerprint"]
    assert grown.cache_key() != old.cache_key()
    loaded = grown.load()
    assert after["facts"] == reference_facts({n: np.asarray(loaded[n].values) for n in loaded.fields})
    assert after["fingerprint"] == pg.MarketData(loaded.ds).fingerprint()


def _panel(seed: int, T: int, S: int, nan_p: float, invalid_p: float, action_p: float) -> pg.MarketData:
    rng = np.random.default_rng(seed)
    ds = pg.synthetic_prices(T, S, seed=seed)
    for name in ("open", "close"):
        v = ds[name].values.copy()
        v[rng.random(v.shape) < nan_p] = np.nan
        ds[name] = (("time", "symbol"), v)
    ds["valid"] = (("time", "symbol"), rng.random((T, S)) >= invalid_p)
    split = np.where(rng.random((T, S)) < action_p, rng.choice([2.0, 0.5, np.nan], (T, S)), 1.0)
    div = np.where(rng.random((T, S)) < action_p, 0.1, 0.0)
    ds["split_ratio"] = (("time", "symbol"), split)
    ds["dividend"] = (("time", "symbol"), div)
    return pg.MarketData(ds)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 30), st.integers(1, 5),
       st.sampled_from([0.0, 0.1]), st.sampled_from([0.0, 0.1]), st.sampled_from([0.0, 0.05]),
       st.sampled_from(["close", "next_open"]), st.sampled_from([0.0, 10.0]))
def test_facts_spare_passes_without_changing_what_the_core_reads(seed, T, S, nan_p, invalid_p,
                                                                 action_p, fill, lot):
    market = _panel(seed, T, S, nan_p, invalid_p, action_p)
    arrays = {n: np.asarray(market[n].values) for n in market.fields}
    assert market.facts == reference_facts(arrays)
    cfg = pg.SimConfig(fill=fill, lot_size=lot)
    full = sim.market_arrays(market.ds, cfg)
    spared = sim.market_arrays(market.ds, cfg, market.facts)
    assert full.keys() == spared.keys()
    for name in full:
        np.testing.assert_array_equal(full[name], spared[name], err_msg=name)
    data = FeatureData(market)
    factor = np.cumprod(np.where(np.isfinite(arrays["split_ratio"]), arrays["split_ratio"], 1.0), axis=0)
    want = np.where(arrays["valid"], arrays["close"] * factor, np.nan)
    np.testing.assert_array_equal(data.adjusted("close"), want)


def test_a_backtest_on_an_in_memory_market_never_hashes_it(monkeypatch):
    market = pg.MarketData(pg.synthetic_prices(200, 6, seed=1))
    calls = []
    strategy = MovingAverageCross(fast=5, slow=20)
    features = type(strategy).features

    def counted(self, data):
        calls.append(1)
        return features(self, data)

    monkeypatch.setattr(type(strategy), "features", counted)
    _forbid(monkeypatch, "data_fingerprint")
    pg.clear_feature_cache()
    a = pg.backtest(market, strategy, COSTS)
    b = pg.backtest(market, strategy, COSTS)
    assert len(calls) == 1  # the second run read the cached features
    np.testing.assert_array_equal(a.equity.values, b.equity.values)
    cut = market.truncate(market.time[150])
    assert cut.cache_key() == market.truncate(market.time[150]).cache_key() != market.cache_key()


def test_trade_tables_are_built_on_first_read_and_equal_the_log():
    ds = pg.synthetic_prices(120, 5, seed=3)
    c = ds["close"]
    res = pg.simulate(ds, entries=c > c.shift(time=1), exits=c < c.shift(time=1), fill="close",
                      accounts="per_symbol", max_participation=0.0001, **COSTS)
    assert all(isinstance(res.__dict__[k], LazyTable) for k in ("_trades", "_unfilled", "_filtered"))
    copy = pickle.loads(pickle.dumps(res))
    log = res.__dict__["_trades"].build.args[0]
    want = sim.log_tables(log, ds["time"].values, ds["symbol"].values)
    got = (res.trades, res.unfilled, res.filtered)
    assert res.trades is res.trades  # built once, then kept
    for w, g, h in zip(want, got, (copy.trades, copy.unfilled, copy.filtered)):
        assert g.equals(w) and h.equals(w)
    assert res.trades.height > 0 and res.unfilled.height > 0
    # the log's rows, one table per kind, every row in exactly one of them
    assert sum(t.height for t in got) == len(log[0])


def test_a_stored_market_reads_only_the_fields_a_run_uses_each_once(tmp_path, monkeypatch):
    from pitgrid.data import read_once
    from pitgrid.data.store import write_market

    ds = pg.synthetic_prices(150, 6, seed=5)
    store = write_market(pg.MarketData(ds), tmp_path / "s")
    reads: list[tuple[int, ...]] = []
    first_use = read_once.ReadOnce.get_duck_array

    def counted(self):
        if self._values is None:
            reads.append(self.array.shape)
        return first_use(self)

    monkeypatch.setattr(read_once.ReadOnce, "get_duck_array", counted)
    market = pg.open_market(store).load()
    assert market.load() is market and reads == []
    res = pg.backtest(market, MovingAverageCross(fast=3, slow=12), {"fill": "close", **COSTS})
    used = {n for n in market.fields if market.ds[n].variable._data._values is not None}
    assert used == {"close", "volume"} and len(reads) == 2  # no gap, no action: nothing else
    want = pg.backtest(pg.MarketData(ds), MovingAverageCross(fast=3, slow=12), {"fill": "close", **COSTS})
    np.testing.assert_array_equal(res.equity.values, want.equity.values)
    assert res.trades.equals(want.trades)
    # copies and slices share the one read; the values are read-only
    close = market.ds["close"]
    assert close.isel(time=slice(0, 5)).values.base is not None and len(reads) == 2
    with pytest.raises(ValueError, match="read-only"):
        close.values[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        market.ds["close"][0, 0] = 1.0
    np.testing.assert_array_equal(market.as_of(market.time[40]).array("high"),
                                  ds["high"].values[:41])
