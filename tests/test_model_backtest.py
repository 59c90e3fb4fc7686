"""A model trained in the test, saved, loaded and backtested through both drivers."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import pitgrid as pg
from pitgrid.models.architectures import build_model

torch = pytest.importorskip("torch")

FEATURES = [
    {"name": "r1", "kernel": "simple_returns", "params": {}, "field": "close"},
    {"name": "mom5", "kernel": "momentum", "params": {"window": 5}, "field": "close"},
    {"name": "rsi14", "kernel": "rsi", "params": {"window": 14}, "field": "close"},
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny MLP fitted on the first 150 bars only (labels: next-5-bar return terciles)."""
    torch.set_num_threads(1)
    market = pg.MarketData(pg.synthetic_prices(260, 12, seed=11))
    path = tmp_path_factory.mktemp("bundle") / "mlp"
    close = market.ds["close"].values
    from pitgrid import kernels as K
    x = np.stack([K.simple_returns(close), K.momentum(close, 5), K.rsi(close, 14)], axis=-1)
    fwd = np.full_like(close, np.nan)
    fwd[:-5] = close[5:] / close[:-5] - 1
    tx, ty = x[:145].reshape(-1, 3), fwd[:145].ravel()
    ok = np.isfinite(tx).all(axis=1) & np.isfinite(ty)
    tx, ty = tx[ok], ty[ok]
    labels = np.digitize(ty, np.quantile(ty, [1 / 3, 2 / 3]))
    mean, std = tx.mean(axis=0), tx.std(axis=0)
    torch.manual_seed(0)
    net = build_model("mlp", {"hidden": [8]}, n_features=3, lookback=1, n_classes=3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt = torch.from_numpy((tx - mean) / std).float()[:, None, :]
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), torch.from_numpy(labels)).backward()
        opt.step()
    pg.save_bundle(net, path, architecture="mlp", settings={"hidden": [8]}, features=FEATURES,
                   lookback=1, classes=["sell", "hold", "buy"],
                   decision={"threshold": 0.36, "min_bars_between": 2},
                   normalization={"mean": mean, "std": std})
    return market, pg.ModelStrategy(bundle=str(path), weight=0.1)


def test_model_backtest_records_every_hold_with_its_reason(trained):
    market, strategy = trained
    res = pg.backtest(market, strategy, {"fees_bps": 5})
    assert res.trades.height > 0
    holds = res.extra["holds"]
    entries, exits = res.extra["intents"].entries, res.extra["intents"].exits
    # every row without a raw buy or sell signal is a recorded HOLD, and nothing else is
    assert holds.height == (~(entries | exits)).sum()
    assert set(holds["reason"].unique()) <= {"hold", "low_confidence", "missing_features",
                                             "inference_error"}
    warm = holds.filter(pl.col("time") == market.time[0])
    assert warm.height == len(market.symbols) and set(warm["reason"]) == {"missing_features"}
    assert res.config["min_bars_between"] == 2


def test_batch_and_step_inference_decide_the_same_on_every_row(trained):
    market, strategy = trained
    batch = pg.backtest(market, strategy, {"fees_bps": 5})
    driver = pg.StepDriver(market, strategy, {"fees_bps": 5})
    rows = [driver.step() for _ in range(len(market.time))]
    step_entries = np.concatenate([r.intents.entries for r in rows])
    step_exits = np.concatenate([r.intents.exits for r in rows])
    assert np.array_equal(step_entries, batch.extra["intents"].entries)
    assert np.array_equal(step_exits, batch.extra["intents"].exits)
    assert driver.result().trades.equals(batch.trades)


def test_model_strategy_is_point_in_time(trained):
    market, strategy = trained
    report = pg.check_point_in_time(market, strategy, {"fees_bps": 5}, cutoffs=3)
    assert report.ok, str(report)


def test_bundle_whose_features_cannot_be_built_fails_before_the_run(trained, tmp_path):
    import json
    from pathlib import Path

    market, strategy = trained
    meta = json.loads((Path(strategy.bundle) / "metadata.json").read_text())
    meta["features"][0]["field"] = "vwap"
    target = tmp_path / "bad"
    target.mkdir()
    (target / "metadata.json").write_text(json.dumps(meta))
    (target / "model.pt").write_bytes((Path(strategy.bundle) / "model.pt").read_bytes())
    with pytest.raises(Exception, match="vwap"):
        pg.backtest(market, pg.ModelStrategy(bundle=str(target)))


def test_model_strategy_streams_and_resumes_bit_for_bit(trained, tmp_path):
    import warnings

    from pitgrid.drivers.step import SlowPathWarning

    market, strategy = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowPathWarning)
        driver = pg.StepDriver(market, strategy, {"fees_bps": 5})
    driver.run(until=market.time[100])
    driver.save(tmp_path / "paper")
    with np.load(tmp_path / "paper" / "state.npz", allow_pickle=False) as z:
        assert any(k.startswith("stream_window") for k in z.files)  # the model's window
    resumed = pg.StepDriver.load(tmp_path / "paper", market, strategy).run()
    batch = pg.backtest(market, strategy, {"fees_bps": 5})
    assert np.array_equal(resumed.equity.values, batch.equity.values)
    assert resumed.trades.equals(batch.trades)
