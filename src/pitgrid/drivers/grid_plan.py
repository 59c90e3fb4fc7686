"""How a grid is cut into chunks: the feature bank and the parameter sets within the memory budget.

A chunk is a list of ``(index, variant)`` run in one compiled pass. Sets whose resolved
settings differ (fill rule, accounts, ...) never share a chunk. The budget covers what
grows with the grid: the feature bank's rows a run holds at once and each set's curves,
state and intents (:func:`pitgrid.engine.memory.grid_set_bytes`). When the whole bank fits
beside a chunk it is held in memory once (``resident``); otherwise chunks gather sets that
read the same rows, so each chunk maps only the rows it reads and those rows fit. Without
a bank, the sets of one feature setting share a chunk where they fit, so that setting's
features are computed once (by the process that runs the chunk).

``min_chunks`` (twice the workers of a Dask run) caps a chunk's sets, so every worker gets
at least two chunks and one slow chunk does not leave the other workers idle.

Example:
    >>> from pitgrid.strategies import MovingAverageCross
    >>> sets = [MovingAverageCross(fast=f, slow=s) for f in (5, 10) for s in (30, 60)]
    >>> p = plan_grid(sets, None, 256, 1000, 50, min_chunks=2)
    >>> [len(c) for c in p.chunks], p.keys, p.resident
    ([2, 2], [5, 30, 60, 10], True)
"""
from __future__ import annotations

import itertools
import json
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from pitgrid.cycle.strategy import Strategy
from pitgrid.drivers.common import resolve_settings
from pitgrid.engine.memory import grid_row_bytes, grid_set_bytes

Chunk = list[tuple[int, Strategy]]


def bank_keys(variants: Sequence[Strategy]) -> list[tuple[Hashable, ...]] | None:
    """Per variant, the bank rows its rule reads (``grid_bank_keys``), or None when the
    strategy has no bank or one variant cannot use it (then every set decides its own intents).

    Example:
        >>> from pitgrid.strategies import MovingAverageCross, RSIMeanReversion
        >>> bank_keys([MovingAverageCross(fast=5, slow=20)]), bank_keys([RSIMeanReversion()])
        ([(5, 20)], None)
    """
    if not hasattr(variants[0], "grid_bank_keys"):
        return None
    keys = [v.grid_bank_keys() for v in variants]
    return None if any(k is None for k in keys) else [tuple(k) for k in keys]


@dataclass(frozen=True)
class GridPlan:
    """Chunks of ``(index, variant)``; ``keys`` the bank's distinct rows in bank order (empty
    without a bank); ``resident`` whether the whole bank is held in memory beside a chunk;
    ``row_bytes``, ``set_bytes`` and ``budget`` what the cut was made with."""

    chunks: list[Chunk]
    keys: list[Hashable]
    set_keys: list[tuple[Hashable, ...]] | None
    resident: bool
    row_bytes: int
    set_bytes: int
    budget: int

    def rows(self, chunk: Chunk) -> list[Hashable]:
        """The bank rows a chunk reads, in bank order."""
        if self.set_keys is None:
            return []
        wanted = {k for i, _ in chunk for k in self.set_keys[i]}
        return [k for k in self.keys if k in wanted]

    def held_rows(self) -> int:
        """Bank rows a run holds at once: the whole bank when resident, else the most a chunk
        reads."""
        if self.resident:
            return len(self.keys)
        return max((len(self.rows(c)) for c in self.chunks), default=0)

    def peak_bytes(self) -> int:
        """What the budget covers at its highest: the rows held and the largest chunk's sets."""
        largest = max((len(c) for c in self.chunks), default=0)
        return self.held_rows() * self.row_bytes + largest * self.set_bytes


def plan_grid(variants: Sequence[Strategy], config: Any, budget_mb: float, T: int, S: int,
              min_chunks: int = 1) -> GridPlan:
    """Cut ``variants`` into chunks within ``budget_mb`` over ``T`` bars x ``S`` symbols, at
    least ``min_chunks`` of them when there are that many sets. A chunk always takes one set,
    even one over the budget (:func:`pitgrid.engine.memory.check_grid` refuses what cannot fit).
    """
    set_keys = bank_keys(variants)
    shared = set_keys is not None or all(v == variants[0] for v in variants)
    set_bytes = grid_set_bytes(T, S, shared)
    row_bytes = grid_row_bytes(T, S)
    budget = int(budget_mb * 2**20)

    def order(i: int) -> Any:
        # sets that read the same rows (or features) side by side, so chunks share them
        return set_keys[i] if set_keys is not None else variants[i].feature_key()

    groups: dict[str, Chunk] = {}
    resolved: dict[str, str] = {}  # a strategy's own settings -> the run's, resolved once
    for i, v in enumerate(variants):
        own = json.dumps(v.settings(), sort_keys=True, default=str)
        if own not in resolved:
            cfg, _ = resolve_settings(v, config)
            resolved[own] = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
        groups.setdefault(resolved[own], []).append((i, v))
    groups = {g: sorted(m, key=lambda iv: _sortable(order(iv[0]))) for g, m in groups.items()}
    members = [iv for m in groups.values() for iv in m]
    keys = ([] if set_keys is None else
            list(dict.fromkeys(k for i, _ in members for k in set_keys[i])))
    resident = set_keys is not None and len(keys) * row_bytes + set_bytes <= budget
    chunks: list[Chunk] = []
    for m in groups.values():
        # each group's share of min_chunks, so that the whole grid has at least that many
        parts = math.ceil(max(1, min_chunks) * len(m) / len(variants))
        if resident:
            size = max(1, (budget - len(keys) * row_bytes) // set_bytes)
            n = min(len(m), max(parts, math.ceil(len(m) / size)))
            # near-equal chunks: workers finish together
            bounds = [len(m) * j // n for j in range(n + 1)]
            chunks.extend(m[a:b] for a, b in zip(bounds, bounds[1:]))
        elif set_keys is None:
            cap = max(1, min(budget // set_bytes, len(m) // parts))
            chunks.extend(_by_features(m, cap))
        else:
            cap = max(1, len(m) // parts)  # at most cap a chunk: at least parts chunks
            chunks.extend(_by_rows(m, set_keys, row_bytes, set_bytes, budget, cap))
    return GridPlan(chunks, keys, set_keys, resident, row_bytes, set_bytes, budget)


def _by_rows(members: Chunk, set_keys: list[tuple[Hashable, ...]], row_bytes: int,
             set_bytes: int, budget: int, cap: int) -> list[Chunk]:
    """Greedy, in ``members`` order: a set joins the chunk while the chunk's rows and sets fit."""
    chunks: list[Chunk] = []
    current: Chunk = []
    rows: set[Hashable] = set()
    for i, v in members:
        grown = rows | set(set_keys[i])
        if current and (len(current) >= cap
                        or len(grown) * row_bytes + (len(current) + 1) * set_bytes > budget):
            chunks.append(current)
            current, grown = [], set(set_keys[i])
        current.append((i, v))
        rows = grown
    if current:
        chunks.append(current)
    return chunks


def _by_features(members: Chunk, cap: int) -> list[Chunk]:
    """At most ``cap`` sets a chunk, the sets of one feature setting (adjacent in ``members``)
    kept in one chunk where they fit: that setting's features are then computed once, by
    the one process that runs the chunk."""
    chunks: list[Chunk] = []
    current: Chunk = []
    for _, same in itertools.groupby(members, key=lambda iv: iv[1].feature_key()):
        run = list(same)
        if current and len(current) + len(run) > cap:
            chunks.append(current)
            current = []
        while len(run) > cap:
            chunks.append(run[:cap])
            run = run[cap:]
        current.extend(run)
    if current:
        chunks.append(current)
    return chunks


def _sortable(key: Any) -> tuple:
    # keys of one grid are alike; repr orders what does not compare (None beside numbers)
    return tuple((0, k, "") if isinstance(k, (int, float)) else (1, 0, k) if isinstance(k, str)
                 else (2, 0, repr(k)) for k in (key if isinstance(key, tuple) else (key,)))
