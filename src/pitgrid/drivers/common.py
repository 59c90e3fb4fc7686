"""What both drivers share: the market, the resolved settings, and cached features."""
from __future__ import annotations

import contextlib
import contextvars
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Intents, Strategy, apply_universe
from pitgrid.data.market import MarketData
from pitgrid.engine.config import SimConfig

_FEATURE_CACHE: OrderedDict[tuple[str, str, int], dict[str, np.ndarray]] = OrderedDict()
_FEATURE_CACHE_SIZE = 16
# a cache of its own for a block of runs (own_feature_cache), in this thread only
_OWN_CACHE: contextvars.ContextVar[OrderedDict | None] = contextvars.ContextVar(
    "pitgrid_own_feature_cache", default=None)


def as_market(market: MarketData | xr.Dataset | str | Path) -> MarketData:
    """A MarketData from a MarketData, a Dataset, or the path of an ingested store."""
    if isinstance(market, (str, Path)):
        from pitgrid.data.market import open_market

        return open_market(market)
    if isinstance(market, MarketData):
        return market
    if isinstance(market, xr.Dataset):
        return MarketData(market)
    raise TypeError(f"market must be a MarketData or an xarray.Dataset, got {type(market).__name__}")


def resolve_settings(strategy: Strategy, config: SimConfig | dict[str, Any] | None
                     ) -> tuple[SimConfig, float | None]:
    """The strategy's own settings, overridden by the run's; returns the config and size value.

    A dict overrides only the keys it names; a :class:`SimConfig` is taken whole.
    """
    if isinstance(config, SimConfig):
        return config, strategy.settings().get("size_value")
    settings = {**strategy.settings(), **(config or {})}
    size_value = settings.pop("size_value", None)
    unknown = sorted(set(settings) - set(SimConfig.field_names()))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; allowed: {', '.join(SimConfig.field_names())}, size_value")
    return SimConfig(**settings), size_value


def clear_feature_cache() -> None:
    """Forget every cached feature set (to free memory, or to time feature building).

    Example:
        >>> import pitgrid as pg
        >>> pg.clear_feature_cache()
    """
    _FEATURE_CACHE.clear()


@contextlib.contextmanager
def own_feature_cache() -> Iterator[None]:
    """Within the block (in this thread), runs cache features in a cache of their own,
    empty at the start and gone at the end: they neither reuse features that earlier runs
    cached nor leave theirs behind. The point-in-time check's batch run in the caller's
    process uses it, so that it computes what a run in a fresh process computes.

    Example:
        >>> with own_feature_cache():
        ...     pass
    """
    token = _OWN_CACHE.set(OrderedDict())
    try:
        yield
    finally:
        _OWN_CACHE.reset(token)


def features_for(market: MarketData, strategy: Strategy, data: FeatureData) -> dict[str, np.ndarray]:
    """The strategy's features on ``data``; full-length ones cached by the market's
    ``cache_key()`` and parameters."""
    if data.upto != len(market.time) - 1:
        return strategy.features(data)
    cache = _OWN_CACHE.get()
    cache = _FEATURE_CACHE if cache is None else cache
    key = (market.cache_key(), strategy.feature_key(), data.upto)
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    feats = strategy.features(data)
    for a in feats.values():
        a.flags.writeable = False
    cache[key] = feats
    while len(cache) > _FEATURE_CACHE_SIZE:
        cache.popitem(last=False)
    return feats


def decide(market: MarketData, strategy: Strategy, data: FeatureData,
           notes: dict[str, Any] | None = None) -> Intents:
    """Universe, features and decisions for bars ``0..data.upto``; ``notes`` gets the annotations."""
    features = features_for(market, strategy, data)
    intents = strategy.intents(data, features)
    if notes is not None:
        notes.update(strategy.annotations(data, features))
    shape = (data.n_time, len(data.symbols))
    for name in ("entries", "exits", "weights"):
        a = getattr(intents, name)
        if a is not None and np.shape(a) != shape:
            raise ValueError(f"{strategy.name}.intents returned {name} of shape {np.shape(a)}, expected {shape}")
    member = None if strategy.universe is None else data.universe(strategy.universe)
    return apply_universe(intents, member, shape)
