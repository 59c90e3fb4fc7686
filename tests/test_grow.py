"""A market that grows: appends, recorded delistings, drivers resumed by prefix, paper trading."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import pitgrid as pg
from pitgrid.cli import app
from pitgrid.data.store import read_manifest
from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross

runner = CliRunner()
T, S = 260, 8


def _long() -> pl.DataFrame:
    """Bars with a listing (S0006 from bar 90), a symbol whose data end (S0005 after bar 230)
    and a split; sorted by time so that cuts by time are appends."""
    ds = pg.synthetic_prices(T, S, seed=5)
    t = ds["time"].values
    bars = pg.long_bars(ds).with_columns(split_coefficient=pl.lit(1.0))
    bars = bars.with_columns(split_coefficient=pl.when(
        (pl.col("symbol") == "S0002") & (pl.col("time") == t[150])).then(2.0).otherwise(1.0))
    late = (pl.col("symbol") == "S0006") & (pl.col("time") < t[90])
    ended = (pl.col("symbol") == "S0005") & (pl.col("time") > t[230])
    return bars.filter(~late & ~ended).sort("time", "symbol")


@pytest.fixture(scope="module")
def pieces(tmp_path_factory) -> tuple[Path, list[Path], Path]:
    folder = tmp_path_factory.mktemp("pieces")
    bars = _long()
    times = bars["time"].unique().sort().to_list()
    cuts = [0, 100, 101, 140, 200, len(times)]  # one piece of a single bar; S0005 ends in the last
    files = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        f = folder / f"piece{i}.csv"
        bars.filter(pl.col("time").is_in(times[a:b])).write_csv(f)
        files.append(f)
    whole = folder / "all.csv"
    bars.write_csv(whole)
    return whole, files, folder


def _grown(pieces, tmp_path: Path, n: int | None = None) -> Path:
    whole, files, _ = pieces
    store = tmp_path / "grown"
    pg.ingest(files[0], store, progress=False)
    for f in files[1:n]:
        pg.ingest(f, store, append=True, finished=f == files[-1], progress=False)
    return store


def test_appended_pieces_are_the_store_of_the_whole(pieces, tmp_path):
    whole, files, _ = pieces
    full = pg.ingest(whole, tmp_path / "full", progress=False)
    grown = _grown(pieces, tmp_path)
    a, b = pg.open_market(full), pg.open_market(grown)
    assert a.fingerprint() == b.fingerprint()
    assert list(a.symbols) == list(b.symbols)
    assert a.delist_bar.tolist() == b.delist_bar.tolist() and b.delist_bar[5] == 231
    for name in a.fields:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert read_manifest(grown)["appends"] == len(files) - 1


def test_a_symbol_missing_from_new_bars_is_in_a_gap_until_declared(pieces, tmp_path):
    _, files, folder = pieces
    store = _grown(pieces, tmp_path, n=len(files) - 1)   # last piece not appended
    pg.ingest(files[-1], store, append=True, progress=False)   # not finished: S0005 in a gap
    assert pg.open_market(store).delist_bar[5] == -1
    declared = folder / "delist.csv"
    when = pg.open_market(store).time[231]
    declared.write_text(f"symbol,date\nS0005,{np.datetime_as_string(when, 'D')}\n")
    more = folder / "more.csv"
    last = pg.open_market(store).time[-1]
    _long().filter(pl.col("time") == pl.lit(last)).with_columns(
        time=pl.lit(last + np.timedelta64(1, "D"))).write_csv(more)
    pg.ingest(more, store, append=True, delistings=declared, progress=False)
    assert pg.open_market(store).delist_bar[5] == 231


def _snapshot(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case, rule", [
    ("overlap", "overlaps the store"),
    ("hourly", "off the data set's grid"),
    ("bad_row", "high < low"),
    ("field", "is not in the store"),
    ("event", "is not after the store's last bar"),
])
def test_a_bad_append_is_refused_by_name_and_leaves_the_store_as_it_was(pieces, tmp_path, case, rule):
    _, files, folder = pieces
    store = _grown(pieces, tmp_path, n=2)
    before = _snapshot(store)
    nxt = pl.read_csv(files[2], try_parse_dates=True)
    events = None
    if case == "overlap":
        bad = pl.concat([pl.read_csv(files[1], try_parse_dates=True).tail(1), nxt])
    elif case == "hourly":
        bad = nxt.with_columns(time=pl.col("time").cast(pl.Datetime("us")) + pl.duration(hours=1))
    elif case == "bad_row":
        bad = nxt.with_columns(high=pl.when(pl.int_range(pl.len()) == 3).then(pl.col("low") - 1)
                               .otherwise(pl.col("high")))
    elif case == "field":
        bad = nxt.with_columns(vwap=pl.col("close"))
    else:
        bad = nxt
        events = folder / "events.csv"
        events.write_text("symbol,event_time,knowledge_time,field,value\n"
                          "S0001,2010-01-04,2010-01-05,score,1.0\n")
    path = folder / f"bad_{case}.csv"
    bad.write_csv(path)
    result = runner.invoke(app, ["ingest", str(path), "--store", str(store), "--append",
                                 "--no-progress", *(["--events", str(events)] if events else [])])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert rule in text and "Traceback" not in text
    if case in ("overlap", "bad_row"):
        assert str(path) in text and "line" in text and "S000" in text
    assert _snapshot(store) == before
    assert not list(store.parent.glob(f".{store.name}.*"))


def test_a_driver_resumes_on_the_grown_market_and_refuses_a_changed_past(pieces, tmp_path):
    whole, files, _ = pieces
    store = _grown(pieces, tmp_path, n=3)
    strategy = MovingAverageCross(fast=5, slow=20)
    driver = pg.StepDriver(pg.open_market(store), strategy, {"fees_bps": 5})
    driver.run()
    driver.save(tmp_path / "d")
    for f in files[3:]:
        pg.ingest(f, store, append=True, finished=f == files[-1], progress=False)
    resumed = pg.StepDriver.load(tmp_path / "d", pg.open_market(store), strategy).run()
    batch = pg.backtest(pg.open_market(store), strategy, {"fees_bps": 5})
    assert np.array_equal(resumed.equity.values, batch.equity.values)
    assert resumed.trades.equals(batch.trades)
    # one value of the past changed: refused, naming bar, symbol and field
    market = pg.open_market(store).load()
    ds = market.ds.copy(deep=True)
    close = ds["close"].values.copy()
    close[17, 3] *= 1.01
    changed = pg.MarketData(ds.assign(close=(("time", "symbol"), close)))
    with pytest.raises(ValueError, match=r"bar 17 .*symbol S0003, field 'close'"):
        pg.StepDriver.load(tmp_path / "d", changed, strategy)


PAPER = """
[data]
store = "{store}"
[strategy]
name = "{name}"
params = {params}
[costs]
fees_bps = 5
[outputs]
db = "{db}"
"""


@pytest.mark.parametrize("name, params, strategy", [
    ("ma_cross", "{ fast = 5, slow = 20 }", MovingAverageCross(fast=5, slow=20)),
    ("momentum", "{ lookback = 20, top = 3, every = 5 }",
     CrossSectionalMomentum(lookback=20, top=3, every=5)),
])
def test_paper_trading_piece_by_piece_is_the_batch_run_of_the_whole(pieces, tmp_path, name, params,
                                                                    strategy):
    whole, files, _ = pieces
    store = tmp_path / "grown"
    pg.ingest(files[0], store, progress=False)
    config = tmp_path / "paper.toml"
    db = tmp_path / "paper.db"
    config.write_text(PAPER.format(store=store, name=name, params=params, db=db))
    state = tmp_path / "state"
    out = runner.invoke(app, ["paper", str(config), "--state", str(state)])
    assert out.exit_code == 0, out.output
    for f in files[1:]:
        pg.ingest(f, store, append=True, finished=f == files[-1], progress=False)
        out = runner.invoke(app, ["paper", str(config), "--state", str(state)])
        assert out.exit_code == 0, out.output
    files_before = {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()}
    again = runner.invoke(app, ["paper", str(config), "--state", str(state)])
    assert again.exit_code == 0 and "no new bar" in again.output
    assert {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()} == files_before
    batch = pg.backtest(pg.open_market(pg.ingest(whole, tmp_path / "full", progress=False)),
                        strategy, {"fees_bps": 5})
    with pg.ResultsDB(db) as rdb:
        runs = rdb.list_runs()
        assert runs.height == 1
        stored = rdb.load_run(runs["run_id"][0])
    assert np.array_equal(stored.equity.values.ravel(), batch.equity.values)
    trader = pg.PaperTrader(config, state)
    driver = pg.StepDriver.load(trader._current(), pg.open_market(store), strategy)
    assert driver.result().trades.equals(batch.trades)
    orders = json.loads((state / "orders.json").read_text())
    whole_run = pg.StepDriver(pg.open_market(tmp_path / "full"), strategy, {"fees_bps": 5})
    whole_run.run()
    assert orders["orders"] == whole_run.next_orders().to_dicts()
    assert orders["after"] == str(pg.open_market(store).time[-1])
    assert all(o["reason"] in ("entry", "exit", "rebalance", "universe_exit", "carried")
               for o in orders["orders"])


def test_paper_trader_takes_new_bars_from_a_feed(pieces, tmp_path):
    whole, files, _ = pieces
    store = tmp_path / "grown"
    pg.ingest(files[0], store, progress=False)
    config = tmp_path / "paper.toml"
    config.write_text(PAPER.format(store=store, name="ma_cross", params="{ fast = 5, slow = 20 }",
                                   db=tmp_path / "p.db"))
    trader = pg.PaperTrader(config, tmp_path / "state")
    feed = iter([None, files[1], None, *files[2:]])
    updates = list(trader.run(lambda: next(feed)))
    assert [u.bars_run for u in updates][:3] == [100, 1, 0]
    assert updates[-1].bars_total == len(pg.open_market(store).time)
