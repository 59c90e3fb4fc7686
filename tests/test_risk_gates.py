"""Risk gates of the compiled loop on hand-made cases: each refusal is logged with its reason."""
import numpy as np
import polars as pl

import pitgrid as pg


def market(closes):
    closes = np.asarray(closes, dtype=float)
    T, S = closes.shape
    ds = pg.synthetic_prices(T, S, seed=0)
    for f in ("open", "high", "low", "close"):
        ds[f] = (("time", "symbol"), closes.copy())
    return ds


def signals(T, S, entries=(), exits=()):
    e = np.zeros((T, S), bool)
    x = np.zeros((T, S), bool)
    for t, s in entries:
        e[t, s] = True
    for t, s in exits:
        x[t, s] = True
    return e, x


def times(frame):
    return frame["time"].to_numpy().astype("datetime64[ns]").tolist()


def run(ds, e, x, **kw):
    return pg.simulate(ds, entries=e, exits=x, fill="close", size="value", size_value=100.0, **kw)


def test_min_bars_between_refuses_a_quick_exit():
    ds = market(np.full((6, 1), 10.0))
    e, x = signals(6, 1, entries=[(0, 0)], exits=[(1, 0), (4, 0)])
    res = run(ds, e, x, min_bars_between=3)
    assert res.filtered.select("reason", "shares").rows() == [("min_bars", -10.0)]
    assert res.trades["side"].to_list() == ["buy", "sell"]
    assert times(res.trades)[1] == ds["time"].values[4].tolist()


def test_max_positions_and_max_trades_per_bar():
    ds = market(np.full((3, 3), 10.0))
    e, x = signals(3, 3, entries=[(0, 0), (0, 1), (0, 2)])
    res = run(ds, e, x, max_positions=2)
    assert res.trades["symbol"].to_list() == ["S0000", "S0001"]
    assert res.filtered.select("symbol", "reason").rows() == [("S0002", "max_positions")]
    res = run(ds, e, x, max_trades_per_bar=1)
    assert res.trades["symbol"].to_list() == ["S0000"]
    assert res.filtered["reason"].to_list() == ["max_trades", "max_trades"]


def test_daily_loss_stop_blocks_new_risk_on_a_bad_bar_only():
    closes = np.full((4, 2), 10.0)
    closes[2:, 0] = 5.0        # the held symbol halves at bar 2
    ds = market(closes)
    e, x = signals(4, 2, entries=[(0, 0), (2, 1), (3, 1)])
    # 1000 of cash, 100 in symbol 0: equity 1000 -> 950 at bar 2, a 5% loss
    res = run(ds, e, x, init_cash=1000.0, daily_loss_stop=0.04)
    assert res.filtered.select("symbol", "reason").rows() == [("S0001", "daily_loss_stop")]
    assert times(res.trades.filter(pl.col("symbol") == "S0001")) == [ds["time"].values[3].tolist()]


def test_drawdown_stop_flattens_and_halts():
    closes = np.full((6, 1), 10.0)
    closes[3:] = 8.0
    ds = market(closes)
    e, x = signals(6, 1, entries=[(0, 0), (5, 0)])
    res = pg.simulate(ds, entries=e, exits=x, fill="close", init_cash=1000.0, max_drawdown_stop=0.1)
    # all in at 10, down 20% at bar 3: sold there, and no new entry afterwards
    assert res.trades.select("side", "reason").rows() == [("buy", "order"), ("sell", "drawdown_stop")]
    assert res.halted_at.item() == 3
    assert res.positions.values[3:, 0].tolist() == [0.0, 0.0, 0.0]


def test_cooldown_after_consecutive_losses():
    closes = np.array([10, 9, 10, 9, 10, 10, 10, 10], dtype=float)[:, None]
    ds = market(closes)
    e, x = signals(8, 1, entries=[(0, 0), (2, 0), (4, 0), (6, 0)], exits=[(1, 0), (3, 0)])
    res = run(ds, e, x, cooldown_losses=2, cooldown_bars=3)
    # two losing round trips end at bar 3: entries before bar 6 are refused
    assert times(res.filtered) == [ds["time"].values[4].tolist()]
    assert res.filtered["reason"].to_list() == ["cooldown"]
    assert res.trades.filter(pl.col("side") == "buy")["time"].len() == 3


def test_every_loss_of_a_long_streak_restarts_the_cooldown():
    # losing round trips close at bars 1, 3 and 6: the one at 3 starts a cooldown that
    # ends before bar 5; the third loss of the streak restarts it, so bar 7 is refused
    ds = market(np.array([[10, 9, 10, 9, 10, 10, 9, 10, 10]], dtype=float).T)
    e, x = signals(9, 1, entries=[(0, 0), (2, 0), (5, 0), (7, 0)], exits=[(1, 0), (3, 0), (6, 0)])
    res = run(ds, e, x, cooldown_losses=2, cooldown_bars=2)
    assert res.filtered.select("reason").rows() == [("cooldown",)]
    assert times(res.filtered) == [ds["time"].values[7].tolist()]
