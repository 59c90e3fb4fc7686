"""CLI messages: data and names printed as they are (never as markup), one line per
error, exit codes as the CLI's docstring says."""
from __future__ import annotations

import polars as pl
import pytest
from typer.testing import CliRunner

import pitgrid as pg
from pitgrid.cli import app
from pitgrid.results import ResultsDB
from pitgrid.strategies import MovingAverageCross

runner = CliRunner(env={"COLUMNS": "250"})
MARKUP = "[/x] [bold]"


def _run(*args, code: int):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.output


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_rule_text_with_brackets_is_printed_whole_and_data_errors_exit_2(long_bars, write_csv, tmp_path):
    frame = long_bars(n_time=8, n_symbols=2, gaps=0.0)
    frame = frame.with_columns(open=pl.when(pl.int_range(pl.len()) == 3).then(pl.col("high") * 2)
                               .otherwise(pl.col("open")))
    line = _error_line(_run("ingest", write_csv(frame), "--store", tmp_path / "s", "--no-progress", code=2))
    assert "line 5, symbol 'S0000': open outside [low, high]" in line


@pytest.mark.parametrize("where", ["symbol", "path"])
def test_markup_in_a_symbol_or_path_is_printed_as_is(where, long_bars, tmp_path):
    frame = long_bars(n_time=8, n_symbols=2, gaps=0.0)
    folder = tmp_path / "[" / "x] [bold]" if where == "path" else tmp_path / "plain"
    folder.mkdir(parents=True)
    assert where != "path" or MARKUP in str(folder)
    if where == "symbol":
        frame = frame.with_columns(symbol=pl.col("symbol").str.replace("S0001", MARKUP))
    frame = frame.with_columns(volume=pl.when(pl.int_range(pl.len()) == 9).then(-1.0).otherwise(pl.col("volume")))
    frame.write_csv(folder / "p.csv")
    line = _error_line(_run("ingest", folder / "p.csv", "--store", folder / "s", "--no-progress", code=2))
    assert str(folder / "p.csv") in line and "negative volume" in line
    if where == "symbol":
        assert f"symbol '{MARKUP}'" in line
    good = frame.with_columns(volume=pl.col("volume").abs())
    good.write_csv(folder / "p.csv")
    done = _run("ingest", folder / "p.csv", "--store", folder / "s", "--no-progress", code=0)
    assert f"ingested into {folder / 's'}" in done.replace("\n", "")
    assert f"{folder / 's'}" in _run("info", folder / "s", code=0).replace("\n", "")


def test_the_summary_lists_snapped_split_ratios(long_bars, write_csv, tmp_path):
    frame = long_bars(n_time=8, n_symbols=2, gaps=0.0).with_columns(
        split_coefficient=pl.when(pl.int_range(pl.len()) == 11).then(1.49999925).otherwise(1.0))
    out = _run("ingest", write_csv(frame), "--store", tmp_path / "s", "--no-progress", code=0)
    assert f"S0001 {frame['time'][11]}: 1.49999925 -> 1.5 (3/2) [{tmp_path / 'prices.csv'} line 13]" in out


@pytest.mark.parametrize("args, message", [
    (["--symbol-block", "0"], "symbol_block must be >= 1"),
    (["--store-is-a-file"], "cannot create the store"),
])
def test_usage_errors_of_ingest_are_one_line_and_exit_2(args, message, long_bars, write_csv, tmp_path):
    prices = write_csv(long_bars(n_time=8, n_symbols=2))
    (tmp_path / "f").write_text("x")
    store = tmp_path / "f" / "s" if args == ["--store-is-a-file"] else tmp_path / "s"
    extra = [] if args == ["--store-is-a-file"] else args
    assert message in _error_line(_run("ingest", prices, "--store", store, "--no-progress", *extra, code=2))


def test_truncated_gzip_via_the_cli(long_bars, tmp_path):
    import gzip

    data = gzip.compress(long_bars(n_time=300, n_symbols=2).write_csv().encode())
    (tmp_path / "p.csv.gz").write_bytes(data[: len(data) // 2])
    line = _error_line(_run("ingest", tmp_path / "p.csv.gz", "--store", tmp_path / "s", "--no-progress", code=2))
    assert "p.csv.gz, line " in line and "truncated compressed file" in line


def test_info_of_a_folder_that_is_not_a_store_exits_2(tmp_path):
    assert f"{tmp_path} is not a pitgrid store" in _error_line(_run("info", tmp_path, code=2))


def test_runs_prints_strategy_and_universe_names_as_they_are(tmp_path):
    market = pg.MarketData(pg.synthetic_prices(60, 3, seed=1))
    result = pg.backtest(market, MovingAverageCross(fast=3, slow=10))
    with ResultsDB(tmp_path / "r.db") as db:
        run_id = db.save_run(result, strategy=MARKUP, data_fingerprint="fp", universe_id=f"u{MARKUP}")
    out = _run("runs", "--db", tmp_path / "r.db", code=0)
    assert MARKUP in out and f"u{MARKUP}" in out
    assert MARKUP in _run("show", run_id[:8], "--db", tmp_path / "r.db", code=0)
    assert MARKUP in _run("compare", run_id, "--db", tmp_path / "r.db", code=0)


def test_a_postgresql_server_that_refuses_is_one_line_exit_2():
    url = "postgresql://me:secret@127.0.0.1:1/runs"
    line = _error_line(_run("runs", "--db", url, code=2))
    assert "cannot connect to the results database postgresql://me:***@127.0.0.1:1/runs" in line
    assert "secret" not in line and "refused" in line.lower()


def test_ingest_and_info_list_suspicious_moves_within_80_columns(long_bars, write_csv, tmp_path):
    frame = long_bars(n_time=30, n_symbols=3, gaps=0.0)
    day = frame["time"].unique().sort()[12]
    crash = (pl.col("symbol") == "S0001") & (pl.col("time") >= day)
    frame = frame.with_columns(pl.when(crash).then(pl.col(c) * 0.3).otherwise(pl.col(c)).alias(c)
                               for c in ("open", "high", "low", "close"))
    closes = frame.filter(pl.col("symbol") == "S0001").sort("time")["close"]
    move = closes[12] / closes[11] - 1
    runner80 = CliRunner(env={"COLUMNS": "80"})
    for args in (["ingest", write_csv(frame), "--store", tmp_path / "s", "--no-progress"],
                 ["info", tmp_path / "s"]):
        result = runner80.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        text = result.output
        assert "warning: 1 close-to-close moves beyond" in " ".join(text.split())
        row = next(line for line in text.splitlines() if "S0001" in line)
        assert str(day)[:10] in row and f"{move:+.1%}" in row and "prices.csv line" in row
        assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "S0001" not in runner80.invoke(app, ["info", str(tmp_path / "s"), "--moves", "0"]).output
