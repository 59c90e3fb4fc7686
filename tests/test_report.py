"""HTML reports: small pages beside one plotly.js, honest about optimistic fills, numbers that
add up (P&L by symbol against the equity), grids of any size, and rendered by a real browser."""
import os
import re
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid.results import ResultsDB, write_grid_report, write_report
from pitgrid.results.formatting import fmt
from pitgrid.results.grid_heatmap import MAX_SELECTOR, grid_figure, heatmap_axes
from pitgrid.results.ledger import (dividends_received, exits_by_reason, fill_pnl, symbol_pnl,
                                   trips_with_dividends)
from pitgrid.results.report import OPTIMISTIC_LABEL
from pitgrid.results.report_page import plotly_js_name
from pitgrid.results.report_sections import TRADE_ROWS
from pitgrid.results.run_view import RunView, dividend_cash, marks

CHROMIUM = Path("/usr/bin/chromium")
# equity, drawdown, monthly returns, rolling Sharpe, exposure and turnover, holdings
FIGURES = 6
MAX_REPORT_BYTES = 1_500_000


@pytest.fixture(scope="module")
def market():
    return pg.synthetic_prices(300, 6, seed=0)


@pytest.fixture(scope="module", params=["next_open", "close"])
def result(request, market):
    c = market["close"]
    mean = c.rolling(time=20).mean()
    return pg.simulate(market, entries=c > mean, exits=c < mean, fill=request.param, fees_bps=5,
                       keep="full", size="percent", size_value=0.2)


def external_references(page: str) -> list[str]:
    """Every src/href that would fetch something over the network."""
    tag = r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//"""
    return re.findall(tag, page, flags=re.IGNORECASE)


def scripts(page: str) -> list[str]:
    return re.findall(r"""<script\b[^>]*\bsrc\s*=\s*["']([^"']+)""", page, flags=re.IGNORECASE)


def test_report_is_offline_small_and_labels_optimistic_fills(tmp_path, market, result):
    path = write_report(result, tmp_path / "run.html", benchmark=market["close"].mean("symbol"),
                        market=market)
    page = path.read_text(encoding="utf-8")
    assert external_references(page) == []
    assert "* plotly.js v" not in page  # the library is beside the page, not in it
    assert scripts(page) == [plotly_js_name()]
    assert (tmp_path / plotly_js_name()).read_text().startswith("/**")
    assert page.count("Plotly.newPlot") == FIGURES
    assert (OPTIMISTIC_LABEL in page) == result.optimistic
    assert "benchmark (rescaled)" in page
    for section in ("Trades", "Holdings", "Profit and loss by symbol", "Exits by reason"):
        assert f"<h2>{section}</h2>" in page


def test_reports_in_one_folder_share_one_plotly(tmp_path, market, result):
    grid_table = pl.DataFrame({"a": [1, 2], "sharpe": [0.1, 0.2]})
    pages = [write_report(result, tmp_path / "one.html"),
             write_report(result, tmp_path / "two.html"),
             write_grid_report(grid_table, ["a"], "sharpe", tmp_path / "grid.html")]
    assert sorted(p.name for p in tmp_path.glob("*.js")) == [plotly_js_name()]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    for p in pages:
        assert scripts(p.read_text()) == [plotly_js_name()]


def test_long_report_stays_small_and_uses_a_log_axis(tmp_path):
    ds = pg.synthetic_prices(252 * 21, 300, seed=3, mu=0.15)
    c = ds["close"]
    fast, slow = c.rolling(time=10).mean(), c.rolling(time=50).mean()
    res = pg.simulate(ds, entries=fast > slow, exits=fast < slow, fees_bps=5, keep="full",
                      size="percent", size_value=0.01)
    assert res.trades.height > TRADE_ROWS  # the page lists part, the CSV all
    path = write_report(res, tmp_path / "long.html", market=ds, benchmark=c.mean("symbol"))
    page = path.read_text(encoding="utf-8")
    assert path.stat().st_size < MAX_REPORT_BYTES
    assert '"type":"log"' in page and "log scale" in page
    assert "account currency" in page and '"tickformat":".0%"' in page
    listed = pl.read_csv(tmp_path / "long.trades.csv")
    assert listed.height == res.trades.height
    trips = pl.read_csv(tmp_path / "long.round_trips.csv", try_parse_dates=True)
    assert trips.schema["entry"] == pl.Date and trips["exit"].null_count() > 0  # open ones
    assert trips["exit"].drop_nulls().len() == res.metrics["trades"][0]
    assert "<h2>Round trips</h2>" in page and "<td>open</td>" in page
    assert f"the latest {TRADE_ROWS:,} of {res.trades.height:,} fills" in page


def test_report_of_a_stored_run(tmp_path, result):
    with ResultsDB(tmp_path / "runs.db") as db:
        run = db.load_run(db.save_run(result, strategy="sma20", data_fingerprint="sha256:abc"))
    page = write_report(run, tmp_path / "run.html", title="SMA 20").read_text(encoding="utf-8")
    assert run.run_id in page and "sha256:abc" in page and "<title>SMA 20</title>" in page
    assert (OPTIMISTIC_LABEL in page) == result.optimistic


def test_report_arguments_are_checked(tmp_path, market):
    c = market["close"]
    w = xr.concat([c * 0 + 0.1, c * 0 + 0.2], dim="param")
    grid = pg.simulate(market, weights=w)
    with pytest.raises(ValueError, match="pass param="):
        write_report(grid, tmp_path / "r.html")
    with pytest.raises(ValueError, match="benchmark has shape"):
        write_report(grid, tmp_path / "r.html", param=1, benchmark=np.ones(3))
    assert not (tmp_path / "r.html").exists()  # nothing half-written
    page = write_report(grid, tmp_path / "r.html", param=1).read_text(encoding="utf-8")
    assert "1 of 2" in page


def test_report_shows_the_benchmark_and_its_statistics(tmp_path):
    market = pg.MarketData(pg.synthetic_prices(400, 6, seed=2))
    from pitgrid.strategies import MovingAverageCross

    res = pg.backtest(market, MovingAverageCross(fast=5, slow=30), {"fill": "next_open"},
                      benchmark="S0001")
    page = write_report(res, tmp_path / "b.html").read_text(encoding="utf-8")
    assert "<h2>Against S0001</h2>" in page
    closes = market["close"].sel(symbol="S0001").values
    total = closes[-1] / closes[0] - 1
    rows = dict(re.findall(r"<tr><td>(total return)</td><td>[^<]*</td><td>([^<]*)</td></tr>", page))
    assert rows["total return"] == f"{res.metrics['benchmark_return'][0]:.2%}"
    assert abs(res.metrics["benchmark_return"][0] - total) < 0.02  # close to buy and hold
    # a symbol named when the report is written (the CLI's --benchmark) gives the same curve
    plain = pg.backtest(market, MovingAverageCross(fast=5, slow=30), {"fill": "next_open"})
    with pytest.raises(ValueError, match="pass market="):
        write_report(plain, tmp_path / "n.html", benchmark="S0001")
    later = write_report(plain, tmp_path / "n.html", benchmark="S0001", market=market).read_text()
    assert later.count("<h2>Against S0001</h2>") == 1
    for name in ("beta", "tracking error", "benchmark return"):
        key = name.replace(" ", "_")
        shown = re.search(f"<tr><td>{name}</td><td>([^<]*)</td></tr>", later).group(1)
        assert shown == fmt(key, res.metrics[key][0])
    with ResultsDB(tmp_path / "runs.db") as db:  # the stored run keeps its benchmark
        run = db.load_run(db.save_run(res, strategy="ma", data_fingerprint="synthetic:2"))
    assert "<h2>Against S0001</h2>" in write_report(run, tmp_path / "s.html").read_text()


# ---------------------------------------------------------------------- P&L that adds up
def test_pnl_by_symbol_adds_up_to_the_equity(market):
    """Per-symbol P&L (realised + open positions at the last close) is the run's whole gain
    when no dividend or borrow cost moves cash outside a symbol: shorts, flips and fees."""
    rng = np.random.default_rng(5)
    w = xr.DataArray(rng.uniform(-0.3, 0.3, market["close"].shape), dims=("time", "symbol"),
                     coords={"time": market["time"], "symbol": market["symbol"]})
    res = pg.simulate(market, weights=w.where(rng.random(w.shape) < 0.2), fees_bps=7,
                      slippage_bps=3, allow_short=True, max_leverage=2.0, keep="full")
    assert (res.trades["side"] == "sell").sum() > 20
    one = res.trades
    ledger = fill_pnl(one, res.positions)
    last = market["close"].isel(time=-1)
    marks = dict(zip(last["symbol"].values.astype(str), last.values))
    per = symbol_pnl(one, ledger, marks)
    gain = float(res.equity[-1]) - res.config["init_cash"]
    assert per["total P&L"].sum() == pytest.approx(gain, rel=1e-9, abs=1e-6)
    assert (ledger.trips["side"] == "short").sum() > 5
    assert_trips_are_the_cores_trades(ledger.trips, res.metrics.row(0, named=True))


def test_pnl_follows_a_split_through_the_positions():
    ds = pg.synthetic_prices(200, 3, seed=4)
    actions = pl.DataFrame({"symbol": ["S0001"], "ex_date": pl.Series(ds["time"].values[120:121]),
                            "split_ratio": [4.0], "cash_dividend": [0.0]})
    market = pg.MarketData(ds, actions=actions)
    c = market["close"]
    res = pg.simulate(market, entries=c > c.rolling(time=15).mean(),
                      exits=c < c.rolling(time=15).mean(), fees_bps=5, keep="full",
                      size="percent", size_value=0.3)
    held = res.positions.sel(symbol="S0001").values
    assert held[119] > 0 and held[120] > 0  # held through the split
    ledger = fill_pnl(res.trades, res.positions)
    last = c.isel(time=-1)
    per = symbol_pnl(res.trades, ledger, dict(zip(last["symbol"].values.astype(str), last.values)))
    gain = float(res.equity[-1]) - res.config["init_cash"]
    assert per["total P&L"].sum() == pytest.approx(gain, rel=1e-9)


def pnl_of(res, market) -> tuple[pl.DataFrame, pl.DataFrame]:
    """P&L by symbol and round trips as the report computes them (marks and dividends from
    the market)."""
    view = RunView.of(res, None)
    ledger = fill_pnl(view.trades, view.positions)
    cash = dividend_cash(market, view)
    names = view.positions["symbol"].values.astype(str)
    per = symbol_pnl(view.trades, ledger, marks(market, view), dividends_received(cash, names))
    return per, trips_with_dividends(ledger.trips, cash, view.times, names)


def assert_trips_are_the_cores_trades(trips: pl.DataFrame, metrics: dict) -> None:
    """Closed round trips and their P&L (dividends included) against the compiled core's
    trade statistics."""
    closed = trips.filter(pl.col("exit").is_not_null())
    assert closed.height == metrics["trades"] > 0
    wins = closed.filter(pl.col("P&L") > 0)
    assert wins.height / closed.height == pytest.approx(metrics["win_rate"], rel=1e-12)
    assert wins["P&L"].mean() == pytest.approx(metrics["avg_win"], rel=1e-9)
    assert closed.filter(pl.col("P&L") <= 0)["P&L"].mean() == pytest.approx(metrics["avg_loss"],
                                                                          rel=1e-9)


def test_pnl_counts_each_symbols_dividends_and_adds_up():
    ds = pg.synthetic_prices(220, 4, seed=6)
    times = ds["time"].values
    actions = pl.DataFrame({"symbol": ["S0000", "S0002", "S0002"],
                            "ex_date": pl.Series(times[[90, 100, 160]]),
                            "split_ratio": [1.0, 2.0, 1.0], "cash_dividend": [1.5, 0.8, 0.4]})
    market = pg.MarketData(ds, actions=actions)
    on = (np.arange(len(times)) // 40) % 2 == 0  # held over the ex-dates, flat in between
    weights = market["close"] * 0 + xr.DataArray(np.where(on, 0.24, 0.0), dims="time",
                                                 coords={"time": times})
    res = pg.simulate(market, weights=weights, keep="full", fees_bps=4)
    per, trips = pnl_of(res, market)
    paid = dict(zip(per["symbol"], per["dividends"]))
    held = res.positions
    assert paid["S0000"] == pytest.approx(float(held.sel(symbol="S0000")[89]) * 1.5)
    # a split and a dividend on one bar: the dividend is paid on the split shares
    assert paid["S0002"] == pytest.approx(float(held.sel(symbol="S0002")[99]) * 2 * 0.8
                                          + float(held.sel(symbol="S0002")[159]) * 0.4)
    gain = float(res.equity[-1]) - res.config["init_cash"]
    assert per["total P&L"].sum() == pytest.approx(gain, rel=1e-9)
    assert_trips_are_the_cores_trades(trips, res.metrics.row(0, named=True))


@pytest.mark.slow
def test_real_sample_report_is_small_and_its_pnl_adds_up(real_market, tmp_path):
    """21 years of 504 stocks with splits and dividends: the page stays small and the
    P&L by symbol, dividends included, is the whole gain of the run."""
    from pitgrid.strategies import CrossSectionalMomentum

    res = pg.backtest(real_market, CrossSectionalMomentum(lookback=126, top=50, every=21,
                                                         universe="sp500"),
                      {"fees_bps": 5}, benchmark="AAPL")
    path = write_report(res, tmp_path / "momentum.html", market=real_market)
    assert path.stat().st_size < MAX_REPORT_BYTES
    assert '"type":"log"' in path.read_text()
    per, trips = pnl_of(res, real_market)
    assert per["dividends"].sum() > 10_000
    gain = float(res.equity[-1]) - res.config["init_cash"]
    assert per["total P&L"].sum() == pytest.approx(gain, rel=1e-9)
    assert_trips_are_the_cores_trades(trips, res.metrics.row(0, named=True))


def reference_pnl(fills: list[tuple[str, float, float, float]]) -> tuple[dict, dict]:
    """Slow reference: each symbol's cash flows, and what it holds, fill by fill."""
    cash: dict[str, float] = {}
    held: dict[str, float] = {}
    for sym, d, price, fee in fills:
        cash[sym] = cash.get(sym, 0.0) - d * price - fee
        held[sym] = held.get(sym, 0.0) + d
    return cash, held


fills_strategy = st.lists(
    st.tuples(st.sampled_from(["A", "B", "C"]),
              st.sampled_from([-3.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0]),
              st.floats(1.0, 200.0), st.floats(0.0, 2.0)),
    min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(fills=fills_strategy, marks=st.tuples(st.floats(1.0, 200.0), st.floats(1.0, 200.0),
                                             st.floats(1.0, 200.0)))
def test_ledger_matches_cash_flows_on_random_fills(fills, marks):
    frame = pl.DataFrame({
        "time": np.arange(len(fills)).astype("datetime64[D]"),
        "symbol": [f[0] for f in fills], "side": ["buy" if f[1] > 0 else "sell" for f in fills],
        "shares": [abs(f[1]) for f in fills], "price": [f[2] for f in fills],
        "fees": [f[3] for f in fills], "reason": "order"})
    mark = dict(zip("ABC", marks))
    ledger = fill_pnl(frame)
    cash, held = reference_pnl(fills)
    per = {r["symbol"]: r for r in symbol_pnl(frame, ledger, mark).iter_rows(named=True)}
    for sym in cash:
        want = cash[sym] + held[sym] * mark[sym]
        assert per[sym]["total P&L"] == pytest.approx(want, rel=1e-9, abs=1e-7)
        assert ledger.held[sym] == pytest.approx(held[sym], abs=1e-9)
    # whenever a symbol is flat again, what it realised is exactly its cash flows so far
    running: dict[str, list[float]] = {}
    for i, (sym, d, price, fee) in enumerate(fills):
        acc = running.setdefault(sym, [0.0, 0.0, 0.0])  # held, cash, realised
        acc[0] += d
        acc[1] -= d * price + fee
        acc[2] += 0.0 if np.isnan(ledger.realized_pnl[i]) else ledger.realized_pnl[i]
        if abs(acc[0]) < 1e-9:
            assert acc[2] == pytest.approx(acc[1], rel=1e-9, abs=1e-7)


@settings(max_examples=50, deadline=None)
@given(reasons=st.lists(st.sampled_from(["order", "stop_loss", "take_profit", "trailing_stop",
                                         "time_stop", "limit", "stop", "delist"]),
                        min_size=2, max_size=30))
def test_exits_are_grouped_by_any_reason(reasons):
    """Buy one share, then close it for each reason in turn: every reason its own row."""
    n = len(reasons)
    frame = pl.DataFrame({
        "time": np.arange(2 * n).astype("datetime64[D]"), "symbol": "A",
        "side": ["buy", "sell"] * n, "shares": 1.0,
        "price": [p for i in range(n) for p in (10.0, 10.0 + (i % 3) - 1)], "fees": 0.0,
        "reason": [r for reason in reasons for r in ("order", reason)]})
    out = exits_by_reason(frame, fill_pnl(frame))
    want = pl.Series(reasons).value_counts()
    got = dict(zip(out["reason"], out["closing fills"]))
    assert got == dict(zip(want[""] if "" in want.columns else want.to_series(0), want["count"]))
    pnl = {r: sum((i % 3) - 1 for i, x in enumerate(reasons) if x == r) for r in got}
    assert dict(zip(out["reason"], out["realized P&L"])) == pytest.approx(pnl)


# ---------------------------------------------------------------------- grids
@pytest.fixture(scope="module")
def grid_table():
    fast, slow = np.meshgrid([5, 10, 20], [50, 100], indexing="ij")
    return pl.DataFrame({"fast": fast.ravel(), "slow": slow.ravel(), "lookback": 1,
                         "sharpe": [0.1, 0.5, float("nan"), 0.3, 0.9, -0.2]})


@pytest.mark.parametrize("names, trace", [(["fast", "slow"], '"type":"heatmap"'),
                                          (["fast"], '"type":"scatter"'),
                                          (["fast", "slow", "lookback"], '"type":"heatmap"'),
                                          ([], None)])
def test_grid_report(tmp_path, grid_table, names, trace):
    table = grid_table if len(names) > 1 else grid_table.filter(pl.col("slow") == 50)
    table = table.head(1) if not names else table
    path = write_grid_report(table, names, "sharpe", tmp_path / "g.html")
    page = path.read_text(encoding="utf-8")
    assert external_references(page) == []
    if trace is None:
        assert "Plotly.newPlot" not in page and scripts(page) == []
    else:
        assert trace in page and scripts(page) == [plotly_js_name()]
    rows = re.findall(r"<tr><td>([^<]*)</td>.*?</tr>", page)
    if names:
        assert rows[0] == "20" and len(rows) == table.height  # best sharpe (0.9) first
    assert '<div class="scroll">' in page


def test_grid_report_rejects_ambiguous_parameters(tmp_path, grid_table):
    with pytest.raises(ValueError, match="do not identify"):
        write_grid_report(grid_table, ["fast"], "sharpe", tmp_path / "g.html")
    with pytest.raises(ValueError, match="no column"):
        write_grid_report(grid_table, ["fast", "slow"], "calmar", tmp_path / "g.html")
    with pytest.raises(ValueError, match="axes must name"):
        write_grid_report(grid_table, ["fast", "slow"], "sharpe", tmp_path / "g.html",
                          axes=["fast", "size"])


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4), seed=st.integers(0, 2**16),
       holes=st.floats(0.0, 0.4), metric=st.sampled_from(["sharpe", "max_drawdown"]))
def test_grid_heatmap_cells_are_the_table(shape, seed, holes, metric):
    """Every selector's heatmap holds exactly the table's values; the first the best of them
    (the smallest drawdown, the largest Sharpe ratio)."""
    rng = np.random.default_rng(seed)
    names = [f"p{i}" for i in range(len(shape))]
    combos = np.stack(np.meshgrid(*[np.arange(n) * 10 for n in shape], indexing="ij"), -1)
    combos = combos.reshape(-1, len(shape))
    values = rng.normal(size=len(combos))
    values[rng.random(len(combos)) < holes] = np.nan
    table = pl.DataFrame({**{n: combos[:, i] for i, n in enumerate(names)}, metric: values})
    fig = grid_figure(table, names, metric)
    better = min if metric == "max_drawdown" else max
    rows_name, cols_name = heatmap_axes(table, names)
    others = [n for n in names if n not in (rows_name, cols_name)]
    r_at, c_at = names.index(rows_name), names.index(cols_name)
    best = {}
    for combo, v in zip(combos, values):
        key = (combo[r_at], combo[c_at])
        if np.isfinite(v):
            best[key] = better(best.get(key, v), v)
    first = fig.data[0]
    for (r, c), v in best.items():
        assert first.z[list(first.y).index(str(r)), list(first.x).index(str(c))] == v
    assert np.isfinite(np.asarray(first.z, dtype=float)).sum() == len(best)
    if others:
        buttons = fig.layout.updatemenus[0].buttons
        combos = int(np.prod([shape[names.index(o)] for o in others]))
        assert len(buttons) == len(fig.data) == 1 + combos
        for trace, button in zip(fig.data[1:], buttons[1:]):
            fixed = dict(part.split("=") for part in button.label.split(", "))
            sel = table.filter(pl.all_horizontal(pl.col(k) == int(v) for k, v in fixed.items()))
            for row in sel.iter_rows(named=True):
                z = trace.z[list(trace.y).index(str(row[rows_name]))][
                    list(trace.x).index(str(row[cols_name]))]
                assert (np.isnan(z) and np.isnan(row[metric])) or z == row[metric]
    else:
        assert len(fig.data) == 1 and not fig.layout.updatemenus
    assert fig.data[0].texttemplate  # the values are printed in the cells


def test_a_grid_with_too_many_other_combinations_shows_the_best_over_them():
    a, b, c = np.meshgrid([1, 2], [1, 2, 3], np.arange(MAX_SELECTOR + 1), indexing="ij")
    table = pl.DataFrame({"a": a.ravel(), "b": b.ravel(), "c": c.ravel(),
                          "sharpe": np.arange(a.size, dtype=float)})
    fig = grid_figure(table, ["a", "b", "c"], "sharpe", axes=("a", "b"))
    assert len(fig.data) == 1 and not fig.layout.updatemenus
    assert f"best over c: {MAX_SELECTOR + 1} combinations" in fig.layout.title.text
    best = table.group_by("a", "b").agg(pl.col("sharpe").max())
    for row in best.iter_rows(named=True):
        assert fig.data[0].z[list(fig.data[0].y).index(str(row["a"]))][
            list(fig.data[0].x).index(str(row["b"]))] == row["sharpe"]


# ---------------------------------------------------------------------- browser
def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB or RGBA PNG into (height, width, channels)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, "unsupported PNG layout"
        elif kind == b"IDAT":
            idat.append(body)
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    rows = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:  # None
            out[y] = line
        elif kind == 1:  # Sub: a running sum per channel
            out[y] = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint64).ravel() % 256
        elif kind == 2:  # Up
            out[y] = line + prev
        else:  # Average and Paeth depend on the decoded left neighbour: byte by byte
            cur, up = bytearray(line.tobytes()), prev.tobytes()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b, c = up[i], (up[i - bpp] if i >= bpp else 0)
                if kind == 3:
                    pred = (a + b) >> 1
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                cur[i] = (cur[i] + pred) & 0xFF
            out[y] = np.frombuffer(bytes(cur), np.uint8)
        prev = out[y]
    return out.reshape(height, width, bpp)


def render(page: Path, tmp_path: Path, height: int) -> tuple[str, np.ndarray]:
    """The DOM after scripts ran, and a screenshot, from headless Chromium (no JS errors)."""
    if not CHROMIUM.exists():
        if os.environ.get("PITGRID_NO_BROWSER") == "1":
            pytest.skip("PITGRID_NO_BROWSER=1 and no /usr/bin/chromium")
        pytest.fail("/usr/bin/chromium is missing: run .ci/install-browser (CI does), "
                    "or set PITGRID_NO_BROWSER=1 to skip the browser test")
    png = tmp_path / f"{page.stem}.png"
    proc = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
         f"--window-size=1200,{height}", "--enable-logging=stderr", "--v=0", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    js_errors = [line for line in proc.stderr.splitlines()
                 if "CONSOLE" in line and re.search(r"Uncaught|Error", line)]
    assert js_errors == []
    pixels = read_png(png)[..., :3]
    assert pixels.shape == (height, 1200, 3)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    not_white = (pixels < 245).any(axis=2).mean()
    assert len(colours) > 50, f"only {len(colours)} colours: a blank or broken page"
    assert not_white > 0.05, f"only {not_white:.1%} of the page is not white"
    return proc.stdout, pixels


def test_report_renders_in_headless_chromium(tmp_path, market):
    c = market["close"]
    mean = c.rolling(time=20).mean()
    res = pg.simulate(market, entries=c > mean, exits=c < mean, fill="close", keep="full")
    report = write_report(res, tmp_path / "run.html", benchmark=c.mean("symbol"), market=market)
    dom, pixels = render(report, tmp_path, 2400)
    # plotly draws two <svg class="main-svg"> layers per figure once it has rendered
    assert dom.count('class="main-svg"') >= 2 * FIGURES
    assert OPTIMISTIC_LABEL in dom
    red_banner = (pixels[..., 0] > 180) & (pixels[..., 1] < 70) & (pixels[..., 2] < 70)
    assert red_banner[:300].sum() > 5000, "the optimistic-fills banner is not visible at the top"


def test_grid_report_with_selectors_renders_in_headless_chromium(tmp_path, grid_table):
    table = pl.concat([grid_table, grid_table.with_columns(pl.lit(2).alias("lookback"),
                                                           pl.col("sharpe") + 0.1)])
    page = write_grid_report(table, ["fast", "slow", "lookback"], "sharpe", tmp_path / "g.html")
    dom, _ = render(page, tmp_path, 1200)
    assert dom.count('class="main-svg"') >= 2
    assert "updatemenu-header" in dom and "best over lookback" in dom
    assert "0.90" in dom  # a value printed in its cell
