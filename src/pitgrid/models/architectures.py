"""The model architectures a bundle can name: MLP, causal 1-D convolution and GRU.

Every architecture maps a window of feature rows ``x`` shaped
``(rows, lookback, n_features)`` (oldest row first, the decision row last) to
class logits ``(rows, n_classes)``; inference applies the softmax. Train with
``torch.nn.CrossEntropyLoss`` on the logits.

Settings are plain JSON values stored in ``metadata.json``. Unknown keys are
refused rather than ignored, so a typo in a trainer's config cannot silently
build a different network than the one the weights were trained for. Sizes are
bounded (``MAX_WIDTH`` units per layer, ``MAX_LAYERS`` layers, ``MAX_KERNEL_SIZE``),
and :func:`state_shapes` gives the weight shapes a setting implies without
building anything, so a bundle's metadata cannot make a load allocate gigabytes.

This module imports torch; it is only imported once a model is built or loaded.

Example:
    >>> m = build_model("gru", {"hidden": 8}, n_features=4, lookback=10, n_classes=3)
    >>> import torch
    >>> m(torch.zeros(2, 10, 4)).shape
    torch.Size([2, 3])
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

ARCHITECTURES: tuple[str, ...] = ("mlp", "conv1d", "gru")

#: Upper bounds on settings: units (or channels) per layer, layers, convolution width.
MAX_WIDTH = 4096
MAX_LAYERS = 16
MAX_KERNEL_SIZE = 256

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU,
}

# per architecture: setting -> default (None: required)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": None, "activation": "relu", "dropout": 0.0},
    "conv1d": {"channels": None, "kernel_size": 3, "activation": "relu", "dropout": 0.0},
    "gru": {"hidden": None, "layers": 1, "dropout": 0.0},
}


def _bounded_int(value: Any, key: str, maximum: int) -> int:
    must = f"{key} must be an integer in [1, {maximum}]"
    if isinstance(value, bool):
        raise ValueError(f"{must}, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{must}, got {value!r}") from None
    if not 1 <= v <= maximum:
        raise ValueError(f"{must}, got {v}")
    return int(v)


def _width(value: Any, key: str) -> int:
    return _bounded_int(value, key, MAX_WIDTH)


def _widths(value: Any, key: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_LAYERS:
        raise ValueError(f"{key} must be a list of 1 to {MAX_LAYERS} layer widths, "
                         f"got {_short(value)}")
    return [_width(v, key) for v in value]


def _short(value: Any) -> str:
    """repr for an error message; a hostile value may be huge."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fraction(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{key} must be a number in [0, 1), got {value!r}")
    return float(value)


def _activation(value: Any, key: str) -> str:
    if not isinstance(value, str) or value not in _ACTIVATIONS:
        raise ValueError(f"{key} must be one of {sorted(_ACTIVATIONS)}, got {_short(value)}")
    return str(value)


_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "hidden": _width,
    "layers": lambda v, key: _bounded_int(v, key, MAX_LAYERS),
    "kernel_size": lambda v, key: _bounded_int(v, key, MAX_KERNEL_SIZE),
    "channels": _widths,
    "dropout": _fraction,
    "activation": _activation,
}


def normalize_settings(architecture: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``settings`` for ``architecture`` and fill in defaults.

    Raises ``ValueError`` naming the offending key. The MLP's ``hidden`` is a list
    of layer widths; the GRU's ``hidden`` is one width.

    Example:
        >>> normalize_settings("mlp", {"hidden": [32, 16]})
        {'hidden': [32, 16], 'activation': 'relu', 'dropout': 0.0}
    """
    if not isinstance(architecture, str) or architecture not in _DEFAULTS:
        raise ValueError(f"unknown architecture {_short(architecture)}; "
                         f"known: {list(ARCHITECTURES)}")
    if not isinstance(settings, Mapping):
        raise ValueError(f"settings must be an object, got {type(settings).__name__}")
    defaults = _DEFAULTS[architecture]
    unknown = sorted(map(str, set(settings) - set(defaults)))
    if unknown:
        raise ValueError(f"unknown settings {_short(unknown)} for {architecture!r}; "
                         f"known: {sorted(defaults)}")
    out: dict[str, Any] = {}
    for key, default in defaults.items():
        if key not in settings and default is None:
            raise ValueError(f"{key} is required for {architecture!r}")
        value = settings.get(key, default)
        check = _widths if (architecture, key) == ("mlp", "hidden") else _CHECKS[key]
        out[key] = check(value, key)
    return out


class MLP(nn.Module):
    """Feed-forward network over the flattened window (lookback 1: one feature row)."""

    def __init__(self, n_inputs: int, hidden: list[int], n_classes: int,
                 activation: str, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class CausalConv1d(nn.Module):
    """Stacked 1-D convolutions over the window, left-padded so that position ``i``
    sees window rows ``<= i`` only; a linear head reads every position."""

    def __init__(self, n_features: int, lookback: int, channels: list[int], kernel_size: int,
                 n_classes: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.pad = kernel_size - 1
        self.convs = nn.ModuleList()
        width = n_features
        for c in channels:
            self.convs.append(nn.Conv1d(width, c, kernel_size))
            width = c
        self.act = _ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width * lookback, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)  # (rows, features, lookback): Conv1d convolves the last axis
        for conv in self.convs:
            h = self.drop(self.act(conv(nn.functional.pad(h, (self.pad, 0)))))
        return self.head(h.flatten(1))


class GRUClassifier(nn.Module):
    """GRU over the window, oldest row first; the head reads the last hidden state."""

    def __init__(self, n_features: int, hidden: int, layers: int, n_classes: int,
                 dropout: float) -> None:
        super().__init__()
        # torch warns about (and ignores) dropout between layers when there is one layer
        self.gru = nn.GRU(n_features, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def build_model(architecture: str, settings: Mapping[str, Any], *, n_features: int,
                lookback: int, n_classes: int) -> nn.Module:
    """Build an untrained float32 network; ``settings`` are checked by :func:`normalize_settings`.

    Example:
        >>> m = build_model("mlp", {"hidden": [16]}, n_features=4, lookback=1, n_classes=3)
        >>> type(m).__name__
        'MLP'
    """
    s = normalize_settings(architecture, settings)
    if architecture == "mlp":
        return MLP(n_features * lookback, s["hidden"], n_classes, s["activation"], s["dropout"])
    if architecture == "conv1d":
        return CausalConv1d(n_features, lookback, s["channels"], s["kernel_size"], n_classes,
                            s["activation"], s["dropout"])
    return GRUClassifier(n_features, s["hidden"], s["layers"], n_classes, s["dropout"])


def state_shapes(architecture: str, settings: Mapping[str, Any], *, n_features: int,
                 lookback: int, n_classes: int) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` shapes :func:`build_model` would give, computed without building it.

    A bundle's weights are compared with these before any network is allocated.

    Example:
        >>> state_shapes("mlp", {"hidden": [16]}, n_features=4, lookback=1, n_classes=3)
        {'net.0.weight': (16, 4), 'net.0.bias': (16,), 'net.3.weight': (3, 16), 'net.3.bias': (3,)}
    """
    s = normalize_settings(architecture, settings)
    shapes: dict[str, tuple[int, ...]] = {}
    if architecture == "mlp":
        width = n_features * lookback
        # each hidden layer is Linear, activation, Dropout: the Linear layers sit at 0, 3, 6, ...
        for i, h in enumerate(s["hidden"]):
            shapes.update({f"net.{3 * i}.weight": (h, width), f"net.{3 * i}.bias": (h,)})
            width = h
        last = 3 * len(s["hidden"])
        shapes.update({f"net.{last}.weight": (n_classes, width), f"net.{last}.bias": (n_classes,)})
        return shapes
    if architecture == "conv1d":
        width = n_features
        for i, c in enumerate(s["channels"]):
            shapes.update({f"convs.{i}.weight": (c, width, s["kernel_size"]),
                           f"convs.{i}.bias": (c,)})
            width = c
        shapes.update({"head.weight": (n_classes, width * lookback), "head.bias": (n_classes,)})
        return shapes
    h = s["hidden"]
    for layer in range(s["layers"]):
        width = n_features if layer == 0 else h
        shapes.update({f"gru.weight_ih_l{layer}": (3 * h, width),
                       f"gru.weight_hh_l{layer}": (3 * h, h),
                       f"gru.bias_ih_l{layer}": (3 * h,), f"gru.bias_hh_l{layer}": (3 * h,)})
    shapes.update({"head.weight": (n_classes, h), "head.bias": (n_classes,)})
    return shapes
