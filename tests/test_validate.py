"""Validation: the compiled scan against a pure-Python reference, and every rule end to end."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid import _scan
from pitgrid.data.validate import NS_PER_DAY, infer_grid

HOUR = 3_600_000_000_000
MINUTE = 60_000_000_000


def reference_scan(sym, time, date_only, o, h, l, c, v, last_time, step, phase, intraday):
    """The rules of ``_scan.scan_bars`` spelled out row by row in plain Python."""
    for i in range(len(sym)):
        s, t = int(sym[i]), int(time[i])
        if t == _scan.NO_TIME:
            return i, _scan.UNPARSEABLE_TIME
        if s < 0:
            return i, _scan.MISSING_SYMBOL
        prev = int(last_time[s])
        if t == prev:
            return i, _scan.DUPLICATE
        if t < prev:
            return i, _scan.UNSORTED
        time_of_day = t % NS_PER_DAY  # Python's % is already a floor modulo
        if (intraday and date_only[i]) or (time_of_day - phase) % step != 0:
            return i, _scan.MIXED_FREQUENCY
        prices = [float(o[i]), float(h[i]), float(l[i]), float(c[i])]
        if not all(math.isfinite(p) for p in prices):
            return i, _scan.NONFINITE_PRICE
        if min(prices) <= 0:
            return i, _scan.NONPOSITIVE_PRICE
        if prices[1] < prices[2]:
            return i, _scan.HIGH_BELOW_LOW
        if not prices[2] <= prices[0] <= prices[1]:
            return i, _scan.OPEN_OUTSIDE_RANGE
        if not prices[2] <= prices[3] <= prices[1]:
            return i, _scan.CLOSE_OUTSIDE_RANGE
        if not math.isfinite(float(v[i])):
            return i, _scan.NONFINITE_VOLUME
        if v[i] < 0:
            return i, _scan.NEGATIVE_VOLUME
        last_time[s] = t
    return -1, _scan.OK


# rows are mostly plausible bars with one kind of damage now and then, so that every rule,
# including the late ones (volume), is reached often
_DAMAGE = ["none"] * 6 + ["no_time", "no_symbol", "off_grid", "date_only", "nan_price", "inf_price",
                          "zero_price", "negative_price", "high_below_low", "open_out", "close_out",
                          "nan_volume", "negative_volume"]


@st.composite
def _rows(draw):
    """``(rows, grid)``: on-grid times that mostly increase (per symbol too), some damage."""
    grid = draw(st.sampled_from([(NS_PER_DAY, 0, False), (HOUR, 0, True), (HOUR, 30 * MINUTE, True)]))
    n = draw(st.integers(0, 12))
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 0, -1]), min_size=n, max_size=n))
    time = grid[1] - NS_PER_DAY + grid[0] * np.cumsum(np.array(steps, np.int64))
    rows = []
    for i in range(n):
        low = draw(st.sampled_from([1.0, 2.0, 0.5]))
        high = low + draw(st.sampled_from([0.0, 1.0, 3.0]))
        o, c = (draw(st.sampled_from([low, high, (low + high) / 2])) for _ in range(2))
        row = [draw(st.integers(0, 2)), int(time[i]), not grid[2], o, high, low, c,
               draw(st.sampled_from([0.0, 10.0]))]
        damage = draw(st.sampled_from(_DAMAGE))
        col, value = {
            "no_time": (1, _scan.NO_TIME), "no_symbol": (0, -1), "off_grid": (1, row[1] + MINUTE),
            "date_only": (2, not row[2]), "nan_price": (draw(st.integers(3, 6)), math.nan),
            "inf_price": (draw(st.integers(3, 6)), math.inf), "zero_price": (draw(st.integers(3, 6)), 0.0),
            "negative_price": (5, -1.0), "high_below_low": (4, low - 0.25), "open_out": (3, high + 1),
            "close_out": (6, low / 4), "nan_volume": (7, math.nan), "negative_volume": (7, -1.0),
        }.get(damage, (None, None))
        if col is not None:
            row[col] = value
        rows.append(tuple(row))
    return rows, grid


@settings(max_examples=400, deadline=None)
@given(case=_rows())
def test_compiled_scan_matches_reference(case):
    rows, grid = case
    cols = list(zip(*rows)) if rows else [()] * 8
    sym = np.array(cols[0], np.int64)
    time = np.array(cols[1], np.int64)
    date_only = np.array(cols[2], np.uint8)
    floats = [np.array(c, np.float64) for c in cols[3:]]
    fast, slow = np.full(3, _scan.NO_TIME, np.int64), np.full(3, _scan.NO_TIME, np.int64)
    got = _scan.scan_bars(sym, time, date_only, *floats, fast, *grid)
    want = reference_scan(sym, time, date_only, *floats, slow, *grid)
    assert got == want
    assert fast.tolist() == slow.tolist()  # the carried state agrees too


def test_scan_state_carries_across_calls():
    one = np.ones(1)
    last = np.full(1, _scan.NO_TIME, np.int64)
    args = (np.zeros(1, np.int64), np.array([NS_PER_DAY]), np.ones(1, np.uint8), one, one, one, one, one)
    assert _scan.scan_bars(*args, last, NS_PER_DAY, 0, False) == (-1, _scan.OK)
    assert _scan.scan_bars(*args, last, NS_PER_DAY, 0, False) == (0, _scan.DUPLICATE)


def test_grid_inference():
    day = NS_PER_DAY
    daily = infer_grid(np.array([0, day, 3 * day, 4 * day]), np.zeros(4, np.int64))
    assert (daily.step_ns, daily.phase_ns, daily.intraday) == (day, 0, False)
    t = np.array([9 * HOUR + 30 * MINUTE + k * 5 * MINUTE for k in range(10)])
    five = infer_grid(np.concatenate([t, t + day]), np.zeros(20, np.int64))
    assert (five.step_ns, five.phase_ns, five.intraday) == (5 * MINUTE, 0, True)
    hourly = infer_grid(np.array([9 * HOUR + 30 * MINUTE + k * HOUR for k in range(6)]), np.zeros(6, np.int64))
    assert (hourly.step_ns, hourly.phase_ns) == (HOUR, 30 * MINUTE)


# --------------------------------------------------------------------- end to end, one rule each


def _bad_rows(long_bars):
    """A clean file; each case below edits one row (its line is index + 2)."""
    return long_bars(n_time=8, n_symbols=2, gaps=0.0)  # rows 0..7 are S0000, 8..15 are S0001


def _set(frame: pl.DataFrame, row: int, **values) -> pl.DataFrame:
    return frame.with_columns(
        [pl.when(pl.int_range(pl.len()) == row).then(pl.lit(v)).otherwise(pl.col(k)).alias(k)
         for k, v in values.items()]
    )


RULE_CASES = {
    "duplicate (time, symbol)": lambda f: _set(f, 10, time=f["time"][9]),
    "unparseable time": lambda f: _set(f, 10, time="2010-13-45"),
    "unsorted time within symbol": lambda f: _set(f, 10, time="2009-12-31"),
    "mixed bar frequency": lambda f: _set(f, 10, time=f["time"][10] + " 15:30"),
    "non-finite price": lambda f: _set(f, 10, close=float("nan")),
    "non-positive price": lambda f: _set(f, 10, open=0.0, low=0.0),
    "high < low": lambda f: _set(f, 10, high=f["low"][10] * 0.5),
    "open outside [low, high]": lambda f: _set(f, 10, open=f["high"][10] * 2),
    "close outside [low, high]": lambda f: _set(f, 10, close=f["low"][10] * 0.5),
    "negative volume": lambda f: _set(f, 10, volume=-1.0),
    "non-finite volume": lambda f: _set(f, 10, volume=float("inf")),
}


@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_each_bar_rule_names_file_line_symbol_and_rule(rule, long_bars, write_csv, tmp_path):
    path = write_csv(RULE_CASES[rule](_bad_rows(long_bars)), "bad.csv")
    with pytest.raises(pg.ValidationError) as info:
        pg.ingest(path, tmp_path / "store", progress=False)
    err = info.value
    assert (err.rule, err.line, err.symbol, err.file) == (rule, 12, "S0001", str(path))
    for part in ("bad.csv", "line 12", "'S0001'", rule):
        assert part in str(err)
    assert isinstance(err, pg.IngestError) and isinstance(err, ValueError)
    assert not (tmp_path / "store").exists()


def test_text_in_a_number_column_names_the_line(long_bars, write_csv, tmp_path):
    frame = _bad_rows(long_bars).with_columns(pl.col("volume").cast(pl.String))
    path = write_csv(_set(frame, 5, volume="12k"), "bad.csv")
    with pytest.raises(pg.ValidationError, match=r"bad.csv, line 7, symbol 'S0000': non-numeric volume"):
        pg.ingest(path, tmp_path / "store", progress=False)


def test_empty_price_is_refused(long_bars, write_csv, tmp_path):
    frame = _bad_rows(long_bars).with_columns(pl.col("close").cast(pl.String))
    path = write_csv(_set(frame, 3, close=None), "bad.csv")
    with pytest.raises(pg.ValidationError, match="line 5, symbol 'S0000': non-finite price"):
        pg.ingest(path, tmp_path / "store", progress=False)


def test_missing_symbol(long_bars, write_csv, tmp_path):
    path = write_csv(_set(_bad_rows(long_bars), 2, symbol=""), "bad.csv")
    with pytest.raises(pg.ValidationError, match="line 4, symbol None: missing symbol"):
        pg.ingest(path, tmp_path / "store", progress=False)


def test_first_offending_row_wins(long_bars, write_csv, tmp_path):
    frame = _set(_set(_bad_rows(long_bars), 12, volume=-1.0), 4, high=0.001)
    with pytest.raises(pg.ValidationError, match="line 6, symbol 'S0000': high < low"):
        pg.ingest(write_csv(frame), tmp_path / "store", progress=False)


def test_parquet_errors_name_the_row(long_bars, tmp_path):
    path = tmp_path / "bad.parquet"
    _set(_bad_rows(long_bars), 3, volume=-5.0).write_parquet(path)
    with pytest.raises(pg.ValidationError, match="bad.parquet, row 4, symbol 'S0000': negative volume"):
        pg.ingest(path, tmp_path / "store", progress=False)


def test_files_continue_each_other(long_bars, tmp_path):
    frame = _bad_rows(long_bars)
    frame.slice(0, 12).write_csv(tmp_path / "a.csv")
    frame.slice(11).write_csv(tmp_path / "b.csv")  # repeats row 11 (line 2 of b.csv)
    with pytest.raises(pg.ValidationError) as info:
        pg.ingest([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "store", progress=False)
    assert (info.value.file, info.value.line, info.value.rule) == (
        str(tmp_path / "b.csv"), 2, "duplicate (time, symbol)")
    assert "first at" in str(info.value) and "a.csv line 13" in str(info.value)


def test_intraday_grid_rules(write_csv, tmp_path):
    times = [f"2020-01-02 09:{m:02d}" for m in range(30, 60, 5)] + ["2020-01-02 09:57", "2020-01-03"]
    frame = pl.DataFrame({"time": times, "symbol": "A", "open": 1.0, "high": 1.0, "low": 1.0,
                          "close": 1.0, "volume": 1.0})
    with pytest.raises(pg.ValidationError, match="line 8, symbol 'A': mixed bar frequency.*5min bars"):
        pg.ingest(write_csv(frame), tmp_path / "s", progress=False)
    with pytest.raises(pg.ValidationError, match="line 8, symbol 'A': mixed bar frequency"):
        pg.ingest(write_csv(frame.filter(pl.col("time") != "2020-01-02 09:57")), tmp_path / "s",
                  progress=False)  # a plain date among 5-minute bars


def test_missing_column_is_an_ingest_error(long_bars, write_csv, tmp_path):
    path = write_csv(_bad_rows(long_bars).drop("volume"))
    with pytest.raises(pg.IngestError, match="volume"):
        pg.ingest(path, tmp_path / "store", progress=False)


# --------------------------------------------------------------------- reference data


def _ingest_with(tmp_path, long_bars, write_csv, **refs):
    prices = write_csv(_bad_rows(long_bars), "prices.csv")
    paths = {}
    for key, frame in refs.items():
        paths[key] = tmp_path / f"{key}.csv"
        frame.write_csv(paths[key])
    return pg.ingest(prices, tmp_path / "store", progress=False, **paths)


REFERENCE_CASES = {
    "actions unknown": ("actions", {"symbol": ["S0000", "ZZZ"], "ex_date": ["2010-01-05"] * 2,
                                    "split_ratio": [2.0, 2.0]}, 3, "ZZZ", "unknown symbol"),
    "actions ratio": ("actions", {"symbol": ["S0000"], "ex_date": ["2010-01-05"],
                                  "split_ratio": [-2.0]}, 2, "S0000", "invalid split ratio"),
    "actions dividend": ("actions", {"symbol": ["S0000"], "ex_date": ["2010-01-05"],
                                     "cash_dividend": [-0.5]}, 2, "S0000", "invalid dividend"),
    "actions duplicate": ("actions", {"symbol": ["S0001", "S0001"], "ex_date": ["2010-01-05"] * 2,
                                      "split_ratio": [2.0, 3.0]}, 3, "S0001", "duplicate (symbol, ex_date)"),
    "membership unknown": ("universes", {"ticker": ["S0000", "S0001", "NOPE"],
                                         "start_date": ["2010-01-01"] * 3, "end_date": ["", "", ""]},
                           4, "NOPE", "unknown symbol"),
    "membership order": ("universes", {"ticker": ["S0000"], "start_date": ["2010-01-05"],
                                       "end_date": ["2010-01-04"]}, 2, "S0000", "end_date not after start_date"),
    "events unknown": ("events", {"symbol": ["X"], "event_time": ["2010-01-05"],
                                  "knowledge_time": ["2010-01-06"], "field": ["eps"], "value": [1.0]},
                       2, "X", "unknown symbol"),
    "events time": ("events", {"symbol": ["S0000"], "event_time": ["2010-01-05"],
                               "knowledge_time": ["soon"], "field": ["eps"], "value": [1.0]},
                    2, "S0000", "unparseable knowledge_time"),
    "regimes duplicate": ("regimes", {"time": ["2010-01-04", "2010-01-04"], "regime": [1, 2]},
                          3, None, "duplicate time"),
}


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_reference_rules(case, tmp_path, long_bars, write_csv):
    key, table, line, symbol, rule = REFERENCE_CASES[case]
    with pytest.raises(pg.ValidationError) as info:
        _ingest_with(tmp_path, long_bars, write_csv, **{key: pl.DataFrame(table)})
    err = info.value
    assert (err.file, err.line, err.symbol, err.rule) == (str(tmp_path / f"{key}.csv"), line, symbol, rule)
    assert f"{key}.csv, line {line}, symbol {symbol!r}: {rule}" in str(err)
    assert not (tmp_path / "store").exists()


def test_unknown_symbols_can_be_dropped(tmp_path, long_bars, write_csv):
    prices = write_csv(_bad_rows(long_bars), "prices.csv")
    pl.DataFrame({"ticker": ["S0000", "GONE"], "start_date": ["2010-01-01", "1999-01-01"],
                  "end_date": [None, "2005-01-01"]}).write_csv(tmp_path / "idx_members.csv")
    store = pg.ingest(prices, tmp_path / "store", universes=tmp_path / "idx_members.csv",
                      unknown_symbols="drop", progress=False)
    market = pg.open_market(store)
    assert market.universe_ids == ["idx"]
    assert market.universes["symbol"].to_list() == ["S0000"]
