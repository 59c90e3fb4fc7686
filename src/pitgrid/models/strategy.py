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

_BUNDLES: dict[tuple[str, float], Any] = {}


def _load(path: str) -> Any:
    from pitgrid.models.bundle import ModelBundle

    p = Path(path)
    key = (str(p.resolve()), (p / "model.pt").stat().st_mtime if (p / "model.pt").exists() else 0.0)
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

    def _fields(self, b: Any) -> list[str]:
        return list(dict.fromkeys(name for spec in b.features for name in spec.fields))

    def features(self, data: FeatureData) -> dict[str, np.ndarray]:
        from pitgrid.models.features import build_features
        from pitgrid.models.inference import predict_proba

        b = _load(self.bundle)
        fields = {name: data.adjusted(name) if name != "valid" else data.raw(name)
                  for name in self._fields(b)}
        probs, status = predict_proba(b, build_features(b, fields), threads=self.threads)
        return {"probs": probs, "status": status}

    def feature_stream(self, symbols: np.ndarray) -> Any:
        """The bundle's features as kernel streams and a window of ``lookback`` rows, through
        one forward pass of every symbol per bar (:func:`pitgrid.models.predict_step`)."""
        from pitgrid.models.stream import ModelStream

        return ModelStream(_load(self.bundle), len(symbols), self.threads)

    def intents(self, data: FeatureData, f: dict[str, np.ndarray]) -> Intents:
        entries, exits = _load(self.bundle).decision.raw_signals(f["probs"])
        return Intents(entries=entries, exits=exits)

    def settings(self) -> dict[str, Any]:
        d = _load(self.bundle).decision
        return {"size": "percent", "size_value": self.weight, "min_bars_between": d.min_bars_between}

    def annotations(self, data: FeatureData, f: dict[str, np.ndarray]) -> dict[str, pl.DataFrame]:
        """Every row the model left at HOLD, with its reason (low confidence, missing features...)."""
        from pitgrid.models.decision import BUY, SELL, reason_names

        codes = _load(self.bundle).decision.model_reasons(f["probs"], f["status"])
        t, s = np.nonzero((codes != BUY) & (codes != SELL))
        return {"holds": pl.DataFrame({"time": data.time[t], "symbol": data.symbols[s].astype(str),
                                       "reason": reason_names(codes[t, s])})}
