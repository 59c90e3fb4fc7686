"""The step driver: one bar at a time, streaming features, calling the compiled step.

For paper trading, replays and audits. At each bar it advances the strategy's
feature streams by one row (:meth:`Strategy.feature_stream`), hands the rule a
view of the recent rows that holds nothing later than the bar
(:mod:`pitgrid.cycle.view`), and runs the same ``Core.run`` as the batch engine
for that one bar, so both drivers agree to the last bit. A bar costs the same
late in a run as early: nothing per bar grows with the history, except for a
strategy on the slow path (features that cannot stream, or a rule that reads its
whole history), which the driver names once.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Intents, Strategy, apply_universe
from pitgrid.cycle.view import TraceData, frozen, source_array, step_view
from pitgrid.data.market import MarketData, TimeLike, known_tables
from pitgrid.drivers.common import as_market, resolve_settings
from pitgrid.engine.codes import INTENT_SIGNALS, INTENT_WEIGHTS
from pitgrid.engine.config import SimConfig
from pitgrid.engine.memory import check_step
from pitgrid.engine.result import SimResult
from pitgrid.engine.orders import bind_orders, order_arrays, orders_needed
from pitgrid.engine.simulate import (allocate_outputs, bar_window, build_result, cut_from,
                                     log_tables, make_core, market_arrays, size_values)
from pitgrid.kernels.graph import Graph, Node, NotStreamable

_FORMAT = 2
# a run at least this long shows a progress bar (on a terminal)
_PROGRESS_BARS = 1000


class SlowPathWarning(UserWarning):
    """A strategy's features or rule cannot run in constant time per bar."""


class CycleResult:
    """One bar of the cycle: what was known, decided, ordered, filled, and refused.

    The tables are built when first read, so a bar that nobody inspects costs nothing.
    """

    def __init__(self, t: int, time: np.datetime64, universe: np.ndarray, intents: Intents,
                 pending: np.ndarray, log: tuple[np.ndarray, np.ndarray], symbols: np.ndarray,
                 times: np.ndarray, equity: float) -> None:
        self.t = t
        self.time = time
        self.universe = universe
        self.intents = intents
        self.equity = equity
        self._pending = pending
        self._log = log
        self._symbols = symbols
        self._times = times

    @cached_property
    def orders(self) -> dict[str, float]:
        """Shares per symbol ordered at this bar's close, to execute at the next open."""
        return {str(self._symbols[s]): float(self._pending[s]) for s in np.nonzero(self._pending)[0]}

    @cached_property
    def _tables(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        return log_tables(self._log, self._times, self._symbols)

    @property
    def fills(self) -> pl.DataFrame:
        return self._tables[0]

    @property
    def refused(self) -> pl.DataFrame:
        return pl.concat([self._tables[1], self._tables[2]], how="vertical")


class StepDriver:
    """Run a strategy bar by bar; stop, save, reload and go on where it was.

    ``step()`` runs the next bar; ``run(until=...)`` runs to a time; ``run(triggers=...)``
    takes triggers from outside (a scheduler, a replay feed): each trigger time runs
    every bar up to it. ``save(path)`` writes the whole state in array formats
    (npz and JSON, no pickle); ``StepDriver.load(path, market, strategy)`` resumes.
    ``keep`` is :func:`pitgrid.simulate`'s: ``"equity"`` keeps no positions or account
    rows (the result has equity, exposures and orders), which saves writing three
    (time, symbol) arrays at every bar.

    Example:
        >>> import pitgrid as pg
        >>> from pitgrid.strategies import MovingAverageCross
        >>> market = pg.MarketData(pg.synthetic_prices(80, 3, seed=0))
        >>> d = pg.StepDriver(market, MovingAverageCross(fast=5, slow=20))
        >>> r = d.step()
        >>> r.t, d.t, d.slow_path
        (0, 1, None)
    """

    def __init__(self, market: MarketData | xr.Dataset, strategy: Strategy,
                 config: SimConfig | dict[str, Any] | None = None, *,
                 keep_features: bool = False, start: TimeLike | None = None,
                 end: TimeLike | None = None, keep: str = "full") -> None:
        if keep not in ("auto", "full", "equity"):
            raise ValueError(f"keep={keep!r} is not one of 'auto', 'full', 'equity'")
        self._keep = "full" if keep == "auto" else keep  # one parameter set: auto keeps all
        self.config, self._size_value = resolve_settings(strategy, config)
        self._window = (None if start is None else str(np.datetime64(start, "ns")),
                        None if end is None else str(np.datetime64(end, "ns")))
        # every feature row kept, also when the rule streams (the point-in-time audit reads them)
        self._keep_features = keep_features
        check_step(as_market(market), self.config)  # before the market is read or anything allocated
        market = as_market(market)
        # a run that ends at ``end`` reads nothing after it
        self.market = (market if end is None else market.truncate(end)).load()
        self.start_bar = bar_window(self.market.time, start, None)[0]
        self.strategy = strategy
        # the driver's own view of the whole market, never handed to the strategy: each
        # row of what it gives depends only on what was known at that row
        self._known = FeatureData(self.market)
        ds = self.market.ds
        self._arrays = market_arrays(ds, self.config, self.market.facts)
        T, S = self._arrays["close"].shape
        self.n_time, self.n_symbols = T, S
        self._delist = np.ascontiguousarray(self.market.delist_bar, dtype=np.int64)
        self._has_delist = np.zeros(T, dtype=np.uint8)
        self._has_delist[self._delist[(self._delist >= 0) & (self._delist < T)]] = 1
        self.t = 0
        self._symbols = frozen(np.asarray(self.market.symbols))
        self._member = self._known.universe(strategy.universe)
        self._traced: tuple[str, ...] = ()  # intents fields the stream computes itself
        self._stream, self.slow_path = self._plan()
        self._sources = ({k: source_array(self._known, k) for k in self._stream.sources}
                         if self._stream is not None else {})
        self._history: dict[str, np.ndarray] = {}
        # bars per block when a run advances a traced graph: a few MB per node's block
        self._block_rows = max(1, (1 << 19) // max(S, 1))
        if self._traced:
            kind = "weights" if "weights" in self._traced else "signals"
            shorts, order_names = [k for k in self._traced if k.startswith("short_")], []
        else:
            # the first bar that decides: a feature that needs some history may fail before
            s0 = min(self.start_bar, T - 1)
            rows0 = self._decide_slow(s0) if self._stream is None else None
            probe = self._intents(s0, None if rows0 is None else self._feature_window(s0, rows0),
                                  probe=True)
            kind = probe.kind
            shorts = [k for k in ("short_entries", "short_exits") if getattr(probe, k) is not None]
            order_names = list(probe.orders or {})
        self._mode = INTENT_WEIGHTS if kind == "weights" else INTENT_SIGNALS
        self._entries = np.zeros((1, T, S), dtype=np.uint8)
        self._exits = np.zeros((1, T, S), dtype=np.uint8)
        # target weights only for a rule that gives them (the core reads them then only)
        self._weights = np.full((1, T, S) if self._mode == INTENT_WEIGHTS else (1, 1, 1), np.nan)
        # rows of the fields the strategy gave at its first bar, written bar by bar and
        # held by the core (bind_orders), as the signals are
        self._shorts = {k: np.zeros((1, T, S), dtype=np.uint8) for k in shorts}
        self._order_rows = {k: np.full((1, T, S), np.nan) for k in order_names}
        held = {**self._shorts, **self._order_rows}
        self._orders = order_arrays(self.config, held, self._mode, 1, T, S, False)[0]
        if orders_needed(self.config, held):
            self._arrays = market_arrays(ds, self.config, self.market.facts, orders=True)
        self.core = make_core(self.config, 1, S, self._mode,
                              size_values(self.config, self._size_value, 1), orders=self._orders)
        self._out = allocate_outputs(1, T, S, self.core.A, self._keep == "full")
        self._bind()
        self._log_i: list[np.ndarray] = []
        self._log_f: list[np.ndarray] = []

    # ------------------------------------------------------------------ planning
    def _plan(self) -> tuple[Any, str | None]:
        """The feature stream (with the rule in it when that traces too), or None; and why
        the run is on the slow path, if it is (said once, as a :class:`SlowPathWarning`)."""
        strategy, symbols = self.strategy, self.market.symbols
        try:
            if type(strategy).feature_stream is not Strategy.feature_stream:
                stream = strategy.feature_stream(symbols)
            else:
                stream, trace, nodes = self._feature_graph()
                traced = _trace_intents(strategy, trace, nodes)
                if traced:
                    self._traced = tuple(traced)
                    stream = Graph({**nodes, **{f"intents.{k}": v for k, v in traced.items()}},
                                   len(symbols))
        except NotStreamable as e:
            return None, self._slow(f"{strategy.name}.features runs on the slow path "
                                    f"(recomputed on bars 0..t at every bar): {e}")
        if not self._traced and strategy.intent_rows is None:
            return stream, self._slow(
                f"{strategy.name}.intents reads the whole history every bar; declare intent_rows "
                "(the recent rows the rule reads) for constant time per bar")
        return stream, None

    def _feature_graph(self) -> tuple[Any, TraceData, dict[str, Any]]:
        """The strategy's features traced into a new stream graph (with the trace and nodes)."""
        trace = TraceData(self.market.symbols, tuple(self.market.fields))
        nodes = self.strategy.features(trace)
        return Graph(nodes, len(self.market.symbols)), trace, nodes

    @staticmethod
    def _slow(why: str) -> str:
        warnings.warn(why, SlowPathWarning, stacklevel=4)
        return why

    def _decide_slow(self, t: int) -> dict[str, np.ndarray]:
        """Features recomputed on the view of bars 0..t: their row t."""
        feats = self.strategy.features(step_view(self._known, 0, t, self._known_at, self._symbols))
        return {name: np.asarray(a)[t] for name, a in feats.items()}

    def _known_at(self, t: int) -> FeatureData:
        return FeatureData(self.market.truncate(self.market.time[t]))

    def _feature_window(self, t: int, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Store row t of each feature and return the rows the rule reads, frozen."""
        self._record(t, rows)
        first = self._first(t)
        return {name: frozen(h[first: t + 1]) for name, h in self._history.items()}

    def _record(self, t: int, rows: dict[str, np.ndarray]) -> None:
        """Store row t of each feature (the stream's rule outputs are not features)."""
        for name, row in rows.items():
            if name.startswith("intents."):
                continue
            h = self._history.get(name)
            if h is None:
                row = np.asarray(row)
                h = self._history[name] = np.full((self.n_time, *row.shape),
                                                  np.nan if row.dtype.kind == "f" else 0,
                                                  dtype=row.dtype)
            h[t] = row

    def _record_block(self, t0: int, t1: int, rows: dict[str, np.ndarray]) -> None:
        """Store rows ``t0..t1-1`` of each feature from a block that starts at ``t0``."""
        for name, block in rows.items():
            if name.startswith("intents."):
                continue
            if name not in self._history:
                self._record(t0, {name: block[0]})
            self._history[name][t0:t1] = block[: t1 - t0]

    def _first(self, t: int) -> int:
        n = self.strategy.intent_rows
        return 0 if n is None else max(0, t - n + 1)

    def _intents(self, t: int, window: dict[str, np.ndarray] | None, probe: bool = False) -> Intents:
        """The rule on the recent rows; the universe stage; this bar's row only."""
        first = self._first(t)
        view = step_view(self._known, first, t, self._known_at, self._symbols)
        if window is None:  # the probe before bar 0 of a streaming strategy
            window = {k: frozen(np.asarray(v)[None]) for k, v in self._stream_probe().items()}
        intents = self.strategy.intents(view, window)
        shape = (view.n_time, self.n_symbols)
        for name in ("entries", "exits", "weights"):
            a = getattr(intents, name)
            if a is not None and np.shape(a) != shape:
                raise ValueError(f"bar {t}: {self.strategy.name}.intents returned {name} of shape "
                                 f"{np.shape(a)}, expected {shape} (rows {first}..{t})")
        row = apply_universe(intents.rows(slice(-1, None)),
                             view.universe(self.strategy.universe)[-1:])
        if self.strategy.has_hook and not probe:
            row = self.strategy.on_step(t, view, row)
        self._view = view
        return row

    def _stream_probe(self) -> dict[str, np.ndarray]:
        # bar 0 through a throwaway stream: the kind of intents, with no state advanced
        probe = (self.strategy.feature_stream(self.market.symbols)
                 if type(self.strategy).feature_stream is not Strategy.feature_stream
                 else self._feature_graph()[0])
        return {k: np.array(v) for k, v in probe.update({k: a[0] for k, a in self._sources.items()}).items()}

    # ------------------------------------------------------------------ stepping
    def step(self) -> CycleResult:
        """Run the next bar: advance the features, decide on what is known at it, then the
        compiled step."""
        t = self.t
        if t >= self.n_time:
            raise StopIteration(f"no bar left: the market has {self.n_time} bars")
        if self._traced:
            intents, log = self._advance(t, t + 1)
            if t < self.start_bar:
                return self._warming(t)
            return self._cycle(t, intents, log)
        if self._stream is not None:
            rows = self._stream.update({k: a[t] for k, a in self._sources.items()})
        elif self.strategy.intent_rows is None or t > self.start_bar - self.strategy.intent_rows:
            rows = self._decide_slow(t)
        else:  # recomputed from bar 0 at every bar, the slow path warms up only what the
            rows = {}  # rule reads at the start
        if t < self.start_bar:  # warming up: the features advance, nothing trades
            self._record(t, rows)
            self.t = t + 1
            return self._warming(t)
        intents = self._intents(t, self._feature_window(t, rows))
        self._write_intents(t, intents)
        log = self._run_core(t, t + 1)
        self.t = t + 1
        return self._cycle(t, intents, log)

    def _advance(self, t0: int, t1: int) -> tuple[Intents | None, tuple[np.ndarray, np.ndarray]]:
        """Bars ``t0..t1-1`` of a strategy whose rule is in the stream graph: the graph
        advances over the block (each kernel's compiled step row by row, in one call), the
        universe stage and the hook apply, and the core runs the block. Bit for bit the bars
        one by one: no node's row reads a later row. Returns the last bar's intents (None
        while warming up) and the block's order log."""
        if t1 == t0 + 1:  # one bar: the streams' own preallocated rows
            rows = {k: np.asarray(v)[None] for k, v in
                    self._stream.update({k: a[t0] for k, a in self._sources.items()}).items()}
        else:
            rows = self._stream.advance({k: a[t0:t1] for k, a in self._sources.items()})
        a = max(t0, self.start_bar)  # bars before the start only warm the features up
        if self._keep_features or t0 < a:
            self._record_block(t0, min(t1, a) if not self._keep_features else t1, rows)
        self.t = t1
        if a >= t1:
            return None, _NO_LOG
        member = self._member[a:t1]
        intents = apply_universe(Intents(**{k: rows[f"intents.{k}"][a - t0:] for k in self._traced}),
                                 member)
        if self.strategy.has_hook:  # one bar at a time (run() makes blocks of one bar)
            view = step_view(self._known, self._first(a), a, self._known_at, self._symbols)
            intents = self.strategy.on_step(a, view, intents)
        self._write_intents(a, intents)
        return intents.rows(slice(-1, None)), self._run_core(a, t1)

    def _run_core(self, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
        """The compiled core over bars ``t0..t1-1``; their order log."""
        t = t0
        while t < t1:
            self.core.ensure_log_room(self.core.log_rows_per_bar)
            t = self.core.run_bound(t, t1)
        li, lf = self.core.take_log()
        self._log_i.append(li)
        self._log_f.append(lf)
        return li, lf

    def _warming(self, t: int) -> CycleResult:
        none = (Intents(weights=np.full((1, self.n_symbols), np.nan)) if self._mode == INTENT_WEIGHTS
                else Intents(entries=np.zeros((1, self.n_symbols), bool)))
        return self._cycle(t, none, _NO_LOG, float("nan"))

    def _cycle(self, t: int, intents: Intents, log: tuple[np.ndarray, np.ndarray],
               equity: float | None = None) -> CycleResult:
        return CycleResult(t, self.market.time[t], self._member[t], intents,
                           self.core.state["pending"][0].copy(), log, self.market.symbols,
                           self.market.time,
                           float(self._out["equity"][0, t]) if equity is None else equity)

    def _bind(self) -> None:
        a, out = self._arrays, self._out
        bank = self._weights if self._mode == INTENT_WEIGHTS else _NO_BANK
        self.core.bind(a["open"], a["close"], a["volume"], a["valid"], a["split"], a["dividend"],
                       a["has_action"], self._delist, self._has_delist, self._entries,
                       self._exits, bank, _IDX, _IDX, out["equity"], out["long"], out["short"],
                       bool(out["keep"]), out["cash"], out["account_equity"], out["shares"])
        bind_orders(self.core, a, self._orders)

    def run(self, until: TimeLike | None = None, *, triggers: Iterable[TimeLike] | None = None,
            progress: bool | None = None) -> SimResult:
        """Step to ``until`` (inclusive; default the last bar), or through each trigger
        time, and return :meth:`result`.

        ``progress``: a progress bar (``None``: on a terminal, for runs of 1000 bars or more).
        """
        self.advance(until, triggers=triggers, progress=progress)
        return self.result()

    def advance(self, until: TimeLike | None = None, *, triggers: Iterable[TimeLike] | None = None,
                progress: bool | None = None) -> None:
        """:meth:`run` without building a result: what to call before reading only
        :meth:`decisions`, :meth:`equity`, :meth:`order_log` or :meth:`next_orders`.

        Example:
            >>> import pitgrid as pg
            >>> from pitgrid.strategies import MovingAverageCross
            >>> d = pg.StepDriver(pg.MarketData(pg.synthetic_prices(30, 2, seed=0)),
            ...                   MovingAverageCross(fast=2, slow=5))
            >>> d.advance(progress=False)
            >>> d.t
            30
        """
        from tqdm.auto import tqdm

        stops = [until] if triggers is None else list(triggers)
        for stop in stops:
            last = self.n_time - 1 if stop is None else self.market.index_of(stop)
            n = last + 1 - self.t
            show = (n >= _PROGRESS_BARS and None) if progress is None else progress
            # no bar at all when none is shown: tqdm's first bar in a process creates a
            # multiprocessing lock, tens of milliseconds in a fresh one
            with (tqdm(total=max(n, 0), disable=(None if show is None else not show),
                       desc=self.strategy.name, unit="bar", leave=False) if show is not False
                  else contextlib.nullcontext()) as bar:
                while self.t <= last:
                    t0 = self.t
                    if self._traced and not self.strategy.has_hook:
                        self._advance(t0, min(last + 1, t0 + self._block_rows))
                    else:
                        self.step()
                    if bar is not None:
                        bar.update(self.t - t0)

    def result(self) -> SimResult:
        """The result so far (bars not yet run are NaN in the arrays)."""
        ds, out, (li, lf) = self.market.ds, self._out, self._log()
        full = self._keep == "full"
        if self.start_bar:
            ds, out, li = cut_from(ds, out, li, self.start_bar, full)
        res = build_result(self.core, self.config, ds, out, (li, lf), None, False, full)
        res.extra.update(strategy=self.strategy.describe(), bars_run=self.t,
                         intents=self.decisions())
        return res

    def decisions(self) -> Intents:
        """The decisions of every bar run (later rows empty), shaped like a batch run's.

        Example:
            >>> import pitgrid as pg
            >>> from pitgrid.strategies import MovingAverageCross
            >>> d = pg.StepDriver(pg.MarketData(pg.synthetic_prices(30, 2, seed=0)),
            ...                   MovingAverageCross(fast=2, slow=5))
            >>> _ = d.run(progress=False)
            >>> d.decisions().entries.shape
            (30, 2)
        """
        if self._mode == INTENT_WEIGHTS:
            return Intents(weights=self._weights[0].copy())
        return Intents(entries=self._entries[0].astype(bool), exits=self._exits[0].astype(bool),
                       **{k: v[0].astype(bool) for k, v in self._shorts.items()},
                       orders={k: v[0].copy() for k, v in self._order_rows.items()} or None)

    def next_orders(self) -> pl.DataFrame:
        """The orders that execute at the next open: symbol, side, shares, reason.

        Reasons: ``entry`` / ``exit`` (a signal at the last bar run), ``rebalance`` (a
        target weight), ``universe_exit`` (the symbol left the strategy's universe),
        ``carried`` (an unfilled remainder from an earlier bar).

        Example:
            >>> import pitgrid as pg
            >>> from pitgrid.strategies import MovingAverageCross
            >>> d = pg.StepDriver(pg.MarketData(pg.synthetic_prices(80, 3, seed=0)),
            ...                   MovingAverageCross(fast=5, slow=20))
            >>> d.next_orders().columns
            ['symbol', 'side', 'shares', 'reason']
        """
        t = self.t - 1
        pending = self.core.state["pending"][0]
        rows = []
        for s in np.flatnonzero(pending):
            q = float(pending[s])
            if t < 0:
                reason = "carried"
            elif not self._member[t, s]:
                reason = "universe_exit"
            elif self._mode == INTENT_WEIGHTS:
                reason = "rebalance" if np.isfinite(self._weights[0, t, s]) else "carried"
            elif q > 0:
                reason = "entry" if self._entries[0, t, s] else "carried"
            else:
                reason = "exit" if self._exits[0, t, s] else "carried"
            rows.append((str(self.market.symbols[s]), "buy" if q > 0 else "sell", abs(q), reason))
        return pl.DataFrame(rows, schema={"symbol": pl.String, "side": pl.String,
                                          "shares": pl.Float64, "reason": pl.String}, orient="row")

    def features(self, copy: bool = True) -> dict[str, np.ndarray]:
        """Each feature's rows as the driver computed them, bar by bar (later rows empty);
        every row only with ``keep_features=True`` when the rule streams. ``copy=False``
        gives read-only views of the driver's own arrays instead (they change as it runs
        on).

        Example:
            >>> import pitgrid as pg
            >>> from pitgrid.strategies import MovingAverageCross
            >>> d = pg.StepDriver(pg.MarketData(pg.synthetic_prices(30, 2, seed=0)),
            ...                   MovingAverageCross(fast=2, slow=5), keep_features=True)
            >>> d.advance(progress=False)
            >>> d.features(copy=False)["slow"].flags.writeable
            False
        """
        if copy:
            return {k: v.copy() for k, v in self._history.items()}
        views = {k: v.view() for k, v in self._history.items()}
        for v in views.values():
            v.flags.writeable = False
        return views

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the driver's state to ``path`` (a directory): ``state.npz`` and ``meta.json``.

        With the state go digests of the bars it ran on (each row and each symbol's column
        of every field, and the reference tables as known at its last bar), so that
        :meth:`load` accepts any market whose first bars are these, and names the first
        difference of one that is not.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        li, lf = self._log()
        arrays = {f"core_{k}": v for k, v in self.core.get_state().items()}
        arrays.update({f"out_{k}": v for k, v in self._out.items()})
        arrays.update({f"feature_{k}": v for k, v in self._history.items()})
        if self._stream is not None:
            arrays.update({f"stream_{k}": v for k, v in self._stream.state().items()})
        arrays.update({f"prefix_{k}": v for k, v in
                       prefix_digests(self.market, self.t, list(self.market.symbols)).items()})
        arrays.update(entries=self._entries, exits=self._exits, weights=self._weights,
                      log_i=li, log_f=lf)
        arrays.update({f"rows_{k}": v for k, v in {**self._shorts, **self._order_rows}.items()})
        tmp = path / "state.tmp.npz"
        np.savez(tmp, **arrays)
        meta = {"format": _FORMAT, "t": self.t, "strategy": self.strategy.describe(), "keep": self._keep,
                "config": self.config.to_dict(), "size_value": self._size_value,
                "symbols": [str(x) for x in self.market.symbols], "window": list(self._window),
                "last_time": str(self.market.time[self.t - 1]) if self.t else None}
        tmp_meta = path / "meta.tmp.json"
        tmp_meta.write_text(json.dumps(meta, default=str, indent=1))
        tmp.replace(path / "state.npz")
        tmp_meta.replace(path / "meta.json")
        return path

    @classmethod
    def load(cls, path: str | Path, market: MarketData | xr.Dataset, strategy: Strategy) -> StepDriver:
        """Resume a saved driver on ``market``: the one it ran on, or the same one grown by
        later bars and new symbols (listings). Bars it ran on that differ in ``market`` are
        refused, naming the first differing bar, symbol and field."""
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path / 'meta.json'}: unknown format {meta.get('format')!r}")
        if meta["strategy"] != json.loads(json.dumps(strategy.describe(), default=str)):
            raise ValueError(f"{path}: saved for {meta['strategy']}, not {strategy.describe()}")
        start, end = meta.get("window", (None, None))
        driver = cls(market, strategy, SimConfig(**meta["config"]) if meta["size_value"] is None
                     else {**meta["config"], "size_value": meta["size_value"]}, start=start, end=end,
                     keep=meta.get("keep", "full"))
        with np.load(path / "state.npz", allow_pickle=False) as z:
            state = {k: np.array(z[k]) for k in z.files}
        t, saved = int(meta["t"]), meta["symbols"]
        check_prefix(driver.market, t, saved,
                     {k[7:]: v for k, v in state.items() if k.startswith("prefix_")}, path)
        driver._restore(state, t, saved)
        return driver

    def _restore(self, state: dict[str, np.ndarray], t: int, saved: list[str]) -> None:
        """Install a saved state of ``t`` bars over symbols ``saved`` (a subset of this
        market's, in the same order): new symbols start flat, with no bars before ``t``."""
        col = {str(x): i for i, x in enumerate(self.market.symbols)}
        cols = np.array([col[x] for x in saved], dtype=np.int64)
        same = len(saved) == self.n_symbols
        per_account = self.core.A > 1
        core = self.core.get_state()
        for k, v in ((k[5:], v) for k, v in state.items() if k.startswith("core_")):
            if k in _SYMBOL_STATE or (per_account and k in _ACCOUNT_STATE):
                core[k][..., cols] = v
            else:
                core[k] = v
        self.core.set_state(core)
        for k, a in self._out.items():
            v = state[f"out_{k}"]
            if a.ndim == 3:
                if k in ("cash", "account_equity") and per_account:
                    a[:, :t] = self.config.init_cash  # a symbol's own account, never used yet
                a[:, :t][..., cols if a.shape[2] == self.n_symbols else slice(None)] = v[:, :t]
            elif a.ndim == 2:
                a[:, :t] = v[:, :t]
        weights = (("weights", self._weights),) if self._mode == INTENT_WEIGHTS else ()
        for name, a in (("entries", self._entries), ("exits", self._exits), *weights,
                        *{**self._shorts, **self._order_rows}.items()):
            a[:, :t][..., cols] = state[name if name in ("entries", "exits", "weights")
                                        else f"rows_{name}"][:, :t]
        li = state["log_i"].copy()
        li[:, 2] = cols[li[:, 2]]
        self._log_i, self._log_f = [li], [state["log_f"]]
        history = {k[8:]: v for k, v in state.items() if k.startswith("feature_")}
        if same and self._stream is not None:
            self._stream.load_state({k[7:]: v for k, v in state.items() if k.startswith("stream_")})
            for name, v in history.items():
                self._history[name] = np.full((self.n_time, *v.shape[1:]), np.nan
                                              if v.dtype.kind == "f" else 0, dtype=v.dtype)
                self._history[name][:t] = v[:t]
        else:
            self._replay(t)
        self._bind()
        self.t = t

    def _replay(self, t: int) -> None:
        """Rebuild the feature streams and history over bars ``0..t-1`` on this market's
        symbols: a stream fed the same rows is in the same state (listings are NaN rows)."""
        if self._stream is None:
            if t:
                feats = self.strategy.features(step_view(self._known, 0, t - 1, self._known_at,
                                                         self._symbols))
                for name, a in feats.items():
                    a = np.asarray(a)
                    self._history[name] = np.full((self.n_time, *a.shape[1:]), np.nan
                                                  if a.dtype.kind == "f" else 0, dtype=a.dtype)
                    self._history[name][:t] = a
            return
        if self._traced and t:
            rows = self._stream.advance({k: a[:t] for k, a in self._sources.items()})
            if self._keep_features or self.start_bar:
                self._record_block(0, t if self._keep_features else min(t, self.start_bar), rows)
            return
        for u in range(t):
            rows = self._stream.update({k: a[u] for k, a in self._sources.items()})
            self._record(u, rows)

    # ------------------------------------------------------------------ helpers
    def _write_intents(self, t: int, intents: Intents) -> None:
        """Rows ``t..`` of the intents arrays the core reads, from ``intents`` (one row per bar)."""
        if intents.kind == "weights":
            if self._mode != INTENT_WEIGHTS:
                raise ValueError(f"bar {t}: {self.strategy.name} switched from signals to weights")
            w = intents.weights
            self._weights[0, t: t + len(w)] = w
            return
        if self._mode != INTENT_SIGNALS:
            raise ValueError(f"bar {t}: {self.strategy.name} switched from weights to signals")
        n = next(len(a) for a in (intents.entries, intents.exits, intents.short_entries,
                                  intents.short_exits) if a is not None)
        if intents.entries is not None:
            self._entries[0, t: t + n] = intents.entries
        if intents.exits is not None:
            self._exits[0, t: t + n] = intents.exits
        # which short and order fields there are is fixed at the first bar, as signals
        # versus weights are; one that appears later would be dropped, so it is refused
        late = sorted({k for k in ("short_entries", "short_exits") if getattr(intents, k) is not None}
                      - set(self._shorts) | set(intents.orders or {}) - set(self._order_rows))
        if late:
            raise ValueError(f"bar {t}: {self.strategy.name} gives {', '.join(late)}, which it did "
                             "not give at its first bar")
        for name, a in self._shorts.items():
            if getattr(intents, name) is not None:
                a[0, t: t + n] = getattr(intents, name)
        for name, a in self._order_rows.items():
            if intents.orders and name in intents.orders:
                a[0, t: t + n] = intents.orders[name]

    def equity(self) -> np.ndarray:
        """Total equity at each bar of the market (NaN where not run), without building a
        result: ``result().equity`` labels it, from the start bar."""
        return self._out["equity"][0].copy()

    def order_log(self) -> tuple[np.ndarray, np.ndarray]:
        """The compiled core's order log so far, bars numbered from the market's first:
        integer columns (bar, set, symbol, kind, reason, side) and float ones (shares,
        price, fees, slippage cost), as :func:`pitgrid.engine.simulate.log_frame` reads it."""
        li, lf = self._log()
        return li.copy(), lf.copy()

    def _log(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._log_i:
            return np.zeros((0, 6), dtype=np.int32), np.zeros((0, 4))
        li, lf = np.concatenate(self._log_i), np.concatenate(self._log_f)
        self._log_i, self._log_f = [li], [lf]
        return li, lf


def _trace_intents(strategy: Strategy, trace: TraceData, nodes: dict[str, Any]) -> dict[str, Node]:
    """The rule as stream nodes, or nothing when it does not trace (it then runs on rows)."""
    try:
        intents = strategy.intents(trace, nodes)
    except (NotStreamable, TypeError, AttributeError, ValueError, IndexError, KeyError):
        return {}
    fields = {k: getattr(intents, k) for k in ("entries", "exits", "weights", "short_entries",
                                                "short_exits")
              if getattr(intents, k, None) is not None}
    # per-cell stops and order levels run on rows (the rule is not traced)
    if not fields or getattr(intents, "orders", None) or not all(isinstance(v, Node) for v in fields.values()):
        return {}
    return fields


_SYMBOL_STATE = frozenset({"shares", "pending", "flow", "last_order", "mark", "entry_px",
                           "entry_bar", "sl_lvl", "tp_lvl", "tr_k", "tr_ext", "ts_bar", "ord_kind",
                           "ord_px", "ord_until"})
_ACCOUNT_STATE = frozenset({"cash", "eref", "peak", "prev_eq", "halted", "losses", "cool_until"})


def prefix_digests(market: MarketData, n: int, symbols: list[str]) -> dict[str, np.ndarray]:
    """Digests of bars ``0..n-1`` of ``symbols``: per field, one per row and one per
    symbol's column; the bar times; the reference tables of these symbols as known at
    bar ``n - 1``."""
    col = {str(x): i for i, x in enumerate(market.symbols)}
    cols = np.array([col[x] for x in symbols], dtype=np.int64)
    out: dict[str, np.ndarray] = {"time": np.asarray(market.time[:n]).view(np.int64).copy()}
    for name in sorted(market.fields):
        a = np.ascontiguousarray(np.asarray(market[name].values[:n])[:, cols])
        out[f"rows/{name}"] = np.array([_digest(r) for r in a], dtype=np.uint64)
        out[f"cols/{name}"] = np.array([_digest(np.ascontiguousarray(a[:, j]))
                                        for j in range(a.shape[1])], dtype=np.uint64)
    out["tables"] = np.array([_digest_tables(market, n, symbols)], dtype=np.uint64)
    return out


def check_prefix(market: MarketData, n: int, symbols: list[str],
                 saved: dict[str, np.ndarray], where: Path) -> None:
    """Refuse ``market`` unless its bars ``0..n-1`` are those of ``saved``; name the first
    differing bar, symbol and field."""
    if len(market.time) < n:
        raise ValueError(f"{where}: the driver ran {n} bars; this market has {len(market.time)}")
    missing = sorted(set(symbols) - {str(x) for x in market.symbols})
    if missing:
        raise ValueError(f"{where}: symbol {missing[0]} the driver traded is not in this market")
    times = np.asarray(market.time[:n]).view(np.int64)
    if not np.array_equal(times, saved["time"]):
        i = int(np.argmax(times != saved["time"]))
        raise ValueError(f"{where}: bar {i} is {market.time[i]} in this market, "
                         f"{saved['time'][i].astype('datetime64[ns]')} in the one the driver ran on")
    now = prefix_digests(market, n, symbols)
    fields = sorted({k[5:] for k in saved if k.startswith("rows/")} | set(market.fields))
    for name in fields:
        if f"rows/{name}" not in saved or f"rows/{name}" not in now:
            raise ValueError(f"{where}: field {name!r} is in only one of this market and the "
                             "one the driver ran on")
        rows = np.flatnonzero(now[f"rows/{name}"] != saved[f"rows/{name}"])
        if rows.size:
            bad = np.flatnonzero(now[f"cols/{name}"] != saved[f"cols/{name}"])
            who = symbols[int(bad[0])] if bad.size else "?"
            raise ValueError(f"{where}: bar {int(rows[0])} ({market.time[int(rows[0])]}), symbol "
                             f"{who}, field {name!r} differs from the data the driver ran on")
    if now["tables"][0] != saved["tables"][0]:
        raise ValueError(f"{where}: the reference tables (universes, actions, events, regimes) "
                         f"as known at bar {n - 1} differ from those the driver ran on")
    listed = np.asarray(market["valid"].values[:n], dtype=bool)
    new = [i for i, x in enumerate(market.symbols) if str(x) not in set(symbols)]
    early = [i for i in new if listed[:, i].any()]
    if early:
        i = early[0]
        bar = int(np.argmax(listed[:, i]))
        raise ValueError(f"{where}: bar {bar}, symbol {market.symbols[i]}, field 'valid': a symbol "
                         "the driver never saw has bars it already ran")


def _digest(a: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b(a.tobytes(), digest_size=8).digest(), "little")


def _digest_tables(market: MarketData, n: int, symbols: list[str]) -> int:
    if n == 0:
        return 0
    known = known_tables(market._tables, market.time[n - 1])
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(known):
        table = known[name]
        if "symbol" in table.columns:
            table = table.filter(pl.col("symbol").is_in(symbols))
        h.update(name.encode())
        h.update(table.write_csv().encode())
    return int.from_bytes(h.digest(), "little")


_IDX = np.zeros(1, dtype=np.int64)
_NO_LOG = (np.zeros((0, 6), dtype=np.int32), np.zeros((0, 4)))
_NO_BANK = np.zeros((1, 1, 1))
