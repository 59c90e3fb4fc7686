"""The result of a simulation: labelled arrays, trade tables and metrics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl
import xarray as xr


@dataclass
class SimResult:
    """Outputs of :func:`pitgrid.simulate` (and of the drivers built on it).

    ``equity`` is the total equity per parameter set (dims ``time`` or
    ``param, time``), always present. ``account_equity``, ``cash`` (dims
    ``[param,] time, account``) and ``positions`` (``[param,] time, symbol``) are
    present when kept (``keep="full"``). ``trades`` holds every fill, ``unfilled``
    every order or remainder that did not fill and why, ``filtered`` every order a
    risk gate refused and why, ``halted_at`` the bar index at which the drawdown
    stop halted each account (-1 = never; present when the stop is on). ``metrics`` has one row
    per parameter set. ``optimistic`` is true for same-bar close fills.

    Example:
        >>> import pitgrid as pg
        >>> ds = pg.synthetic_prices(60, 3, seed=0)
        >>> res = pg.simulate(ds, weights=ds["close"] * 0 + 0.3, fill="close")
        >>> res.optimistic, res.trades.height > 0
        (True, True)
    """

    equity: xr.DataArray
    long_exposure: xr.DataArray
    short_exposure: xr.DataArray
    trades: pl.DataFrame
    unfilled: pl.DataFrame
    metrics: pl.DataFrame
    config: dict[str, Any]
    optimistic: bool
    filtered: pl.DataFrame | None = None
    halted_at: xr.DataArray | None = None
    account_equity: xr.DataArray | None = None
    cash: xr.DataArray | None = None
    positions: xr.DataArray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> pl.DataFrame:
        """Metrics with the fill assumption spelled out."""
        label = "close (optimistic)" if self.optimistic else self.config.get("fill", "")
        return self.metrics.with_columns(pl.lit(label).alias("fill"))
