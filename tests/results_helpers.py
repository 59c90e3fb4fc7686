"""What the SQLite and PostgreSQL results tests share: a run to store, and a run held
inside its write transaction."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pitgrid as pg
from pitgrid.results import db as rdb
from pitgrid.results.db import ResultsDB


def sma_run() -> pg.SimResult:
    """A small 20-bar moving-average run with fills, fees and kept positions."""
    ds = pg.synthetic_prices(300, 8, seed=0)
    c = ds["close"]
    mean = c.rolling(time=20).mean()
    return pg.simulate(ds, entries=c > mean, exits=c < mean, fees_bps=10, keep="full")


@contextmanager
def run_being_written(monkeypatch, open_db: Callable[[], ResultsDB], result,
                      strategy: str) -> Iterator[None]:
    """Yield while another thread's ``save_run(result)`` sits inside its transaction (rows
    inserted, not committed); on exit let it commit and check that it succeeded."""
    inside, release = threading.Event(), threading.Event()
    original = rdb._insert_equity

    def held(*args):
        original(*args)
        inside.set()
        assert release.wait(30)

    monkeypatch.setattr(rdb, "_insert_equity", held)
    errors: list[BaseException] = []

    def write():
        try:
            with open_db() as writer:
                writer.save_run(result, strategy=strategy, data_fingerprint="fp")
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert inside.wait(30)
        yield
    finally:
        release.set()
        thread.join(30)
    assert not errors
