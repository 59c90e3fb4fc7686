"""Paper trading that goes on from where it stopped: the step driver on a store that grows.

One :meth:`PaperTrader.update` (the command ``pitgrid paper CONFIG --state DIR``)
opens the config's store, resumes the saved driver (or starts one), runs every bar
not yet run, saves, and writes the orders that execute at the next open to
``DIR/orders.csv`` and ``DIR/orders.json`` and the run so far to the results
database, as one paper run whose id stays the same while it grows. With no new bar
it changes nothing. :meth:`PaperTrader.run` takes a feed (a scheduler, a vendor
drop): each item it yields is new bar files, appended to the store, then an update.

Every step leaves ``DIR`` whole: the driver's state is written to a new folder and
a pointer file is replaced atomically; the orders files likewise; the database
write is one transaction, redone on the next call if a kill came before its mark.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pitgrid.drivers.step import StepDriver

_POINTER = "current"
_PAPER = "paper.json"


@dataclass(frozen=True)
class PaperUpdate:
    """What one update did: bars run now and in all, the orders for the next open."""

    bars_run: int
    bars_total: int
    last_time: np.datetime64 | None
    orders: pl.DataFrame
    run_id: str
    state: Path


class PaperTrader:
    """A strategy paper-traded on a store that grows, its state in ``state`` (a folder).

    Example:
        >>> trader = PaperTrader("paper.toml", "paper_state")       # doctest: +SKIP
        >>> trader.update().orders                                  # doctest: +SKIP
        >>> for update in trader.run(new_files_each_evening()):      # doctest: +SKIP
        ...     send(update.orders)
    """

    def __init__(self, config: Any, state: str | os.PathLike[str], *, db: str | None = None) -> None:
        from pitgrid.runconfig import RunConfig, load_run_config

        self.config = config if isinstance(config, RunConfig) else load_run_config(config)
        if self.config.store is None:
            raise ValueError(f"{self.config.source}: paper trading needs [data] store (a store "
                             "that grows with `pitgrid ingest NEW --store S --append`)")
        if self.config.is_grid:
            raise ValueError(f"{self.config.source} has grid axes: paper trading runs one strategy")
        self.state = Path(state)
        self.db = db or self.config.db

    # ------------------------------------------------------------------ one call
    def update(self) -> PaperUpdate:
        """Run every bar not yet run, save, write the orders and the database run."""
        market = self.config.open_market()
        strategy = self.config.strategy()
        self.state.mkdir(parents=True, exist_ok=True)
        paper = self._paper_record()
        current = self._current()
        if current is None:
            driver = StepDriver(market, strategy, dict(self.config.settings))
        else:
            driver = StepDriver.load(current, market, strategy)
        start = driver.t
        if driver.t < driver.n_time:
            driver.run(progress=None)
            self._save(driver)
        orders = driver.next_orders()
        _write_atomic(self.state / "orders.csv", orders.write_csv().encode())
        _write_atomic(self.state / "orders.json",
                      json.dumps({"after": str(market.time[driver.t - 1]) if driver.t else None,
                                  "orders": orders.to_dicts()}, indent=1).encode())
        if paper.get("db_bars") != driver.t:
            self._save_run(driver, market, strategy, paper["run_id"])
            paper["db_bars"] = driver.t
            _write_atomic(self.state / _PAPER, json.dumps(paper, indent=1).encode())
        return PaperUpdate(driver.t - start, driver.t,
                           market.time[driver.t - 1] if driver.t else None, orders,
                           paper["run_id"], self.state)

    def run(self, feed: Iterable[Any] | Callable[[], Any]) -> Iterator[PaperUpdate]:
        """For each item of ``feed`` (new bar files: a path or a list of paths; None or an
        empty list when nothing came), append it to the store, then :meth:`update`. A
        callable feed (the trigger provider) is called for each next item until it raises
        ``StopIteration``."""
        from pitgrid.data.ingest import ingest

        items = iter(feed, _END) if callable(feed) else iter(feed)
        for item in items:
            files = [] if item is None else ([item] if isinstance(item, (str, os.PathLike)) else list(item))
            if files:
                ingest(files, self.config.store, append=True, progress=False)
            yield self.update()

    # ------------------------------------------------------------------ state folder
    def _paper_record(self) -> dict[str, Any]:
        path = self.state / _PAPER
        if path.exists():
            record = json.loads(path.read_text())
            if record.get("strategy") != self.config.describe()["strategy"]:
                raise ValueError(f"{path}: this state is for {record.get('strategy')}, "
                                 f"not {self.config.describe()['strategy']}")
            return record
        record = {"run_id": uuid.uuid4().hex, "strategy": self.config.describe()["strategy"],
                  "config": self.config.source, "db_bars": None}
        _write_atomic(path, json.dumps(record, indent=1).encode())
        return record

    def _current(self) -> Path | None:
        pointer = self.state / _POINTER
        if not pointer.exists():
            return None
        return self.state / pointer.read_text().strip()

    def _save(self, driver: StepDriver) -> None:
        name = f"driver-{driver.t}-{uuid.uuid4().hex[:8]}"
        driver.save(self.state / name)
        _write_atomic(self.state / _POINTER, name.encode())
        for old in self.state.glob("driver-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    def _save_run(self, driver: StepDriver, market: Any, strategy: Any, run_id: str) -> None:
        import dataclasses

        from pitgrid.results.db import ResultsDB
        from pitgrid.runconfig import stored_params

        res = driver.result()
        res = dataclasses.replace(res, config={**res.config, "run": self.config.describe(),
                                               "paper": {"state": str(self.state),
                                                         "bars_run": driver.t}})
        with ResultsDB(self.db) as db:
            db.save_run(res, strategy=strategy.name, data_fingerprint=market.fingerprint(),
                        universe_id=self.config.universe, params=[stored_params(strategy)],
                        run_id=run_id)


_END = object()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
