"""A strategy whose decisions come from a model bundle: features, batched inference, decisions.

The batch driver runs every (time, symbol) row through the model in large
chunks; the step driver sends all symbols of its bar through one forward pass.
Position awareness and the minimum bars between signals act inside the compiled
loop (the signals are long-only there), as for every signal strategy.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Intents, Strategy
from pitgrid.models.bundle import WEIGHTS_FILE, ModelBundle
from pitgrid.models.decision import BUY, SELL, reason_names
from pitgrid.models.features import build_features, model_inputs
from pitgrid.models.inference import predict_proba
from pitgrid.models.stream import ModelStream

_BUNDLES: dict[tuple[str, float], ModelBundle] = {}


def load_bundle(path: str | Path) -> ModelBundle:
    """The bundle at ``path``, loaded once per process (again when ``model.pt`` changes).

    Example:
        >>> load_bundle("models/mlp").weights_sha256[:8]         # doctest: +SKIP
        '3f9a0c1e'
    """
    p = Path(path)
    weights = p / WEIGHTS_FILE
    key = (str(p.resolve()), weights.stat().st_mtime if weights.exists() else 0.0)
    if key not in _BUNDLES:
        _BUNDLES[key] = ModelBundle.load(p)
    return _BUNDLES[key]


@dataclass(frozen=True, kw_only=True)
class ModelStrategy(Strategy):
    """Enter on the model's "buy", exit on its "sell", each with the bundle's decision settings.

    ``bundle`` is a model directory (see :func:`pitgrid.save_bundle`); ``weight`` the
    percent-of-equity size per entry; ``threads`` torch's CPU threads (1 keeps a
    shared machine responsive). A bundle whose features cannot be built from the
    market fails before the run, naming the file and the feature.

    Example:
        >>> from pitgrid.models.strategy import ModelStrategy
        >>> ModelStrategy(bundle="models/mlp", weight=0.02).params()["weight"]
        0.02
    """

    bundle: str
    weight: float = 0.05
    threads: int | None = 1
    feature_params: ClassVar[tuple[str, ...]] = ("bundle",)

    intent_rows: ClassVar[int | None] = 1  # the decision reads this bar's probabilities

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        b = load_bundle(self.bundle)
        probs, status = predict_proba(b, build_features(b, model_inputs(data, b.features)),
                                      threads=self.threads)
        return {"probs": probs, "status": status}

    def feature_stream(self, symbols: np.ndarray) -> Any:
        """The bundle's features as kernel streams and a window of ``lookback`` rows, through
        one forward pass of every symbol per bar (:func:`pitgrid.models.predict_step`)."""
        return ModelStream(load_bundle(self.bundle), len(symbols), self.threads)

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        entries, exits = load_bundle(self.bundle).decision.raw_signals(f["probs"])
        return Intents(entries=entries, exits=exits)

    def describe(self) -> dict[str, Any]:
        """Name and parameters, plus ``model_sha256``: the SHA-256 of the bundle's ``model.pt``."""
        return {**super().describe(), "model_sha256": load_bundle(self.bundle).weights_sha256}

    def settings(self) -> dict[str, Any]:
        d = load_bundle(self.bundle).decision
        return {"size": "percent", "size_value": self.weight, "min_bars_between": d.min_bars_between}

    def annotations(self, data: FeatureData, f: dict[str, np.ndarray]) -> dict[str, Any]:
        """Every row the model left at HOLD, with its reason (low confidence, missing features...),
        and ``model_sha256``, which the results database stores with the run."""
        b = load_bundle(self.bundle)
        codes = b.decision.model_reasons(f["probs"], f["status"])
        t, s = np.nonzero((codes != BUY) & (codes != SELL))
        return {"holds": pl.DataFrame({"time": data.time[t], "symbol": data.symbols[s].astype(str),
                                       "reason": reason_names(codes[t, s])}),
                "model_sha256": b.weights_sha256}
