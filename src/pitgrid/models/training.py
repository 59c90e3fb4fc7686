"""Training data for a model bundle, built exactly as :class:`~pitgrid.models.ModelStrategy` sees it.

:func:`training_frame` reads the market through the strategy's own code path
(:func:`~pitgrid.models.features.model_inputs` on a :class:`pitgrid.FeatureData`,
then :func:`~pitgrid.models.features.build_features`): prices split-adjusted as of
each bar, NaN on bars a symbol did not trade. Features on raw prices would see a
-50 % "return" at every 2:1 split that the strategy never sees.

The label, the forward return over ``horizon`` bars, is the one thing here that
looks ahead, by design. :meth:`TrainingFrame.samples` keeps a row only when its
label is fully known by ``end``, so a model trained with ``end = c`` has seen
nothing after ``c``: backtest it from the bar after ``c``.

Example:
    >>> import pitgrid as pg
    >>> from pitgrid.models import training_frame
    >>> market = pg.MarketData(pg.synthetic_prices(300, 5, seed=0))
    >>> frame = training_frame(market, [{"name": "r5", "kernel": "momentum",
    ...                                  "params": {"window": 5}, "field": "close"}], horizon=5)
    >>> s = frame.samples(end=market.time[199])
    >>> s.x.shape[1:], bool((s.time + 5 <= 199).all())
    ((1, 1), True)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pitgrid.models.bundle import Normalization
from pitgrid.models.features import as_specs, build_features, model_inputs
from pitgrid.models.inference import normalize, window_rows

if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.data.market import MarketData
    from pitgrid.models.features import FeatureSpec

__all__ = ["Samples", "TrainingFrame", "training_frame"]


@dataclass(frozen=True)
class Samples:
    """Model input rows with finite windows and known labels.

    ``x (n, lookback, feature)`` float32 as the model is fed them (normalised when
    a normalisation was given); ``forward_return (n,)``; ``time`` and ``symbol`` the
    bar index and symbol index of each row's decision bar.
    """

    x: np.ndarray
    forward_return: np.ndarray
    time: np.ndarray
    symbol: np.ndarray


@dataclass(frozen=True)
class TrainingFrame:
    """Features ``(time, symbol, feature)`` float32 as the strategy computes them, and the
    split-adjusted forward return ``(time, symbol)`` over ``horizon`` bars (NaN where unknown).

    Example:
        >>> frame.features.shape, frame.forward_return.shape         # doctest: +SKIP
        ((5284, 504, 3), (5284, 504))
    """

    features: np.ndarray
    forward_return: np.ndarray
    specs: tuple[FeatureSpec, ...]
    time: np.ndarray
    symbols: np.ndarray
    horizon: int

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def _last_row(self, end: Any) -> int:
        """The last bar whose label is known by ``end`` (all bars' labels when None)."""
        if end is None:
            return len(self.time) - 1 - self.horizon
        cut = int(np.searchsorted(self.time, np.datetime64(end, "ns"), side="right")) - 1
        return cut - self.horizon

    def normalization(self, *, end: Any = None) -> dict[str, list[float]]:
        """Mean and standard deviation of each feature over the rows :meth:`samples` with
        ``lookback=1`` would use up to ``end``: fitted on the training rows only, as the
        design asks (a zero deviation becomes 1, so a constant feature stays finite).

        Example:
            >>> norm = frame.normalization(end="2015-12-31")           # doctest: +SKIP
        """
        n = max(self._last_row(end) + 1, 0)
        rows = self.features[:n].reshape(-1, len(self.specs)).astype(np.float64)
        rows = rows[np.isfinite(rows).all(axis=1) & np.isfinite(self.forward_return[:n].reshape(-1))]
        if len(rows) == 0:
            raise ValueError("no row with every feature finite before end: nothing to fit")
        std = rows.std(axis=0)
        return {"mean": rows.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}

    def samples(self, *, lookback: int = 1, start: Any = None, end: Any = None,
                normalization: Normalization | dict[str, Any] | None = None) -> Samples:
        """The rows of bars ``start..end`` whose window is finite and whose label is known by
        ``end``, cut into windows of ``lookback`` rows as inference cuts them.

        Example:
            >>> s = frame.samples(lookback=5, end="2015-12-31",
            ...                   normalization=frame.normalization(end="2015-12-31"))  # doctest: +SKIP
        """
        if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 1:
            raise ValueError(f"lookback must be a whole number >= 1, got {lookback!r}")
        first = 0 if start is None else int(np.searchsorted(self.time, np.datetime64(start, "ns")))
        first = max(first, lookback - 1)
        last = self._last_row(end)
        n_sym = len(self.symbols)
        if last < first:
            empty = np.empty((0, lookback, len(self.specs)), np.float32)
            return Samples(empty, np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64))
        x = window_rows(normalize(self.features[first - lookback + 1: last + 1],
                                  _as_normalization(normalization)), lookback)
        y = self.forward_return[first: last + 1].reshape(-1)
        t, s = np.divmod(np.arange(len(y)), n_sym)
        ok = np.isfinite(x).all(axis=(1, 2)) & np.isfinite(y)
        return Samples(x[ok], y[ok], t[ok] + first, s[ok])


def _as_normalization(norm: Any) -> Normalization | None:
    if norm is None or isinstance(norm, Normalization):
        return norm
    return Normalization(np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32))


def training_frame(market: MarketData, features: Any, *, horizon: int = 5) -> TrainingFrame:
    """Features and labels over every bar of ``market`` for ``features`` (a list of feature
    objects as in a bundle's ``metadata.json``, or a loaded bundle).

    The features are those :class:`~pitgrid.models.ModelStrategy` computes on the
    same market, to the bit; the label is the split-adjusted close-to-close return
    from each bar to ``horizon`` bars later (NaN where either end did not trade).

    Example:
        >>> frame = training_frame(pg.open_market("prices.pitgrid"), FEATURES)  # doctest: +SKIP
    """
    from pitgrid.cycle.data import FeatureData

    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a whole number of bars >= 1, got {horizon!r}")
    specs = as_specs(features)
    data = FeatureData(market)
    x = build_features(specs, model_inputs(data, specs))
    close = data.adjusted("close")
    forward = np.full(close.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        forward[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    return TrainingFrame(features=x, forward_return=forward, specs=specs, time=data.time,
                         symbols=data.symbols, horizon=horizon)
