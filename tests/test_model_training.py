"""Training frames: the features a model is trained on are the ones ModelStrategy feeds it."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
import pitgrid.kernels as K
from pitgrid.models import TrainingFrame, save_bundle, training_frame
from pitgrid.models.architectures import build_model
from pitgrid.models.features import as_specs

torch = pytest.importorskip("torch")

FEATURES = [
    {"name": "r1", "kernel": "simple_returns", "params": {}, "field": "close"},
    {"name": "mom5", "kernel": "momentum", "params": {"window": 5}, "field": "close"},
    {"name": "atr5", "kernel": "atr", "params": {"window": 5}, "field": ["high", "low", "close"]},
    {"name": "vz10", "kernel": "rolling_zscore", "params": {"window": 10}, "field": "volume"},
]
SPLITS = {(100, 0): 2.0, (180, 3): 3.0}  # (bar, symbol): ratio


def split_market(n_time: int = 240, n_sym: int = 6, seed: int = 3) -> pg.MarketData:
    """Synthetic prices with as-traded splits: prices drop by the ratio, volume rises by it."""
    ds = pg.synthetic_prices(n_time, n_sym, seed=seed)
    ratio = np.ones((n_time, n_sym))
    for (t, s), r in SPLITS.items():
        ratio[t, s] = r
    factor = np.cumprod(ratio, axis=0)
    for f in ("open", "high", "low", "close"):
        ds[f] = ds[f] / factor
    ds["volume"] = ds["volume"] * factor
    ds["split_ratio"] = (("time", "symbol"), ratio)
    return pg.MarketData(ds)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    market = split_market()
    frame = training_frame(market, FEATURES, horizon=5)
    cut = market.time[149]
    norm = frame.normalization(end=cut)
    s = frame.samples(end=cut, normalization=norm)
    labels = np.digitize(s.forward_return, np.quantile(s.forward_return, [1 / 3, 2 / 3]))
    torch.manual_seed(0)
    net = build_model("mlp", {"hidden": [8]}, n_features=len(FEATURES), lookback=1, n_classes=3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = torch.from_numpy(s.x), torch.from_numpy(labels)
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    path = save_bundle(net, tmp_path_factory.mktemp("bundle") / "mlp", architecture="mlp",
                       settings={"hidden": [8]}, features=FEATURES, lookback=1,
                       classes=["sell", "hold", "buy"], decision={"threshold": 0.36},
                       normalization=norm)
    return market, frame, pg.ModelStrategy(bundle=str(path), weight=0.1)


def test_batch_strategy_feeds_the_model_the_training_features(trained, monkeypatch):
    import pitgrid.models.strategy as strategy_module

    market, frame, strategy = trained
    seen = []
    real = strategy_module.predict_proba

    def spy(bundle, features, **kw):
        seen.append(np.array(features))
        return real(bundle, features, **kw)

    monkeypatch.setattr(strategy_module, "predict_proba", spy)
    pg.clear_feature_cache()
    res = pg.backtest(market, strategy, {"fees_bps": 5})
    assert len(seen) == 1 and res.trades.height > 0
    np.testing.assert_array_equal(seen[0], frame.features)


def test_step_driver_feeds_the_model_the_training_features(trained, monkeypatch):
    import pitgrid.models.stream as stream_module

    market, frame, strategy = trained
    rows = []
    real = stream_module.predict_step

    def spy(bundle, window, **kw):
        rows.append(np.array(window[-1]))
        return real(bundle, window, **kw)

    monkeypatch.setattr(stream_module, "predict_step", spy)
    driver = pg.StepDriver(market, strategy, {"fees_bps": 5})
    rows.clear()  # the driver's own probe of the stream when it is built
    for _ in range(len(market.time)):
        driver.step()
    np.testing.assert_array_equal(np.stack(rows), frame.features)


def test_features_on_raw_prices_would_differ_at_the_splits(trained):
    market, frame, _ = trained
    raw = K.simple_returns(np.asarray(market.ds["close"].values, dtype=np.float64))
    for (t, s), ratio in SPLITS.items():
        assert raw[t, s] == pytest.approx(1 / ratio - 1, abs=0.1)  # what a raw-price trainer sees
        assert abs(frame.features[t, s, 0]) < 0.2                   # what the strategy sees


def test_forward_return_is_the_split_adjusted_return(trained):
    market, frame, _ = trained
    close, ratio = market.ds["close"].values, market.ds["split_ratio"].values
    h = frame.horizon
    for t in range(len(market.time) - h):
        for s in range(len(market.symbols)):
            splits = np.prod(ratio[t + 1: t + h + 1, s])  # shares per old share after the splits
            expected = close[t + h, s] * splits / close[t, s] - 1
            assert frame.forward_return[t, s] == pytest.approx(expected, rel=1e-12)
    assert np.isnan(frame.forward_return[-h:]).all()


def reference_samples(frame: TrainingFrame, lookback: int, first: int, end: int,
                      norm: dict | None) -> tuple[list, list, list, list]:
    """Row by row: a window ending at t is kept when it is finite and its label is known by end."""
    xs, ys, ts, ss = [], [], [], []
    for t in range(max(first, lookback - 1), end - frame.horizon + 1):
        for s in range(len(frame.symbols)):
            w = frame.features[t - lookback + 1: t + 1, s].astype(np.float32)
            if norm is not None:
                w = (w - np.float32(norm["mean"])) / np.float32(norm["std"])
            y = frame.forward_return[t, s]
            if np.isfinite(w).all() and np.isfinite(y):
                xs.append(w), ys.append(y), ts.append(t), ss.append(s)
    return xs, ys, ts, ss


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), lookback=st.integers(1, 4), first=st.integers(0, 12),
       end=st.integers(0, 29), horizon=st.integers(1, 4), normalized=st.booleans())
def test_samples_match_a_row_by_row_reference(seed, lookback, first, end, horizon, normalized):
    rng = np.random.default_rng(seed)
    n_time, n_sym, n_feat = 30, 3, 2
    x = rng.normal(size=(n_time, n_sym, n_feat)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    y = rng.normal(size=(n_time, n_sym))
    y[rng.random(y.shape) < 0.05] = np.nan
    y[n_time - horizon:] = np.nan
    times = np.arange(n_time).astype("datetime64[D]").astype("datetime64[ns]")
    frame = TrainingFrame(features=x, forward_return=y, specs=as_specs(FEATURES[:n_feat]),
                          time=times, symbols=np.array(["A", "B", "C"]), horizon=horizon)
    norm = {"mean": rng.normal(size=n_feat).tolist(),
            "std": rng.uniform(0.5, 2, n_feat).tolist()} if normalized else None
    got = frame.samples(lookback=lookback, start=times[first], end=times[end], normalization=norm)
    xs, ys, ts, ss = reference_samples(frame, lookback, first, end, norm)
    assert got.time.tolist() == ts and got.symbol.tolist() == ss
    np.testing.assert_array_equal(got.forward_return, np.array(ys, dtype=np.float64))
    if xs:
        np.testing.assert_array_equal(got.x, np.stack(xs))
    else:
        assert got.x.shape == (0, lookback, n_feat)


def test_normalization_and_samples_read_nothing_after_end(trained):
    market, frame, _ = trained
    end = 120
    scrambled = frame.features.copy()
    scrambled[end + 1:] = np.random.default_rng(0).normal(size=scrambled[end + 1:].shape)
    ret = frame.forward_return.copy()
    ret[end - frame.horizon + 1:] = 7.0  # labels not known by end
    other = TrainingFrame(scrambled, ret, frame.specs, frame.time, frame.symbols, frame.horizon)
    cut = market.time[end]
    assert other.normalization(end=cut) == frame.normalization(end=cut)
    a, b = frame.samples(lookback=3, end=cut), other.samples(lookback=3, end=cut)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.forward_return, b.forward_return)


def test_bad_arguments_are_one_line_errors(trained):
    market, frame, _ = trained
    with pytest.raises(ValueError, match="horizon must be a whole number"):
        training_frame(market, FEATURES, horizon=0)
    with pytest.raises(ValueError, match=r"features\[0\]: kernel: unknown kernel 'nope'"):
        training_frame(market, [{"name": "x", "kernel": "nope", "field": "close"}])
    with pytest.raises(ValueError, match=r"features\[0\] \('x'\)\.field: the data has no field 'vwap'"):
        training_frame(market, [{"name": "x", "kernel": "simple_returns", "field": "vwap"}])
    with pytest.raises(ValueError, match="lookback must be"):
        frame.samples(lookback=0)


def test_a_backtest_carries_the_weights_hash(trained):
    import hashlib
    from pathlib import Path

    market, _, strategy = trained
    digest = hashlib.sha256((Path(strategy.bundle) / "model.pt").read_bytes()).hexdigest()
    res = pg.backtest(market, strategy, {"fees_bps": 5})
    assert res.extra["model_sha256"] == digest == res.extra["strategy"]["model_sha256"]


@pytest.mark.parametrize("progress, shown", [(True, True), (False, False), (None, False)])  # None: a terminal only
def test_batch_inference_shows_progress_only_when_asked(trained, capsys, progress, shown):
    from pitgrid.models import predict_proba

    _, frame, strategy = trained
    bundle = pg.ModelBundle.load(strategy.bundle)
    predict_proba(bundle, frame.features, chunk_rows=60, progress=progress)  # 24 chunks
    assert ("inference" in capsys.readouterr().err) is shown


def test_normalization_is_fitted_on_the_sample_rows(trained):
    market, frame, _ = trained
    cut = market.time[150]
    rows = frame.samples(end=cut).x[:, 0, :].astype(np.float64)
    norm = frame.normalization(end=cut)
    np.testing.assert_allclose(norm["mean"], rows.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(norm["std"], rows.std(axis=0), rtol=1e-10)
