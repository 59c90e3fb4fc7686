"""Ingest on bad input: every case refused with one line naming file, line or row, symbol
and rule, or accepted as documented; split-ratio snapping; leftovers of killed ingests."""
from __future__ import annotations

import bz2
import datetime as dt
import gzip
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import pitgrid as pg
from pitgrid.data import store as _store
from pitgrid.data.store import read_manifest
from pitgrid.data.validate import simple_fraction


def _bars(long_bars) -> pl.DataFrame:
    return long_bars(n_time=8, n_symbols=2, gaps=0.0)  # rows 0..7 are S0000, 8..15 are S0001


def _refused(source, tmp_path, match: str, kind: type[Exception] = pg.IngestError, **kwargs) -> str:
    """Ingest ``source``; it must fail with ``kind`` matching ``match``, in one line, leaving nothing."""
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(kind, match=match) as info:
        pg.ingest(source, tmp_path / "store", progress=False, **kwargs)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return str(info.value)


# --------------------------------------------------------------------- split ratios (item 3)


@pytest.mark.parametrize("raw, fraction", [
    (7.000007, "7"), (7.00000700001, "7"), (1.49999925, "3/2"), (3.000003, "3"), (0.33333333, "1/3"),
    (0.028571, "1/35"), (0.142857142857, "1/7"), (1.0499999475, "21/20"), (4.0, "4"), (0.03125, "1/32"),
    (1.068833, None), (0.945, None), (1.000001, None), (2.1, "21/10"), (1.0001, None),
])
def test_simple_fraction(raw, fraction):
    got = simple_fraction(raw)
    assert (None if got is None else str(got)) == fraction


def test_noisy_split_ratios_are_snapped_and_the_raw_ones_kept(long_bars, write_csv, tmp_path):
    frame = _bars(long_bars).with_columns(split_coefficient=pl.lit(1.0))
    ratios = {2: 7.000007, 5: 1.068833, 11: 1.49999925}  # AAPL-like, a spin-off, ROL-like
    for row, ratio in ratios.items():
        frame = frame.with_columns(split_coefficient=pl.when(pl.int_range(pl.len()) == row)
                                   .then(ratio).otherwise(pl.col("split_coefficient")))
    store = pg.ingest(write_csv(frame), tmp_path / "s", progress=False)
    market = pg.open_market(store)
    assert market.actions["split_ratio"].to_list() == [7.0, 1.5, 1.068833]  # by ex_date
    assert 100 * market["split_ratio"].values[3, 1] == 150.0  # 100 shares, not 149.999925
    assert sorted(np.unique(market["split_ratio"].values).tolist()) == [1.0, 1.068833, 1.5, 7.0]
    snapped = read_manifest(store)["snapped_split_ratios"]
    assert [(s["symbol"], s["ex_date"], s["line"], s["raw"], s["snapped"], s["fraction"]) for s in snapped] == [
        ("S0000", frame["time"][2], 4, 7.000007, 7.0, "7"),
        ("S0001", frame["time"][11], 13, 1.49999925, 1.5, "3/2"),
    ]


def test_snapping_applies_to_an_actions_file(long_bars, write_csv, tmp_path):
    prices = write_csv(_bars(long_bars))
    pl.DataFrame({"symbol": ["S0000"], "ex_date": ["2010-01-06"], "split_ratio": [3.000003]}
                 ).write_csv(tmp_path / "actions.csv")
    store = pg.ingest(prices, tmp_path / "s", actions=tmp_path / "actions.csv", progress=False)
    assert pg.open_market(store).actions["split_ratio"].to_list() == [3.0]
    [entry] = read_manifest(store)["snapped_split_ratios"]
    assert (entry["file"], entry["line"], entry["raw"]) == (str(tmp_path / "actions.csv"), 2, 3.000003)


# --------------------------------------------------------------------- unreadable files (item 7)


def _gz_bytes(frame: pl.DataFrame) -> bytes:
    return gzip.compress(frame.write_csv().encode())


def test_truncated_csv_gz_names_the_line(long_bars, tmp_path):
    frame = long_bars(n_time=400, n_symbols=3, seed=2)
    data = _gz_bytes(frame)
    path = tmp_path / "p.csv.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    message = _refused(path, tmp_path, r"p\.csv\.gz, line \d+, symbol None: truncated compressed file")
    line = int(message.split("line ")[1].split(",")[0])
    assert 2 < line < len(frame) + 1  # where the data stop, not the header or the end


@pytest.mark.parametrize("damage", ["middle", "crc", "trailing garbage", "header only"])
def test_corrupt_csv_gz_is_refused(damage, long_bars, tmp_path):
    data = bytearray(_gz_bytes(long_bars(n_time=200, n_symbols=2)))
    if damage == "middle":
        data[len(data) // 2: len(data) // 2 + 40] = b"\xff" * 40
    elif damage == "crc":
        data[-8] ^= 0xFF
    elif damage == "trailing garbage":
        data += b"not gzip"
    else:
        data = data[:10]
    path = tmp_path / "p.csv.gz"
    path.write_bytes(bytes(data))
    _refused(path, tmp_path, r"p\.csv\.gz, line \d+, symbol None: (corrupt compressed data|truncated compressed file)")


def test_other_compressions_are_refused_by_name(long_bars, tmp_path):
    path = tmp_path / "p.csv.bz2"
    path.write_bytes(bz2.compress(_bars(long_bars).write_csv().encode()))
    _refused(path, tmp_path, r"p\.csv\.bz2, line 1: bzip2 file")


def test_multi_member_gzip_is_read_whole(long_bars, tmp_path):
    frame = _bars(long_bars)
    text = frame.write_csv()
    cut = text.index("\n", len(text) // 2) + 1
    path = tmp_path / "p.csv.gz"
    path.write_bytes(gzip.compress(text[:cut].encode()) + gzip.compress(text[cut:].encode()))
    assert read_manifest(pg.ingest(path, tmp_path / "s", progress=False))["rows"] == len(frame)


def test_invalid_utf8_names_the_line(long_bars, tmp_path):
    text = _bars(long_bars).write_csv().encode()
    lines = text.split(b"\n")
    lines[4] = lines[4].replace(b"S0000", b"S\xff000")
    path = tmp_path / "p.csv"
    path.write_bytes(b"\n".join(lines))
    _refused(path, tmp_path, r"p\.csv, line 5, symbol None: not UTF-8 text")


RAGGED = {
    "extra field": (lambda line: line + ",9.5", "8 fields"),
    "missing field": (lambda line: line.rsplit(",", 1)[0], "6 fields"),
    "empty line": (lambda line: "", "an empty line"),
    "lone carriage return": (lambda line: "\r", "an empty line"),
}


@pytest.mark.parametrize("case", sorted(RAGGED))
@pytest.mark.parametrize("gz", [False, True])
def test_ragged_rows_name_the_line_and_symbol(case, gz, long_bars, tmp_path):
    edit, detail = RAGGED[case]
    lines = _bars(long_bars).write_csv().splitlines()
    lines[11] = edit(lines[11])  # line 12, a row of S0001
    text = ("\n".join(lines) + "\n").encode()
    path = tmp_path / ("p.csv.gz" if gz else "p.csv")
    path.write_bytes(gzip.compress(text) if gz else text)
    symbol = "None" if detail == "an empty line" else "'S0001'"
    _refused(path, tmp_path, rf"p\.csv(\.gz)?, line 12, symbol {symbol}: ragged row \({detail} where the header has 7\)")


def test_ragged_last_line_without_newline(long_bars, tmp_path):
    text = _bars(long_bars).write_csv().rstrip("\n") + ",1"
    (tmp_path / "p.csv").write_text(text)
    _refused(tmp_path / "p.csv", tmp_path, r"line 17, symbol 'S0001': ragged row \(8 fields")


def test_quoted_commas_crlf_and_chunk_borders_are_not_ragged(long_bars, tmp_path, monkeypatch):
    from pitgrid.data import ingest as ingest_module

    monkeypatch.setattr(ingest_module, "_PLAIN_CHUNK", 7)  # records and quotes cut across chunks
    frame = _bars(long_bars).with_columns(note=pl.lit('a, "quoted", note'))
    text = frame.write_csv().replace("\n", "\r\n")
    assert '"a, ""quoted"", note"' in text
    (tmp_path / "p.csv").write_text(text, newline="")
    with pytest.raises(pg.ValidationError, match="non-numeric note"):  # read as one field, then refused
        pg.ingest(tmp_path / "p.csv", tmp_path / "s", progress=False)
    (tmp_path / "q.csv").write_text(_bars(long_bars).write_csv().replace("\n", "\r\n"), newline="")
    assert read_manifest(pg.ingest(tmp_path / "q.csv", tmp_path / "s", progress=False))["rows"] == 16


@pytest.mark.parametrize("when, rule", [
    ("1500-01-01", "time out of range"), ("2300-06-01", "time out of range"),
    ("1677-09-21", "time out of range"), ("2262-04-12 09:30", "time out of range"),
    ("2262-04-11 23:47:16.854775808", "time out of range"), ("2010-02-30", "unparseable time"),
])
def test_times_outside_the_nanosecond_range_are_refused(when, rule, long_bars, write_csv, tmp_path):
    frame = _bars(long_bars)
    frame = frame.with_columns(time=pl.when(pl.int_range(pl.len()) == 10).then(pl.lit(when))
                               .otherwise(pl.col("time")))
    _refused(write_csv(frame), tmp_path, rf"prices\.csv, line 12, symbol 'S0001': {rule} \(time '{when}'",
             pg.ValidationError)


@pytest.mark.parametrize("value", [dt.date(1500, 1, 1), dt.datetime(2300, 1, 1, 9, 30)])
def test_parquet_times_outside_the_range_are_refused(value, long_bars, tmp_path):
    frame = _bars(long_bars).with_columns(pl.col("time").str.to_date())
    if isinstance(value, dt.datetime):
        frame = frame.with_columns(pl.col("time").cast(pl.Datetime("us")))
    frame = frame.with_columns(time=pl.when(pl.int_range(pl.len()) == 3).then(pl.lit(value))
                               .otherwise(pl.col("time")))
    frame.write_parquet(tmp_path / "p.parquet")
    _refused(tmp_path / "p.parquet", tmp_path, r"p\.parquet, row 4, symbol 'S0000': time out of range",
             pg.ValidationError)


def test_reference_dates_outside_the_range_are_refused(long_bars, write_csv, tmp_path):
    prices = write_csv(_bars(long_bars))
    pl.DataFrame({"symbol": ["S0000"], "ex_date": ["3000-01-01"], "split_ratio": [2.0]}
                 ).write_csv(tmp_path / "actions.csv")
    _refused(prices, tmp_path, r"actions\.csv, line 2, symbol 'S0000': ex_date out of range",
             pg.ValidationError, actions=tmp_path / "actions.csv")


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create anything in (root ignores file modes, not /sys)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("where", ["under a file", "deep under a file", "unwritable"])
def test_destinations_that_cannot_be_written_are_refused(where, long_bars, write_csv, tmp_path):
    prices = write_csv(_bars(long_bars))
    (tmp_path / "a_file").write_text("x")
    target = {"under a file": tmp_path / "a_file" / "store",
              "deep under a file": tmp_path / "a_file" / "x" / "store",
              "unwritable": _unwritable_folder(tmp_path) / "pitgrid-test-store"}[where]
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(pg.IngestError, match=rf"^{target}: cannot (create|write) the store: ") as info:
        pg.ingest(prices, target, progress=False)
    assert "\n" not in str(info.value) and not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "a_file").read_text() == "x"


def test_symbol_block_zero_is_an_ingest_error(long_bars, write_csv, tmp_path):
    _refused(write_csv(_bars(long_bars)), tmp_path, "symbol_block must be >= 1", symbol_block=0)


# --------------------------------------------------------------------- columns (item 8)

HEADERS = {
    "close twice": (lambda f: f.with_columns(pl.col("close").alias("close2")),
                    lambda t: t.replace("close2", "close", 1), "duplicate column", "'close' appears more than once"),
    "Close and close": (lambda f: f.with_columns(pl.col("close").alias("Close")), None,
                        "ambiguous columns", "'close' and 'Close' both give 'close'"),
    "time and date": (lambda f: f.with_columns(pl.col("time").alias("date")), None,
                      "ambiguous columns", "'time' and 'date' both give 'time'"),
    "symbol and ticker": (lambda f: f.with_columns(pl.col("symbol").alias("ticker")), None,
                          "ambiguous columns", "'symbol' and 'ticker' both give 'symbol'"),
    "two split columns": (lambda f: f.with_columns(split_ratio=pl.lit(1.0), split_coefficient=pl.lit(1.0)), None,
                          "ambiguous columns", "'split_ratio' and 'split_coefficient' both give"),
    "Eps and eps": (lambda f: f.with_columns(eps=pl.lit(1.0), EPS=pl.lit(2.0)), None,
                    "ambiguous columns", "'eps' and 'EPS' both give 'eps'"),
}


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_columns_that_collide_are_refused(case, long_bars, tmp_path):
    edit, text_edit, rule, detail = HEADERS[case]
    text = edit(_bars(long_bars)).write_csv()
    if text_edit is not None:
        header, rest = text.split("\n", 1)
        text = text_edit(header) + "\n" + rest
    (tmp_path / "p.csv").write_text(text)
    _refused(tmp_path / "p.csv", tmp_path, rf"p\.csv, line 1 \(header\): {rule} \({detail}")


def test_reference_columns_that_collide_are_refused(long_bars, write_csv, tmp_path):
    prices = write_csv(_bars(long_bars))
    pl.DataFrame({"symbol": ["S0000"], "date": ["2010-01-06"], "ex_date": ["2010-01-06"], "split_ratio": [2.0]}
                 ).write_csv(tmp_path / "actions.csv")
    _refused(prices, tmp_path, r"actions\.csv, line 1 \(header\): ambiguous columns \('date' and 'ex_date'",
             actions=tmp_path / "actions.csv")


@pytest.mark.parametrize("column, value", [
    ("volume", pl.lit(True)), ("volume", pl.col("volume").cast(pl.String)),
    ("close", pl.lit(dt.date(2020, 1, 1))), ("open", pl.lit(dt.timedelta(1))),
])
def test_parquet_numeric_fields_must_have_numeric_types(column, value, long_bars, tmp_path):
    frame = _bars(long_bars).with_columns(value.alias(column))
    frame.write_parquet(tmp_path / "p.parquet")
    dtype = frame[column].dtype
    _refused(tmp_path / "p.parquet", tmp_path,
             rf"p\.parquet, schema: non-numeric column \({column} column '{column}' has type {re.escape(str(dtype))}")


def test_parquet_integer_volume_is_numeric(long_bars, tmp_path):
    frame = _bars(long_bars).with_columns(pl.col("volume").cast(pl.Int64))
    frame.write_parquet(tmp_path / "p.parquet")
    assert read_manifest(pg.ingest(tmp_path / "p.parquet", tmp_path / "s", progress=False))["rows"] == 16


def test_boolean_actions_column_is_refused(long_bars, write_csv, tmp_path):
    prices = write_csv(_bars(long_bars))
    pl.DataFrame({"symbol": ["S0000"], "ex_date": ["2010-01-06"], "split_ratio": [True]}
                 ).write_parquet(tmp_path / "actions.parquet")
    _refused(prices, tmp_path, r"actions\.parquet, schema: non-numeric column",
             actions=tmp_path / "actions.parquet")


# --------------------------------------------------------------------- time zones and grid (items 9, 10)


def _zoned(long_bars, zone: str, times: list[dt.datetime]) -> pl.DataFrame:
    frame = long_bars(n_time=len(times), n_symbols=2, gaps=0.0)
    stamps = pl.Series(times * 2, dtype=pl.Datetime("ns")).dt.replace_time_zone(zone)
    return frame.with_columns(time=stamps)


def test_zoned_daily_parquet_across_daylight_saving_is_daily(long_bars, tmp_path):
    days = [dt.datetime(2021, 3, 10) + dt.timedelta(days=k) for k in range(8)]  # DST starts 2021-03-14
    _zoned(long_bars, "America/New_York", days).write_parquet(tmp_path / "p.parquet")
    store = pg.ingest(tmp_path / "p.parquet", tmp_path / "s", progress=False)
    assert read_manifest(store)["bar_grid"]["text"] == "daily bars at 0:00:00"
    assert pg.open_market(store).time.tolist() == np.array(days, "datetime64[ns]").tolist()


def test_zoned_intraday_parquet_is_stored_in_utc(long_bars, tmp_path):
    # hourly bars around the night the clocks go back: local 01:00 comes twice
    start = dt.datetime(2021, 11, 7, 3, 0)
    hours = [start + dt.timedelta(hours=k) for k in range(8)]
    frame = _zoned(long_bars, "UTC", hours).with_columns(pl.col("time").dt.convert_time_zone("America/New_York"))
    frame.write_parquet(tmp_path / "p.parquet")
    market = pg.open_market(pg.ingest(tmp_path / "p.parquet", tmp_path / "s", progress=False))
    assert market.time.tolist() == np.array(hours, "datetime64[ns]").tolist()


def test_a_time_a_nanosecond_off_the_grid_is_printed_in_full(long_bars, tmp_path):
    frame = _bars(long_bars).with_columns(pl.col("time").str.to_datetime(time_unit="ns"))
    frame = frame.with_columns(time=pl.when(pl.int_range(pl.len()) == 10)
                               .then(pl.col("time") + pl.duration(nanoseconds=1)).otherwise(pl.col("time")))
    frame.write_parquet(tmp_path / "p.parquet")
    _refused(tmp_path / "p.parquet", tmp_path,
             r"row 11, symbol 'S0001': mixed bar frequency \(time 2010-01-0\d 00:00:00\.000000001 is off",
             pg.ValidationError)


# --------------------------------------------------------------------- killed ingests (item 12)

_HOLD = """
import sys, time
from pathlib import Path
from pitgrid.data import store
with store.staged(Path(sys.argv[1]), overwrite={overwrite}) as tmp:
    (tmp / "half-written").write_bytes(b"x" * 100_000)
    print(tmp.name, flush=True)
    {then}
"""


def _killed_while(target: Path, overwrite: bool = False, then: str = "time.sleep(60)") -> str:
    """Run a process that stages ``target``, SIGKILL it at ``then``; return its temp's name."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD.format(overwrite=overwrite, then=then), str(target)],
                            stdout=subprocess.PIPE, text=True)
    name = proc.stdout.readline().strip()
    if then.startswith("time.sleep"):
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert name.startswith(f".{target.name}.tmp-")
    return name


def test_ingest_and_open_remove_the_temporaries_of_killed_ingests(long_bars, write_csv, tmp_path):
    prices = write_csv(_bars(long_bars))
    target = tmp_path / "store"
    name = _killed_while(target)
    assert (tmp_path / name).is_dir()
    pg.ingest(prices, target, progress=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    name = _killed_while(target, overwrite=True)
    assert (tmp_path / name).is_dir()
    pg.open_market(target)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_live_ingests_temporary_is_kept(long_bars, write_csv, tmp_path):
    prices = write_csv(_bars(long_bars))
    target = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD.format(overwrite=False, then="time.sleep(60)"),
                             str(target)], stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        pg.ingest(prices, tmp_path / "other", progress=False)
        pg.ingest(prices, target, progress=False)
        pg.open_market(target)
        assert (tmp_path / name / "half-written").exists()
    finally:
        proc.kill()
        proc.wait()
    pg.open_market(target)
    assert not (tmp_path / name).exists()


def test_a_kill_between_the_renames_of_an_overwrite_puts_the_old_store_back(long_bars, write_csv, tmp_path):
    target = tmp_path / "store"
    before = pg.open_market(pg.ingest(write_csv(_bars(long_bars)), target, progress=False)).fingerprint()
    # what the overwrite leaves when killed after moving the old store aside
    tag = _store._owner_tag().replace(f"-{os.getpid()}-", "-999999999-")
    os.rename(target, tmp_path / f".store.old-{tag}")
    (tmp_path / f".store.tmp-{tag}").mkdir()
    assert pg.open_market(target).fingerprint() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices.csv", "store"]


def test_temporaries_of_a_reused_process_id_or_a_zombie_are_stale(tmp_path):
    host, pid, start, rand = _store._owner_tag().split("-")
    assert not _store._owner_alive(host, int(pid), int(start) + 1)  # our id, another start time
    assert _store._owner_alive(host, int(pid), int(start))
    assert _store._owner_alive("another_host", 999999999, 1)  # cannot tell: kept
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while _store._process_stat(zombie.pid)[0] != "Z":
        pass
    assert not _store._owner_alive(host, zombie.pid, _store._process_stat(zombie.pid)[1])
    zombie.wait()
