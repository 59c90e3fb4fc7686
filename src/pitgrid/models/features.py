"""Model input features computed with the causal kernels of ``pitgrid.kernels``.

A feature is ``{"name", "kernel", "params", "field"[, "output"]}`` in a bundle's
``metadata.json``: ``kernel`` names an allocating kernel (``momentum``, ``rsi``,
``rolling_zscore``, ... see ``pitgrid.kernels.KERNELS``), ``field`` is the data
field it reads (a list for kernels with several inputs, e.g. ``atr`` reads
``["high", "low", "close"]``, in the kernel's argument order), ``params`` its
keyword arguments, and ``output`` picks one array of a multi-output kernel
(``macd``: line / signal / hist, ``bollinger``: mid / upper / lower).

Because the kernels are causal, feature row t depends on data rows <= t only.
Features come back raw: the bundle's normalisation is applied by inference, the
one place that batch and step share.

What a model reads is stated once, in :func:`field_sources`: prices and volume
split-adjusted as of each bar, validity as traded. :func:`model_inputs` reads those
arrays from a :class:`pitgrid.FeatureData`; the model strategy, its step-driver
stream and :func:`pitgrid.models.training_frame` all go through it.
"""
from __future__ import annotations

import inspect
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

import pitgrid.kernels as K
from pitgrid.models.errors import METADATA_FILE, BundleError

if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.cycle.data import FeatureData

_SPEC_KEYS = ("name", "kernel", "params", "field", "output")
_OUTPUTS: dict[str, tuple[str, ...]] = {"macd": K.MACD._fields, "bollinger": K.Bands._fields}


@dataclass(frozen=True)
class FeatureSpec:
    """One model input column: ``kernel(*fields, **params)[.output]``."""

    name: str
    kernel: str
    params: Mapping[str, Any]
    fields: tuple[str, ...]
    output: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "kernel": self.kernel, "params": dict(self.params),
            "field": self.fields[0] if len(self.fields) == 1 else list(self.fields),
        }
        if self.output is not None:
            out["output"] = self.output
        return out


def parse_feature(raw: Any) -> FeatureSpec:
    """Check one feature object against the kernel's signature; ValueError names the key.

    Parameter values (e.g. ``window >= 1``) are checked by the kernel itself when
    :func:`build_features` runs it.

    Example:
        >>> parse_feature({"name": "r5", "kernel": "momentum", "params": {"window": 5},
        ...                "field": "close"}).fields
        ('close',)
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"must be an object with keys {list(_SPEC_KEYS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(_SPEC_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; known keys: {list(_SPEC_KEYS)}")
    for key in ("name", "kernel", "field"):
        if key not in raw:
            raise ValueError(f"{key}: required key is missing")
    name, kernel = raw["name"], raw["kernel"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if kernel not in K.KERNELS:
        raise ValueError(f"kernel: unknown kernel {kernel!r}; "
                         f"pitgrid.kernels has {list(K.KERNELS)}")
    field = raw["field"]
    fields = (field,) if isinstance(field, str) else field
    if not isinstance(fields, (list, tuple)) or not fields or not all(
            isinstance(f, str) and f for f in fields):
        raise ValueError(f"field must be a field name or a list of them, got {field!r}")
    params = raw.get("params", {})
    if not isinstance(params, Mapping) or not all(
            isinstance(v, (bool, int, float)) for v in params.values()):
        raise ValueError(f"params must be an object of numbers / booleans, got {params!r}")
    signature = inspect.signature(getattr(K, kernel))
    try:
        signature.bind(*fields, **params)
    except TypeError as e:
        raise ValueError(f"field {list(fields)} and params {dict(params)} do not fit "
                         f"{kernel}{signature}: {e}") from None
    output = raw.get("output")
    choices = _OUTPUTS.get(kernel, ())
    if choices and output not in choices:
        raise ValueError(f"output: {kernel} returns several arrays; output must be one of "
                         f"{list(choices)}, got {output!r}")
    if not choices and output is not None:
        raise ValueError(f"output: {kernel} returns one array; drop output={output!r}")
    return FeatureSpec(name, kernel, MappingProxyType(dict(params)), tuple(fields), output)


def as_specs(features: Any) -> tuple[FeatureSpec, ...]:
    """A bundle's features, or feature objects (dicts as in ``metadata.json``, or FeatureSpecs),
    as checked FeatureSpecs; ValueError names the feature.

    Example:
        >>> [s.name for s in as_specs([{"name": "r5", "kernel": "momentum",
        ...                             "params": {"window": 5}, "field": "close"}])]
        ['r5']
    """
    if hasattr(features, "features") and hasattr(features, "path"):  # a ModelBundle
        return tuple(features.features)
    if isinstance(features, (str, bytes, Mapping)) or not isinstance(features, Sequence):
        raise ValueError(f"features must be a ModelBundle or a list of feature objects, "
                         f"got {type(features).__name__}")
    specs = []
    for i, raw in enumerate(features):
        if isinstance(raw, FeatureSpec):
            specs.append(raw)
            continue
        try:
            specs.append(parse_feature(raw))
        except ValueError as e:
            raise ValueError(f"features[{i}]: {e}") from None
    return tuple(specs)


def field_sources(specs: Sequence[FeatureSpec]) -> list[tuple[str, str]]:
    """``(kind, field)`` for every data field the features read, in first-use order: prices and
    volume split-adjusted as of each bar (``"adjusted"``), validity as traded (``"raw"``).

    The one statement of what a model sees: batch features, the step driver's streams and
    training frames all read their inputs through it.

    Example:
        >>> field_sources(as_specs([{"name": "atr", "kernel": "atr", "params": {"window": 3},
        ...                          "field": ["high", "low", "close"]}]))[0]
        ('adjusted', 'high')
    """
    fields = dict.fromkeys(f for spec in specs for f in spec.fields)
    return [("raw", f) if f == "valid" else ("adjusted", f) for f in fields]


def model_inputs(data: FeatureData, specs: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
    """The ``(time, symbol)`` arrays the features read from ``data``, as :func:`field_sources` says.

    Example:
        >>> import pitgrid as pg
        >>> data = pg.FeatureData(pg.MarketData(pg.synthetic_prices(30, 2, seed=0)))
        >>> sorted(model_inputs(data, as_specs([{"name": "r1", "kernel": "simple_returns",
        ...                                      "field": "close"}])))
        ['close']
    """
    # a field the market lacks is left out, for build_features to name it with its feature
    have = set(data.market.fields)
    return {f: getattr(data, kind)(f) for kind, f in field_sources(specs) if f in have}


def check_params(specs: Sequence[FeatureSpec]) -> None:
    """Run every feature's kernel on two rows of ones, so that a parameter the kernel refuses
    (``window = 0``, ``macd`` with ``fast >= slow``) fails when a bundle is saved or loaded,
    naming the feature, instead of when a run starts.

    Example:
        >>> check_params(as_specs([{"name": "m0", "kernel": "momentum", "params": {"window": 0},
        ...                         "field": "close"}]))          # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: features[0] ('m0').params: momentum refused {'window': 0}: ...
    """
    ones = np.ones((2, 1))
    for i, spec in enumerate(specs):
        try:
            getattr(K, spec.kernel)(*(ones for _ in spec.fields), **spec.params)
        except (ValueError, TypeError) as e:
            raise ValueError(f"features[{i}] ({spec.name!r}).params: {spec.kernel} refused "
                             f"{dict(spec.params)}: {e}") from None


def _error(features: Any, key: str, message: str) -> ValueError:
    """A BundleError naming the bundle's metadata.json, or a ValueError without a bundle."""
    if hasattr(features, "path"):
        return BundleError(features.path / METADATA_FILE, key, message)
    return ValueError(f"{key}: {message}")


def check_fields(features: Any, have: Collection[Any]) -> None:
    """Raise naming the first feature that reads a field not in ``have`` (the data's fields):
    what :func:`build_features` checks before any kernel runs, and a config before a run.

    Example:
        >>> check_fields([{"name": "x", "kernel": "simple_returns", "field": "vwap"}], ["close"])
        Traceback (most recent call last):
        ValueError: features[0] ('x').field: the data has no field 'vwap'; it has ['close']
    """
    for i, spec in enumerate(as_specs(features)):
        for f in spec.fields:
            if f not in have:
                raise _error(features, f"features[{i}] ({spec.name!r}).field",
                             f"the data has no field {f!r}; it has {sorted(map(str, have))}")


def build_features(features: Any, fields: Mapping[str, Any]) -> np.ndarray:
    """The features of a bundle (or a list of feature objects) over ``fields`` (``name ->
    (time, symbol)`` arrays, e.g. an ``xarray.Dataset``) as a ``(time, symbol, n_features)``
    float32 array.

    A feature that cannot be built (a field the data lacks, a parameter the kernel
    refuses) raises :class:`BundleError` naming the bundle's ``metadata.json`` (a
    ValueError naming ``features[i]`` without a bundle) and the feature; missing
    fields are found before any kernel runs. To get the inputs a
    :class:`~pitgrid.models.ModelStrategy` sees, pass :func:`model_inputs` as
    ``fields``, or use :func:`pitgrid.models.training_frame`.

    Example:
        >>> import pitgrid as pg
        >>> ds = pg.synthetic_prices(300, 20, seed=0)
        >>> build_features([{"name": "r5", "kernel": "momentum", "params": {"window": 5},
        ...                  "field": "close"}], ds).shape
        (300, 20, 1)
    """
    specs = as_specs(features)
    check_fields(features, fields)
    arrays: dict[str, np.ndarray] = {}
    for f in dict.fromkeys(f for spec in specs for f in spec.fields):
        a = np.ascontiguousarray(np.asarray(fields[f], dtype=np.float64))
        if a.ndim != 2:
            raise ValueError(f"data field {f!r} must be (time, symbol), got shape {a.shape}")
        first = next(iter(arrays.values()), a)
        if a.shape != first.shape:
            raise ValueError(f"data field {f!r} has shape {a.shape}, other fields {first.shape}")
        arrays[f] = a
    shape = next(iter(arrays.values())).shape
    out = np.empty((*shape, len(specs)), dtype=np.float32)
    for i, spec in enumerate(specs):
        try:
            value = getattr(K, spec.kernel)(*(arrays[f] for f in spec.fields), **spec.params)
        except (ValueError, TypeError) as e:
            raise _error(features, f"features[{i}] ({spec.name!r}).params",
                         f"{spec.kernel} refused {dict(spec.params)}: {e}") from e
        out[:, :, i] = getattr(value, spec.output) if spec.output else value
    return out
