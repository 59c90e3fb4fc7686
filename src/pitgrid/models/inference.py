"""Batched CPU inference: every (time, symbol) row in large chunks, or one step's symbols.

Both paths go through :func:`_predict_block`, which normalises a block of feature
rows, cuts it into per-symbol windows of ``lookback`` rows (the decision row
last), and runs the valid windows in one forward pass. So the batch path and the
step path cannot drift apart: they differ only in which rows they hand it.

A row whose window holds a non-finite feature (including the rows before
``lookback - 1``, whose window reaches before the data) gets NaN probabilities
and status ``missing_features``; a chunk whose forward pass raises gets NaN
probabilities and status ``inference_error`` for its valid rows, and the error
message is kept in :attr:`Prediction.errors`.

torch is imported inside the functions that run the model, so the status codes
here are importable without it.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pitgrid.models.status import STATUS_ERROR, STATUS_MISSING, STATUS_NAMES, STATUS_OK

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from pitgrid.models.bundle import ModelBundle, Normalization

# the status codes are re-exported: inference writes them, callers read them from here
__all__ = ["DEFAULT_CHUNK_ROWS", "PROGRESS_CHUNKS", "STATUS_ERROR", "STATUS_MISSING", "STATUS_NAMES",
           "STATUS_OK", "Prediction", "feature_window", "normalize", "predict_proba", "predict_step",
           "window_rows"]


#: Rows per forward pass in the batch path. Small enough that a chunk's activations stay in
#: cache (measured: 16k rows beat 128k by ~20% for a 16-64-3 MLP on 2 cores).
DEFAULT_CHUNK_ROWS = 1 << 14
#: A batch inference of at least this many chunks shows a progress bar (on a terminal).
PROGRESS_CHUNKS = 16


@dataclass(frozen=True)
class Prediction:
    """Class probabilities (float32, NaN where no prediction) and int8 status codes.

    Unpacks as ``probs, status``; ``errors`` holds one message per failed chunk and
    ``from_cache`` says whether the probabilities were read from the cache.

    Example:
        >>> probs, status = predict_proba(bundle, features)    # doctest: +SKIP
    """

    probs: np.ndarray
    status: np.ndarray
    errors: tuple[str, ...] = ()
    from_cache: bool = False

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.probs
        yield self.status


def feature_window(features: np.ndarray, t: int, lookback: int) -> np.ndarray:
    """Rows ``t - lookback + 1 .. t`` of ``features (time, symbol, feature)``, NaN-padded
    before row 0: the window the step driver hands to :func:`predict_step` at ``t``.

    Example:
        >>> feature_window(np.ones((3, 2, 1), np.float32), 0, 2)[:, 0, 0].tolist()
        [nan, 1.0]
    """
    return _history(features, t, t + 1, lookback)


def _history(features: np.ndarray, t0: int, t1: int, lookback: int) -> np.ndarray:
    """Rows ``t0 - lookback + 1 .. t1 - 1``: what rows ``t0 .. t1 - 1`` need; NaN before row 0."""
    start = t0 - lookback + 1
    if start >= 0:
        return features[start:t1]
    pad = np.full((-start, *features.shape[1:]), np.nan, dtype=np.float32)
    return np.concatenate([pad, np.asarray(features[:t1], dtype=np.float32)])


def normalize(block: Any, normalization: Normalization | None) -> np.ndarray:
    """Raw features -> the model's inputs: float32 ``(x - mean) / std`` per feature (as is
    without a normalisation), always a fresh array, so torch may borrow it.

    Example:
        >>> from pitgrid.models.bundle import Normalization
        >>> norm = Normalization(np.float32([1.0]), np.float32([2.0]))
        >>> normalize(np.ones((1, 1, 1)) * 5, norm).ravel().tolist()
        [2.0]
    """
    if normalization is None:
        return np.array(block, dtype=np.float32)
    return (np.asarray(block, dtype=np.float32) - normalization.mean) / normalization.std


def window_rows(block: np.ndarray, lookback: int) -> np.ndarray:
    """``block (n + lookback - 1, symbol, feature)`` -> the model's input rows
    ``(n * symbol, lookback, feature)``, ordered (t, symbol), each window's decision row last.

    Inference and :meth:`pitgrid.models.TrainingFrame.samples` both cut windows here, so a
    model is trained on exactly the shape and order it is later fed.

    Example:
        >>> window_rows(np.arange(6, dtype=np.float32).reshape(3, 1, 2), 2)[:, :, 0].tolist()
        [[0.0, 2.0], [2.0, 4.0]]
    """
    n, n_sym = block.shape[0] - lookback + 1, block.shape[1]
    # may be a view of ``block`` (lookback 1): writable when it is, so torch can borrow it
    windows = np.lib.stride_tricks.sliding_window_view(block, lookback, axis=0,
                                                       writeable=block.flags.writeable)
    return np.ascontiguousarray(np.moveaxis(windows, -1, 2)).reshape(n * n_sym, lookback, -1)


def _forward(module: torch.nn.Module, x: np.ndarray, n_classes: int) -> np.ndarray:
    import torch

    with torch.inference_mode():
        logits = module(torch.from_numpy(x))
        if tuple(logits.shape) != (x.shape[0], n_classes):
            raise ValueError(f"the model returned shape {tuple(logits.shape)}, "
                             f"expected ({x.shape[0]}, {n_classes})")
        return torch.softmax(logits.float(), dim=-1).numpy()


def _predict_block(bundle: ModelBundle,
                   block: np.ndarray) -> tuple[np.ndarray, np.ndarray, str | None]:
    """``block (n + lookback - 1, symbol, feature)`` raw features -> probabilities
    ``(n, symbol, class)``, status ``(n, symbol)`` and the forward pass's error, if any."""
    n, n_sym = block.shape[0] - bundle.lookback + 1, block.shape[1]
    windows = window_rows(normalize(block, bundle.normalization), bundle.lookback)
    ok = np.isfinite(windows).all(axis=(1, 2))
    probs = np.full((n * n_sym, bundle.n_classes), np.nan, dtype=np.float32)
    status = np.where(ok, STATUS_OK, STATUS_MISSING).astype(np.int8)
    error = None
    if ok.any():
        every = bool(ok.all())  # the common case: skip the gather and the scatter
        try:
            out = _forward(bundle.module, windows if every else windows[ok], bundle.n_classes)
            if every:
                probs = out
            else:
                probs[ok] = out
        except Exception as e:  # any failure of the model is recorded, not raised: those rows HOLD
            status[ok] = STATUS_ERROR
            error = f"{type(e).__name__}: {e}"
    return probs.reshape(n, n_sym, -1), status.reshape(n, n_sym), error


def _check_features(bundle: ModelBundle, features: Any, time_axis: bool) -> np.ndarray:
    f = np.asarray(features)
    if f.ndim != 3 or f.shape[2] != bundle.n_features:
        raise ValueError(f"features must be (time, symbol, {bundle.n_features}) for "
                         f"{list(bundle.feature_names)}, got shape {f.shape}")
    if not time_axis and f.shape[0] != bundle.lookback:
        raise ValueError(f"window_features must hold lookback={bundle.lookback} rows, "
                         f"got {f.shape[0]}")
    return f


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    import torch

    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cache_files(cache_dir: str | os.PathLike[str], bundle: ModelBundle,
                 fingerprint: str) -> tuple[Path, Path]:
    key = hashlib.sha256(json.dumps(
        [bundle.weights_sha256, bundle.metadata_sha256, fingerprint]).encode()).hexdigest()[:32]
    root = Path(cache_dir)
    return root / f"{key}.probs.npy", root / f"{key}.status.npy"


def _read_cache(files: tuple[Path, Path], shape: tuple[int, int],
                n_classes: int) -> Prediction | None:
    try:
        probs, status = (np.load(f, allow_pickle=False) for f in files)
    except (OSError, ValueError):
        return None  # absent or unreadable: recompute and overwrite
    if (probs.shape != (*shape, n_classes) or probs.dtype != np.float32
            or status.shape != shape or status.dtype != np.int8):
        return None
    return Prediction(probs, status, from_cache=True)


def _write_cache(files: tuple[Path, Path], pred: Prediction) -> None:
    files[0].parent.mkdir(parents=True, exist_ok=True)
    for f, a in zip(files, (pred.probs, pred.status)):
        tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, a)
        os.replace(tmp, f)  # readers never see a half-written array


def predict_proba(bundle: ModelBundle, features: Any, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                  threads: int | None = None, cache_dir: str | os.PathLike[str] | None = None,
                  fingerprint: str | None = None, progress: bool | None = None) -> Prediction:
    """Class probabilities for every (time, symbol) row of ``features (time, symbol, feature)``
    (as built by :func:`~pitgrid.models.features.build_features`).

    Rows run in chunks of about ``chunk_rows`` under ``torch.inference_mode()`` with
    ``threads`` torch threads (None: leave torch's setting). With ``cache_dir`` and
    ``fingerprint`` (a string identifying the data), the result is stored as .npy
    keyed by the model's weights, its metadata and the fingerprint, and read back
    on the next call; a result with inference errors is not cached. ``progress``: a bar
    over the chunks (``None``: on a terminal, for at least ``PROGRESS_CHUNKS`` chunks).

    Example:
        >>> features = build_features(bundle, ds)              # doctest: +SKIP
        >>> probs, status = predict_proba(bundle, features)    # doctest: +SKIP
        >>> probs.shape, status.shape                          # doctest: +SKIP
        ((2520, 500, 3), (2520, 500))
    """
    from tqdm.auto import tqdm

    f = _check_features(bundle, features, time_axis=True)
    if (cache_dir is None) != (fingerprint is None):
        raise ValueError("the cache needs both cache_dir and fingerprint")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    n_time, n_sym = f.shape[:2]
    files = _cache_files(cache_dir, bundle, fingerprint) if cache_dir is not None else None
    if files is not None:
        cached = _read_cache(files, (n_time, n_sym), bundle.n_classes)
        if cached is not None:
            return cached
    probs = np.empty((n_time, n_sym, bundle.n_classes), dtype=np.float32)
    status = np.empty((n_time, n_sym), dtype=np.int8)
    errors = []
    step = max(1, chunk_rows // max(n_sym, 1))
    starts = range(0, n_time, step)
    show = (len(starts) >= PROGRESS_CHUNKS and None) if progress is None else progress
    with _torch_threads(threads), tqdm(total=len(starts), desc="inference", unit="chunk",
                                       disable=None if show is None else not show) as bar:
        for t0 in starts:
            t1 = min(t0 + step, n_time)
            p, s, err = _predict_block(bundle, _history(f, t0, t1, bundle.lookback))
            probs[t0:t1], status[t0:t1] = p, s
            if err is not None:
                errors.append(f"rows t={t0}..{t1 - 1}: {err}")
            bar.update()
    pred = Prediction(probs, status, tuple(errors))
    if files is not None and not errors:
        _write_cache(files, pred)
    return pred


def predict_step(bundle: ModelBundle, window_features: Any, *,
                 threads: int | None = None) -> Prediction:
    """One step: ``window_features (lookback, symbol, feature)`` (rows t - lookback + 1 .. t,
    see :func:`feature_window`) -> probabilities ``(symbol, class)`` and status ``(symbol,)``,
    all symbols in one forward pass. Agrees with :func:`predict_proba` at row t.

    Example:
        >>> window = feature_window(features, t, bundle.lookback)   # doctest: +SKIP
        >>> probs, status = predict_step(bundle, window)             # doctest: +SKIP
    """
    f = _check_features(bundle, window_features, time_axis=False)
    with _torch_threads(threads):
        p, s, err = _predict_block(bundle, f)
    return Prediction(p[0], s[0], (f"step: {err}",) if err is not None else ())
