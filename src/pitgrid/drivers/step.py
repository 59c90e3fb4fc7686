"""The step driver: one bar at a time on the ``as_of(t)`` view, calling the compiled step.

For paper trading, replays and audits. Each bar it builds what is known at ``t``,
computes features and decisions on it, and runs the same ``Core.run`` as the
batch engine for that one bar, so both drivers agree to the last bit.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Intents, Strategy
from pitgrid.data.market import MarketData, TimeLike
from pitgrid.drivers.common import as_market, decide, resolve_settings
from pitgrid.engine.codes import INTENT_SIGNALS, INTENT_WEIGHTS
from pitgrid.engine.config import SimConfig
from pitgrid.engine.result import SimResult
from pitgrid.engine.simulate import (allocate_outputs, build_result, log_tables, make_core,
                                     market_arrays, run_core, size_values)

_FORMAT = 1


@dataclass
class CycleResult:
    """One bar of the cycle: what was known, decided, ordered, filled, and refused."""

    t: int
    time: np.datetime64
    universe: np.ndarray
    intents: Intents
    orders: dict[str, float]
    fills: pl.DataFrame
    refused: pl.DataFrame
    equity: float


class StepDriver:
    """Run a strategy bar by bar; stop, save, reload and go on where it was.

    ``step()`` runs the next bar; ``run(until=...)`` runs to a time; ``run(triggers=...)``
    takes triggers from outside (a scheduler, a replay feed): each trigger time runs
    every bar up to it. ``save(path)`` writes the whole state in array formats
    (npz and JSON, no pickle); ``StepDriver.load(path, market, strategy)`` resumes.

    Example:
        >>> import pitgrid as pg
        >>> from pitgrid.strategies import MovingAverageCross
        >>> market = pg.MarketData(pg.synthetic_prices(80, 3, seed=0))
        >>> d = pg.StepDriver(market, MovingAverageCross(fast=5, slow=20))
        >>> r = d.step()
        >>> r.t, d.t
        (0, 1)
    """

    def __init__(self, market: MarketData | xr.Dataset, strategy: Strategy,
                 config: SimConfig | dict[str, Any] | None = None) -> None:
        self.market = as_market(market).load()
        self.strategy = strategy
        self.config, self._size_value = resolve_settings(strategy, config)
        ds = self.market.ds
        self._arrays = market_arrays(ds, self.config)
        self._delist = np.ascontiguousarray(self.market.delist_bar, dtype=np.int64)
        T, S = self._arrays["close"].shape
        self.n_time, self.n_symbols = T, S
        self.t = 0
        kind = decide(self.market, strategy, FeatureData(self.market, upto=0)).kind
        self._mode = INTENT_WEIGHTS if kind == "weights" else INTENT_SIGNALS
        self._entries = np.zeros((1, T, S), dtype=np.uint8)
        self._exits = np.zeros((1, T, S), dtype=np.uint8)
        self._weights = np.full((1, T, S), np.nan)
        self.core = make_core(self.config, 1, S, self._mode,
                              size_values(self.config, self._size_value, 1))
        self._out = allocate_outputs(1, T, S, self.core.A, True)
        self._log_i: list[np.ndarray] = []
        self._log_f: list[np.ndarray] = []

    # ------------------------------------------------------------------ stepping
    def step(self) -> CycleResult:
        """Run the next bar: decide on what is known at it, then the compiled step."""
        t = self.t
        if t >= self.n_time:
            raise StopIteration(f"no bar left: the market has {self.n_time} bars")
        data = FeatureData(self.market, upto=t)
        intents = decide(self.market, self.strategy, data).rows(slice(t, t + 1))
        if self.strategy.has_hook:
            intents = self.strategy.on_step(t, data, intents)
        self._write_intents(t, intents)
        known = {k: v[: t + 1] for k, v in self._arrays.items()}
        if self._mode == INTENT_WEIGHTS:
            bank_rows = (self._entries, self._exits, self._weights[:, : t + 1], _IDX, _IDX)
        else:
            bank_rows = (self._entries[:, : t + 1], self._exits[:, : t + 1], _NO_BANK, _IDX, _IDX)
        run_core(self.core, known, self._delist, bank_rows, self._out, t, t + 1)
        li, lf = self.core.take_log()
        self._log_i.append(li)
        self._log_f.append(lf)
        self.t = t + 1
        return self._cycle_result(t, data, intents, (li, lf))

    def run(self, until: TimeLike | None = None, *, triggers: Iterable[TimeLike] | None = None) -> SimResult:
        """Step to ``until`` (inclusive; default the last bar), or through each trigger time."""
        stops = [until] if triggers is None else list(triggers)
        for stop in stops:
            last = self.n_time - 1 if stop is None else self.market.index_of(stop)
            while self.t <= last:
                self.step()
        return self.result()

    def result(self) -> SimResult:
        """The result so far (bars not yet run are NaN in the arrays)."""
        res = build_result(self.core, self.config, self.market.ds, self._out, self._log(),
                           None, False, True)
        res.extra.update(strategy=self.strategy.describe(), bars_run=self.t)
        return res

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the driver's state to ``path`` (a directory): ``state.npz`` and ``meta.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        li, lf = self._log()
        arrays = {f"core_{k}": v for k, v in self.core.get_state().items()}
        arrays.update({f"out_{k}": v for k, v in self._out.items()})
        arrays.update(entries=self._entries, exits=self._exits, weights=self._weights,
                      log_i=li, log_f=lf)
        tmp = path / "state.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(path / "state.npz")
        meta = {"format": _FORMAT, "t": self.t, "strategy": self.strategy.describe(),
                "config": self.config.to_dict(), "size_value": self._size_value,
                "fingerprint": self.market.fingerprint()}
        (path / "meta.json").write_text(json.dumps(meta, default=str, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path, market: MarketData | xr.Dataset, strategy: Strategy) -> StepDriver:
        """Resume a saved driver; the market and strategy must be the ones it was saved with."""
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path / 'meta.json'}: unknown format {meta.get('format')!r}")
        if meta["strategy"] != json.loads(json.dumps(strategy.describe(), default=str)):
            raise ValueError(f"{path}: saved for {meta['strategy']}, not {strategy.describe()}")
        driver = cls(market, strategy, SimConfig(**meta["config"]) if meta["size_value"] is None
                     else {**meta["config"], "size_value": meta["size_value"]})
        if meta["fingerprint"] != driver.market.fingerprint():
            raise ValueError(f"{path}: saved on data {meta['fingerprint'][:12]}, "
                             f"this market is {driver.market.fingerprint()[:12]}")
        with np.load(path / "state.npz", allow_pickle=False) as z:
            driver.core.set_state({k[5:]: z[k] for k in z.files if k.startswith("core_")})
            for k in driver._out:
                driver._out[k] = np.array(z[f"out_{k}"])
            driver._entries, driver._exits = np.array(z["entries"]), np.array(z["exits"])
            driver._weights = np.array(z["weights"])
            driver._log_i, driver._log_f = [np.array(z["log_i"])], [np.array(z["log_f"])]
        driver.t = int(meta["t"])
        return driver

    # ------------------------------------------------------------------ helpers
    def _write_intents(self, t: int, intents: Intents) -> None:
        if intents.kind == "weights":
            if self._mode != INTENT_WEIGHTS:
                raise ValueError(f"bar {t}: {self.strategy.name} switched from signals to weights")
            self._weights[0, t] = intents.weights[0]
            return
        if self._mode != INTENT_SIGNALS:
            raise ValueError(f"bar {t}: {self.strategy.name} switched from weights to signals")
        if intents.entries is not None:
            self._entries[0, t] = intents.entries[0]
        if intents.exits is not None:
            self._exits[0, t] = intents.exits[0]

    def _log(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._log_i:
            return np.zeros((0, 6), dtype=np.int32), np.zeros((0, 4))
        return np.concatenate(self._log_i), np.concatenate(self._log_f)

    def _cycle_result(self, t: int, data: FeatureData, intents: Intents,
                      log: tuple[np.ndarray, np.ndarray]) -> CycleResult:
        fills, unfilled, filtered = log_tables(log, self.market.time, self.market.symbols)
        pending = self.core.get_state()["pending"][0]
        orders = {str(self.market.symbols[s]): float(pending[s]) for s in np.nonzero(pending)[0]}
        return CycleResult(
            t=t, time=self.market.time[t], universe=data.universe(self.strategy.universe)[t],
            intents=intents, orders=orders, fills=fills,
            refused=pl.concat([unfilled, filtered], how="vertical"),
            equity=float(self._out["equity"][0, t]),
        )


_IDX = np.zeros(1, dtype=np.int64)
_NO_BANK = np.zeros((1, 1, 1))
