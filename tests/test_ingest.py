"""Ingest: round trips, reference tables, atomic writes, the CLI and the real sample."""
from __future__ import annotations

import gzip
import time

import numpy as np
import polars as pl
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import pitgrid as pg
from pitgrid.cli import app
from pitgrid.data.store import read_manifest


def _expected_grid(frame: pl.DataFrame, field: str, market: pg.MarketData) -> np.ndarray:
    """The (time, symbol) array the long frame should become, built by plain dict lookups."""
    times = [str(t)[:10] for t in market.time]
    cell = {(t, s): v for t, s, v in frame.select("time", "symbol", field).iter_rows()}
    return np.array([[cell.get((t, s), np.nan) for s in market.symbols] for t in times])


def test_round_trip_values_identical_and_gaps_masked(long_bars, write_csv, tmp_path):
    frame = long_bars(n_time=40, n_symbols=5, seed=3, gaps=0.2).with_columns(
        eps=pl.int_range(pl.len()).cast(pl.Float64) / 7
    )
    store = pg.ingest(write_csv(frame), tmp_path / "store", symbol_block=2, progress=False)
    market = pg.open_market(store)
    assert market.ds["close"].encoding["chunks"] == (40, 2)
    for field in ("open", "high", "low", "close", "volume", "eps"):
        np.testing.assert_array_equal(market[field].values, _expected_grid(frame, field, market))
    present = ~np.isnan(_expected_grid(frame, "close", market))
    np.testing.assert_array_equal(market["valid"].values, present)
    assert 0 < (~present).sum() and market["valid"].dtype == bool
    assert (market["split_ratio"].values == 1).all() and (market["dividend"].values == 0).all()
    assert len(market.actions) == 0


def test_csv_gz_parquet_and_split_files_give_the_same_data(long_bars, tmp_path):
    frame = long_bars(n_time=20, n_symbols=3, seed=1)
    with gzip.open(tmp_path / "p.csv.gz", "wb") as fh:
        fh.write(frame.write_csv().encode())
    frame.with_columns(pl.col("time").str.to_date()).write_parquet(tmp_path / "p.parquet")
    frame.filter(pl.col("time") < "2010-01-18").write_csv(tmp_path / "a.csv")
    frame.filter(pl.col("time") >= "2010-01-18").write_csv(tmp_path / "b.csv")
    prints = {
        pg.open_market(pg.ingest(src, tmp_path / f"s{i}", progress=False)).fingerprint()
        for i, src in enumerate([tmp_path / "p.csv.gz", tmp_path / "p.parquet",
                                 [tmp_path / "a.csv", tmp_path / "b.csv"]])
    }
    assert len(prints) == 1


def test_vendor_actions_become_table_and_arrays(long_bars, write_csv, tmp_path):
    frame = long_bars(n_time=10, n_symbols=2, gaps=0.0).with_columns(
        split_coefficient=pl.lit(1.0), dividend_amount=pl.lit(0.0), adjusted_close=pl.col("close") / 2
    )
    frame = frame.with_columns(
        split_coefficient=pl.when((pl.col("symbol") == "S0001") & (pl.col("time") == "2010-01-07"))
        .then(4.0).otherwise(pl.col("split_coefficient")),
        dividend_amount=pl.when((pl.col("symbol") == "S0000") & (pl.col("time") == "2010-01-11"))
        .then(0.25).otherwise(pl.col("dividend_amount")),
    )
    market = pg.open_market(pg.ingest(write_csv(frame), tmp_path / "s", progress=False))
    assert market.actions.select("symbol", pl.col("ex_date").dt.strftime("%Y-%m-%d"), "split_ratio",
                                 "cash_dividend").rows() == [
        ("S0001", "2010-01-07", 4.0, 0.0), ("S0000", "2010-01-11", 1.0, 0.25)]
    ratio, cash = market["split_ratio"].values, market["dividend"].values
    assert ratio[3, 1] == 4.0 and (np.delete(ratio.ravel(), 3 * 2 + 1) == 1).all()
    assert cash[5, 0] == 0.25 and cash.sum() == 0.25
    assert "adjusted_close" not in market.fields  # vendor back-adjustment is a look-ahead
    assert read_manifest(tmp_path / "s")["dropped"]["lookahead_fields"] == ["adjusted_close"]


def test_reference_tables_are_stored(long_bars, write_csv, tmp_path):
    prices = write_csv(long_bars(n_time=10, n_symbols=2, gaps=0.0))
    pl.DataFrame({"ticker": ["S0000", "S0001"], "start_date": ["2010-01-06", "2000-01-01"],
                  "end_date": [None, "2010-01-08"]}).write_csv(tmp_path / "sp500_members.csv")
    pl.DataFrame({"date": ["2010-01-04", "2010-01-11"], "universe_id": "top", "symbol": ["S0000", "S0001"]}
                 ).write_csv(tmp_path / "snaps.csv")
    pl.DataFrame({"symbol": ["S0001"], "event_time": ["2010-01-05"], "knowledge_time": ["2010-01-07 08:00"],
                  "field": ["eps"], "value": [1.25]}).write_csv(tmp_path / "events.csv")
    pl.DataFrame({"time": ["2010-01-04", "2010-01-08"], "regime": [0, 1]}).write_csv(tmp_path / "reg.csv")
    store = pg.ingest(prices, tmp_path / "s", events=tmp_path / "events.csv", regimes=tmp_path / "reg.csv",
                      universes={"sp500": tmp_path / "sp500_members.csv", "top": tmp_path / "snaps.csv"},
                      progress=False)
    market = pg.open_market(store)
    sp = market.universe_mask("sp500").values
    assert sp[:, 0].tolist() == [False, False, True, True, True, True, True, True, True, True]
    assert sp[:, 1].tolist() == [True, True, True, True, False, False, False, False, False, False]
    top = market.universe_mask("top").values  # a snapshot holds until the next one
    assert top[:, 0].tolist() == [True] * 5 + [False] * 5 and top[:, 1].tolist() == [False] * 5 + [True] * 5
    assert market.events["value"].to_list() == [1.25]
    assert market.regimes["regime"].to_list() == [0, 1]
    fresh = pg.MarketData(market.load().ds, universes=market.universes, events=market.events,
                          regimes=market.regimes)
    assert fresh.fingerprint() == market.fingerprint()  # cached at ingest == recomputed


def test_failed_ingest_leaves_nothing_and_keeps_the_old_store(long_bars, write_csv, tmp_path):
    good = write_csv(long_bars(n_time=10, n_symbols=2), "good.csv")
    bad = write_csv(long_bars(n_time=10, n_symbols=2).with_columns(volume=pl.lit(-1.0)), "bad.csv")
    with pytest.raises(pg.ValidationError):
        pg.ingest(bad, tmp_path / "store", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "good.csv"]

    before = pg.open_market(pg.ingest(good, tmp_path / "store", progress=False)).fingerprint()
    with pytest.raises(FileExistsError):
        pg.ingest(good, tmp_path / "store", progress=False)
    with pytest.raises(pg.ValidationError):
        pg.ingest(bad, tmp_path / "store", overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "good.csv", "store"]
    assert pg.open_market(tmp_path / "store").fingerprint() == before
    assert pg.MarketData(xr.open_zarr(tmp_path / "store").load()).fingerprint() == before


def test_overwrite_replaces_a_store_but_never_other_folders(long_bars, write_csv, tmp_path):
    first = pg.ingest(write_csv(long_bars(n_time=10, n_symbols=2)), tmp_path / "store", progress=False)
    pg.ingest(write_csv(long_bars(n_time=12, n_symbols=3), "b.csv"), first, overwrite=True, progress=False)
    assert pg.open_market(first).ds.sizes == {"time": 12, "symbol": 3}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a pitgrid store"):
        pg.ingest(tmp_path / "b.csv", precious, overwrite=True, progress=False)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_cli_ingest_and_info(long_bars, write_csv, tmp_path):
    runner = CliRunner()
    prices = write_csv(long_bars(n_time=10, n_symbols=2, gaps=0.0))
    pl.DataFrame({"ticker": ["S0000", "OLD"], "start_date": ["2010-01-01"] * 2, "end_date": [None, None]}
                 ).write_csv(tmp_path / "m.csv")
    args = ["ingest", str(prices), "--store", str(tmp_path / "s"), "--membership", str(tmp_path / "m.csv"),
            "--universe-id", "idx", "--no-progress"]
    failed = runner.invoke(app, args)
    assert failed.exit_code == 2 and "unknown symbol" in failed.output and "'OLD'" in failed.output
    done = runner.invoke(app, [*args, "--drop-unknown-symbols"])
    assert done.exit_code == 0, done.output
    assert "universes:idx=1" in done.output
    assert pg.open_market(tmp_path / "s").universe_ids == ["idx"]
    info = runner.invoke(app, ["info", str(tmp_path / "s")])
    assert info.exit_code == 0 and "10 x 2" in info.output


@pytest.mark.slow
def test_real_sample_ingest(shared_data, tmp_path):
    started = time.perf_counter()
    store = pg.ingest(shared_data / "prices.csv.gz", tmp_path / "sample", progress=False,
                      universes=shared_data / "sp500_membership_intervals.csv", unknown_symbols="drop")
    seconds = time.perf_counter() - started
    market = pg.open_market(store)
    manifest = read_manifest(store)
    print(f"real sample ingest: {seconds:.1f} s")
    assert manifest["rows"] == 2_402_891 and market.ds.sizes == {"time": 5402, "symbol": 504}
    assert int(market["valid"].values.sum()) == 2_402_891
    members = market.universe_mask("sp500")
    assert int(members.sel(time="2021-04-21").sum()) == 503  # README: 505 members, 503 with prices
    assert int(members.sel(time="2000-01-03").sum()) == 213
    assert market.symbols[market.delist_bar >= 0].tolist() == ["VAR"]  # ends 2021-04-16
    splits = market.actions.filter(pl.col("split_ratio") != 1.0)
    assert len(splits) == 473 and splits["symbol"].n_unique() == 271
    aig = splits.filter((pl.col("symbol") == "AIG") & (pl.col("ex_date") == pl.datetime(2009, 7, 1)))
    assert aig["split_ratio"].to_list() == [0.05]  # a 1-for-20 reverse split
    # 2-for-1 splits the vendor left out are listed; the recorded reverse split is not
    moves = manifest["suspicious_moves"]["moves"]
    seen = {(m["symbol"], m["date"]) for m in moves}
    assert {("TRMB", "2007-02-26"), ("WST", "2004-09-30")} <= seen and ("AIG", "2009-07-01") not in seen
    rows = pl.read_csv(shared_data / "prices.csv.gz").with_row_index("line", offset=2)
    for m in moves:  # every listed move is what its line and the symbol's line before say
        before, here = rows.filter(pl.col("line").is_in([m["line"] - 1, m["line"]])).sort("line").rows(named=True)
        assert (here["symbol"], here["time"]) == (m["symbol"], m["date"]) and before["symbol"] == m["symbol"]
        expected = (here["close"] + here["dividend_amount"]) * here["split_coefficient"] / before["close"] - 1
        assert m["move"] == pytest.approx(expected, abs=1e-4) and m["previous_close"] == before["close"]
        assert m["close"] == here["close"] and m["dividend"] == here["dividend_amount"]
        assert m["raw_move"] == pytest.approx(here["close"] / before["close"] - 1, abs=1e-4)
        assert m["split_ratio"] == pytest.approx(here["split_coefficient"], rel=1e-3)  # snapped


def test_a_recorded_split_the_prices_do_not_show_is_listed_coherently(shared_data, tmp_path):
    """GNRC's first days: the file records a 0.3036 split on 2010-02-12, the day after the
    IPO, which its closes (12.84, 13.41) do not show; the listing says so."""
    rows = pl.read_csv(shared_data / "prices.csv.gz").filter(pl.col("symbol") == "GNRC")
    rows.head(40).write_csv(tmp_path / "gnrc.csv")
    store = pg.ingest(tmp_path / "gnrc.csv", tmp_path / "s", progress=False)
    (m,) = read_manifest(store)["suspicious_moves"]["moves"]
    assert (m["symbol"], m["date"], m["line"]) == ("GNRC", "2010-02-12", 3)
    assert (m["previous_close"], m["close"]) == (12.84, 13.41)
    assert m["split_ratio"] == pytest.approx(0.303582270795, rel=1e-3) and m["dividend"] == 0
    assert m["raw_move"] == pytest.approx(13.41 / 12.84 - 1, abs=1e-4)
    assert m["move"] == pytest.approx(13.41 * m["split_ratio"] / 12.84 - 1, abs=1e-4)
    assert m["cause"] == "recorded action not in the prices"


def reference_moves(close, valid, split, dividend, threshold, before=None):
    """Symbol by symbol, bar by bar: the previous traded close (at first: ``before``'s, if
    any), the move with the day's actions."""
    found = []
    for s in range(close.shape[1]):
        prev = None if before is None or not np.isfinite(before[s]) else before[s]
        for t in range(close.shape[0]):
            if not valid[t, s]:
                continue
            if prev is not None:
                ratio = split[t, s] if np.isfinite(split[t, s]) else 1.0
                cash = dividend[t, s] if np.isfinite(dividend[t, s]) else 0.0
                move = (close[t, s] + cash) * ratio / prev - 1
                if move < -threshold or move > 1 / (1 - threshold) - 1:
                    found.append((t, s, prev, move))
            prev = close[t, s]
    return sorted(found)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), threshold=st.floats(0.05, 0.95), with_before=st.booleans())
def test_suspicious_moves_match_a_bar_by_bar_reference(seed, threshold, with_before):
    from pitgrid.data.validate import suspicious_moves

    rng = np.random.default_rng(seed)
    shape = (25, 4)
    close = np.exp(rng.normal(0, 0.5, shape).cumsum(axis=0))
    valid = rng.random(shape) > 0.2
    close[~valid] = np.nan
    split = np.where(rng.random(shape) < 0.1, rng.choice([0.5, 2.0, 3.0, np.nan], shape), 1.0)
    dividend = np.where(rng.random(shape) < 0.1, rng.uniform(0, 2, shape), 0.0)
    # the last closes of a store an append grows; NaN for a symbol new to it
    before = np.where(rng.random(4) < 0.3, np.nan, rng.uniform(0.2, 5, 4)) if with_before else None
    t, s, prev, move = suspicious_moves(close, valid, split, dividend, threshold, before=before)
    got = sorted(zip(t.tolist(), s.tolist(), prev.tolist(), move.tolist()))
    want = reference_moves(close, valid, split, dividend, threshold, before)
    assert [g[:2] for g in got] == [w[:2] for w in want]
    np.testing.assert_allclose([g[2:] for g in got], [w[2:] for w in want], rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), n_time=st.integers(1, 12))
def test_last_closes_match_a_bar_by_bar_reference(seed, n_time):
    from pitgrid.data.validate import last_closes

    rng = np.random.default_rng(seed)
    valid = rng.random((n_time, 5)) < 0.5
    close = np.where(valid, rng.uniform(1, 9, (n_time, 5)), np.nan)
    want = [next((close[t, s] for t in reversed(range(n_time)) if valid[t, s]), np.nan)
            for s in range(5)]
    np.testing.assert_array_equal(last_closes(close, valid), want)


def test_ingest_lists_unexplained_moves_with_file_and_line(long_bars, write_csv, tmp_path):
    frame = long_bars(n_time=30, n_symbols=3, gaps=0.0).with_columns(
        split_coefficient=pl.lit(1.0), dividend_amount=pl.lit(0.0))
    after = pl.col("time") >= "2010-01-20"
    price = ("open", "high", "low", "close")
    frame = frame.with_columns(
        # S0000: a spin-off, prices fall 70 % with nothing recorded; S0001: a recorded 4:1 split
        [pl.when(after & (pl.col("symbol") != "S0002")).then(
            pl.col(c) * pl.when(pl.col("symbol") == "S0000").then(0.3).otherwise(0.25))
         .otherwise(pl.col(c)) for c in price],
        # S0002: a 0.3 split recorded that its prices do not show
        split_coefficient=pl.when((pl.col("symbol") == "S0001") & (pl.col("time") == "2010-01-20"))
        .then(4.0).when((pl.col("symbol") == "S0002") & (pl.col("time") == "2010-01-25"))
        .then(0.3).otherwise(pl.col("split_coefficient")))
    first = write_csv(frame.filter(pl.col("symbol") != "S0002"), "a.csv")
    second = write_csv(frame.filter(pl.col("symbol") == "S0002"), "b.csv")
    store = pg.ingest([first, second], tmp_path / "s", progress=False)
    listed = read_manifest(store)["suspicious_moves"]
    assert listed["count"] == 2 and listed["threshold"] == pytest.approx(0.4)
    move, recorded = listed["moves"]
    assert (recorded["symbol"], recorded["date"], recorded["split_ratio"]) == ("S0002", "2010-01-25", 0.3)
    assert recorded["cause"] == "recorded action not in the prices"
    assert recorded["raw_move"] == pytest.approx(recorded["close"] / recorded["previous_close"] - 1,
                                                 abs=1e-4)
    assert recorded["move"] == pytest.approx((1 + recorded["raw_move"]) * 0.3 - 1, abs=1e-3)
    assert abs(recorded["raw_move"]) < 0.2 and recorded["move"] < -0.6
    line = frame.filter(pl.col("symbol") != "S0002").with_row_index("i").filter(
        (pl.col("symbol") == "S0000") & (pl.col("time") == "2010-01-20"))["i"][0] + 2
    assert (move["file"], move["line"], move["symbol"], move["date"]) == (str(first), line, "S0000",
                                                                          "2010-01-20")
    assert move["move"] == pytest.approx(move["close"] / move["previous_close"] - 1, abs=1e-4)
    assert move["raw_move"] == move["move"] and move["cause"] == "no action recorded"
    assert (move["split_ratio"], move["dividend"]) == (1.0, 0.0) and -0.75 < move["move"] < -0.65

    # an append adds its own moves, its first bars checked against the store's last: S0000
    # opens the append 70 % below its last stored close, S0002 triples for one day
    stored = pg.open_market(store)
    last = {str(sym): float(c) for sym, c in zip(stored.symbols, stored["close"].values[-1])}
    days = ["2010-02-15", "2010-02-16", "2010-02-17", "2010-02-18"]
    level = {("S0000", d): 0.3 for d in days} | {("S0002", "2010-02-17"): 3.0}
    later = pl.DataFrame([{"time": d, "symbol": sym, **dict.fromkeys(price, last[sym] * level.get(
        (sym, d), 1.0) * (1 + 0.01 * i)), "volume": 1000.0} for sym in last
        for i, d in enumerate(days)])
    pg.ingest(write_csv(later, "c.csv"), store, append=True, progress=False)
    listed = read_manifest(store)["suspicious_moves"]
    found = {(m["symbol"], m["date"]): m for m in listed["moves"]}
    assert listed["count"] == 5 and set(found) == {
        ("S0000", "2010-01-20"), ("S0002", "2010-01-25"), ("S0000", "2010-02-15"),
        ("S0002", "2010-02-17"), ("S0002", "2010-02-18")}
    m = found[("S0000", "2010-02-15")]
    assert m["previous_close"] == last["S0000"] and m["file"] == str(tmp_path / "c.csv")
    assert m["line"] == 2 and m["move"] == pytest.approx(-0.7, abs=1e-4)
    assert m["cause"] == "no action recorded"

    with pytest.raises(ValueError, match="suspicious_move must be in"):
        pg.ingest(first, tmp_path / "t", suspicious_move=1.5, progress=False)
    assert not (tmp_path / "t").exists()
