"""Python-side helpers shared by the kernel wrappers: input coercion and checks.

Nothing here is compiled. The numba kernels (``*_nb``) never call into this
module: numba's on-disk cache does not notice edits to jitted helpers that live
in another file, so every kernel module keeps its jitted helpers in its own file.
"""
from __future__ import annotations

import operator
from typing import Any

import numpy as np

FLOAT = np.float64


def as_panel(x: Any, name: str = "x") -> tuple[np.ndarray, tuple[int, ...]]:
    """Return ``(x2, shape)``: ``x`` as a C-contiguous float64 ``(time, symbol)`` array.

    A 1-D input is one symbol: it is viewed as ``(time, 1)`` and ``shape`` remembers
    the original shape so that the wrapper can hand back a 1-D result. Copies only
    when ``x`` is not already C-contiguous float64.
    """
    a = np.ascontiguousarray(np.asarray(x, dtype=FLOAT))
    if a.ndim == 1:
        return a.reshape(a.shape[0], 1), a.shape
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D (time,) or 2-D (time, symbol), got shape {a.shape}")
    return a, a.shape


def as_series(y: Any, n_time: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as a C-contiguous float64 1-D array of length ``n_time``."""
    a = np.ascontiguousarray(np.asarray(y, dtype=FLOAT))
    if a.ndim == 2 and a.shape[1] == 1:
        a = np.ascontiguousarray(a[:, 0])
    if a.ndim != 1 or a.shape[0] != n_time:
        raise ValueError(
            f"{name} must be 1-D with {n_time} rows (one value per bar), got shape {a.shape}")
    return a


def same_shape(shape: tuple[int, ...], other: np.ndarray, name: str) -> None:
    if other.shape != shape:
        raise ValueError(f"{name} has shape {other.shape}, expected {shape}")


def out_view(out: Any, shape: tuple[int, ...], inputs: tuple[np.ndarray, ...],
             name: str = "out", dtype: type = FLOAT) -> np.ndarray:
    """Check a caller-supplied output array and return its 2-D ``(time, symbol)`` view.

    ``out`` must be a NumPy array of exactly ``dtype`` (float64, or bool for the signal
    kernels), C-contiguous, of the input's shape, writeable, and must not overlap any
    input (kernels read earlier input rows after writing earlier output rows).
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    for a in inputs:
        if np.may_share_memory(out, a):
            raise ValueError(f"{name} overlaps an input array; kernels cannot run in place")
    return out.reshape(out.shape[0], 1) if out.ndim == 1 else out


def window_arg(window: Any, name: str = "window", minimum: int = 1) -> int:
    """A lookback length: an integer >= ``minimum`` (bools and floats are refused)."""
    if isinstance(window, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {window!r}")
    try:
        w = operator.index(window)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {window!r}") from None
    if w < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {w}")
    return int(w)


def ddof_arg(ddof: Any, window: int | None = None) -> int:
    d = window_arg(ddof, "ddof", minimum=0)
    if window is not None and d >= window:
        raise ValueError(f"ddof must be smaller than window, got ddof={d}, window={window}")
    return d


def float_arg(value: Any, name: str) -> float:
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def distinct_outputs(*outs: np.ndarray) -> None:
    """Several outputs of one kernel must not overlap each other."""
    for i, a in enumerate(outs):
        for b in outs[i + 1:]:
            if np.may_share_memory(a, b):
                raise ValueError("output arrays must not overlap each other")
