"""Torch models as decision makers: bundles, features, batched inference, the decision rule.

Importing this package does not import torch; loading, saving or running a model does.

Example:
    >>> from pitgrid.models import ModelBundle, build_features, predict_proba
    >>> bundle = ModelBundle.load("models/momentum_mlp")              # doctest: +SKIP
    >>> probs, status = predict_proba(bundle, build_features(bundle, ds))  # doctest: +SKIP
    >>> entries, exits = bundle.decision.raw_signals(probs)           # doctest: +SKIP
"""
from __future__ import annotations

from pitgrid.models.bundle import (
    FORMAT_VERSION, BundleError, ModelBundle, Normalization, save_bundle,
)
from pitgrid.models.decision import REASONS, DecisionFunction, reason_names
from pitgrid.models.features import FeatureSpec, build_features
from pitgrid.models.inference import (
    STATUS_NAMES, Prediction, feature_window, predict_proba, predict_step,
)

__all__ = [
    "FORMAT_VERSION", "REASONS", "STATUS_NAMES", "BundleError", "DecisionFunction", "FeatureSpec",
    "ModelBundle", "Normalization", "Prediction", "build_features", "feature_window",
    "predict_proba", "predict_step", "reason_names", "save_bundle",
]
