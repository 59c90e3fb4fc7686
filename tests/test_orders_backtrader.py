"""Limit and stop orders against backtrader's ``Limit`` and ``Stop`` orders, next-bar semantics.

backtrader runs in ``.venv-peers`` (``make test-peers``, which sets
``PITGRID_PEER_PYTHON``); its side is ``tests/peers/backtrader_orders.py``. On 20
real symbols (the first ones by name with every bar and no split, 2012-2020), MA
cross signals turn into buy / sell orders of 100 shares placed at a bar's close and
tried from the next bar on: market (next open), limit or stop at a level per bar,
good till cancelled (``order_ttl`` longer than the data), a new signal replacing the
live order. Fills (bar, side, shares, price, commission) must be the same to 1e-9.

backtrader's ``StopTrail`` (a sell placed when the buy fills) trails the closes;
pitgrid's trailing stop does so with ``trail_on="close"`` and matches it on the same
20 symbols. By default pitgrid trails the highs (as vectorbt does): a test shows the
case (docs/simulation.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pitgrid as pg

import test_orders_vectorbt as vbt_side
from test_orders_vectorbt import dataset, one_symbol, real_data

# deselected from `make test` and `make test-all`; `make test-peers` runs them
pytestmark = pytest.mark.peers
RTOL = 1e-9
FEES = 0.001
CASES = [
    {"name": "limit", "kind": "limit", "entry": 0.99, "exit": 1.01},
    {"name": "stop", "kind": "stop", "entry": 1.01, "exit": 0.99},
    {"name": "market_limit", "kind": "limit", "entry": None, "exit": 1.02},
    {"name": "stop_market", "kind": "stop", "entry": 1.005, "exit": None},
]
# market entries and exits, and a StopTrail sell from the entry's fill on
TRAILS = [{"name": f"trail_{k}", "kind": "stop", "entry": None, "exit": None, "trail": k}
          for k in (0.03, 0.1)]


def run_peer(tmp: Path, data: dict[str, np.ndarray], cases: list[dict]) -> dict[str, np.ndarray]:
    return vbt_side.run_peer(tmp, data, cases, "backtrader_orders.py")


def levels(data: dict[str, np.ndarray], case: dict) -> dict[str, np.ndarray]:
    close = data["close"]
    none = np.full_like(close, np.nan)
    return {f"{case['name']}/entry": none if case["entry"] is None else close * case["entry"],
            f"{case['name']}/exit": none if case["exit"] is None else close * case["exit"]}


def ours(data: dict[str, np.ndarray], case: dict, **extra) -> pg.SimResult:
    lv = levels(data, case)
    kind = case["kind"]
    orders = {f"entry_{kind}": lv[f"{case['name']}/entry"],
              f"exit_{kind}": lv[f"{case['name']}/exit"]}
    return pg.simulate(dataset(data), entries=data["entries"], exits=data["exits"], keep="full",
                       fill="next_open", accounts="per_symbol", size="shares", size_value=100,
                       fees_bps=FEES * 1e4, init_cash=1e9, order_ttl=len(data["close"]),
                       **orders, **extra)


def our_fills(res: pg.SimResult) -> np.ndarray:
    times = {t: i for i, t in enumerate(res.equity["time"].values)}
    names = {str(s): i for i, s in enumerate(res.positions["symbol"].values)}
    rows = [(names[s], times[np.datetime64(t, "ns")], 1 if side == "buy" else -1, q, px, fee)
            for s, t, side, q, px, fee in res.trades.select(
                "symbol", "time", "side", "shares", "price", "fees").iter_rows()]
    return np.array(sorted(rows), dtype=np.float64).reshape(-1, 6)


def assert_same(a: np.ndarray, b: np.ndarray, name: str) -> None:
    b = b[np.lexsort((b[:, 1], b[:, 0]))]
    assert a.shape == b.shape, f"{name}: {len(a)} pitgrid fills, {len(b)} backtrader fills"
    bad = ~(np.all(a[:, :3] == b[:, :3], axis=1) & np.all(np.isclose(a[:, 3:], b[:, 3:], rtol=RTOL,
                                                                     atol=0), axis=1))
    assert not bad.any(), \
        f"{name}: first different fill: pitgrid {a[bad][0]}, backtrader {b[bad][0]}"


@pytest.mark.slow
def test_limit_and_stop_orders_match_backtrader_on_20_real_symbols(tmp_path):
    data = real_data(20)
    assert data["close"].shape[1] == 20
    for case in CASES:
        data.update(levels(data, case))
    peer = run_peer(tmp_path, data, [{**c, "fees": FEES, "size": 100} for c in CASES])
    for case in CASES:
        res = ours(data, case)
        reasons = set(res.trades["reason"].to_list())
        assert reasons & {"limit", "stop"}, f"{case['name']}: no limit or stop order filled"
        assert_same(our_fills(res), peer[case["name"]], case["name"])


@pytest.mark.slow
def test_trailing_stop_on_closes_matches_backtrader_stoptrail_on_20_real_symbols(tmp_path):
    data = real_data(20)
    assert data["close"].shape[1] == 20
    for case in TRAILS:
        data.update(levels(data, case))
    peer = run_peer(tmp_path, data, [{**c, "fees": FEES, "size": 100} for c in TRAILS])
    for case in TRAILS:
        res = ours(data, case, sl_trail=case["trail"], trail_on="close")
        n_trail = res.trades["reason"].to_list().count("trailing_stop")
        assert n_trail > 20, f"{case['name']}: only {n_trail} trailing stops hit"
        assert_same(our_fills(res), peer[case["name"]], case["name"])


# a high far above the close on bar 2, then a bar that reaches 108 but not 99 * 0.9
SPIKE = [(100, 100, 100, 100), (100, 100, 100, 100), (101, 120, 100, 101),
         (110, 111, 105, 108), (108, 108, 108, 108)]


def test_differs_trailing_stop_trails_highs_not_closes(tmp_path):
    """A high far above the close: pitgrid's default trailing stop (like vectorbt's)
    moves up to it and is hit on the next bar; backtrader's StopTrail follows the close
    and is not, nor is pitgrid's with ``trail_on="close"``."""
    data = one_symbol(SPIKE, [0])
    case = {"name": "trail", "kind": "stop", "entry": None, "exit": None}
    data.update(levels(data, case))
    peer = run_peer(tmp_path, data, [{**case, "fees": FEES, "size": 100, "trail": 0.1}])
    res = ours(data, case, sl_trail=0.1)
    assert res.trades["reason"].to_list() == ["order", "trailing_stop"]
    assert res.trades["price"][1] == pytest.approx(108.0)   # 120 * 0.9, inside bar 3
    assert len(peer["trail"]) == 1                           # backtrader: only the buy
    on_close = ours(data, case, sl_trail=0.1, trail_on="close")
    assert on_close.trades["reason"].to_list() == ["order"]
    assert_same(our_fills(on_close), peer["trail"], "trail")


def test_trailing_stop_on_closes_starts_at_the_fill_bars_close(tmp_path):
    """The buy fills at 100 on bar 1 whose close is 110: backtrader's StopTrail starts
    from that close (110 * 0.95 = 104.5), so bar 2 (low 104) hits it; the close then
    trails upwards and bar 4 opens under 118 * 0.95 = 112.1 and fills at its open."""
    data = one_symbol([(100, 100, 100, 100), (100, 111, 99, 110), (109, 109, 104, 106),
                       (107, 119, 106, 118), (111, 116, 110, 112), (112, 112, 112, 112)], [0, 2])
    case = {"name": "trail", "kind": "stop", "entry": None, "exit": None}
    data.update(levels(data, case))
    peer = run_peer(tmp_path, data, [{**case, "fees": FEES, "size": 100, "trail": 0.05}])
    res = ours(data, case, sl_trail=0.05, trail_on="close")
    assert res.trades["reason"].to_list() == ["order", "trailing_stop", "order", "trailing_stop"]
    assert res.trades["price"].to_list() == [100.0, 104.5, 107.0, 111.0]
    assert_same(our_fills(res), peer["trail"], "trail")
