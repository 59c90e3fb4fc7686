"""A grid on Dask: workers open the store themselves, compute the bank once, then run chunks.

The client sends no arrays: tasks carry the store's path and fingerprint, the chunk's
variants and, for a strategy with a feature bank, the bank file's path. The bank's rows
are computed first, each once, by their own tasks (split between the workers); every
chunk task waits for them and maps the file. A worker keeps the markets it opened keyed
by fingerprint, not by path, so a store rewritten at the same path is opened afresh; a
store whose fingerprint changes while the grid runs is refused, naming the store.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pitgrid.data.market import MarketData

_WORKER_MARKETS: OrderedDict[str, MarketData] = OrderedDict()
_WORKER_MARKETS_SIZE = 2  # a store and the one it is being replaced by


def store_of(market: Any) -> str:
    """The store path workers open, absolute (a worker's folder is not the client's); a market
    in memory cannot go to workers by path."""
    path = market if isinstance(market, (str, Path)) else getattr(market, "store_path", None)
    if path is None:
        raise ValueError("a grid on Dask needs the market as a store: pass its path, or a market "
                         "from pitgrid.open_market (workers read the store, not pickled arrays)")
    return str(Path(path).resolve())


@contextmanager
def connect(client: Any, n_workers: int) -> Iterator[tuple[Any, int]]:
    """``(client, threads)`` for ``client`` (a Client or a scheduler address) or, without one, a
    loopback ``LocalCluster`` of ``n_workers`` single-threaded processes, closed afterwards."""
    from dask.distributed import Client, LocalCluster

    owned = []
    try:
        if client is None:
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
            owned.append(cluster)
            client = Client(cluster)
            owned.append(client)
        elif isinstance(client, str):
            client = Client(client)
            owned.append(client)
        yield client, max(1, sum(client.nthreads().values()))
    finally:
        for obj in reversed(owned):
            obj.close()


def run_dask(client: Any, threads: int, store: str, fingerprint: str, plan: Any, todo: list[int],
             bank: Any, rows: list[int], strategy: Any, chunk_args: tuple
             ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(chunk index, result)`` as workers finish. ``bank`` (a file bank, or None) gets
    its rows ``rows`` first, split into one task per worker thread, each row computed once;
    every chunk task waits for them. ``chunk_args`` are ``run_chunk``'s after the chunk."""
    from dask.distributed import as_completed

    window = chunk_args[3]
    filled = [client.submit(_bank_task, store, fingerprint, bank, strategy, rows[j::threads],
                            window, pure=False) for j in range(min(threads, len(rows)))]
    def set_keys(i: int) -> list | None:
        return None if bank is None else [plan.set_keys[j] for j, _ in plan.chunks[i]]

    futures = {client.submit(_chunk_task, store, fingerprint, plan.chunks[i], bank, set_keys(i),
                             chunk_args, filled, pure=False): i for i in todo}
    try:
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
    finally:
        for fut in [*futures, *filled]:
            fut.cancel()


def worker_market(store: str, fingerprint: str) -> MarketData:
    """The market at ``store`` as the grid planned it, opened once per worker and fingerprint;
    its fields are read when first used (a chunk reads the fields it needs, no more)."""
    from pitgrid.data.market import open_market

    if fingerprint in _WORKER_MARKETS:
        _WORKER_MARKETS.move_to_end(fingerprint)
        return _WORKER_MARKETS[fingerprint]
    market = open_market(store)
    found = market.fingerprint()
    if found != fingerprint:
        raise ValueError(f"{store}: the store changed while the grid ran (fingerprint "
                         f"{found[:12]}, the grid was planned on {fingerprint[:12]}): run it again")
    _WORKER_MARKETS[fingerprint] = market.load()
    while len(_WORKER_MARKETS) > _WORKER_MARKETS_SIZE:
        _WORKER_MARKETS.popitem(last=False)
    return _WORKER_MARKETS[fingerprint]


def _bank_task(store: str, fingerprint: str, bank: Any, strategy: Any, rows: list[int],
               window: tuple[Any, Any]) -> None:
    from pitgrid.drivers.grid import window_market

    bank.fill(window_market(worker_market(store, fingerprint), window), strategy, rows)


def _chunk_task(store: str, fingerprint: str, chunk: list, bank: Any, set_keys: Any,
                chunk_args: tuple, _filled: list) -> dict[str, Any]:
    from pitgrid.drivers.grid import run_chunk

    return run_chunk(worker_market(store, fingerprint), chunk, *chunk_args,
                     bank=None if bank is None else (bank, set_keys))
