"""pitgrid: a point-in-time-safe, vectorized backtesting engine.

Public names are loaded on first use, so ``import pitgrid`` stays fast and never
imports torch or dask.

Example:
    >>> import pitgrid as pg
    >>> ds = pg.synthetic_prices(252, 10, seed=0)
    >>> res = pg.simulate(ds, weights=ds["close"] * 0 + 0.1, fees_bps=10)
    >>> float(res.equity[-1]) > 0
    True
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pitgrid.frozen_imports import install as _freeze_imports

__version__ = "0.1.0"

# the libraries pitgrid's modules import stay out of the collector's walks (and of the
# interpreter's exit): pitgrid.frozen_imports
_freeze_imports(__name__)

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "synthetic_prices": "pitgrid.data.synthetic",
    "long_bars": "pitgrid.data.synthetic",
    "ingest": "pitgrid.data.ingest",
    "IngestError": "pitgrid.data.validate",
    "ValidationError": "pitgrid.data.validate",
    "MarketData": "pitgrid.data.market",
    "MarketView": "pitgrid.data.market",
    "open_market": "pitgrid.data.market",
    "adjusted_as_of": "pitgrid.data.adjust",
    "simulate": "pitgrid.engine.simulate",
    "SimConfig": "pitgrid.engine.config",
    "SimResult": "pitgrid.engine.result",
    "InsufficientMemoryError": "pitgrid.engine.memory",
    "compute_metrics": "pitgrid.engine.metrics",
    "Strategy": "pitgrid.cycle.strategy",
    "Intents": "pitgrid.cycle.strategy",
    "FeatureData": "pitgrid.cycle.data",
    "backtest": "pitgrid.drivers.batch",
    "clear_feature_cache": "pitgrid.drivers.common",
    "StepDriver": "pitgrid.drivers.step",
    "CycleResult": "pitgrid.drivers.step",
    "SlowPathWarning": "pitgrid.drivers.step",
    "PaperTrader": "pitgrid.drivers.paper",
    "PaperUpdate": "pitgrid.drivers.paper",
    "check_point_in_time": "pitgrid.drivers.pit",
    "PointInTimeReport": "pitgrid.drivers.pit",
    "grid": "pitgrid.drivers.grid",
    "walkforward": "pitgrid.drivers.walkforward",
    "sleeves": "pitgrid.drivers.sleeves",
    "Sleeve": "pitgrid.drivers.sleeves",
    "SleevesResult": "pitgrid.drivers.sleeves",
    "WalkForwardResult": "pitgrid.drivers.walkforward",
    "GridResult": "pitgrid.drivers.grid",
    "robustness": "pitgrid.drivers.robustness",
    "RobustnessResult": "pitgrid.drivers.robustness",
    "ModelBundle": "pitgrid.models.bundle",
    "BundleError": "pitgrid.models.bundle",
    "save_bundle": "pitgrid.models.bundle",
    "DecisionFunction": "pitgrid.models.decision",
    "predict_proba": "pitgrid.models.inference",
    "predict_step": "pitgrid.models.inference",
    "build_features": "pitgrid.models.features",
    "ModelStrategy": "pitgrid.models.strategy",
    "training_frame": "pitgrid.models.training",
    "TrainingFrame": "pitgrid.models.training",
    "ResultsDB": "pitgrid.results.db",
    "StoredRun": "pitgrid.results.db",
    "write_report": "pitgrid.results.report",
    "write_grid_report": "pitgrid.results.report",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pitgrid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.cycle.data import FeatureData
    from pitgrid.cycle.strategy import Intents, Strategy
    from pitgrid.data.adjust import adjusted_as_of
    from pitgrid.drivers.batch import backtest
    from pitgrid.drivers.common import clear_feature_cache
    from pitgrid.drivers.grid import GridResult, grid
    from pitgrid.drivers.walkforward import WalkForwardResult, walkforward
    from pitgrid.drivers.sleeves import Sleeve, SleevesResult, sleeves
    from pitgrid.drivers.robustness import RobustnessResult, robustness
    from pitgrid.drivers.pit import PointInTimeReport, check_point_in_time
    from pitgrid.drivers.step import CycleResult, SlowPathWarning, StepDriver
    from pitgrid.drivers.paper import PaperTrader, PaperUpdate
    from pitgrid.data.ingest import ingest
    from pitgrid.data.market import MarketData, MarketView, open_market
    from pitgrid.data.synthetic import long_bars, synthetic_prices
    from pitgrid.data.validate import IngestError, ValidationError
    from pitgrid.engine.config import SimConfig
    from pitgrid.engine.memory import InsufficientMemoryError
    from pitgrid.models.bundle import BundleError, ModelBundle, save_bundle
    from pitgrid.models.decision import DecisionFunction
    from pitgrid.models.features import build_features
    from pitgrid.models.inference import predict_proba, predict_step
    from pitgrid.models.strategy import ModelStrategy
    from pitgrid.models.training import TrainingFrame, training_frame
    from pitgrid.results.db import ResultsDB, StoredRun
    from pitgrid.results.report import write_grid_report, write_report
    from pitgrid.engine.metrics import compute_metrics
    from pitgrid.engine.result import SimResult
    from pitgrid.engine.simulate import simulate
