"""Robustness runs: a strategy over resampled and stressed price paths, metrics per path.

Paths are built from the market's own bars: a stationary block bootstrap of whole
cross-sections (so symbols keep their co-movement), and shocks injected on chosen
dates. Each path is one compiled pass; the call returns the metric distribution.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData, TimeLike
from pitgrid.drivers.batch import backtest
from pitgrid.drivers.common import as_market
from pitgrid.engine.config import SimConfig

_PRICES = ("open", "high", "low", "close")


@dataclass
class RobustnessResult:
    """Metrics per path (``table``; path 0 is the market as it is) and their distribution."""

    table: pl.DataFrame

    def summary(self, quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)) -> pl.DataFrame:
        metrics = [c for c in self.table.columns if c != "path" and self.table[c].dtype.is_numeric()]
        rows = [{"stat": f"q{int(q * 100):02d}", **{m: self.table[m].quantile(q) for m in metrics}}
                for q in quantiles]
        rows.append({"stat": "worst", **{m: self.table[m].min() for m in metrics}})
        return pl.DataFrame(rows)


def bootstrap_paths(market: MarketData, n_paths: int, *, block: int = 20, seed: int = 0,
                    shocks: Mapping[TimeLike, float] | None = None) -> Iterator[MarketData]:
    """``n_paths`` markets: the original (with shocks) first, then block-bootstrapped ones.

    A path keeps bar 0 and then chains bars drawn in blocks of about ``block`` bars (the
    stationary bootstrap: geometric block lengths): each drawn bar contributes its
    close-to-close return and its open/high/low relative to its close, its volume and
    its validity. ``shocks`` maps a time to a return applied to every symbol at that
    bar (prices from that bar on scale by ``1 + shock``).

    Example:
        >>> import pitgrid as pg
        >>> m = pg.MarketData(pg.synthetic_prices(50, 3, seed=0))
        >>> paths = list(bootstrap_paths(m, 3, block=5, seed=1))
        >>> len(paths), paths[1].ds["close"].shape
        (3, (50, 3))
    """
    if n_paths < 1 or block < 1:
        raise ValueError(f"n_paths and block must be >= 1, got {n_paths}, {block}")
    ds = market.ds
    T = ds.sizes["time"]
    shock_rows = {market.index_of(t): float(r) for t, r in (shocks or {}).items()}
    for r in shock_rows.values():
        if not r > -1:
            raise ValueError(f"a shock must be a return above -1, got {r}")
    rng = np.random.default_rng(seed)
    for path in range(n_paths):
        order = np.arange(T) if path == 0 else _stationary_order(T, block, rng)
        yield MarketData(_resampled(ds, order, shock_rows))


def robustness(market: MarketData | xr.Dataset, strategy: Strategy,
               config: SimConfig | dict[str, Any] | None = None, *, n_paths: int = 100,
               block: int = 20, shocks: Mapping[TimeLike, float] | None = None, seed: int = 0,
               progress: bool = True) -> RobustnessResult:
    """Metrics of ``strategy`` on the market and on ``n_paths - 1`` bootstrapped paths.

    Example:
        >>> import pitgrid as pg
        >>> from pitgrid.strategies import MovingAverageCross
        >>> m = pg.MarketData(pg.synthetic_prices(200, 4, seed=0))
        >>> r = pg.robustness(m, MovingAverageCross(fast=5, slow=20), n_paths=4, progress=False)
        >>> r.table.height
        4
    """
    market = as_market(market).load()
    rows = []
    paths = bootstrap_paths(market, n_paths, block=block, seed=seed, shocks=shocks)
    if progress:
        from tqdm.auto import tqdm

        paths = tqdm(paths, total=n_paths, unit="path", desc="robustness")
    for i, m in enumerate(paths):
        res = backtest(m, strategy, config, keep="equity")
        rows.append(res.metrics.drop("param").with_columns(pl.lit(i).alias("path")))
    table = pl.concat(rows)
    return RobustnessResult(table.select(["path", *[c for c in table.columns if c != "path"]]))


def _stationary_order(T: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Source bars 1..T-1 in stationary-bootstrap blocks; bar 0 stays first."""
    order = np.empty(T, dtype=np.int64)
    order[0] = 0
    t = 1
    while t < T:
        start = int(rng.integers(1, T))
        length = int(rng.geometric(1.0 / block))
        take = np.arange(start, start + length)
        take = 1 + (take - 1) % (T - 1)
        n = min(len(take), T - t)
        order[t:t + n] = take[:n]
        t += n
    return order


def _resampled(ds: xr.Dataset, order: np.ndarray, shock_rows: dict[int, float]) -> xr.Dataset:
    close = np.asarray(ds["close"].values, dtype=np.float64)
    prev = np.vstack([close[:1], close[:-1]])
    ret = np.where(np.isfinite(close / prev), close / prev, 1.0)[order]
    ret[0] = 1.0
    for row, shock in shock_rows.items():
        ret[row] = ret[row] * (1.0 + shock)
    level = close[0] * np.cumprod(ret, axis=0)
    valid = np.asarray(ds["valid"].values, dtype=bool)[order]
    out = {"close": np.where(valid, level, np.nan)}
    for name in _PRICES[:3]:
        rel = np.asarray(ds[name].values, dtype=np.float64)[order] / close[order]
        out[name] = np.where(valid, level * rel, np.nan)
    dims = ("time", "symbol")
    data = {k: (dims, v) for k, v in out.items()}
    data["volume"] = (dims, np.asarray(ds["volume"].values)[order])
    data["valid"] = (dims, valid)
    return xr.Dataset(data, coords={"time": ds["time"].values, "symbol": ds["symbol"].values})
