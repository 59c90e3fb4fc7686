"""What a notebook shows: HTML summaries with a small equity line, plotly figures, a summary
that prints whole; for a simulation, a grid and a stored run."""
import re
from html.parser import HTMLParser

import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid.results import ResultsDB
from pitgrid.results.db import drawdown
from pitgrid.results.display import sparkline
from pitgrid.strategies import MovingAverageCross, RSIMeanReversion


@pytest.fixture(scope="module")
def market():
    return pg.MarketData(pg.synthetic_prices(250, 5, seed=1))


@pytest.fixture(scope="module")
def result(market):
    return pg.backtest(market, MovingAverageCross(fast=5, slow=20), {"fill": "close"})


@pytest.fixture(scope="module")
def grid(market):
    return pg.grid(market, RSIMeanReversion(), {"window": [5, 10, 14], "low": [25.0, 35.0],
                                                "weight": [0.1, 0.2]},
                   config={"fill": "next_open"}, keep=3, progress=False)


class _Tags(HTMLParser):
    """Open and close tags in order, to check the HTML is well formed."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def well_formed(html: str) -> bool:
    parser = _Tags()
    parser.feed(html)
    voids = {"br", "meta", "img", "polyline"}  # polyline closes itself
    return not parser.errors and not [t for t in parser.stack if t not in voids]


def cells(html: str) -> list[str]:
    return re.findall(r"<td>([^<]*)</td>", html)


def test_simulation_shows_its_summary_and_a_line(result):
    out = result._repr_html_()
    assert well_formed(out)
    assert out.count("<svg") == 1 and "<polyline" in out and "<script" not in out
    assert "OPTIMISTIC FILLS" in out  # close fills are labelled
    m = result.metrics.row(0, named=True)
    assert f"{m['total_return']:.2%}" in cells(out) and f"{m['sharpe']:,.3f}" in cells(out)
    assert "250 bars" in out


def test_summary_prints_whole_and_matches_the_metrics(result):
    s = result.summary()
    assert s.width <= 8  # polars prints up to 8 columns without cutting any
    assert "…" not in repr(s)
    for col in s.columns:
        if col in result.metrics.columns:
            assert s[col].equals(result.metrics[col])
    assert s["fill"][0] == "close (optimistic)"


def test_plot_returns_figures_of_the_run(result):
    eq = result.plot()
    assert isinstance(eq, go.Figure)
    np.testing.assert_array_equal(eq.data[0].y, result.equity.values)
    dd = result.plot(kind="drawdown")
    want = -drawdown(result.equity.values, result.config["init_cash"])[0]
    np.testing.assert_array_equal(dd.data[0].y, want)
    with pytest.raises(ValueError, match="choose 'equity' or 'drawdown'"):
        result.plot(kind="heatmap")


def test_equity_plot_shows_the_benchmark_the_run_was_measured_against(market):
    res = pg.backtest(market, MovingAverageCross(fast=5, slow=20), {"fill": "next_open"},
                      benchmark="S0003")
    fig = res.plot()
    assert [t.name for t in fig.data] == ["equity", "S0003"]
    np.testing.assert_array_equal(fig.data[1].y, res.extra["benchmark"].values)


def test_plot_of_several_parameter_sets(market):
    c = market["close"]
    w = np.stack([(c * 0 + v).values for v in (0.1, 0.2, 0.3)])
    res = pg.simulate(market, weights=w)
    fig = res.plot(param=[0, 2])
    assert len(fig.data) == 2
    np.testing.assert_array_equal(fig.data[1].y, res.equity.isel(param=2).values)
    assert res._repr_html_().count("<svg") == 3


def test_grid_shows_its_best_sets_and_plots_a_heatmap(grid):
    out = grid._repr_html_()
    assert well_formed(out)
    assert "12 parameter sets over low, weight, window" in out
    assert out.count("<svg") == 3  # the kept curves
    best = grid.best("sharpe", 5)
    assert f"{best['sharpe'][0]:,.3f}" in cells(out)
    fig = grid.plot()
    assert fig.data[0].type == "heatmap"
    # rows and columns: window (3 values) by one of the two-valued parameters; the third selects
    assert len(fig.layout.updatemenus[0].buttons) == 1 + 2
    best_cell = np.nanmax(np.asarray(fig.data[0].z, dtype=float))
    assert best_cell == pytest.approx(grid.table["sharpe"].max())
    assert grid.plot(kind="heatmap", metric="total_return", axes=("low", "weight")
                     ).layout.yaxis.title.text == "low"
    assert len(grid.plot(kind="equity").data) == 3
    with pytest.raises(ValueError, match="choose 'heatmap'"):
        grid.plot(kind="surface")


def test_stored_run_shows_its_id_summary_and_line(tmp_path, result):
    with ResultsDB(tmp_path / "runs.db") as db:
        run = db.load_run(db.save_run(result, strategy="ma 5/20", data_fingerprint="synthetic:1"))
    out = run._repr_html_()
    assert well_formed(out)
    assert run.run_id in out and "ma 5/20" in out and "<polyline" in out
    assert f"{run.metrics['total_return'][0]:.2%}" in cells(out)
    np.testing.assert_array_equal(run.plot().data[0].y, run.equity.values)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))),
                       min_size=0, max_size=800))
def test_sparkline_points_stay_in_the_box_and_keep_the_order(values):
    svg = sparkline(np.array(values, dtype=float), width=200, height=40)
    pts = re.search(r'points="([^"]*)"', svg)
    finite = [v for v in values if np.isfinite(v)]
    if len(finite) < 2:
        assert pts is None
        return
    xy = np.array([[float(a) for a in p.split(",")] for p in pts.group(1).split()])
    assert (xy[:, 0] >= 0).all() and (xy[:, 0] <= 200).all()
    assert (xy[:, 1] >= 0).all() and (xy[:, 1] <= 40).all()
    assert (np.diff(xy[:, 0]) > 0).all()
    # higher values are drawn higher (smaller y), up to the 0.1 px the text keeps
    drawn = np.array([v for v in values if np.isfinite(v)])[::max(1, len(finite) // 200)]
    order = np.argsort(drawn, kind="stable")
    assert (np.diff(xy[order, 1]) <= 0.11).all()


def test_summary_frame_of_a_grid_shaped_simulation_keeps_one_row_per_set(market):
    c = market["close"]
    res = pg.simulate(market, weights=np.stack([(c * 0 + v).values for v in (0.1, 0.2)]))
    s = res.summary()
    assert s.height == 2 and s["param"].to_list() == [0, 1]
    assert isinstance(s, pl.DataFrame)
