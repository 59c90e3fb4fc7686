"""Model bundles: a directory with ``metadata.json`` and ``model.pt``, read once, immutable.

``metadata.json`` (format_version 1)::

    {
      "format_version": 1,
      "architecture": "mlp",                       # "mlp" | "conv1d" | "gru"
      "settings": {"hidden": [64], "activation": "relu", "dropout": 0.0},
      "lookback": 1,                               # rows per window, the decision row last
      "features": [                                # ordered: the model's input columns
        {"name": "ret_5", "kernel": "momentum", "params": {"window": 5}, "field": "close"},
        {"name": "atr_14", "kernel": "atr", "params": {"window": 14},
         "field": ["high", "low", "close"]},
        {"name": "macd_hist", "kernel": "macd", "params": {}, "field": "close", "output": "hist"}
      ],
      "classes": ["sell", "hold", "buy"],
      "decision": {"threshold": 0.5, "min_bars_between": 0, "allow_short": false},
      "normalization": {"mean": [...], "std": [...]}   # or null; one value per feature
    }

``model.pt`` holds the network's ``state_dict`` only (a dict of plain tensors),
read with ``torch.load(..., map_location="cpu", weights_only=True)``: a file that
needs anything beyond tensors and plain containers to unpickle is refused, so a
bundle from elsewhere cannot run code when it is loaded.

Everything that is wrong with a bundle raises :class:`BundleError`, which names
the file and the field.

Limits: a bundle may come from elsewhere, so loading it must not let its files
decide how much memory or time the load takes. Refused, each before anything
it would size is allocated:

* ``metadata.json`` that is not a regular file, is larger than
  ``MAX_METADATA_BYTES``, is not UTF-8, is nested deeper than ``MAX_JSON_DEPTH``,
  repeats a key in an object, holds ``NaN``/``Infinity``, an integer with more
  than ``MAX_INT_DIGITS`` digits or a number longer than ``MAX_NUMBER_CHARS``;
* ``lookback`` above ``MAX_LOOKBACK``, more than ``MAX_FEATURES`` features, a
  window (``lookback x features``) above ``MAX_WINDOW_VALUES``, more than
  ``MAX_CLASSES`` classes, settings beyond the bounds in
  :mod:`pitgrid.models.architectures`, or a network of more than
  ``MAX_PARAMETERS`` weights (counted from the metadata, nothing built);
* ``model.pt`` that is not a regular file, is larger than the weights the
  metadata implies can take (8 bytes each, plus ``_WEIGHTS_SLACK``), is not
  torch's zip format (``torch.save``'s default since torch 1.6), has a compressed
  record or records that unpack to more than that size, needs more than tensors
  and plain containers to unpickle, or holds a tensor that is not a dense
  floating-point CPU tensor of exactly the shape the metadata implies, or that
  holds NaN or infinity.

Only then is the network built and the weights copied in. ``model.pt`` is
memory-mapped (``torch.load(mmap=True)``), not read whole.

This module imports torch only inside :meth:`ModelBundle.load` and :func:`save_bundle`.

Example:
    >>> import tempfile, torch
    >>> from pitgrid.models.architectures import build_model
    >>> net = build_model("mlp", {"hidden": [8]}, n_features=1, lookback=1, n_classes=3)
    >>> d = save_bundle(net, tempfile.mkdtemp(), architecture="mlp", settings={"hidden": [8]},
    ...                 features=[{"name": "r1", "kernel": "simple_returns", "field": "close"}],
    ...                 lookback=1, classes=["sell", "hold", "buy"], decision={"threshold": 0.6})
    >>> b = ModelBundle.load(d)
    >>> b.feature_names, b.decision.threshold
    (('r1',), 0.6)
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import stat
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from pitgrid.models.decision import DecisionFunction
from pitgrid.models.errors import METADATA_FILE, WEIGHTS_FILE, BundleError
from pitgrid.models.features import FeatureSpec, check_params, parse_feature

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["FORMAT_VERSION", "METADATA_FILE", "WEIGHTS_FILE", "BundleError", "ModelBundle",
           "Normalization", "save_bundle"]

FORMAT_VERSION = 1

MAX_METADATA_BYTES = 1 << 20
MAX_JSON_DEPTH = 16
MAX_INT_DIGITS = 18  # every integer then fits int64
MAX_NUMBER_CHARS = 64
MAX_LOOKBACK = 1024
MAX_FEATURES = 512
# one inference row's input; a 16k-row inference chunk of float32 windows is then <= 512 MiB
MAX_WINDOW_VALUES = 8192
MAX_CLASSES = 64
MAX_PARAMETERS = 50_000_000
# zip headers, the pickled structure and per-record alignment of a torch.save file
_WEIGHTS_SLACK = 1 << 20

_KEYS = ("format_version", "architecture", "settings", "lookback", "features", "classes",
         "decision", "normalization")
_DECISION_KEYS = ("threshold", "min_bars_between", "allow_short")
_MISSING = "missing: a model bundle needs metadata.json and model.pt"


class _Refused(ValueError):
    """A rule of metadata.json broken while it is parsed; json.loads lets it through as is."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys: which one the trainer meant is unknowable
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"duplicate key {json.dumps(key)[:80]}: an object may name a key once")
        out[key] = value
    return out


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Refused(f"an integer has {digits} digits; at most {MAX_INT_DIGITS} are allowed")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number is {len(text)} characters long; "
                       f"at most {MAX_NUMBER_CHARS} are allowed")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text} overflows a float")
    return value


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number; every number must be finite")


_ESCAPE = re.compile(rb"\\.", re.DOTALL)


def _nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects, counted without recursion (json.loads recurses).

    UTF-8 continuation bytes are never ASCII, so brackets and quotes can be found bytewise.
    """
    b = np.frombuffer(_ESCAPE.sub(b"__", data), dtype=np.uint8)  # an escaped quote ends nothing
    outside = np.cumsum(b == ord('"')) % 2 == 0
    step = np.isin(b, (ord("["), ord("{"))).astype(np.int64) - np.isin(b, (ord("]"), ord("}")))
    return int(np.cumsum(np.where(outside, step, 0)).max(initial=0))


def _regular_size(file: Path) -> int:
    """The size of ``file``, which must be a regular file: a FIFO or a device may never end."""
    try:
        st = file.stat()
    except FileNotFoundError:
        raise BundleError(file, None, _MISSING) from None
    except OSError as e:
        raise BundleError(file, None, f"cannot be read: {e.strerror}") from e
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(file, None, "is not a regular file")
    return st.st_size


def _read_metadata(file: Path) -> Any:
    """Parse ``metadata.json`` under the limits in the module docstring."""
    _regular_size(file)
    try:
        with file.open("rb") as fh:
            data = fh.read(MAX_METADATA_BYTES + 1)
    except OSError as e:
        raise BundleError(file, None, f"cannot be read: {e.strerror}") from e
    if len(data) > MAX_METADATA_BYTES:
        raise BundleError(file, None, f"is larger than {MAX_METADATA_BYTES} bytes, "
                                      "the most a bundle's metadata may take")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(file, None, f"is not UTF-8 text (byte {e.start}: {e.reason})") from None
    depth = _nesting_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise BundleError(file, None, f"nests arrays and objects {depth} deep; "
                                      f"at most {MAX_JSON_DEPTH} levels are allowed")
    try:
        return json.loads(text, object_pairs_hook=_object, parse_int=_integer,
                          parse_float=_float, parse_constant=_constant)
    except _Refused as e:
        raise BundleError(file, None, str(e)) from None
    except json.JSONDecodeError as e:
        raise BundleError(file, None, f"is not valid JSON: {e}") from e


@contextmanager
def _field(file: Path, name: str) -> Iterator[None]:
    """Turn a validation error inside the block into a BundleError naming ``file`` and ``name``."""
    try:
        yield
    except BundleError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise BundleError(file, name, str(msg)) from e


@dataclass(frozen=True)
class Normalization:
    """Per-feature ``(x - mean) / std``, fitted by the trainer on past data only."""

    mean: np.ndarray  # float32 (n_features,), read-only
    std: np.ndarray

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": self.mean.astype(float).tolist(), "std": self.std.astype(float).tolist()}


def _parse_normalization(raw: Any, n_features: int) -> Normalization | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) != {"mean", "std"}:
        raise ValueError("must be null or an object with exactly the keys 'mean' and 'std'")
    arrays = {}
    for key in ("mean", "std"):
        values = raw[key]
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise ValueError(f"{key} must be a list of {n_features} numbers")
        if isinstance(values, Sequence) and not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{key} must be a list of {n_features} numbers (not booleans, "
                             "strings or lists)")
        a = np.asarray(values, dtype=np.float64)
        if a.shape != (n_features,) or not np.isfinite(a).all():
            raise ValueError(f"{key} must be {n_features} finite numbers (one per feature), "
                             f"got shape {a.shape}")
        arrays[key] = a.astype(np.float32)
        arrays[key].flags.writeable = False
    if (arrays["std"] <= 0).any():
        raise ValueError(f"std must be > 0, got {arrays['std'].tolist()}")
    return Normalization(arrays["mean"], arrays["std"])


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class _Parsed:
    architecture: str
    settings: dict[str, Any]
    lookback: int
    features: tuple[FeatureSpec, ...]
    decision: DecisionFunction
    normalization: Normalization | None
    shapes: dict[str, tuple[int, ...]]  # of the weights, as the architecture implies them


def _parse_metadata(raw: Any, file: Path) -> _Parsed:
    from pitgrid.models.architectures import ARCHITECTURES, normalize_settings, state_shapes

    if not isinstance(raw, dict):
        raise BundleError(file, None, f"must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise BundleError(file, unknown[0], f"unknown key; known keys: {list(_KEYS)}")
    missing = [k for k in _KEYS if k not in raw and k != "normalization"]
    if missing:
        raise BundleError(file, missing[0], "required key is missing")
    version = raw["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version != FORMAT_VERSION:
        raise BundleError(file, "format_version",
                          f"unsupported format_version {version!r}; "
                          f"this pitgrid reads {FORMAT_VERSION}")
    with _field(file, "architecture"):
        architecture = raw["architecture"]
        if not isinstance(architecture, str) or architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; "
                             f"known: {list(ARCHITECTURES)}")
    with _field(file, "settings"):
        settings = normalize_settings(architecture, raw["settings"])
    with _field(file, "lookback"):
        lookback = raw["lookback"]
        if (isinstance(lookback, bool) or not isinstance(lookback, int)
                or not 1 <= lookback <= MAX_LOOKBACK):
            raise ValueError(f"must be a positive integer, at most {MAX_LOOKBACK}, "
                             f"got {lookback!r}")
    feats = raw["features"]
    if not isinstance(feats, list) or not feats:
        raise BundleError(file, "features", "must be a non-empty list of feature objects")
    if len(feats) > MAX_FEATURES:
        raise BundleError(file, "features", f"has {len(feats)} features; "
                                            f"at most {MAX_FEATURES} are allowed")
    if lookback * len(feats) > MAX_WINDOW_VALUES:
        raise BundleError(file, "lookback", f"lookback {lookback} x {len(feats)} features = "
                          f"{lookback * len(feats)} values per window; at most "
                          f"{MAX_WINDOW_VALUES} are allowed")
    specs = []
    for i, item in enumerate(feats):
        named = isinstance(item, dict) and "name" in item
        label = f"features[{i}]" + (f" ({item['name']!r})" if named else "")
        with _field(file, label):
            specs.append(parse_feature(item))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BundleError(file, "features", f"duplicate feature names {dupes}")
    try:
        check_params(specs)
    except ValueError as e:  # names the feature and its parameters
        raise BundleError(file, None, str(e)) from None
    with _field(file, "classes"):
        classes = raw["classes"]
        if not isinstance(classes, list) or len(classes) > MAX_CLASSES:
            raise ValueError(f"must be a list of at most {MAX_CLASSES} class labels")
        DecisionFunction(classes=tuple(classes))
    dec = raw["decision"]
    with _field(file, "decision"):
        if not isinstance(dec, dict) or set(dec) - set(_DECISION_KEYS):
            raise ValueError(f"must be an object with keys from {list(_DECISION_KEYS)}, "
                             f"got {dec!r}")
        decision = DecisionFunction(**dec, classes=tuple(classes))
    with _field(file, "normalization"):
        normalization = _parse_normalization(raw.get("normalization"), len(specs))
    shapes = state_shapes(architecture, settings, n_features=len(specs), lookback=lookback,
                          n_classes=len(decision.classes))
    n_weights = sum(math.prod(shape) for shape in shapes.values())
    if n_weights > MAX_PARAMETERS:
        raise BundleError(file, "settings", f"the {architecture} these settings describe has "
                          f"{n_weights} weights; at most {MAX_PARAMETERS} are allowed")
    return _Parsed(architecture, settings, lookback, tuple(specs), decision, normalization,
                   shapes)


_WEIGHT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _check_state(state: Any, shapes: Mapping[str, tuple[int, ...]], file: Path) -> None:
    """``state`` must be a plain ``{name: tensor}`` dict with exactly the names and shapes
    in ``shapes``, each a dense, finite, floating-point CPU tensor."""
    import torch

    if not isinstance(state, dict):
        raise BundleError(file, None, "must hold a state_dict (a dict of tensors), "
                                      f"got {type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise BundleError(file, str(key)[:80], f"is a {type(value).__name__}, not a tensor")
    missing = sorted(set(shapes) - set(state))
    extra = sorted(set(state) - set(shapes))
    if missing or extra:
        raise BundleError(file, (missing or extra)[0],
                          f"weights do not match the architecture in {METADATA_FILE}: "
                          f"missing {missing[:5]}, unexpected {extra[:5]}")
    for key, want in shapes.items():
        t = state[key]
        if tuple(t.shape) != want:
            raise BundleError(file, key, f"has shape {tuple(t.shape)}, the architecture "
                                         f"in {METADATA_FILE} expects {want}")
        dtype = str(t.dtype).removeprefix("torch.")
        if t.layout != torch.strided or t.device.type != "cpu" or dtype not in _WEIGHT_DTYPES:
            raise BundleError(file, key, f"is a {dtype} tensor ({t.layout}, {t.device.type}); "
                              f"weights must be dense CPU tensors of {list(_WEIGHT_DTYPES)}")
        if not bool(torch.isfinite(t).all()):
            raise BundleError(file, key, "holds NaN or infinity")


def _check_archive(file: Path, limit: int) -> None:
    """``model.pt`` must be torch's zip format, its records stored (not compressed) and
    ``limit`` bytes in all, so no record can unpack to more than the file holds."""
    try:
        with zipfile.ZipFile(file) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BundleError(file, None, "is not a torch zip archive, the format torch.save "
                                      f"writes ({type(e).__name__}: {e})") from None
    packed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise BundleError(file, packed[0], "is a compressed record; torch.save stores "
                                           "records uncompressed")
    total = sum(r.file_size for r in records)
    if total > limit:
        raise BundleError(file, None, f"its records hold {total} bytes; the weights "
                                      f"{METADATA_FILE} describes take at most {limit}")


def _read_weights(file: Path, shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict, str]:
    """The checked state_dict in ``file`` (memory-mapped, not read whole) and its sha256."""
    import torch

    n_weights = sum(math.prod(shape) for shape in shapes.values())
    limit = 8 * n_weights + _WEIGHTS_SLACK
    size = _regular_size(file)
    if size > limit:
        raise BundleError(file, None, f"is {size} bytes; the {n_weights} weights "
                                      f"{METADATA_FILE} describes take at most {limit}")
    _check_archive(file, limit)
    try:
        with file.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise BundleError(file, None, "cannot be loaded as plain tensors with "
                          f"weights_only=True ({type(e).__name__}: {first_line})") from e
    _check_state(state, shapes, file)
    return state, digest


def _sha256_json(raw: Any) -> str:
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """A loaded model: validated metadata plus the network in eval mode. Immutable.

    ``weights_sha256`` (of ``model.pt``'s bytes) and ``metadata_sha256`` (of the
    parsed metadata) identify the model, e.g. in result records and cache keys.

    Example:
        >>> b = ModelBundle.load("models/momentum_mlp")        # doctest: +SKIP
        >>> b.feature_names, b.lookback, b.classes               # doctest: +SKIP
        (('ret_5', 'rsi_14'), 1, ('sell', 'hold', 'buy'))
    """

    path: Path
    architecture: str
    settings: Mapping[str, Any]
    lookback: int
    features: tuple[FeatureSpec, ...]
    classes: tuple[str, ...]
    decision: DecisionFunction
    normalization: Normalization | None
    module: torch.nn.Module = field(repr=False)
    weights_sha256: str
    metadata_sha256: str

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelBundle:
        """Read ``path/metadata.json`` and ``path/model.pt`` (once) into an eval-mode model.

        Example:
            >>> bundle = ModelBundle.load("models/momentum_mlp")   # doctest: +SKIP
        """
        from pitgrid.models.architectures import build_model

        root = Path(path)
        meta_file, weights_file = root / METADATA_FILE, root / WEIGHTS_FILE
        raw = _read_metadata(meta_file)
        parsed = _parse_metadata(raw, meta_file)
        state, weights_sha256 = _read_weights(weights_file, parsed.shapes)
        # only now, with every size checked, is anything the size of the network allocated
        module = build_model(parsed.architecture, parsed.settings,
                             n_features=len(parsed.features), lookback=parsed.lookback,
                             n_classes=len(parsed.decision.classes))
        module.load_state_dict(state)
        module.eval()
        module.requires_grad_(False)
        return cls(
            path=root,
            architecture=parsed.architecture,
            settings=_freeze(parsed.settings),
            lookback=parsed.lookback,
            features=parsed.features,
            classes=parsed.decision.classes,
            decision=parsed.decision,
            normalization=parsed.normalization,
            module=module,
            weights_sha256=weights_sha256,
            metadata_sha256=_sha256_json(raw),
        )


def _write_atomic(target: Path, data: bytes) -> None:
    # a crash mid-write must not leave a half-written file that a later load half-reads
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def save_bundle(model: torch.nn.Module, path: str | os.PathLike[str], *, architecture: str,
                settings: Mapping[str, Any], features: Sequence[Mapping[str, Any] | FeatureSpec],
                lookback: int, classes: Sequence[str],
                decision: Mapping[str, Any] | DecisionFunction,
                normalization: Mapping[str, Any] | Normalization | None = None) -> Path:
    """Write ``model``'s state_dict (plain tensors) and its metadata as a bundle directory.

    The metadata is checked exactly as :meth:`ModelBundle.load` checks it, and the
    weights must fit the architecture it describes, so what is saved can be loaded.
    ``features`` are ``{name, kernel, params, field[, output]}`` objects (see the
    module docstring); ``decision`` holds ``threshold``, ``min_bars_between`` and
    ``allow_short``; ``normalization`` is ``{"mean": [...], "std": [...]}`` or None.
    Returns the directory.

    Example:
        >>> save_bundle(net, "models/m", architecture="mlp", settings={"hidden": [64]},
        ...             features=specs, lookback=1, classes=["sell", "hold", "buy"],
        ...             decision={"threshold": 0.55})             # doctest: +SKIP
    """
    import torch

    root = Path(path)
    meta_file, weights_file = root / METADATA_FILE, root / WEIGHTS_FILE
    if isinstance(decision, DecisionFunction):
        decision = {k: getattr(decision, k) for k in _DECISION_KEYS}
    if isinstance(normalization, Normalization):
        normalization = normalization.to_json()
    elif normalization is not None:
        normalization = {k: np.asarray(v, dtype=np.float64).tolist()
                         for k, v in normalization.items()}
    raw = {
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "settings": settings,
        "lookback": lookback,
        "features": [f.to_json() if isinstance(f, FeatureSpec) else dict(f) for f in features],
        "classes": list(classes),
        "decision": dict(decision),
        "normalization": normalization,
    }
    parsed = _parse_metadata(raw, meta_file)
    # written in canonical form: every setting (defaults included), every feature key
    raw["settings"] = parsed.settings
    raw["features"] = [spec.to_json() for spec in parsed.features]
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    _check_state(state, parsed.shapes, weights_file)
    buf = io.BytesIO()
    torch.save(state, buf)
    root.mkdir(parents=True, exist_ok=True)
    _write_atomic(weights_file, buf.getvalue())
    _write_atomic(meta_file, (json.dumps(raw, indent=2) + "\n").encode("utf-8"))
    return root
