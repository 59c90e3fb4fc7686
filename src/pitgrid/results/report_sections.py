"""The tables of a run report: fills, round trips, holdings, P&L by symbol, exits by reason, the
benchmark, walk-forward windows, sleeves and how much of a grid's best result is selection.

Each function returns a list of HTML fragments (empty when the run has nothing to show).

Example:
    >>> overfitting_html({"deflated_sharpe": 0.4, "pbo": 0.2, "n_trials": 9})[0]
    '<h2>How much of it is selection</h2>'
"""
from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from pitgrid.engine.benchmark import RELATIVE_METRICS, relative_metrics, returns_of
from pitgrid.engine.metrics import compute_metrics
from pitgrid.results.charts import axis_times
from pitgrid.results.formatting import fmt, label
from pitgrid.results.ledger import Ledger, exits_by_reason, symbol_pnl
from pitgrid.results.report_page import frame_table, note, table
from pitgrid.results.run_view import RunView

#: fills listed in the page itself; the whole list goes to a CSV file beside it
TRADE_ROWS = 500
HEADLINE = ("total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar",
            "max_drawdown", "max_drawdown_duration")
TRADE_STATS = ("trades", "win_rate", "avg_win", "avg_loss", "profit_factor", "turnover",
               "exposure", "fills", "unfilled", "fees", "slippage")
TAIL_STATS = ("var_95", "cvar_95", "var_99", "cvar_99", "tail_index")
_AGAINST = ("total_return", "annual_return", "volatility", "sharpe", "max_drawdown")


def metric_table(metrics: Mapping[str, Any], names: Sequence[str]) -> str:
    return table((label(n), fmt(n, metrics.get(n))) for n in names)


def trade_list(view: RunView, ledger: Ledger) -> pl.DataFrame:
    """Every fill with its notional and, for a closing fill, its realised P&L."""
    t = view.trades
    return pl.DataFrame({
        "time": axis_times(t["time"].to_numpy()), "symbol": t["symbol"], "side": t["side"],
        "shares": t["shares"], "price": t["price"], "notional": t["shares"] * t["price"],
        "fees": t["fees"], "reason": t["reason"],
        "realized P&L": pl.Series(ledger.realized_pnl, dtype=pl.Float64).fill_nan(None)})


def trade_list_html(listed: pl.DataFrame, csv_name: str) -> list[str]:
    """The latest TRADE_ROWS fills, newest first, and a link to the CSV of all of them."""
    if not listed.height:
        return ["<h2>Trades</h2>", note("No fills.")]
    shown = listed.tail(TRADE_ROWS).reverse()
    link = f'<a href="{html.escape(csv_name)}">{html.escape(csv_name)}</a>'
    caption = (f"{listed.height:,} fills, latest first" if shown.height == listed.height else
               f"the latest {shown.height:,} of {listed.height:,} fills")
    return ["<h2>Trades</h2>",
            f'<p class="note">{html.escape(caption)}; every fill in {link}. P&amp;L of a '
            "closing fill: (price - average cost) x shares closed - fees.</p>",
            frame_table(shown)]


def round_trips_html(trips: pl.DataFrame, csv_name: str, with_dividends: bool) -> list[str]:
    """Round trips, latest entry first (TRADE_ROWS in the page, all in the CSV)."""
    if not trips.height:
        return []
    shown = trips.tail(TRADE_ROWS).reverse()
    shown = shown.with_columns(pl.Series("entry", axis_times(shown["entry"].to_numpy())),
                               pl.Series("exit", _times_or(shown["exit"], "open")))
    link = f'<a href="{html.escape(csv_name)}">{html.escape(csv_name)}</a>'
    closed = trips["exit"].is_not_null().sum()
    caption = (f"{closed:,} closed and {trips.height - closed:,} open"
               + ("" if shown.height == trips.height else f"; the {shown.height:,} latest shown"))
    how = ("P&L: every cash flow of the position (fills, fees" + (", dividends" if with_dividends
           else "; dividends need market=") + "); return: P&L over what was invested "
           "(opening notional and fees).")
    return ["<h2>Round trips</h2>",
            f'<p class="note">{html.escape(caption)}; all in {link}. {html.escape(how)}</p>',
            frame_table(shown)]


def _times_or(times: pl.Series, missing: str) -> list[str]:
    """Times as in the charts, ``missing`` for nulls."""
    known = times.drop_nulls().to_numpy()
    text = iter(axis_times(known) if len(known) else [])
    return [missing if t is None else next(text) for t in times.to_list()]


def holdings_html(view: RunView, ledger: Ledger, marks: Mapping[str, float] | None) -> list[str]:
    """What the run holds after its last bar: shares, average cost and, with prices, value."""
    held = {s: q for s, q in ledger.held.items() if q != 0}
    if not held:
        return ["<h3>At the end</h3>", note("No open positions after the last bar.")]
    syms = sorted(held)
    rows: dict[str, Any] = {"symbol": syms, "shares": [held[s] for s in syms],
                            "avg cost": [ledger.cost[s] / held[s] for s in syms]}
    if marks is not None:
        price = [marks.get(s) for s in syms]
        value = [None if p is None else held[s] * p for s, p in zip(syms, price)]
        rows |= {"price": price, "value": value,
                 "weight": [None if v is None else v / view.equity[-1] for v in value],
                 "unrealized P&L": [None if v is None else v - ledger.cost[s]
                                    for s, v in zip(syms, value)]}
    frame = pl.DataFrame(rows, strict=False)
    frame = frame.sort("value" if marks is not None else "shares", descending=True,
                       nulls_last=True)
    return [f"<h3>At the end ({len(syms)} positions)</h3>", frame_table(frame)]


def symbol_pnl_html(view: RunView, ledger: Ledger, marks: Mapping[str, float] | None,
                    dividends: Mapping[str, float] | None) -> list[str]:
    frame = symbol_pnl(view.trades, ledger, marks, dividends)
    if not frame.height:
        return []
    explain = ("Realized: closing fills on an average-cost basis, fees included; unrealized: "
               "open positions at the last close")
    if marks is None:
        explain += " (n/a: pass market= to write_report to mark them)"
    explain += ("; dividends: shares held on each ex-date times the dividend. Borrow costs go "
                "to the account, not to a symbol." if dividends is not None else
                ". Dividends (not shown: they need the market and the run's positions) and "
                "borrow costs go to the account, not to a symbol.")
    return ["<h2>Profit and loss by symbol</h2>", note(explain), frame_table(frame)]


def exits_html(view: RunView, ledger: Ledger) -> list[str]:
    frame = exits_by_reason(view.trades, ledger)
    if not frame.height:
        return []
    return ["<h2>Exits by reason</h2>",
            note("Fills that closed (part of) a position, grouped by what triggered them."),
            frame_table(frame)]


def benchmark_html(view: RunView, bench: tuple[str, np.ndarray] | None,
                   measured: bool) -> list[str]:
    """The run's statistics beside its benchmark's, then the relative metrics: the run's own
    when it was ``measured`` against this benchmark, else computed here from the two curves."""
    if bench is None:
        return []
    name, curve = bench
    initial = view.initial if view.initial is not None else curve[0]
    bpy = float(view.config.get("bars_per_year", 252.0))
    theirs = compute_metrics(curve[None, :], np.array([initial]),
                             bars_per_year=bpy).row(0, named=True)
    rows = pl.DataFrame({"statistic": [label(m) for m in _AGAINST],
                         "strategy": [fmt(m, view.metrics.get(m)) for m in _AGAINST],
                         name: [fmt(m, theirs.get(m)) for m in _AGAINST]})
    relative = (view.metrics if measured and view.metrics.get("beta") is not None else
                relative_metrics(returns_of(view.equity, initial), returns_of(curve, initial), bpy))
    return [f"<h2>Against {html.escape(name)}</h2>", _text_table(rows),
            metric_table(relative, RELATIVE_METRICS)]


def _text_table(frame: pl.DataFrame) -> str:
    """A frame whose cells are already text."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in frame.iter_rows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def sleeves_html(sleeves: Sequence[Mapping[str, Any]] | None) -> list[str]:
    if not sleeves:
        return []
    rows = pl.DataFrame([{"sleeve": s["name"], "share": s["share"], "strategy": s.get("strategy"),
                          **s["metrics"]} for s in sleeves])
    return ["<h2>Sleeves</h2>", frame_table(rows)]


def walkforward_html(wf: Mapping[str, Any] | None) -> list[str]:
    if not wf:
        return []
    text = (f"Each test window trades the parameters with the best {wf.get('by')} on the "
            f"{'bars from the first' if wf.get('anchored') else str(wf.get('train')) + ' bars'} "
            "before it; the equity above is the test windows, out of sample, one after the other.")
    return ["<h2>Walk-forward: windows</h2>", note(text),
            frame_table(pl.DataFrame(wf["windows"])),
            "<h2>In sample against out of sample</h2>",
            frame_table(pl.DataFrame(wf["comparison"]))]


def overfitting_html(stats: Mapping[str, Any]) -> list[str]:
    def num(key: str, digits: int = 4) -> str:
        v = stats.get(key)
        return "n/a" if v is None else f"{v:.{digits}f}"

    rows = [("deflated Sharpe ratio", num("deflated_sharpe")),
            ("probability of backtest overfitting", num("pbo")),
            ("parameter sets tried", str(stats.get("n_trials"))),
            ("best per-bar Sharpe", num("sharpe")), ("luck alone (SR0, per bar)", num("sr0")),
            ("CSCV blocks / combinations",
             f"{stats.get('n_blocks')} / {stats.get('n_combinations')}")]
    text = ("The deflated Sharpe ratio is the probability that the best set's true Sharpe ratio "
            "beats what the best of this many sets reaches by luck (Bailey and Lopez de Prado, "
            "2014); the probability of backtest overfitting is the share of in-sample/out-of-"
            "sample splits in which the in-sample winner ranks in the lower half out of sample "
            "(Bailey, Borwein, Lopez de Prado and Zhu, 2015).")
    return ["<h2>How much of it is selection</h2>", table(rows), note(text)]


def shown_config(config: Mapping[str, Any]) -> str:
    """The config as JSON: the benchmark by name (its curve is the equity figure's line),
    sleeves without their metrics and walk-forward without its windows (both have tables)."""
    shown = dict(config)
    bench = config.get("benchmark")
    if isinstance(bench, Mapping):
        shown["benchmark"] = bench.get("name")
    if config.get("sleeves"):
        shown["sleeves"] = [{k: v for k, v in s.items() if k != "metrics"}
                            for s in config["sleeves"]]
    wf = config.get("walkforward")
    if isinstance(wf, Mapping):
        shown["walkforward"] = {k: v for k, v in wf.items() if k not in ("windows", "comparison")}
    return "<h2>Config</h2><pre>" + html.escape(json.dumps(shown, indent=2, default=str)) + "</pre>"
