"""MarketData: point-in-time views, read-only arrays, universes, truncation, fingerprints."""
from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid.data.market import membership_mask

N_TIME, N_SYM = 40, 3
DS = pg.synthetic_prices(N_TIME, N_SYM, seed=7)
TIME = DS["time"].values
SYMBOLS = [str(s) for s in DS["symbol"].values]
DAY = np.timedelta64(1, "D")


def _events(n: int = 60, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    event = TIME[0] - 3 * DAY + rng.integers(0, 60 * 24, n) * np.timedelta64(1, "h")
    lag = rng.integers(0, 10 * 24, n) * np.timedelta64(1, "h") - 2 * DAY  # some known before they happen
    return pl.DataFrame({
        "symbol": rng.choice(SYMBOLS, n), "event_time": event, "knowledge_time": event + lag,
        "field": rng.choice(["eps", "rating"], n), "value": rng.normal(size=n),
    })


def _times(*index: int | None) -> pl.Series:
    # through a numpy array: polars misreads lists of numpy datetime scalars; NaT becomes null
    return pl.Series(np.array([TIME[i] if i is not None else "NaT" for i in index], "datetime64[ns]"))


def _market() -> pg.MarketData:
    universes = pl.DataFrame({
        "universe_id": ["u", "u", "u"], "symbol": SYMBOLS,
        "start": _times(0, 10, 5), "end": _times(None, 30, 6),
    })
    actions = pl.DataFrame({"symbol": [SYMBOLS[1], SYMBOLS[2]], "ex_date": _times(12, 25),
                            "split_ratio": [2.0, 1.0], "cash_dividend": [0.0, 0.4]})
    regimes = pl.DataFrame({"time": TIME[::10], "regime": ["a", "b", "a", "b"]})
    return pg.MarketData(DS, universes=universes, actions=actions, events=_events(), regimes=regimes)


MARKET = _market()
_offsets = st.integers(0, (N_TIME - 1) * 24 * 4).map(lambda q: TIME[0] + q * np.timedelta64(15, "m"))


@settings(max_examples=150, deadline=None)
@given(t=_offsets)
def test_as_of_never_shows_the_future(t):
    view = MARKET.as_of(t)
    n = int((TIME <= t).sum())
    assert view.index == n - 1 and len(view.time) == n and view.time[-1] <= t
    for name in MARKET.fields:
        np.testing.assert_array_equal(view[name].values, MARKET[name].values[:n])
        np.testing.assert_array_equal(view.array(name), MARKET[name].values[:n])
    when = pl.lit(t).cast(pl.Datetime("ns"))
    assert view.events.equals(MARKET.events.filter(pl.col("knowledge_time") <= when))
    assert (view.events["knowledge_time"].to_numpy() <= t).all()
    assert (view.actions["ex_date"].to_numpy() <= t).all()
    assert (view.regimes["time"].to_numpy() <= t).all()
    assert (view.universes["start"].to_numpy() <= t).all()
    assert view.universes["end"].drop_nulls().to_numpy().astype("datetime64[ns]").max(initial=TIME[0]) <= t
    np.testing.assert_array_equal(view.universe_mask("u").values, MARKET.universe_mask("u").values[:n])
    assert (view.delist_bar <= n).all()


def test_out_of_range_times_raise():
    for t in (TIME[0] - DAY, TIME[-1] + np.timedelta64(1, "s")):
        with pytest.raises(ValueError, match=r"t=.* outside the data's time range 2010-01-04.*2010-02-26"):
            MARKET.as_of(t)
    assert MARKET.as_of(str(pd.Timestamp(TIME[-1]))).index == N_TIME - 1
    assert MARKET.as_of(pd.Timestamp(TIME[0], tz="UTC")).index == 0


def test_views_are_read_only_and_user_arrays_are_not_frozen():
    view = MARKET.as_of(TIME[20])
    writes = [
        lambda: view["close"].__setitem__((0, 0), 1.0),
        lambda: view.array("close").__setitem__((0, 0), 1.0),
        lambda: view.ds["valid"].values.__setitem__((0, 0), False),
        lambda: MARKET["open"].values.__setitem__((0, 0), 1.0),
        lambda: MARKET.delist_bar.__setitem__(0, 3),
    ]
    for write in writes:
        with pytest.raises(ValueError, match="read-only|view"):
            write()
    assert DS["close"].values.flags.writeable  # MarketData shared the user's arrays, not froze them
    assert MARKET["close"].values[0, 0] == DS["close"].values[0, 0]


def test_lazy_store_view_is_read_only(long_bars, write_csv, tmp_path):
    market = pg.open_market(pg.ingest(write_csv(long_bars()), tmp_path / "s", progress=False))
    view = market.as_of(market.time[5])
    with pytest.raises(ValueError):
        view["close"][0, 0] = 1.0
    assert view["close"].shape == (6, 4)
    assert market.store_path == tmp_path / "s" and market.load().store_path == tmp_path / "s"
    assert market.truncate(market.time[5]).store_path is None  # not the store's data any more


def test_universe_mask_from_snapshots_applies_from_its_own_date():
    snaps = pl.DataFrame({"date": _times(3, 3, 8), "universe_id": "x",
                          "symbol": [SYMBOLS[0], SYMBOLS[1], SYMBOLS[1]]})
    mask = pg.MarketData(DS, universes=snaps).universe_mask("x").values
    assert mask[:, 0].tolist() == [False] * 3 + [True] * 5 + [False] * 32
    assert mask[:, 1].tolist() == [False] * 3 + [True] * 37
    assert not mask[:, 2].any()
    with pytest.raises(KeyError, match="no universe 'y'"):
        pg.MarketData(DS, universes=snaps).universe_mask("y")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, N_SYM - 1), st.integers(-3, N_TIME + 3), st.integers(0, 12),
                          st.booleans()), max_size=8))
def test_membership_mask_matches_brute_force(rows):
    starts = np.array([TIME[0] + k * DAY for _, k, _, _ in rows], "datetime64[ns]")
    ends = np.array([np.datetime64("NaT") if open_ else s + n * DAY
                     for (_, _, n, open_), s in zip(rows, starts)], "datetime64[ns]")
    intervals = pl.DataFrame({"symbol": pl.Series([SYMBOLS[c] for c, *_ in rows], dtype=pl.String),
                              "start": pl.Series(starts), "end": pl.Series(ends)})
    want = np.zeros((N_TIME, N_SYM), bool)
    for (c, *_), s, e in zip(rows, starts, ends):
        for i, t in enumerate(TIME):
            want[i, c] |= s <= t and (np.isnat(e) or t < e)
    np.testing.assert_array_equal(membership_mask(intervals, TIME, SYMBOLS), want)


def test_truncate_drops_everything_after_t():
    t = TIME[20] + np.timedelta64(12, "h")
    cut = MARKET.truncate(t)
    assert len(cut.time) == 21 and cut.ds.sizes["time"] == 21
    assert cut.events.equals(MARKET.as_of(t).events)
    assert cut.universes.equals(MARKET.as_of(t).universes)
    assert cut.universes.filter(pl.col("symbol") == SYMBOLS[1])["end"].to_list() == [None]  # ends at 30
    np.testing.assert_array_equal(cut.universe_mask("u").values, MARKET.universe_mask("u").values[:21])
    assert cut.fingerprint() != MARKET.fingerprint()
    whole = pg.MarketData(DS)
    assert whole.truncate(TIME[-1]).fingerprint() == whole.fingerprint()


def test_delist_bar():
    ds = DS.copy(deep=True)
    ds["valid"][30:, 1] = False   # symbol 1 ends at bar 29
    ds["valid"][:10, 2] = False   # symbol 2 starts late: not a delisting
    market = pg.MarketData(ds)
    assert market.delist_bar.dtype == np.int64 and market.delist_bar.tolist() == [-1, 30, -1]
    assert market.as_of(TIME[35]).delist_bar.tolist() == [-1, 30, -1]


def test_actions_table_and_arrays_agree_both_ways():
    ratio = MARKET["split_ratio"].values
    assert ratio[12, 1] == 2.0 and (ratio != 1).sum() == 1
    assert MARKET["dividend"].values[25, 2] == 0.4
    again = pg.MarketData(MARKET.ds)  # arrays present, no table: table read off the arrays
    assert again.actions.equals(MARKET.actions)


def test_fingerprint_is_stable_and_sensitive():
    assert _market().fingerprint() == MARKET.fingerprint()
    changed = DS.copy(deep=True)
    changed["volume"][3, 2] += 1
    assert pg.MarketData(changed).fingerprint() != pg.MarketData(DS).fingerprint()
    fewer_events = pg.MarketData(DS, events=_events(n=59))
    assert fewer_events.fingerprint() != pg.MarketData(DS, events=_events()).fingerprint()


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="fields"):
        pg.MarketData(DS.drop_vars("volume"))
    with pytest.raises(ValueError, match="strictly increasing"):
        pg.MarketData(DS.isel(time=[0, 2, 1]))
    with pytest.raises(pg.ValidationError, match="<events>, row 1, symbol 'NOPE': unknown symbol"):
        pg.MarketData(DS, events=_events().with_columns(symbol=pl.lit("NOPE")))


def test_pandas_reference_tables_read_like_polars_ones():
    start = pd.Series(TIME[[0, 10, 5]])
    universes = pd.DataFrame({
        "universe_id": pd.Series(["u", "u", "u"], dtype=object), "symbol": list(SYMBOLS[:3]),
        # time-zone-aware instants and an open end (missing) as pandas users hold them
        "start": start.dt.tz_localize("UTC"),
        "end": pd.Series([pd.NaT, TIME[30], TIME[6]]),
    })
    from_pandas = pg.MarketData(DS, universes=universes).universe_mask("u").values
    assert np.array_equal(from_pandas, _market().universe_mask("u").values)
