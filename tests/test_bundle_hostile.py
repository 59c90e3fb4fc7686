"""Hostile model bundles (issue 11, item 13): every one is refused with a BundleError naming
the file and the rule, before the network is built, or accepted as documented."""
from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

import pitgrid.models.architectures as arch
from pitgrid.models import BundleError, ModelBundle, save_bundle
from pitgrid.models.architectures import build_model, state_shapes

torch.set_num_threads(1)

FEATURES = [{"name": f"r{i}", "kernel": "momentum", "params": {"window": i + 1}, "field": "close"}
            for i in range(4)]
CLASSES = ["sell", "hold", "buy"]


def _bundle(path, architecture="mlp", settings=None, lookback=1):
    settings = settings or {"hidden": [8]}
    torch.manual_seed(0)
    net = build_model(architecture, settings, n_features=4, lookback=lookback, n_classes=3)
    save_bundle(net, path, architecture=architecture, settings=settings, features=FEATURES,
                lookback=lookback, classes=CLASSES, decision={"threshold": 0.5},
                normalization={"mean": [0.0] * 4, "std": [1.0] * 4})
    return net


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    """A valid bundle; from here on building a network fails the test, so every refusal
    below is shown to happen before anything the size of the network is allocated."""
    _bundle(tmp_path)

    def no_build(*args, **kwargs):
        raise AssertionError("the network was built before the bundle was checked")

    monkeypatch.setattr(arch, "build_model", no_build)
    return tmp_path


def _refused(path, file, field=None):
    with pytest.raises(BundleError) as info:
        ModelBundle.load(path)
    err = info.value
    assert err.file == path / file and str(err).startswith(f"{path / file}: ")
    assert "\n" not in str(err)
    if field is not None:
        assert err.field == field
    return str(err)


# ---------------------------------------------------------------------------- metadata.json


def _meta(path):
    return json.loads((path / "metadata.json").read_text())


def _with(path, edit):
    meta = _meta(path)
    edit(meta)
    (path / "metadata.json").write_text(json.dumps(meta))


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def edit(meta):
        target = meta
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return edit


_MANY_FEATURES = [{"name": f"f{i}", "kernel": "simple_returns", "field": "close"}
                  for i in range(600)]
_TWENTY_FEATURES = _MANY_FEATURES[:20]


@pytest.mark.parametrize("edit, field, message", [
    # huge sizes in any field that sizes something
    (_set("lookback", 10**9), "lookback", "at most 1024"),
    (_set("settings", "hidden", [100_000]), "settings", "hidden must be an integer in [1, 4096]"),
    (_set("settings", "hidden", [8] * 17), "settings", "1 to 16 layer widths"),
    (_set("settings", "hidden", [4096] * 4), "settings", "at most 50000000 are allowed"),
    (lambda m: m.update(architecture="gru", settings={"hidden": 8, "layers": 10**6}),
     "settings", "layers must be an integer in [1, 16]"),
    (lambda m: m.update(architecture="gru", settings={"hidden": 10**6}),
     "settings", "hidden must be an integer in [1, 4096]"),
    (lambda m: m.update(architecture="conv1d", settings={"channels": [10**6]}),
     "settings", "channels must be an integer in [1, 4096]"),
    (lambda m: m.update(architecture="conv1d", settings={"channels": [4], "kernel_size": 10**9}),
     "settings", "kernel_size must be an integer in [1, 256]"),
    (lambda m: m.update(features=_MANY_FEATURES, normalization=None), "features",
     "has 600 features; at most 512"),
    (lambda m: m.update(features=_TWENTY_FEATURES, normalization=None, lookback=1000),
     "lookback", "20000 values per window; at most 8192"),
    (_set("classes", CLASSES + [f"c{i}" for i in range(100)]), "classes", "at most 64"),
    # wrong types where integers go, negative and zero sizes
    (_set("lookback", "5"), "lookback", "positive integer"),
    (_set("lookback", 5.0), "lookback", "positive integer"),
    (_set("lookback", True), "lookback", "positive integer"),
    (_set("lookback", -3), "lookback", "positive integer"),
    (_set("settings", "hidden", ["8"]), "settings", "hidden must be an integer"),
    (_set("settings", "hidden", [8.0]), "settings", "hidden must be an integer"),
    (_set("settings", "hidden", [True]), "settings", "hidden must be an integer"),
    (_set("settings", "hidden", [-8]), "settings", "hidden must be an integer"),
    (_set("settings", "hidden", [0]), "settings", "hidden must be an integer"),
    (_set("settings", "hidden", 8), "settings", "list of 1 to 16 layer widths"),
    (_set("settings", "dropout", "0.1"), "settings", "dropout must be a number in [0, 1)"),
    (_set("settings", "dropout", True), "settings", "dropout must be a number in [0, 1)"),
    (_set("settings", "activation", ["relu"]), "settings", "activation must be one of"),
    (_set("settings", [8]), "settings", "settings must be an object"),
    (_set("format_version", "1"), "format_version", "unsupported format_version"),
    (_set("format_version", True), "format_version", "unsupported format_version"),
    (_set("decision", "min_bars_between", 1.5), "decision", "min_bars_between"),
    (_set("decision", "allow_short", "yes"), "decision", "allow_short"),
    (_set("decision", "threshold", "0.5"), "decision", "threshold"),
    (_set("features", 0, "params", {"window": [5]}), "features[0] ('r0')", "params must be"),
    (_set("classes", "sell,hold,buy"), "classes", "list of at most 64 class labels"),
    # unknown architecture, including one that is not even a string
    (_set("architecture", "transformer"), "architecture", "unknown architecture"),
    (_set("architecture", ["mlp"]), "architecture", "unknown architecture"),
    # normalization: wrong types and shapes
    (_set("normalization", "mean", [0.0, 0.0, True, 0.0]), "normalization", "not booleans"),
    (_set("normalization", "mean", [0.0, 0.0, "0", 0.0]), "normalization", "not booleans"),
    (_set("normalization", "std", [[1.0]] * 4), "normalization", "not booleans"),
    (_set("normalization", "std", None), "normalization", "must be a list"),
])
def test_hostile_metadata_is_refused_before_anything_is_built(bundle, edit, field, message):
    _with(bundle, edit)
    assert message in _refused(bundle, "metadata.json", field)


def _raw_metadata(path, text):
    (path / "metadata.json").write_bytes(text if isinstance(text, bytes) else text.encode())


def _replace_value(path, key, text):
    """metadata.json with ``key``'s value replaced by raw JSON text (json.dumps cannot write it)."""
    meta = _meta(path)
    meta[key] = "@@"
    return json.dumps(meta).replace('"@@"', text)


@pytest.mark.parametrize("make, message", [
    (lambda p: "{", "is not valid JSON"),
    (lambda p: "[1, 2, 3]", "must be a JSON object"),
    (lambda p: b'\xff\xfe{\x00}\x00', "is not UTF-8 text"),
    (lambda p: json.dumps(_meta(p)) + " " * (2 << 20), "is larger than 1048576 bytes"),
    (lambda p: _replace_value(p, "settings", "[" * 100_000 + "]" * 100_000),
     "nests arrays and objects 100001 deep; at most 16"),
    (lambda p: _replace_value(p, "lookback", "1" + "0" * 4999),
     "an integer has 5000 digits; at most 18"),
    (lambda p: _replace_value(p, "lookback", "1." + "0" * 5000), "characters long; at most 64"),
    (lambda p: _replace_value(p, "decision", '{"threshold": 1e999}'), "1e999 overflows a float"),
    (lambda p: _replace_value(p, "normalization", '{"mean": [NaN, 0, 0, 0], "std": [1, 1, 1, 1]}'),
     "NaN is not a JSON number"),
    (lambda p: _replace_value(p, "normalization",
                              '{"mean": [0, 0, 0, 0], "std": [1, Infinity, 1, 1]}'),
     "Infinity is not a JSON number"),
    (lambda p: json.dumps(_meta(p))[:-1] + ', "lookback": 5}', 'duplicate key "lookback"'),
    (lambda p: _replace_value(p, "decision", '{"threshold": 0.5, "threshold": 0.9}'),
     'duplicate key "threshold"'),
])
def test_unreadable_metadata_is_refused(bundle, make, message):
    _raw_metadata(bundle, make(bundle))
    assert message in _refused(bundle, "metadata.json", None)


def test_strings_in_metadata_do_not_count_as_nesting(tmp_path):
    # brackets and escaped quotes inside strings are text, not structure
    _bundle(tmp_path)
    name = '\\"[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{{{{{{{{{{'
    _raw_metadata(tmp_path, json.dumps(_meta(tmp_path)).replace('"r0"', f'"{name}"'))
    assert ModelBundle.load(tmp_path).feature_names[0] == name.replace("\\", "")


def test_metadata_that_is_not_a_regular_file_is_refused(bundle):
    (bundle / "metadata.json").unlink()
    (bundle / "metadata.json").symlink_to(os.devnull)
    assert "is not a regular file" in _refused(bundle, "metadata.json", None)
    (bundle / "metadata.json").unlink()
    (bundle / "metadata.json").mkdir()
    assert "is not a regular file" in _refused(bundle, "metadata.json", None)


# ---------------------------------------------------------------------------- model.pt


def _state(path):
    return torch.load(path / "model.pt", weights_only=True)


def _save_state(path, state, **kwargs):
    torch.save(state, path / "model.pt", **kwargs)


class _WritesAFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _truncated(p):
    data = (p / "model.pt").read_bytes()
    (p / "model.pt").write_bytes(data[: len(data) // 2])


def _compressed(p):
    src = (p / "model.pt").read_bytes()
    (p / "model.pt").unlink()
    with zipfile.ZipFile(io.BytesIO(src)) as z_in, \
            zipfile.ZipFile(p / "model.pt", "w", zipfile.ZIP_DEFLATED) as z_out:
        for info in z_in.infolist():
            z_out.writestr(info.filename, z_in.read(info))


def _edit_state(edit):
    def make(p):
        state = _state(p)
        edit(state)
        _save_state(p, state)
    return make


def _sparse_weight(state):
    state["net.0.weight"] = state["net.0.weight"].to_sparse()


@pytest.mark.parametrize("make, field, message", [
    (lambda p: (p / "model.pt").write_bytes(b"not a torch file" * 10), None,
     "is not a torch zip archive"),
    (lambda p: (p / "model.pt").write_bytes(b""), None, "is not a torch zip archive"),
    (_truncated, None, "is not a torch zip archive"),
    (lambda p: (p / "model.pt").write_bytes(pickle.dumps({"w": _WritesAFile(p / "pwned")})),
     None, "is not a torch zip archive"),
    (lambda p: _save_state(p, {"net.0.weight": _WritesAFile(p / "pwned")}), None,
     "cannot be loaded as plain tensors with weights_only=True"),
    (lambda p: _save_state(p, _state(p), _use_new_zipfile_serialization=False), None,
     "is not a torch zip archive"),
    (_compressed, "archive/data.pkl", "is a compressed record"),
    (lambda p: (p / "model.pt").write_bytes((p / "model.pt").read_bytes() + bytes(2 << 20)),
     None, "bytes; the 67 weights metadata.json describes take at most"),
    (lambda p: _save_state(p, list(_state(p).values())), None, "must hold a state_dict"),
    (lambda p: _save_state(p, torch.zeros(3)), None, "must hold a state_dict"),
    (_edit_state(lambda s: s.pop("net.3.bias")), "net.3.bias", "missing ['net.3.bias']"),
    (_edit_state(lambda s: s.update(extra=torch.zeros(1))), "extra", "unexpected ['extra']"),
    (_edit_state(lambda s: s.update({"net.0.weight": torch.zeros(8, 5)})), "net.0.weight",
     "has shape (8, 5), the architecture in metadata.json expects (8, 4)"),
    (_edit_state(lambda s: s.update({"net.0.bias": 7})), "net.0.bias", "not a tensor"),
    (_edit_state(lambda s: s["net.0.weight"].__setitem__((0, 0), float("nan"))),
     "net.0.weight", "holds NaN or infinity"),
    (_edit_state(lambda s: s["net.3.bias"].__setitem__(1, float("-inf"))),
     "net.3.bias", "holds NaN or infinity"),
    (_edit_state(lambda s: s.update({"net.0.weight": torch.ones(8, 4, dtype=torch.int64)})),
     "net.0.weight", "is a int64 tensor"),
    (_edit_state(lambda s: s.update({"net.0.weight": torch.ones(8, 4, dtype=torch.complex64)})),
     "net.0.weight", "is a complex64 tensor"),
    (_edit_state(_sparse_weight), "net.0.weight", "weights must be dense CPU tensors"),
])
def test_hostile_weights_are_refused_before_anything_is_built(bundle, make, field, message):
    make(bundle)
    assert message in _refused(bundle, "model.pt", field)
    assert not (bundle / "pwned").exists()


def test_weights_that_are_not_a_regular_file_are_refused(bundle):
    (bundle / "model.pt").unlink()
    (bundle / "model.pt").mkdir()
    assert "is not a regular file" in _refused(bundle, "model.pt", None)


def test_huge_metadata_is_refused_before_the_weights_file_is_read(bundle):
    # a valid-looking metadata whose network would need gigabytes: the weights are never opened
    _with(bundle, _set("lookback", 10**9))
    (bundle / "model.pt").unlink()
    _refused(bundle, "metadata.json", "lookback")


# ---------------------------------------------------------------------------- accepted


def test_float64_weights_are_accepted_as_float32(tmp_path):
    net = _bundle(tmp_path)
    _save_state(tmp_path, {k: v.double() for k, v in net.state_dict().items()})
    bundle = ModelBundle.load(tmp_path)
    assert all(p.dtype == torch.float32 for p in bundle.module.parameters())
    x = torch.randn(5, 1, 4)
    with torch.no_grad():
        torch.testing.assert_close(bundle.module(x), net.eval()(x))


@pytest.mark.parametrize("architecture, settings, lookback", [
    ("mlp", {"hidden": [7, 5, 3]}, 3),
    ("conv1d", {"channels": [6, 2], "kernel_size": 4}, 5),
    ("gru", {"hidden": 6, "layers": 3, "dropout": 0.1}, 4),
])
def test_state_shapes_are_what_build_model_builds(architecture, settings, lookback):
    net = build_model(architecture, settings, n_features=4, lookback=lookback, n_classes=5)
    built = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert state_shapes(architecture, settings, n_features=4, lookback=lookback,
                        n_classes=5) == built


def test_largest_allowed_sizes_load(tmp_path):
    # the limits are inclusive: a bundle right at them is a valid bundle
    features = [{"name": f"f{i}", "kernel": "simple_returns", "field": "close"}
                for i in range(8)]
    net = build_model("gru", {"hidden": 16, "layers": 16}, n_features=8, lookback=1024,
                      n_classes=3)
    save_bundle(net, tmp_path, architecture="gru", settings={"hidden": 16, "layers": 16},
                features=features, lookback=1024, classes=CLASSES, decision={})
    bundle = ModelBundle.load(tmp_path)
    assert bundle.lookback * bundle.n_features == 8192
    assert np.isfinite(bundle.module(torch.zeros(1, 1024, 8)).numpy()).all()
