"""A grid's feature bank: each distinct row computed once for the whole grid, before any chunk.

A strategy with a bank declares per variant the rows its rule reads (``grid_bank_keys``)
and how one row is computed (``grid_bank_row(data, key, out)``; a row depends on its key
and the data only). The bank is a ``(rows, time, symbol)`` float64 array: in memory when
the plan holds it whole (:class:`~pitgrid.drivers.grid_plan.GridPlan` ``resident``), else an
``.npy`` file each row is written into once and each chunk maps read-only, touching only
the rows it reads, so what a process holds is bounded by the budget however many distinct
rows the grid has. Dask workers share the file the same way (beside the store, so every
worker that can open the store can open it).

Example:
    >>> import pitgrid as pg
    >>> from pitgrid.strategies import MovingAverageCross
    >>> m = pg.MarketData(pg.synthetic_prices(50, 3, seed=0))
    >>> bank = Bank.in_memory([5, 20], (50, 3))
    >>> bank.fill(m, MovingAverageCross(), [0, 1])
    >>> with bank.open() as rows:
    ...     rows.shape, bool((rows[1, 19:] > 0).all())
    ((2, 50, 3), True)
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData

BANK_FILE = "bank.npy"


class Bank:
    """The rows ``keys`` of a grid's bank, over ``shape`` = (time, symbol): in memory, or in
    the file ``path`` (picklable: what Dask tasks receive)."""

    def __init__(self, keys: Sequence[Hashable], shape: tuple[int, int],
                 path: Path | None = None) -> None:
        self.keys = list(keys)
        self.shape = shape
        self.path = path
        self.index = {k: i for i, k in enumerate(self.keys)}
        self._array: np.ndarray | None = None

    @classmethod
    def in_memory(cls, keys: Sequence[Hashable], shape: tuple[int, int]) -> Bank:
        """A bank held in this process's memory (allocated, nothing computed yet)."""
        bank = cls(keys, shape)
        bank._array = np.empty((len(bank.keys), *shape))
        return bank

    @classmethod
    def in_file(cls, keys: Sequence[Hashable], shape: tuple[int, int], folder: Path) -> Bank:
        """A bank file in ``folder``, allocated (sparse: nothing written yet)."""
        bank = cls(keys, shape, Path(folder) / BANK_FILE)
        np.lib.format.open_memmap(bank.path, mode="w+", dtype=np.float64,
                                  shape=(len(bank.keys), *shape))
        return bank

    def __getstate__(self) -> dict[str, Any]:
        if self.path is None:
            raise TypeError("an in-memory bank stays in its process; workers read a bank file")
        return {**self.__dict__, "_array": None}

    def indices(self, set_keys: Sequence[tuple[Hashable, ...]]) -> tuple[np.ndarray, ...]:
        """Per position of the sets' keys, the sets' rows in the bank (``fast``, ``slow`` ...)."""
        return tuple(np.array([self.index[k[j]] for k in set_keys], dtype=np.int64)
                     for j in range(len(set_keys[0])))

    def fill(self, market: MarketData, strategy: Strategy, rows: Sequence[int]) -> None:
        """Compute rows ``rows`` (positions in ``keys``) of ``market`` with ``strategy``'s
        ``grid_bank_row``; a file bank's rows go through one row-sized buffer, written in place
        (cheaper than faulting a mapping in, and the writer holds one row)."""
        data = FeatureData(market)
        if self._array is not None:
            for i in rows:
                strategy.grid_bank_row(data, self.keys[i], self._array[i])
            return
        buffer = np.empty(self.shape)
        with open(self._file(), "r+b") as f:
            start = np.load(self.path, mmap_mode="r").offset
            for i in rows:
                strategy.grid_bank_row(data, self.keys[i], buffer)
                f.seek(start + i * buffer.nbytes)
                try:
                    f.write(memoryview(buffer).cast("B"))
                except OSError as e:
                    raise OSError(f"{self.path}: writing the grid's feature bank failed "
                                  f"({e.strerror}); it needs {len(self.keys) * buffer.nbytes:,} "
                                  "bytes: free room there (TMPDIR for a grid in one process) "
                                  "or raise memory_budget_mb") from e

    def _file(self) -> Path:
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: the grid's bank file is not visible here; "
                                    "workers on other machines need the store's folder shared "
                                    "and writable")
        return self.path

    @contextmanager
    def open(self) -> Iterator[np.ndarray]:
        """The bank as one ``(rows, time, symbol)`` array: the array in memory, or the file
        mapped read-only for as long as the block runs (pages of rows never read stay on disk)."""
        if self._array is not None:
            yield self._array
            return
        mapped = np.load(self._file(), mmap_mode="r")
        try:
            yield mapped
        finally:
            del mapped


@contextmanager
def scratch_folder(beside: str | Path | None) -> Iterator[Path]:
    """A new folder for a grid's bank file, removed when the grid ends: beside the store
    ``beside`` when its folder is writable (where every worker that opens the store finds
    it), else in the system's temporary folder (enough for workers on this machine).

    Its name carries this machine and process, so the folders of grids killed on this
    machine (nothing ran their cleanup) are removed when the next grid makes its own.
    """
    stem = f".{Path(beside).name}.grid-" if beside is not None else "pitgrid-grid-"
    places = ([Path(beside).resolve().parent] if beside is not None else []) + \
        [Path(tempfile.gettempdir())]
    mine = f"{stem}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    for place in places:
        _remove_dead(place, stem)
        try:
            (place / mine).mkdir()
        except OSError:
            continue
        folder = place / mine
        break
    else:
        raise OSError(f"no folder to write a grid's feature bank in: {', '.join(map(str, places))}")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_dead(place: Path, stem: str) -> None:
    """Remove scratch folders in ``place`` left by processes of this machine that are gone."""
    host = socket.gethostname()
    for old in place.glob(f"{stem}{host}-*"):
        pid = old.name[len(stem) + len(host) + 1:].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
