"""Shared fixtures: small long-format bar files and the real sample data when present."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import pitgrid as pg

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _long_bars(n_time: int = 30, n_symbols: int = 4, seed: int = 0, gaps: float = 0.1) -> pl.DataFrame:
    """Clean long-format bars (time as YYYY-MM-DD text), sorted by symbol then time, with gaps."""
    ds = pg.synthetic_prices(n_time, n_symbols, seed=seed)
    keep = np.random.default_rng(seed).random((n_time, n_symbols)) >= gaps
    keep[0] = True  # every symbol starts on the first bar, so the calendar is the full range
    t_idx, s_idx = np.nonzero(keep)
    order = np.lexsort((t_idx, s_idx))
    t_idx, s_idx = t_idx[order], s_idx[order]
    times = np.datetime_as_string(ds["time"].values, unit="D")
    frame = {"time": times[t_idx], "symbol": ds["symbol"].values[s_idx].astype(str)}
    for name in ("open", "high", "low", "close", "volume"):
        frame[name] = ds[name].values[t_idx, s_idx]
    return pl.DataFrame(frame)


@pytest.fixture
def long_bars() -> Callable[..., pl.DataFrame]:
    """Factory: ``long_bars(n_time=30, n_symbols=4, seed=0, gaps=0.1) -> polars.DataFrame``."""
    return _long_bars


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[pl.DataFrame, str], Path]:
    """Factory: write a frame as CSV under ``tmp_path`` and return its path."""

    def write(frame: pl.DataFrame, name: str = "prices.csv") -> Path:
        path = tmp_path / name
        frame.write_csv(path)
        return path

    return write


@pytest.fixture
def shared_data() -> Path:
    """The real sample data folder; tests needing it are skipped in a clone without it."""
    if not (SHARED_DATA / "prices.csv.gz").exists():
        pytest.skip(f"real sample data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_market(tmp_path_factory) -> pg.MarketData:
    """The real sample ingested once per session, with its S&P 500 membership."""
    if not (SHARED_DATA / "prices.csv.gz").exists():
        pytest.skip(f"real sample data not present at {SHARED_DATA}")
    store = pg.ingest(SHARED_DATA / "prices.csv.gz", tmp_path_factory.mktemp("real") / "sample",
                      universes=SHARED_DATA / "sp500_membership_intervals.csv",
                      unknown_symbols="drop", progress=False)
    return pg.open_market(store)
