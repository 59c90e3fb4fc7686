"""Model bundles, features, batched and step inference, the decision function (issue 6)."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import pitgrid
import pitgrid.kernels as K
from pitgrid.models import (
    REASONS, BundleError, DecisionFunction, ModelBundle, build_features, feature_window,
    predict_proba, predict_step, reason_names, save_bundle,
)
from pitgrid.models.architectures import build_model
from pitgrid.models.inference import STATUS_ERROR, STATUS_MISSING, STATUS_OK

torch.set_num_threads(1)

CLASSES = ["sell", "hold", "buy"]
FEATURES = [
    {"name": "r1", "kernel": "simple_returns", "params": {}, "field": "close"},
    {"name": "mom5", "kernel": "momentum", "params": {"window": 5}, "field": "close"},
    {"name": "rsi14", "kernel": "rsi", "params": {"window": 14}, "field": "close"},
    {"name": "z10", "kernel": "rolling_zscore", "params": {"window": 10}, "field": "close"},
]
ARCHS = {
    "mlp": ({"hidden": [8, 8]}, 1),
    "conv1d": ({"channels": [6, 4], "kernel_size": 3}, 5),
    "gru": ({"hidden": 6}, 5),
}


def make_bundle(path, architecture="mlp", *, features=FEATURES, normalization=True, seed=0,
                decision=None, settings=None, lookback=None):
    default_settings, default_lookback = ARCHS[architecture]
    settings = settings or default_settings
    lookback = lookback or default_lookback
    torch.manual_seed(seed)
    net = build_model(architecture, settings, n_features=len(features), lookback=lookback,
                      n_classes=3)
    norm = None
    if normalization:
        rng = np.random.default_rng(seed)
        norm = {"mean": rng.normal(size=len(features)).tolist(),
                "std": rng.uniform(0.5, 2.0, len(features)).tolist()}
    save_bundle(net, path, architecture=architecture, settings=settings, features=features,
                lookback=lookback, classes=CLASSES,
                decision=decision or {"threshold": 0.34, "min_bars_between": 2},
                normalization=norm)
    return ModelBundle.load(path), net


def random_features(n_time, n_sym, n_feat, seed=0, nan_frac=0.02):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n_time, n_sym, n_feat)).astype(np.float32) * 2
    f[rng.random(f.shape) < nan_frac] = np.nan
    return f


def step_decisions(fn, probs, status):
    """A stand-in for the engine's loop: track a long-only position from the signals."""
    n_time, n_sym = probs.shape[:2]
    position, last = np.zeros(n_sym), np.full(n_sym, -1)
    signals = np.zeros((n_time, n_sym), np.int8)
    reasons = np.empty((n_time, n_sym), dtype=object)
    for t in range(n_time):
        signals[t], reasons[t] = fn(probs[t], position, last, t, status=status[t])
        traded = signals[t] != 0
        position = np.where(signals[t] > 0, 1.0, np.where(signals[t] < 0, 0.0, position))
        last = np.where(traded, t, last)
    return signals, reasons


# ---------------------------------------------------------------------------- bundles


def test_import_pitgrid_and_models_does_not_import_torch():
    code = "import sys, pitgrid, pitgrid.models; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_save_load_round_trip_and_immutability(tmp_path):
    bundle, net = make_bundle(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert meta["format_version"] == 1 and meta["architecture"] == "mlp"
    assert meta["settings"] == {"hidden": [8, 8], "activation": "relu", "dropout": 0.0}
    assert meta["features"] == FEATURES
    assert bundle.feature_names == ("r1", "mom5", "rsi14", "z10")
    assert bundle.classes == tuple(CLASSES) and bundle.lookback == 1
    assert bundle.decision == DecisionFunction(0.34, 2, False, tuple(CLASSES))
    assert not bundle.module.training
    x = torch.randn(5, 1, 4)
    with torch.no_grad():
        torch.testing.assert_close(bundle.module(x), net.eval()(x))
    # the same files load to the same identity
    again = ModelBundle.load(tmp_path / "m")
    assert again.weights_sha256 == bundle.weights_sha256
    assert again.metadata_sha256 == bundle.metadata_sha256

    with pytest.raises(dataclasses.FrozenInstanceError):
        bundle.lookback = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        bundle.decision.threshold = 0.9
    with pytest.raises(TypeError):
        bundle.settings["hidden"] = (4,)
    with pytest.raises(ValueError):
        bundle.normalization.mean[0] = 1.0
    assert not any(p.requires_grad for p in bundle.module.parameters())


def test_model_pt_holds_plain_tensors_only(tmp_path):
    make_bundle(tmp_path / "m")
    state = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert all(isinstance(k, str) and type(v) is torch.Tensor for k, v in state.items())


def test_save_refuses_weights_that_do_not_fit_the_architecture(tmp_path):
    net = build_model("mlp", {"hidden": [8]}, n_features=3, lookback=1, n_classes=3)
    with pytest.raises(BundleError, match=r"model\.pt: net\.0\.weight: has shape \(8, 3\)"):
        save_bundle(net, tmp_path / "m", architecture="mlp", settings={"hidden": [8]},
                    features=FEATURES, lookback=1, classes=CLASSES, decision={})
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------- failures


def _edit_metadata(path, edit):
    file = path / "metadata.json"
    meta = json.loads(file.read_text())
    edit(meta)
    file.write_text(json.dumps(meta))


@pytest.mark.parametrize("edit, field, message", [
    (lambda m: m.update(format_version=2), "format_version", "unsupported format_version 2"),
    (lambda m: m.update(architecture="transformer"), "architecture", "unknown architecture"),
    (lambda m: m["settings"].update(hidden=[-1]), "settings", "hidden must be"),
    (lambda m: m.update(normalisation=None), "normalisation", "unknown key"),
    (lambda m: m.pop("classes"), "classes", "required key is missing"),
    (lambda m: m.update(classes=["down", "up"]), "classes", "include 'buy' and 'sell'"),
    (lambda m: m.update(lookback=0), "lookback", "positive integer"),
    (lambda m: m["decision"].update(threshold=1.5), "decision", "threshold"),
    (lambda m: m["features"][1].update(kernel="momentumm"), "features[1] ('mom5')",
     "unknown kernel"),
    (lambda m: m["features"][1].update(params={"wnd": 5}), "features[1] ('mom5')", "do not fit"),
    (lambda m: m["features"][0].pop("field"), "features[0] ('r1')", "field: required"),
    (lambda m: m["features"][0].update(name="mom5"), "features", "duplicate feature names"),
    (lambda m: m["normalization"].update(std=[1, 1, 0, 1]), "normalization", "std must be > 0"),
    (lambda m: m["normalization"].update(mean=[0.0]), "normalization", "4 finite numbers"),
])
def test_bad_metadata_is_refused_naming_file_and_field(tmp_path, edit, field, message):
    make_bundle(tmp_path)
    _edit_metadata(tmp_path, edit)
    with pytest.raises(BundleError) as info:
        ModelBundle.load(tmp_path)
    err = info.value
    assert err.file.name == "metadata.json" and err.field == field
    assert message in str(err) and "metadata.json" in str(err)


def test_weights_that_do_not_match_metadata_are_refused(tmp_path):
    make_bundle(tmp_path)
    _edit_metadata(tmp_path, lambda m: m["settings"].update(hidden=[16, 8]))
    with pytest.raises(BundleError, match=r"model\.pt: net\.0\.weight: has shape \(8, 4\)"):
        ModelBundle.load(tmp_path)


@pytest.mark.parametrize("name", ["metadata.json", "model.pt"])
def test_missing_file_is_refused(tmp_path, name):
    make_bundle(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(BundleError, match=rf"{name}: missing"):
        ModelBundle.load(tmp_path)


def test_corrupt_files_are_refused(tmp_path):
    make_bundle(tmp_path)
    meta = (tmp_path / "metadata.json").read_text()
    (tmp_path / "metadata.json").write_text(meta[: len(meta) // 2])
    with pytest.raises(BundleError, match=r"metadata\.json: is not valid JSON"):
        ModelBundle.load(tmp_path)
    (tmp_path / "metadata.json").write_text(meta)
    (tmp_path / "model.pt").write_bytes(b"not a torch file at all" * 10)
    with pytest.raises(BundleError, match=r"model\.pt: is not a torch zip archive"):
        ModelBundle.load(tmp_path)


def test_non_tensor_weights_are_refused(tmp_path):
    _, net = make_bundle(tmp_path)
    state = dict(net.state_dict())
    state["net.0.weight"] = [[0.0] * 4] * 8  # allowed by weights_only, but not a tensor
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(BundleError, match=r"model\.pt: net\.0\.weight: is a list, not a tensor"):
        ModelBundle.load(tmp_path)


class _WritesAFile:
    """Unpickling this calls open(path, "w"): code execution at load time."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_code_is_not_executed(tmp_path):
    make_bundle(tmp_path / "m")
    # the payload is armed: an unrestricted load does run it
    armed, control = tmp_path / "armed.pt", tmp_path / "control_written"
    torch.save({"w": _WritesAFile(control)}, armed)
    torch.load(armed, weights_only=False)
    assert control.exists()

    marker = tmp_path / "pwned"
    torch.save({"net.0.weight": _WritesAFile(marker)}, tmp_path / "m" / "model.pt")
    refused = r"model\.pt: cannot be loaded as plain tensors with weights_only=True"
    with pytest.raises(BundleError, match=refused):
        ModelBundle.load(tmp_path / "m")
    assert not marker.exists()


# ---------------------------------------------------------------------------- features


def test_build_features_matches_the_kernels(tmp_path):
    feats = FEATURES + [
        {"name": "atr5", "kernel": "atr", "params": {"window": 5},
         "field": ["high", "low", "close"]},
        {"name": "macd_hist", "kernel": "macd", "params": {}, "field": "close", "output": "hist"},
    ]
    bundle, _ = make_bundle(tmp_path, features=feats, normalization=False)
    ds = pitgrid.synthetic_prices(60, 4, seed=3)
    got = build_features(bundle, ds)
    close = ds["close"].values
    assert got.shape == (60, 4, 6) and got.dtype == np.float32
    expected = [K.simple_returns(close), K.momentum(close, 5), K.rsi(close, 14),
                K.rolling_zscore(close, 10),
                K.atr(ds["high"].values, ds["low"].values, close, 5), K.macd(close).hist]
    for i, e in enumerate(expected):
        np.testing.assert_array_equal(got[:, :, i], e.astype(np.float32))


def test_features_that_cannot_be_built_fail_before_the_run(tmp_path):
    ds = pitgrid.synthetic_prices(30, 3, seed=0)
    feats = FEATURES + [{"name": "vw", "kernel": "sma", "params": {"window": 3}, "field": "vwap"}]
    bundle, _ = make_bundle(tmp_path / "a", features=feats, normalization=False)
    with pytest.raises(BundleError, match=r"metadata\.json: features\[4\] \('vw'\)\.field: "
                                          r"the data has no field 'vwap'"):
        build_features(bundle, ds)

    # a parameter the kernel refuses fails when the bundle is saved, naming the feature
    feats = [dict(FEATURES[0]),
             {"name": "m0", "kernel": "momentum", "params": {"window": 0}, "field": "close"}]
    with pytest.raises(BundleError,
                       match=r"metadata\.json: features\[1\] \('m0'\)\.params: momentum refused"):
        make_bundle(tmp_path / "b", features=feats, normalization=False)
    assert not (tmp_path / "b").exists()
    # and when a bundle written elsewhere is loaded
    make_bundle(tmp_path / "c", features=FEATURES[:2], normalization=False)
    meta = json.loads((tmp_path / "c" / "metadata.json").read_text())
    meta["features"][1]["params"]["window"] = 0
    (tmp_path / "c" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"features\[1\] \('mom5'\)\.params: momentum refused"):
        ModelBundle.load(tmp_path / "c")


# ---------------------------------------------------------------------------- inference


@pytest.mark.parametrize("architecture", sorted(ARCHS))
def test_batch_and_step_agree_on_every_row(tmp_path, architecture):
    bundle, _ = make_bundle(tmp_path, architecture)
    n_time, n_sym = 30, 7
    features = random_features(n_time, n_sym, 4, seed=1)
    # chunk_rows=50: several chunks of 7 time rows, windows that cross chunk edges
    probs, status = predict_proba(bundle, features, chunk_rows=50, threads=1)
    assert probs.dtype == np.float32 and status.dtype == np.int8
    step = [predict_step(bundle, feature_window(features, t, bundle.lookback))
            for t in range(n_time)]
    step_probs = np.stack([s.probs for s in step])
    step_status = np.stack([s.status for s in step])
    np.testing.assert_array_equal(step_status, status)
    np.testing.assert_allclose(step_probs, probs, rtol=1e-5, atol=1e-6)

    # a row is missing exactly when its window reaches before the data or holds a NaN
    bad = np.isnan(features).any(axis=2)
    lb = bundle.lookback
    expect_missing = np.array([[t < lb - 1 or bad[max(0, t - lb + 1):t + 1, j].any()
                                for j in range(n_sym)] for t in range(n_time)])
    np.testing.assert_array_equal(status == STATUS_MISSING, expect_missing)
    assert np.isnan(probs[expect_missing]).all() and np.isfinite(probs[~expect_missing]).all()
    np.testing.assert_allclose(probs[~expect_missing].sum(axis=-1), 1.0, rtol=1e-5)

    fn = bundle.decision
    for a, b in zip(fn.raw_signals(probs), fn.raw_signals(step_probs)):
        np.testing.assert_array_equal(a, b)
    sig_a, why_a = step_decisions(fn, probs, status)
    sig_b, why_b = step_decisions(fn, step_probs, step_status)
    np.testing.assert_array_equal(sig_a, sig_b)
    np.testing.assert_array_equal(why_a, why_b)


@pytest.mark.parametrize("architecture", ["conv1d", "gru"])
def test_scrambling_rows_after_t_changes_nothing_up_to_t(tmp_path, architecture):
    bundle, _ = make_bundle(tmp_path, architecture)
    ds = pitgrid.synthetic_prices(80, 6, seed=2)
    cut = 50
    scrambled = ds.copy(deep=True)
    rng = np.random.default_rng(0)
    for name in ("open", "high", "low", "close", "volume"):
        values = scrambled[name].values
        values[cut + 1:] = rng.permutation(values[cut + 1:].ravel()).reshape(values[cut + 1:].shape)
    probs, status = predict_proba(bundle, build_features(bundle, ds), chunk_rows=64)
    probs2, status2 = predict_proba(bundle, build_features(bundle, scrambled), chunk_rows=64)
    np.testing.assert_allclose(probs2[: cut + 1], probs[: cut + 1], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(status2[: cut + 1], status[: cut + 1])
    assert not np.allclose(probs2[cut + 1:], probs[cut + 1:], equal_nan=True)  # the scramble bites
    sig, why = step_decisions(bundle.decision, probs, status)
    sig2, why2 = step_decisions(bundle.decision, probs2, status2)
    np.testing.assert_array_equal(sig2[: cut + 1], sig[: cut + 1])
    np.testing.assert_array_equal(why2[: cut + 1], why[: cut + 1])


def test_a_failing_chunk_is_recorded_and_its_rows_hold(tmp_path):
    bundle, _ = make_bundle(tmp_path, normalization=False)
    features = random_features(40, 5, 4, seed=4, nan_frac=0.0)
    features[22, 3, 0] = 1e30  # the hook below fails on the chunk holding this row

    def explode(module, args):
        if (args[0] > 1e29).any():
            raise RuntimeError("boom")

    handle = bundle.module.register_forward_pre_hook(explode)
    try:
        pred = predict_proba(bundle, features, chunk_rows=25)  # 5 time rows per chunk
    finally:
        handle.remove()
    failed = np.zeros((40, 5), bool)
    failed[20:25] = True
    np.testing.assert_array_equal(pred.status == STATUS_ERROR, failed)
    assert (pred.status[~failed] == STATUS_OK).all()
    assert np.isnan(pred.probs[failed]).all() and np.isfinite(pred.probs[~failed]).all()
    assert pred.errors == ("rows t=20..24: RuntimeError: boom",)
    reasons = reason_names(bundle.decision.model_reasons(pred.probs, pred.status))
    assert (reasons[failed] == "inference_error").all()


def test_probability_cache(tmp_path):
    bundle, _ = make_bundle(tmp_path / "m")
    features = random_features(20, 4, 4)
    cache = tmp_path / "cache"
    first = predict_proba(bundle, features, cache_dir=cache, fingerprint="data-v1")
    second = predict_proba(bundle, features, cache_dir=cache, fingerprint="data-v1")
    assert not first.from_cache and second.from_cache
    np.testing.assert_array_equal(first.probs, second.probs)
    np.testing.assert_array_equal(first.status, second.status)
    assert len(list(cache.glob("*.npy"))) == 2
    assert not predict_proba(bundle, features, cache_dir=cache, fingerprint="data-v2").from_cache
    other, _ = make_bundle(tmp_path / "other", seed=1)
    assert not predict_proba(other, features, cache_dir=cache, fingerprint="data-v1").from_cache
    with pytest.raises(ValueError, match="both cache_dir and fingerprint"):
        predict_proba(bundle, features, cache_dir=cache)


def test_feature_shape_must_match_the_bundle(tmp_path):
    bundle, _ = make_bundle(tmp_path, "gru")
    with pytest.raises(ValueError, match=r"features must be \(time, symbol, 4\)"):
        predict_proba(bundle, np.zeros((10, 2, 3), np.float32))
    with pytest.raises(ValueError, match="lookback=5 rows"):
        predict_step(bundle, np.zeros((4, 2, 4), np.float32))


# ---------------------------------------------------------------------------- decisions


def test_decision_reasons():
    fn = DecisionFunction(threshold=0.5, min_bars_between=3)
    buy, sell, hold, weak_buy = [0.1, 0.2, 0.7], [0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]
    cases = [  # probs, position, last trade bar, signal, reason
        (buy, 0.0, -1, 1, "buy"), (buy, -2.0, -1, 1, "buy"), (buy, 3.0, -1, 0, "already_long"),
        (buy, 0.0, 8, 0, "min_bars"), (buy, 0.0, 7, 1, "buy"),
        (sell, 3.0, -1, -1, "sell"), (sell, 0.0, -1, 0, "flat"), (sell, -1.0, -1, 0, "no_short"),
        (sell, 3.0, 9, 0, "min_bars"), (hold, 0.0, -1, 0, "hold"),
        (weak_buy, 0.0, -1, 0, "low_confidence"),
        ([np.nan] * 3, 0.0, -1, 0, "missing_features"),
    ]
    probs, pos, last, want_sig, want_why = map(np.array, zip(*cases))
    signal, reason = fn(probs, pos, last, t=10)
    assert signal.dtype == np.int8
    assert signal.tolist() == want_sig.tolist() and reason.tolist() == want_why.tolist()

    short = DecisionFunction(allow_short=True)
    signal, reason = short(np.array([sell, sell]), np.array([0.0, -1.0]), np.array([-1, -1]), t=0)
    assert signal.tolist() == [-1, 0] and reason.tolist() == ["sell", "already_short"]
    status = np.array([STATUS_MISSING, STATUS_ERROR], np.int8)
    _, reason = fn(np.full((2, 3), np.nan), np.zeros(2), np.full(2, -1), t=0, status=status)
    assert reason.tolist() == ["missing_features", "inference_error"]


def test_call_is_raw_signals_plus_position_filters():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet([1, 1, 1], size=(50, 40))
    fn = DecisionFunction(threshold=0.45, min_bars_between=4)
    entries, exits = fn.raw_signals(probs)
    positions = rng.choice([-1.0, 0.0, 2.0], size=(50, 40))
    last = rng.integers(-1, 50, size=(50, 40))
    for t in range(50):
        signal, reason = fn(probs[t], positions[t], last[t], t)
        assert not ((signal == 1) & ~entries[t]).any() and not ((signal == -1) & ~exits[t]).any()
        assert set(reason[(entries[t] | exits[t]) & (signal == 0)]) <= {
            "already_long", "flat", "no_short", "min_bars"}
    unfiltered = DecisionFunction(threshold=0.45, allow_short=True)
    signal, _ = unfiltered(probs[0], np.zeros(40), np.full(40, -1), 0)
    np.testing.assert_array_equal(signal, entries[0].astype(np.int8) - exits[0].astype(np.int8))


@pytest.mark.parametrize("classes", [("sell", "hold", "buy"), ("hold", "buy", "sell", "other")])
def test_model_reasons_match_an_argmax_reference(classes):
    rng = np.random.default_rng(6)
    probs = rng.choice([0.1, 0.2, 0.3, 0.4], size=(3000, len(classes)))  # many ties
    probs[rng.random(probs.shape) < 0.01] = np.nan
    fn = DecisionFunction(threshold=0.3, classes=classes)
    expected = []
    for row in probs:
        label = classes[int(np.argmax(row))]
        if np.isnan(row).any():
            expected.append("missing_features")
        elif label in ("buy", "sell"):
            expected.append(label if row.max() >= 0.3 else "low_confidence")
        else:
            expected.append("hold")
    assert reason_names(fn.model_reasons(probs)).tolist() == expected


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": 1.5}, "threshold"), ({"min_bars_between": -1}, "min_bars_between"),
    ({"allow_short": "yes"}, "allow_short"), ({"classes": ("down", "up")}, "'buy' and 'sell'"),
])
def test_decision_settings_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecisionFunction(**kwargs)


# ---------------------------------------------------------------------------- end to end


def test_train_save_load_predict_decide(tmp_path):
    """Train a tiny MLP on synthetic data, then run it over the universe like a driver would."""
    ds = pitgrid.synthetic_prices(500, 30, seed=7)
    close = ds["close"].values
    feats = FEATURES + [{"name": "vz20", "kernel": "rolling_zscore", "params": {"window": 20},
                         "field": "volume"}]
    spec_bundle, _ = make_bundle(tmp_path / "spec", features=feats, normalization=False)
    x = build_features(spec_bundle, ds)

    # labels: the next 5 bars' return in terciles; trained and normalised on rows < 300 only
    horizon, split = 5, 300
    fwd = np.full_like(close, np.nan)
    fwd[:-horizon] = close[horizon:] / close[:-horizon] - 1
    train_x, train_fwd = x[:split - horizon].reshape(-1, 5), fwd[:split - horizon].ravel()
    keep = np.isfinite(train_x).all(axis=1) & np.isfinite(train_fwd)
    train_x, train_fwd = train_x[keep], train_fwd[keep]
    lo, hi = np.quantile(train_fwd, [1 / 3, 2 / 3])
    labels = np.digitize(train_fwd, [lo, hi])  # 0 sell, 1 hold, 2 buy
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)

    torch.manual_seed(0)
    net = build_model("mlp", {"hidden": [16]}, n_features=5, lookback=1, n_classes=3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt = torch.from_numpy((train_x - mean) / std).float()[:, None, :]
    yt = torch.from_numpy(labels)
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        loss.backward()
        opt.step()
    assert loss.item() < np.log(3)  # learnt something beyond the uniform guess

    save_bundle(net, tmp_path / "model", architecture="mlp", settings={"hidden": [16]},
                features=feats, lookback=1, classes=CLASSES,
                decision={"threshold": 0.4, "min_bars_between": 3},
                normalization={"mean": mean, "std": std})
    bundle = ModelBundle.load(tmp_path / "model")
    probs, status = predict_proba(bundle, build_features(bundle, ds), threads=1)
    assert probs.shape == (500, 30, 3)
    warmup = 19  # the 20-bar volume z-score is the last feature to start
    assert (status[:warmup] == STATUS_MISSING).all() and (status[warmup:] == STATUS_OK).all()

    entries, exits = bundle.decision.raw_signals(probs)
    assert entries.any() and exits.any() and not (entries & exits).any()
    signals, reasons = step_decisions(bundle.decision, probs, status)
    assert set(np.unique(reasons)) <= set(REASONS)
    hold = signals == 0
    assert not np.isin(reasons[hold], ["buy", "sell"]).any()  # every HOLD says why
    assert (reasons[:warmup] == "missing_features").all()
    assert {"buy", "sell", "already_long", "flat", "hold"} <= set(np.unique(reasons))
    assert ((signals == 1) <= entries).all() and ((signals == -1) <= exits).all()
