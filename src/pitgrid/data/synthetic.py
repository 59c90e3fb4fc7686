"""Deterministic synthetic OHLCV universes for demos, tests and benchmarks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import xarray as xr


def synthetic_prices(
    n_time: int,
    n_symbols: int,
    seed: int = 0,
    *,
    start: str = "2010-01-04",
    mu: float = 0.06,
    sigma: float = 0.25,
) -> xr.Dataset:
    """Geometric Brownian motion per symbol with consistent OHLC and lognormal volume.

    Bars are business days from ``start``. Drift ``mu`` and volatility ``sigma`` are
    annual; each symbol draws its own volatility around ``sigma``. The same arguments
    always give the same Dataset.

    Example:
        >>> ds = synthetic_prices(252, 5, seed=1)
        >>> ds["close"].shape
        (252, 5)
        >>> bool((ds["high"] >= ds["low"]).all())
        True
    """
    if n_time < 1 or n_symbols < 1:
        raise ValueError(f"n_time and n_symbols must be >= 1, got {n_time}, {n_symbols}")
    rng = np.random.default_rng(seed)
    dt = 1.0 / 252.0
    vol = sigma * rng.lognormal(0.0, 0.3, n_symbols)
    drift = (mu - 0.5 * vol**2) * dt
    shocks = rng.standard_normal((n_time, n_symbols))
    log_close = np.log(rng.uniform(20.0, 200.0, n_symbols)) + np.cumsum(
        drift + vol * np.sqrt(dt) * shocks, axis=0
    )
    close = np.exp(log_close)
    prev = np.vstack([close[:1] * np.exp(-drift), close[:-1]])
    # the open gaps from the previous close by a fraction of the bar's volatility
    open_ = prev * np.exp(0.3 * vol * np.sqrt(dt) * rng.standard_normal((n_time, n_symbols)))
    span = np.abs(rng.standard_normal((n_time, n_symbols))) * vol * np.sqrt(dt) * 0.5
    high = np.maximum(open_, close) * np.exp(span * rng.uniform(0.2, 1.0, (n_time, n_symbols)))
    low = np.minimum(open_, close) * np.exp(-span * rng.uniform(0.2, 1.0, (n_time, n_symbols)))
    volume = np.round(rng.lognormal(13.0, 0.6, (n_time, n_symbols)))
    time = pd.bdate_range(start, periods=n_time)
    symbols = [f"S{i:0{max(4, len(str(n_symbols)))}d}" for i in range(n_symbols)]
    coords = {"time": time.values.astype("datetime64[ns]"), "symbol": symbols}
    dims = ("time", "symbol")
    return xr.Dataset(
        {
            "open": (dims, open_),
            "high": (dims, high),
            "low": (dims, low),
            "close": (dims, close),
            "volume": (dims, volume),
            "valid": (dims, np.ones((n_time, n_symbols), dtype=bool)),
        },
        coords=coords,
        attrs={"source": f"synthetic_prices(n_time={n_time}, n_symbols={n_symbols}, seed={seed})"},
    )


def long_bars(ds: xr.Dataset) -> pl.DataFrame:
    """The bars of a ``(time, symbol)`` Dataset as a long frame ``time, symbol, open, high,
    low, close, volume``, e.g. to write a CSV that :func:`pitgrid.ingest` reads.

    Only valid bars (``valid``, when the Dataset has it) and only those seven columns
    are kept: corporate actions go to ingest as their own file. Rows are sorted by
    symbol, then time. Times stay whole days when every bar is at midnight.
    Built straight from numpy, so no pyarrow is needed.

    Example:
        >>> frame = long_bars(synthetic_prices(252, 5, seed=1))
        >>> frame.shape
        (1260, 7)
    """
    n_time, n_symbols = ds.sizes["time"], ds.sizes["symbol"]
    times = ds["time"].values.astype("datetime64[ns]")
    days = times.astype("datetime64[D]")
    if np.array_equal(days.astype("datetime64[ns]"), times):
        times = days
    fields = ("open", "high", "low", "close", "volume")
    valid = ds["valid"].values.T.ravel() if "valid" in ds else np.ones(n_time * n_symbols, bool)
    frame = pl.DataFrame({
        "time": np.tile(times, n_symbols),
        "symbol": np.repeat(ds["symbol"].values.astype(str), n_time),
        **{f: np.ascontiguousarray(ds[f].values.T).ravel() for f in fields},
    })
    return frame.filter(pl.Series(valid))
