"""Torch models as decision makers: train on what the strategy sees, bundle, infer, decide.

Modules import one way, each only from those before it::

    errors, status, architectures -> features, decision -> bundle -> inference -> stream,
    training -> strategy

Importing this package does not import torch; loading, saving or running a model does.
``docs/models.md`` walks through training, bundling and backtesting from a config.

Example:
    >>> from pitgrid.models import ModelBundle, build_features, predict_proba
    >>> bundle = ModelBundle.load("models/momentum_mlp")              # doctest: +SKIP
    >>> probs, status = predict_proba(bundle, build_features(bundle, ds))  # doctest: +SKIP
    >>> entries, exits = bundle.decision.raw_signals(probs)           # doctest: +SKIP
"""
from __future__ import annotations

from pitgrid.models.bundle import FORMAT_VERSION, ModelBundle, Normalization, save_bundle
from pitgrid.models.decision import REASONS, DecisionFunction, reason_names
from pitgrid.models.errors import BundleError
from pitgrid.models.features import FeatureSpec, build_features, model_inputs
from pitgrid.models.inference import Prediction, feature_window, predict_proba, predict_step
from pitgrid.models.status import STATUS_NAMES
from pitgrid.models.strategy import ModelStrategy, load_bundle
from pitgrid.models.training import Samples, TrainingFrame, training_frame

__all__ = [
    "FORMAT_VERSION", "REASONS", "STATUS_NAMES", "BundleError", "DecisionFunction", "FeatureSpec",
    "ModelBundle", "ModelStrategy", "Normalization", "Prediction", "Samples", "TrainingFrame",
    "build_features", "feature_window", "load_bundle", "model_inputs", "predict_proba",
    "predict_step", "reason_names", "save_bundle", "training_frame",
]
