"""Stops against vectorbt's ``Portfolio.from_signals``: same fills, same final values.

vectorbt runs in its own environment (``.venv-peers``, the ``peers`` extra):
``make test-peers`` builds it and runs these tests with ``PITGRID_PEER_PYTHON`` set;
without that variable they are not collected as runnable (the default suite has no
vectorbt), and with it a missing or failing peer is a failure. The peer side is
``tests/peers/vectorbt_stops.py``; it writes its order records, which are compared
here fill by fill (bar, side, shares, price, fees to 1e-9 relative) with the final
value of every symbol's account.

Mapping: per-symbol accounts, ``size="all"`` (vectorbt ``size=inf``), 10 bps fees,
5 bps slippage, fills at the close, stops priced from the order price
(``stop_entry_price="price"``) and filled as market orders (``"stopmarket"``);
pitgrid's ``sl_trail=x`` is vectorbt's ``sl_stop=x, sl_trail=True``. Where the two
engines' rules differ, a test below shows the case (docs/simulation.md says which
rule pitgrid takes and why).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import pitgrid as pg
import pitgrid.kernels as K

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benches import workloads as W  # noqa: E402

PEER = os.environ.get("PITGRID_PEER_PYTHON")
# deselected from `make test` and `make test-all`; `make test-peers` runs them
pytestmark = pytest.mark.peers
RTOL = 1e-9
SETTINGS = {**W.W1_SETTINGS, "init_cash": 100_000.0, "fill": "close"}
CASES = [
    {"name": "sl_tp", "sl_stop": 0.05, "tp_stop": 0.10, "sl_trail": 0.0},
    {"name": "trail_tp", "sl_stop": 0.0, "tp_stop": 0.08, "sl_trail": 0.04},
    {"name": "sl", "sl_stop": 0.02, "tp_stop": 0.0, "sl_trail": 0.0},
    {"name": "tp", "sl_stop": 0.0, "tp_stop": 0.03, "sl_trail": 0.0},
    {"name": "trail", "sl_stop": 0.0, "tp_stop": 0.0, "sl_trail": 0.1},
]


def run_peer(tmp: Path, data: dict[str, np.ndarray], cases: list[dict],
             script: str = "vectorbt_stops.py") -> dict[str, np.ndarray]:
    """The peer's side: ``tests/peers/<script>`` in the peers' environment, on ``data``."""
    if PEER is None or not Path(PEER).exists():
        pytest.fail(f"PITGRID_PEER_PYTHON={PEER} does not exist: build it with `make test-peers`")
    np.savez(tmp / "in.npz", **data)
    (tmp / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run([PEER, str(ROOT / "tests" / "peers" / script),
                           str(tmp / "in.npz"), str(tmp / "cases.json"), str(tmp / "out.npz")],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"the peer side ({script}) failed:\n{done.stderr[-3000:]}"
    return dict(np.load(tmp / "out.npz"))


def dataset(data: dict[str, np.ndarray]) -> xr.Dataset:
    T, S = data["close"].shape
    return xr.Dataset({k: (("time", "symbol"), data[k]) for k in ("open", "high", "low", "close")},
                      coords={"time": np.arange(T).astype("datetime64[D]").astype("datetime64[ns]"),
                              "symbol": [f"S{i}" for i in range(S)]})


def ours(data: dict[str, np.ndarray], case: dict) -> pg.SimResult:
    return pg.simulate(dataset(data), entries=data["entries"], exits=data["exits"], keep="full",
                       sl_stop=case["sl_stop"], tp_stop=case["tp_stop"], sl_trail=case["sl_trail"],
                       **SETTINGS)


def fills(res: pg.SimResult) -> dict[int, list[tuple]]:
    """Per symbol: (bar, side 0 buy / 1 sell, shares, price, fees, reason) by bar."""
    times = {t: i for i, t in enumerate(res.equity["time"].values)}
    names = {str(s): i for i, s in enumerate(res.positions["symbol"].values)}
    out: dict[int, list[tuple]] = {}
    for s, t, side, q, px, fee, why in res.trades.select(
            "symbol", "time", "side", "shares", "price", "fees", "reason").iter_rows():
        out.setdefault(names[s], []).append(
            (times[np.datetime64(t, "ns")], 0 if side == "buy" else 1, q, px, fee, why))
    return {k: sorted(v) for k, v in out.items()}


def peer_fills(peer: dict[str, np.ndarray], name: str) -> dict[int, list[tuple]]:
    out: dict[int, list[tuple]] = {}
    cols = [peer[f"{name}/{k}"].tolist() for k in ("col", "idx", "side", "size", "price", "fees")]
    for c, *row in zip(*cols):
        out.setdefault(c, []).append(tuple(row))
    return {k: sorted(v) for k, v in out.items()}


def gap_rule(ours_fill: tuple, peer_fill: tuple, data: dict[str, np.ndarray], s: int) -> bool:
    """The documented difference: the open gaps through the target while the low reaches
    the stop; pitgrid takes the target at the open, vectorbt the stop at its level."""
    t, slip = ours_fill[0], 1 - SETTINGS["slippage_bps"] / 1e4
    o, lo = data["open"][t, s], data["low"][t, s]
    return (ours_fill[5] == "take_profit" and np.isclose(ours_fill[3], o * slip, rtol=RTOL)
            and peer_fill[0] == t and peer_fill[3] < ours_fill[3]
            and lo <= peer_fill[3] / slip * (1 + RTOL))


def assert_same(res: pg.SimResult, peer: dict[str, np.ndarray], name: str,
                data: dict[str, np.ndarray], max_gap_share: float = 0.05) -> None:
    """Every fill and final value equal, except symbols where the gap rule first differs."""
    a, b = fills(res), peer_fills(peer, name)
    final = res.account_equity.isel(time=-1).values
    S = len(final)
    diverged = []
    for s in range(S):
        x_all, y_all = a.get(s, []), b.get(s, [])
        for k, (x, y) in enumerate(zip(x_all, y_all)):
            same = x[:2] == tuple(y[:2]) and np.allclose(x[2:5], y[2:5], rtol=RTOL, atol=0)
            if not same:
                assert gap_rule(x, y, data, s), \
                    f"{name}, symbol {s}: pitgrid fill {x}, vectorbt {y}"
                diverged.append(s)
                break
        else:
            assert len(x_all) == len(y_all), \
                f"{name}, symbol {s}: {len(x_all)} pitgrid fills, {len(y_all)} vectorbt fills"
            assert np.isclose(final[s], peer[f"{name}/final"][s], rtol=RTOL, atol=0), \
                f"{name}, symbol {s}: final value {final[s]!r}, " \
                f"vectorbt {peer[f'{name}/final'][s]!r}"
    assert len(diverged) <= max_gap_share * S, \
        f"{name}: {len(diverged)} symbols differ by the gap rule"


def w1_data() -> dict[str, np.ndarray]:
    ds = W.data()  # W1: 2520 bars x 500 symbols, seed 42
    p = W.ma_signals(ds)
    return {**{k: np.ascontiguousarray(ds[k].values) for k in ("open", "high", "low", "close")},
            "entries": p.entries, "exits": p.exits}


def test_stops_match_vectorbt_on_w1(tmp_path):
    data = w1_data()
    peer = run_peer(tmp_path, data, CASES)
    for case in CASES:
        res = ours(data, case)
        assert set(res.trades["reason"].to_list()) > {"order"}, f"{case['name']}: no stop fired"
        assert_same(res, peer, case["name"], data)


def real_data(n_symbols: int = 50) -> dict[str, np.ndarray]:
    """The real sample, 2012-2020: the first symbols (by name) with every bar and no split
    (vectorbt does not rescale a position on a split; dividends are not credited here)."""
    import polars as pl

    path = Path("/work/shared/data/prices.csv.gz")
    assert path.exists(), f"{path} is missing: the real sample is part of the shared data"
    df = (pl.read_csv(path, try_parse_dates=True)
          .filter(pl.col("time").is_between(pl.date(2012, 1, 1), pl.date(2020, 12, 31))))
    good = (df.group_by("symbol")
            .agg(pl.len().alias("n"), (pl.col("split_coefficient") != 1.0).sum().alias("splits"))
            .filter((pl.col("splits") == 0) & (pl.col("n") == pl.col("n").max()))
            .sort("symbol")["symbol"].head(n_symbols).to_list())
    df = df.filter(pl.col("symbol").is_in(good)).sort("time", "symbol")
    wide = {k: df.pivot(on="symbol", index="time", values=k).drop("time")
            for k in ("open", "high", "low", "close")}
    out = {k: v.to_numpy().astype(np.float64) for k, v in wide.items()}
    f, s = K.sma(out["close"], 10), K.sma(out["close"], 50)
    return {**out, "entries": K.crossover(f, s), "exits": K.crossunder(f, s)}


@pytest.mark.slow
def test_stops_match_vectorbt_on_the_real_sample(tmp_path):
    data = real_data()
    assert data["close"].shape[1] >= 20
    peer = run_peer(tmp_path, data, CASES)
    for case in CASES:
        assert_same(ours(data, case), peer, case["name"], data)


def one_symbol(bars: list[tuple[float, float, float, float]], entries: list[int],
               exits: list[int] = ()) -> dict[str, np.ndarray]:
    a = np.array(bars, dtype=np.float64)
    ent = np.zeros((len(bars), 1), bool)
    ext = np.zeros((len(bars), 1), bool)
    ent[list(entries), 0] = True
    ext[list(exits), 0] = True
    return {"open": a[:, :1].copy(), "high": a[:, 1:2].copy(), "low": a[:, 2:3].copy(),
            "close": a[:, 3:4].copy(), "entries": ent, "exits": ext}


def test_differs_gap_through_target_with_the_stop_inside(tmp_path):
    """The open gaps above the target and the low then falls through the stop: the open
    comes first, so pitgrid takes the target at the open; vectorbt tests the stop first."""
    data = one_symbol([(100, 100, 100, 100), (112, 113, 94, 100), (100, 100, 100, 100)], [0])
    case = {"name": "gap", "sl_stop": 0.05, "tp_stop": 0.10, "sl_trail": 0.0}
    peer = run_peer(tmp_path, data, [case])
    res = ours(data, case)
    assert res.trades["reason"].to_list() == ["order", "take_profit"]
    assert res.trades["price"][1] == pytest.approx(112 * (1 - 0.0005), rel=RTOL)
    assert peer["gap/price"][1] == pytest.approx(95 * (1 - 0.0005), rel=RTOL)


def test_differs_entry_on_the_bar_of_a_stop(tmp_path):
    """An entry signal at the close of the bar whose low hit the stop: the position is flat
    at the close, so pitgrid enters; vectorbt lets the stop replace that bar's signals."""
    data = one_symbol([(100, 100, 100, 100), (99, 99, 90, 98), (98, 98, 98, 98)], [0, 1])
    case = {"name": "reenter", "sl_stop": 0.05, "tp_stop": 0.0, "sl_trail": 0.0}
    peer = run_peer(tmp_path, data, [case])
    res = ours(data, case)
    assert res.trades["reason"].to_list() == ["order", "stop_loss", "order"]
    assert len(peer["reenter/idx"]) == 2
