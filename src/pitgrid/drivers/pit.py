"""The point-in-time check: the step driver audits the batch run at every bar.

:func:`check_point_in_time` first looks for market data the strategy carries
(:mod:`pitgrid.drivers.carried`), then runs it twice at once, on market arrays the
operating system maps read-only: in the step driver, which hands the strategy only what
is known at each bar (:mod:`pitgrid.cycle.view`), in a new process (forked from a clean
server, :mod:`pitgrid.drivers.forked`); and meanwhile in the batch engine, in the
caller's own process, as a backtest would run it (on a copy of the strategy, with
features cached for that run alone). Any feature, intent or order that differs at any
bar is a leak, once the batch engine on the data known at that bar confirms it: the
batch run read something the step run could not know. The two runs share no process,
no module state and no market object, so a cache, a field written into the market or an
array written in place cannot carry the future from one to the other, and the step run
cannot open a market store. Then the simulation itself is checked: the runs' decisions
are replayed by the compiled core on the data truncated or scrambled after a cutoff
(every field the core reads, the delistings), and nothing at or before the cutoff may
change; the two runs share the cutoffs.

``every_bar=False`` is the quick sampled mode: truncate and scramble after a few
cutoffs and rerun the whole strategy each time (each run in its own process). The
cutoffs always include the end of the warm-up, corporate-action dates, listings,
delistings and period ends.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData, TimeLike, known_delistings
from pitgrid.drivers import forked
from pitgrid.drivers.carried import carried_data, forbid_stores
from pitgrid.drivers.common import as_market, resolve_settings
from pitgrid.drivers.digests import row_digests
from pitgrid.engine.codes import KIND_FILL, KIND_UNFILLED, REASONS
from pitgrid.engine.config import SimConfig
from pitgrid.engine.orders import orders_needed

_TABLE_TIME = {"actions": "ex_date", "events": "knowledge_time", "universes": "start",
               "regimes": "time"}
_KNOWN_AT = frozenset({"declared", "announced", "end_announced"})
# what the compiled core reads of a market (engine.simulate.market_arrays); the bar
# ranges only when stops or orders beyond the market are on
_CORE_FIELDS = frozenset({"open", "close", "volume", "valid", "split_ratio", "dividend"})
_RANGE_FIELDS = frozenset({"high", "low"})
# scrambled bars the simulation check keeps after a cutoff: about a year of daily bars
_LATER = 256
_REPLAY = 1000  # what a replay costs besides its bars, in bars of 500 symbols


@dataclass
class Difference:
    """The first thing that differs: where, what, and what it means."""

    cutoff: np.datetime64 | None  # None: found by the step driver's audit, at any bar
    how: str  # "step driver", "batch run", "truncated" or "scrambled"
    what: str  # "feature", "decision", "order", "fill", "equity" or "error"
    time: np.datetime64 | None
    symbol: str | None
    detail: str
    meaning: str = ""


@dataclass
class PointInTimeReport:
    """Outcome of :func:`check_point_in_time`: ``ok`` when no leak was found."""

    cutoffs: list[np.datetime64]
    differences: list[Difference] = field(default_factory=list)
    every_bar: bool = True
    # the first bar audited, when the strategy cannot run on the data known at earlier ones
    first_bar: np.datetime64 | None = None

    @property
    def ok(self) -> bool:
        return not self.differences

    def __str__(self) -> str:
        scope = "at every bar" if self.every_bar else f"at {len(self.cutoffs)} cutoffs"
        if self.first_bar is not None:
            scope += (f" from {self.first_bar} (before it, the strategy fails on the data "
                      "known then, in the batch engine too)")
        if self.ok:
            return f"point-in-time: ok {scope}"
        d = self.differences[0]
        where = f"at {d.time}" + (f" ({d.symbol})" if d.symbol else "")
        if d.how == "carried":
            head = "point-in-time LEAK risk: the strategy carries market data of its own"
        elif d.how == "intent_rows":
            head = (f"point-in-time: no leak found, but the step driver decides otherwise {where}: "
                    f"the {d.what}")
        elif d.how == "batch run":
            head = ("point-in-time LEAK: the strategy writes into the market's arrays"
                    if "writes into" in d.meaning else
                    "point-in-time LEAK suspected: the batch run failed on the check's data")
        elif d.how == "step driver":
            head = f"point-in-time LEAK {where}: the {d.what} differs between the batch run and the step driver"
        else:
            head = (f"point-in-time LEAK: with data {d.how} after {d.cutoff}, the {d.what} "
                    f"{where} changed")
        return f"{head}: {d.detail}. {d.meaning}".rstrip(". ") + "."


def check_point_in_time(market: MarketData | xr.Dataset, strategy: Strategy,
                        config: SimConfig | dict[str, Any] | None = None, *,
                        every_bar: bool = True, cutoffs: Any = None, seed: int = 0
                        ) -> PointInTimeReport:
    """Check that ``strategy`` decides at every bar only on what was known then.

    By default the step driver audits the batch run at every bar (see the module
    docs), then the simulation is cut and scrambled after ``cutoffs``. With
    ``every_bar=False`` only the sampled cut-and-scramble check runs, on the whole
    strategy. ``cutoffs``: a number of cutoffs, or a list of times; by default the
    warm-up's end, corporate actions, listings, delistings, period ends and the
    quartiles.

    Example:
        >>> import pitgrid as pg
        >>> from pitgrid.strategies import MovingAverageCross
        >>> market = pg.MarketData(pg.synthetic_prices(120, 4, seed=0))
        >>> pg.check_point_in_time(market, MovingAverageCross(fast=5, slow=20)).ok
        True
    """
    forked.start_server()  # its start-up overlaps loading the market
    market = as_market(market).load()
    found = carried_data(strategy, len(market.time))
    if found is not None:
        return PointInTimeReport([], [Difference(
            None, "carried", "data", None, None, found,
            "Data a strategy brings along (a parameter, a notebook's global or closure, a class "
            "attribute or cache filled by an earlier run) reach every run whole, so no run can "
            "show whether it reads the future in them: read market data through what the "
            "strategy is handed (fields, events, universes), or build such a cache inside "
            "features().")], every_bar=every_bar)
    # the batch run gets the strategy as given, the step driver one built afresh from its
    # parameters: state an earlier run left on the instance makes them differ
    blob, fresh = _dump(strategy), _dump(_fresh(strategy))
    settings = config.to_dict() if isinstance(config, SimConfig) else dict(config or {})
    with forked.Exports.lease(market) as folder:
        if every_bar:
            return _every_bar(market, strategy, blob, fresh, settings, str(folder), cutoffs, seed)
        return _sampled(market, blob, settings, str(folder), cutoffs, seed)


def _every_bar(market: MarketData, strategy: Strategy, blob: bytes, fresh: bytes,
               settings: dict[str, Any], folder: str, cutoffs: Any, seed: int) -> PointInTimeReport:
    """The step driver audits the batch run at every bar; then the simulation check."""
    batch, step = _both(folder, blob, fresh, settings, cutoffs, seed)
    report = PointInTimeReport(batch.get("cuts", []), every_bar=True)
    start = _first_runnable_bar(folder, fresh, settings, strategy, batch, step, len(market.time))
    if start is not None:  # audit from the first bar the strategy can run on
        step = forked.submit(_run, "step", folder, fresh, settings, cutoffs, seed, start,
                             market=folder).result()
        report.first_bar = market.time[start]
    if not _digests_agree(batch, step, start or 0):
        # the values themselves: to compare them within rounding, and to name them
        batch, step = _both(folder, blob, fresh, settings, cutoffs, seed, start, values=True)
    diff = _audit(market, batch, step, start or 0)
    if diff is not None and diff.how == "step driver" and diff.what == "decision":
        diff = _confirmed(market, folder, fresh, settings, strategy, batch, step, diff)
    # the first replay that differs, whichever run claimed it
    found = [d for d in (batch.get("simulation"), step.get("simulation")) if d is not None]
    diff = diff or min(found, key=_replay_order, default=None)
    if diff is not None:
        report.differences.append(diff)
    return report


def _both(folder: str, blob: bytes, fresh: bytes, settings: dict[str, Any], cutoffs: Any,
          seed: int, start: int | None = None, values: bool = False
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The batch run and the step driver's, at once, one per core: the step driver in a
    fresh process, the batch run in this one meanwhile; each then replays what the other
    has not claimed yet. Their claims are files beside the market's export, in the
    caller's folder of markets, which its server removes if the caller is killed."""
    with tempfile.TemporaryDirectory(prefix="claims-", dir=Path(folder).parent) as claims:
        running = forked.submit(_run, "step", folder, fresh, settings, cutoffs, seed, start,
                                values, claims, market=folder)
        try:
            batch = _batch_here(folder, blob, settings, cutoffs, seed, claims, values)
        except Exception:
            with contextlib.suppress(Exception):  # its result read, so its files removed
                running.result()
            raise
        return batch, running.result()


def _sampled(market: MarketData, blob: bytes, settings: dict[str, Any], folder: str,
             cutoffs: Any, seed: int) -> PointInTimeReport:
    """The strategy run whole, then on the data truncated and scrambled after each cutoff."""
    full = forked.submit(_run, "whole", folder, blob, settings, None, seed, market=folder).result()
    if "error" in full:
        return PointInTimeReport([], [_batch_failure(full)], every_bar=False)
    cuts = _cutoffs(market, cutoffs, full)
    report = PointInTimeReport(cuts, every_bar=False)
    rng = np.random.default_rng(seed)
    for c in cuts:
        versions = (("truncated", market.truncate(c)), ("scrambled", scrambled(market, c, rng)))
        # each cutoff's two markets live only while their runs do
        with forked.scratch_folder("pitgrid-check-") as tmp:
            runs = [forked.submit(_run, "whole", str(forked.export_market(other, Path(tmp) / how)),
                                  blob, settings, None, seed)
                    for how, other in versions]
            results = [run.result() for run in runs]
        for (how, _), result in zip(versions, results):
            _raise_child_error(result)
            diff = _first_difference(full, result, c, market)
            if diff is not None:
                report.differences.append(Difference(c, how, *diff))
                return report
    return report


# ---------------------------------------------------------------------- the runs
def _dump(strategy: Strategy) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(strategy)


def _fresh(strategy: Strategy) -> Strategy:
    """The strategy as built from its parameters, without the state an earlier run may
    have left on the instance (an attribute set on a frozen dataclass; a field that takes
    no part in comparisons and has a factory for its default, such as a hook's counter)."""
    if not dataclasses.is_dataclass(strategy):
        return strategy
    state = {f.name: f.default_factory() for f in dataclasses.fields(strategy)
             if f.init and not f.compare and f.default_factory is not dataclasses.MISSING}
    return dataclasses.replace(strategy, **state)


def _run(kind: str, folder: str, blob: bytes, settings: dict[str, Any], cutoffs: Any,
         seed: int, start: int | None = None, values: bool = False, claims: str | None = None
         ) -> dict[str, Any]:
    """One run in a process of its own (:mod:`pitgrid.drivers.forked`), on the market
    exported in ``folder``, mapped read-only, where no market store can be opened: what
    :func:`_decide` returns."""
    import warnings

    import cloudpickle

    from pitgrid.drivers.step import SlowPathWarning

    warnings.simplefilter("ignore", SlowPathWarning)  # the audit is about leaks, not speed
    strategy = cloudpickle.loads(blob)
    market = forked.import_market(folder)
    forbid_stores()
    return _decide(kind, market, strategy, settings, cutoffs, seed, start, values, claims)


def _batch_here(folder: str, blob: bytes, settings: dict[str, Any], cutoffs: Any, seed: int,
                claims: str, values: bool = False) -> dict[str, Any]:
    """The every-bar mode's batch run, in the caller's process while the step driver runs
    in a fresh one: the run a backtest makes, on a copy of the strategy and on the market
    exported in ``folder``, mapped read-only, with features cached for this run alone (it
    reuses none that an earlier run cached, nor leaves its own behind). What it shares
    with the caller's earlier runs (its modules' state) it does not share with the step
    driver, so it cannot hide a leak: it makes the two runs differ."""
    import cloudpickle

    from pitgrid.drivers.common import own_feature_cache

    # warnings are a backtest's (a hook strategy's slow path): their filters belong to
    # the process, and checks in several threads must not change them under each other
    with own_feature_cache():
        try:
            return _decide("batch", forked.import_market(folder), cloudpickle.loads(blob),
                           settings, cutoffs, seed, None, values, claims)
        except SystemExit as exc:  # as a run in a process of its own reports it
            raise RuntimeError(f"the check's batch run failed: SystemExit: {exc}") from None


def _decide(kind: str, market: MarketData, strategy: Strategy, settings: dict[str, Any],
            cutoffs: Any, seed: int, start: int | None, values: bool, claims: str | None = None
            ) -> dict[str, Any]:
    """One run's decisions, features, orders and equity to compare. In the every-bar mode
    ("batch" and "step") the run then checks the simulation on its own decisions with the
    replays (a cutoff's truncated and scrambled ones) it claims in ``claims`` before the
    other run does (:func:`_claimed`; all of them without ``claims``), so that the two
    runs, one per core, share that work as each is free for it (the decisions are the
    same, or the audit reports where they differ first); "whole" is a batch run of the
    sampled mode.

    Features and decisions come back as a digest of each row
    (:mod:`pitgrid.drivers.digests`), which is all the audit needs when the runs agree;
    ``values`` (and a "whole" run) sends the values."""
    from pitgrid.cycle.data import FeatureData
    from pitgrid.drivers.batch import backtest
    from pitgrid.drivers.common import features_for
    from pitgrid.drivers.step import StepDriver

    driver = None
    try:
        if kind == "step":
            driver = StepDriver(market, strategy, settings, keep_features=True, keep="equity",
                                start=None if start is None else market.time[start])
            driver.advance(progress=False)
            features = {} if strategy.has_hook else driver.features(copy=False)
            intents, equity = driver.decisions(), driver.equity()
        else:
            features = {} if strategy.has_hook else dict(features_for(market, strategy, FeatureData(market)))
            res = backtest(market, strategy, settings, keep="equity")
            intents, equity = res.extra["intents"], np.asarray(res.equity.values)
    except Exception as exc:  # the strategy failed on what it was handed: part of the finding
        bar = (start or 0) if driver is None else driver.t
        return {"error": f"{type(exc).__name__}: {exc}", "bar": bar, "kind": kind}
    decisions = _intent_arrays(intents)
    # the runs of the every-bar mode send digests of rows, unless asked for the values
    digest = kind != "whole" and not values
    digests = {k: row_digests(v) for k, v in features.items()} if digest else {}
    decided = {k: row_digests(v) for k, v in decisions.items() if np.ndim(v) == 2} if digest else {}
    out = {
        "intents": {k: v for k, v in decisions.items() if decided.get(k) is None},
        "intent_digests": {k: d for k, d in decided.items() if d is not None},
        "digests": {k: d for k, d in digests.items() if d is not None},
        "features": {k: np.asarray(v) for k, v in features.items() if digests.get(k) is None},
        # bars numbered from the market's first, also when the step driver started late
        "log": driver.order_log() if driver is not None else res.extra["order_log"],
        "equity": equity,
    }
    if kind in ("batch", "step"):
        out["cuts"] = cuts = _cutoffs(market, cutoffs, {"intents": decisions}, every_bar=True)
        out["replayed"] = mine = []
        # the run's own orders and equity are those of the core on its decisions and the
        # whole market (both drivers agree with a replay bit for bit), unless it started late
        out["simulation"] = _simulation_check(market, strategy, settings, decisions,
                                              _claimed(_replays(market, cuts), claims, mine),
                                              seed, out if start is None else None)
    return out


def _rehearse() -> None:
    """Both runs of the every-bar mode, of a signals and of a weights strategy, on a small
    market: run by the check's server before it forks (:func:`forked._warm`), and so never
    by its children, who start with what these runs imported and first did."""
    from pitgrid.data.synthetic import synthetic_prices
    from pitgrid.drivers.common import clear_feature_cache
    from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross

    market = MarketData(synthetic_prices(60, 3, seed=0))
    with forked.scratch_folder("pitgrid-rehearsal-") as tmp:
        folder = str(forked.export_market(market, Path(tmp) / "market"))
        for strategy in (MovingAverageCross(fast=2, slow=3),
                         CrossSectionalMomentum(lookback=5, top=1, every=3)):
            for kind in ("batch", "step"):
                _run(kind, folder, _dump(strategy), {}, None, 0)
    clear_feature_cache()


def _cut_run(folder: str, blob: bytes, settings: dict[str, Any], t: int) -> dict[str, Any]:
    """The batch engine on the data known at bar ``t`` (cut after it), in a process of its
    own: row ``t`` of each intents array, or the error it fails with."""
    import cloudpickle

    from pitgrid.drivers.batch import backtest

    market = forked.import_market(folder)
    strategy = cloudpickle.loads(blob)
    forbid_stores()
    try:
        res = backtest(market.truncate(market.time[t]), strategy, settings)
    except Exception as exc:  # the finding is whether it fails as the step driver did
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"row": {k: np.asarray(v)[t] for k, v in _intent_arrays(res.extra["intents"]).items()}}


def _first_runnable_bar(folder: str, blob: bytes, settings: dict[str, Any], strategy: Strategy,
                        batch: dict[str, Any], step: dict[str, Any], T: int) -> int | None:
    """When the step driver failed at bar b and the batch engine fails the same way on the
    data known at b, the strategy cannot run on so short a history (a feature that needs a
    full window, say): not a leak. The bar from which the step driver can then audit it:
    the first bar on whose known data the batch engine runs, plus the rows the rule reads.
    None when the step driver did not fail so."""
    if "error" in batch or "error" not in step or strategy.intent_rows is None:
        return None
    kind = step["error"].split(":")[0]

    def fails(t: int) -> bool:
        out = forked.submit(_cut_run, folder, blob, settings, t, market=folder).result()
        return "error" in out and out["error"].split(":")[0] == kind

    lo, hi = step["bar"], T - 1
    if not fails(lo) or fails(hi):
        return None
    while hi - lo > 1:  # fails at lo, runs at hi
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fails(mid) else (lo, mid)
    start = hi + strategy.intent_rows - 1
    return start if start < T else None


def _confirmed(market: MarketData, folder: str, blob: bytes, settings: dict[str, Any],
               strategy: Strategy, batch: dict[str, Any], step: dict[str, Any], diff: Difference
               ) -> Difference:
    """Decisions that differ, confirmed by the batch engine on the data known at the bar
    (the first, middle and last bars where they differ): a leak where its row differs from
    the whole run's; else the step driver handed the rule too few rows (``intent_rows``) or
    the rule keeps state between bars."""
    apart = np.zeros(len(market.time), dtype=bool)
    for name, a in batch["intents"].items():
        if name in step["intents"]:
            bad = ~_same(np.asarray(a), np.asarray(step["intents"][name]))
            apart |= bad.reshape(len(apart), -1).any(axis=1)
    bars = np.flatnonzero(apart)
    probes = sorted({int(bars[0]), int(bars[len(bars) // 2]), int(bars[-1])}) if bars.size else []
    runs = [(t, forked.submit(_cut_run, folder, blob, settings, t, market=folder))
            for t in probes]
    for t, cut in [(t, run.result()) for t, run in runs]:
        if "error" in cut:
            return diff
        for name, row in cut["row"].items():
            if name not in batch["intents"]:
                continue
            whole = np.asarray(batch["intents"][name])[t]
            bad = ~_same(whole, row)
            if bad.any():
                if t == market.index_of(diff.time):
                    return diff
                k = int(np.flatnonzero(bad.ravel())[0])
                sym = str(market.symbols[k]) if whole.ndim else None
                at = (k,) if whole.ndim else ()
                return Difference(None, "step driver", "decision", market.time[t], sym,
                                  f"{name} batch {whole[at]!r}, known at the bar {row[at]!r}",
                                  diff.meaning)
    return Difference(None, "intent_rows", "decision", diff.time, diff.symbol, diff.detail,
                      "Not a leak: the batch engine on the data known at each bar where the "
                      "decisions differ decides as the whole run does. The step driver hands "
                      f"the rule its last intent_rows = {strategy.intent_rows} rows and it "
                      "decides otherwise: the rule reads more rows than it declares (raise "
                      "intent_rows), or keeps state from bar to bar.")


Replay = tuple[int, np.datetime64, str]  # (k, cutoff, "truncated" or "scrambled")


def _replays(market: MarketData, cuts: list[np.datetime64]) -> list[Replay]:
    """The replays of the simulation check, ``(k, cutoff, "truncated" or "scrambled")``,
    the costlier first (so that the last ones, which the two runs share out as each is
    free, are short). A replay costs about its bars (the scrambled one ``_LATER`` more)
    and a fixed part of about ``_REPLAY`` bars."""
    jobs = [(k, c, how) for k, c in enumerate(cuts) for how in ("truncated", "scrambled")]
    return sorted(jobs, key=lambda j: -(market.index_of(j[1]) + _REPLAY
                                        + (_LATER if j[2] == "scrambled" else 0)))


def _claimed(jobs: list[Replay], claims: str | None, mine: list[Replay]) -> Iterator[Replay]:
    """The jobs this process claims, one at a time as it gets to each: a file per job
    created in ``claims`` (``O_EXCL``: of two processes, exactly one creates it); every
    job without ``claims``. Each one claimed is added to ``mine``."""
    for k, c, how in jobs:
        if claims is not None:
            try:
                os.close(os.open(os.path.join(claims, f"{k}-{how}"),
                                 os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
        mine.append((k, c, how))
        yield k, c, how


def _replay_order(d: Difference) -> tuple[Any, bool]:
    """Replays in the order of their cutoffs, a cutoff's truncated one first."""
    return d.cutoff, d.how != "truncated"


def _raise_child_error(run: dict[str, Any]) -> None:
    if "error" in run:
        raise RuntimeError(f"the {run['kind']} run failed: {run['error']}")


# ---------------------------------------------------------------------- comparing
def _audit(market: MarketData, batch: dict[str, Any], step: dict[str, Any], start: int = 0
           ) -> Difference | None:
    """The first bar from ``start`` at which a feature, an intent or an order of the two runs
    differs."""
    times, symbols = market.time, market.symbols
    if "error" in batch:
        return _batch_failure(batch)
    if "error" in step:
        bar = step["bar"]
        return Difference(None, "step driver", "error", None if bar is None else times[min(bar, len(times) - 1)],
                          None, step["error"],
                          "The strategy fails when handed only what is known at the bar: it reads or "
                          "writes past it (a row after t, an attribute that is not there, an array "
                          "made writeable).")
    # (bar, features before decisions, kind, name, symbol) of each first difference
    found: list[tuple[int, int, str, str, int | None]] = []
    for order, (kind, key) in enumerate((("feature", "features"), ("decision", "intents"))):
        for name, a in batch[key].items():
            if name not in step[key]:
                continue
            bad = ~_same(np.asarray(a)[start:], np.asarray(step[key][name])[start:])
            if bad.ndim > 2:
                bad = bad.reshape(*bad.shape[:2], -1).any(axis=-1)
            if bad.any():
                first = np.argwhere(bad)[0]
                found.append((start + int(first[0]), order, kind, name,
                              int(first[1]) if bad.ndim == 2 else None))
    if found:
        t, _, kind, name, s = min(found, key=lambda f: f[:2])
        key = "features" if kind == "feature" else "intents"
        at = (t,) if s is None else (t, s)
        source, other = np.asarray(batch[key][name])[at], np.asarray(step[key][name])[at]
        meaning = ("This feature, computed on the bars up to t, differs from the batch run's row t: "
                   "it reads data after t." if kind == "feature" else
                   "The rule decides differently when it sees only what is known at t: it reads "
                   "rows after t, or state that outlives one run.")
        return Difference(None, "step driver", kind, times[t], None if s is None else str(symbols[s]),
                          f"{name} batch {source!r}, step {other!r}", meaning)
    diff = _orders_difference(batch, step, times[-1], times, symbols)
    if diff is not None:
        return Difference(None, "step driver", *diff,
                          "The same decisions led to different orders: a hook or a setting read "
                          "something after t.")
    return None


def _digests_agree(batch: dict[str, Any], step: dict[str, Any], start: int) -> bool:
    """Whether every feature and decision both runs digested has the same rows from
    ``start`` on (or a run failed, and there is nothing to compare)."""
    if "error" in batch or "error" in step:
        return True
    for key in ("digests", "intent_digests"):
        for name, a in batch[key].items():
            b = step[key].get(name)
            if b is not None and (a.shape != b.shape or not np.array_equal(a[start:], b[start:])):
                return False
    return True


def _batch_failure(run: dict[str, Any]) -> Difference:
    """A batch run that fails is a finding too: on data mapped read-only, a strategy that
    writes into what it was handed fails; one that reaches for what a bar's view lacks
    fails in both drivers."""
    error = run["error"]
    if "read-only" in error or "WRITEABLE" in error:
        meaning = ("The strategy writes into the market's arrays (made writeable): a write "
                   "that shifts later rows into earlier ones is a leak, and the check's "
                   "read-only data refuse it.")
    else:
        meaning = ("The strategy fails in the batch run of the check (on the market alone, "
                   "mapped read-only): it relies on something outside what it is handed, or it "
                   "fails on its own.")
    return Difference(None, "batch run", "error", None, None, error, meaning)


# Rounding: user feature code on whole arrays (BLAS, FFT, pandas' online sums, another
# memory order) may round row t differently for T rows than for t + 1 rows. A leak moves
# a value by far more than this; the compiled kernels agree bit for bit anyway.
_RTOL, _ATOL = 1e-9, 1e-12


def _same(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.shape != y.shape:
        return np.zeros(x.shape[:2], dtype=bool)
    same = x == y
    if x.dtype.kind == "f" and y.dtype.kind == "f" and not same.all():
        same |= np.isnan(x) & np.isnan(y)  # weights are NaN on most bars of many strategies
        # the tolerance only where the values are not equal: cheap when the runs agree, as
        # they do but for a leak or a rounding
        apart = ~same
        if apart.any():
            same[apart] = np.isclose(x[apart], y[apart], rtol=_RTOL, atol=_ATOL)
    return same


def _orders_difference(a: dict[str, Any], b: dict[str, Any], c: np.datetime64, times: np.ndarray,
                       symbols: np.ndarray, exact: bool = False
                       ) -> tuple[str, np.datetime64, str | None, str] | None:
    """The first fill or order up to ``c`` in the core's order logs of two runs that differs
    (numbers within rounding unless ``exact``: the engine against itself)."""
    upto = int(np.searchsorted(times, np.datetime64(c, "ns"), side="right")) - 1
    (ia, fa), (ib, fb) = (_log_upto(r["log"], upto) for r in (a, b))
    if ia.shape == ib.shape and np.array_equal(ia, ib) and np.array_equal(fa, fb, equal_nan=True):
        return None  # the runs agree bit for bit, as they do but for a leak or a rounding
    if not exact:
        # rows of a rounding's size (a residue of 1e-10 shares left for want of cash) are
        # in one run's log and not in the other's: left out, as a rounding
        scale = max(np.nanmax(np.abs(f[:, 0]), initial=0.0) for f in (fa, fb))
        (ia, fa), (ib, fb) = ((i[keep], f[keep]) for i, f in ((ia, fa), (ib, fb))
                              for keep in [~(np.abs(f[:, 0]) <= _RTOL * scale)])
    n = min(len(ia), len(ib))
    apart = (ia[:n] != ib[:n]).any(axis=1)
    x, y = fa[:n], fb[:n]
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    if not exact and not same.all():
        # within rounding of each column's scale: shares of a fill rebalancing a rounding
        # residue may be apart by more than their own last bits
        scale = np.nanmax(np.abs(np.concatenate([x, y])), axis=0, initial=0.0)
        same |= np.isclose(x, y, rtol=_RTOL, atol=_ATOL, equal_nan=True) | \
            (np.abs(x - y) <= _RTOL * scale)
    apart |= ~same.all(axis=1)
    rows = np.flatnonzero(apart)
    k = int(rows[0]) if rows.size else (None if len(ia) == len(ib) else n)
    if k is None:
        return None
    row = ia[k] if k < len(ia) else ib[k]
    what = "fill" if row[3] == KIND_FILL else "order"
    return (what, times[row[0]], str(symbols[row[2]]),
            f"{_log_row(ia, fa, k, times, symbols)} -> {_log_row(ib, fb, k, times, symbols)}")


def _log_upto(log: tuple[np.ndarray, np.ndarray], upto: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of an order log up to bar ``upto``: views, the core writes it bar by bar."""
    li, lf = log
    n = int(np.searchsorted(li[:, 0], upto, side="right"))
    return li[:n], lf[:n]


def _log_row(li: np.ndarray, lf: np.ndarray, k: int, times: np.ndarray, symbols: np.ndarray
             ) -> str:
    """One row of an order log as a person reads it (or "none" past its end)."""
    if k >= len(li):
        return "none"
    bar, _, s, kind, reason, side = (int(v) for v in li[k])
    shares, price = float(lf[k, 0]), float(lf[k, 1])
    if kind == KIND_FILL:
        return (f"{'buy' if side > 0 else 'sell'} {abs(shares):g} {symbols[s]} at {price:g} "
                f"on {times[bar]} ({REASONS[reason]})")
    return (f"{'unfilled' if kind == KIND_UNFILLED else 'refused'} {shares:g} {symbols[s]} on "
            f"{times[bar]} ({REASONS[reason]})")


def _first_difference(full: dict[str, Any], other: dict[str, Any], c: np.datetime64, market: MarketData
                      ) -> tuple[str, np.datetime64, str | None, str, str] | None:
    i = market.index_of(c)
    for name, x in full["intents"].items():
        y = other["intents"].get(name)
        x, y = np.asarray(x)[: i + 1], np.asarray(y)[: i + 1]
        same = _same(x, y)
        if not same.all():
            t, s = np.argwhere(~same)[0]
            return ("decision", market.time[t], str(market.symbols[s]),
                    f"{name} {x[t, s]!r} -> {y[t, s]!r}",
                    "A decision at or before the cutoff depends on data after it.")
    diff = _orders_difference(full, other, c, market.time, market.symbols)
    if diff is not None:
        return (*diff, "An order at or before the cutoff depends on data after it.")
    ea, eb = full["equity"][..., : i + 1], other["equity"][..., : i + 1]
    if not np.array_equal(ea, eb):
        t = int(np.argmax(ea != eb))
        return ("equity", market.time[t], None, f"{ea[t]!r} -> {eb[t]!r}",
                "The accounting at or before the cutoff depends on data after it.")
    return None


def _intent_arrays(intents: Any) -> dict[str, np.ndarray]:
    """Every array of a run's intents by name, its order levels as ``order:NAME``."""
    out = {k: getattr(intents, k) for k in ("entries", "exits", "weights", "short_entries", "short_exits")
           if getattr(intents, k) is not None}
    out.update({f"order:{k}": v for k, v in (intents.orders or {}).items()})
    return out


def _simulation_check(market: MarketData, strategy: Strategy, config: Any,
                      intents: dict[str, np.ndarray], cuts: Iterable[Replay],
                      seed: int, full: dict[str, Any] | None = None) -> Difference | None:
    """A run's decisions replayed by the compiled core on the data truncated or scrambled
    after each cutoff (numbered, ``(k, time, how)``): nothing at or before the cutoff may
    change; ``full``: the orders and equity of these decisions on the whole market, when
    the caller has them. Every replay runs, and the first that differs in the order of
    the cutoffs is reported, whichever order they come in.

    The scrambled replay stops after the cutoff's bar (``simulate(stop_after=)``) with
    ``_LATER`` scrambled bars still in its arrays, each holding another later bar's values,
    so a read of a later bar shows (and one past them finds no bar, which the truncated
    replay shows too); its delistings are those of :func:`scrambled`, with every field
    the core reads. Both replays cost about the bars up to the cutoff."""
    cfg, size_value = resolve_settings(strategy, config)
    orders = {k.removeprefix("order:"): v for k, v in intents.items() if k.startswith("order:")}
    fields = _CORE_FIELDS | (_RANGE_FIELDS if orders_needed(cfg, orders) else frozenset())
    first = None
    for k, c, how in cuts:
        if full is None:  # only for a run with replays to do
            full = _replay(market.ds, market.delist_bar, intents, cfg, size_value, None)
        i = market.index_of(c)
        if how == "truncated":
            # what MarketData.truncate keeps of the data (the core reads no reference table)
            ds, delist, stop = (market.ds.isel(time=slice(0, i + 1)),
                                known_delistings(market.delist_bar, i), None)
        else:
            ds, _, delist = _scrambled_parts(market, i, np.random.default_rng([seed, k]), fields,
                                             tables=False, later=_LATER)
            stop = c
        n = ds.sizes["time"]
        other = _replay(ds, delist, {k: _first_bars(v, n) for k, v in intents.items()}, cfg,
                        size_value, stop)
        diff = _replay_difference(full, other, i, c, market)
        if diff is not None:
            found = Difference(c, how, *diff)
            first = found if first is None else min(first, found, key=_replay_order)
    return first


def _first_bars(a: np.ndarray, n: int) -> np.ndarray:
    a = np.asarray(a)
    return a[..., :n, :] if a.ndim >= 2 else a  # (param,) stop levels have no bars


def _replay(ds: xr.Dataset, delist: np.ndarray, intents: dict[str, np.ndarray], cfg: SimConfig,
            size_value: Any, stop_after: Any) -> dict[str, Any]:
    """The order tables and equity of the core on ``ds`` with these decisions."""
    from pitgrid.engine.simulate import simulate

    # an order array replaces the run's setting of the same name, as in the run itself
    kwargs = {**cfg.to_dict(), **{k.removeprefix("order:"): v for k, v in intents.items()}}
    res = simulate(ds, delist_bar=delist, size_value=size_value, keep="equity",
                   stop_after=stop_after, **kwargs)
    return {"log": res.extra["order_log"], "equity": np.asarray(res.equity.values)}


def _replay_difference(full: dict[str, Any], other: dict[str, Any], i: int, c: np.datetime64,
                       market: MarketData) -> tuple[str, np.datetime64, str | None, str, str] | None:
    diff = _orders_difference(full, other, c, market.time, market.symbols, exact=True)
    if diff is not None:
        what = diff[0]
        return (*diff, f"{'A fill' if what == 'fill' else 'An order'} at or before the cutoff "
                       "depends on data after it.")
    fe, oe = full["equity"][..., : i + 1], other["equity"][..., : i + 1]
    same = (fe == oe) | (np.isnan(fe) & np.isnan(oe))
    if not same.all():
        t = int(np.argwhere(~same)[0][-1])
        return ("equity", market.time[t], None, f"{fe[..., t].tolist()} -> {oe[..., t].tolist()}",
                "The accounting at or before the cutoff depends on data after it.")
    return None


# ---------------------------------------------------------------------- cutoffs, scrambling
def _cutoffs(market: MarketData, cutoffs: Any, run: dict[str, Any], every_bar: bool = False
             ) -> list[np.datetime64]:
    """The given cutoffs, or cutoffs chosen where leaks show.

    Always the warm-up's end (the first bar with a decision) and bars of each kind that
    exists: corporate actions, listings and the edges of gaps, delistings, period ends
    (the last bar of a month),
    spread over the data; ``cutoffs`` (a number, default 8) bounds how many of each kind,
    and half as many evenly spaced bars join them. When the step driver has audited every
    bar, only the simulation remains to check, on the run's own decisions: the warm-up's
    end and the first bar of each kind the core reads (actions, listings, delistings)
    from there on (the last one before it when there is none after), no evenly spaced
    ones, and only as many as replays over about the market's bars in all cover (a
    replay costs about the bars before its cutoff: a kind first seen late is left to the
    sampled mode). The core is one compiled loop for every bar, so the first bar of a
    kind exercises what a later one would."""
    times = market.time
    T = len(times)
    if cutoffs is not None and not isinstance(cutoffs, int):
        return sorted({times[market.index_of(c)] for c in cutoffs})
    n = 1 if every_bar and cutoffs is None else (8 if cutoffs is None else int(cutoffs))
    picks: set[int] = set()
    if not every_bar:
        picks.update(np.linspace(T // 8, T - 2, max(n // 2, 1)).astype(int).tolist())
    firsts = (_first_act(np.asarray(a)) for a in run.get("intents", {}).values())
    picks.update(f for f in firsts if f is not None and f < T - 1)
    # what the market knows of itself spares the passes over every cell
    facts = market.facts
    actions = np.zeros(T, dtype=bool)
    for name, none in (("split_ratio", 1.0), ("dividend", 0.0)):
        if name in market.fields and facts.get("has_actions", True):
            actions |= (np.asarray(market[name].values) != none).any(axis=1)
    listings = np.zeros(0, dtype=np.int64)
    if not facts.get("gapless", False):
        valid = np.asarray(market["valid"].values, dtype=bool)
        first_valid = np.argmax(valid, axis=0)
        # listings, and the bars where a gap starts and ends: filling a gap reads across it
        edges = np.flatnonzero((valid[1:] != valid[:-1]).any(axis=1)) + 1
        listings = np.concatenate([first_valid[(first_valid > 0) & valid.any(axis=0)], edges])
    period = np.asarray(times, "datetime64[M]")
    # period ends are a strategy's calendar, which the every-bar audit covers: the core
    # that the every-bar mode's replays check has none
    kinds = (np.flatnonzero(actions), listings, market.delist_bar[market.delist_bar > 0],
             np.flatnonzero(period[1:] != period[:-1]) if not every_bar else np.zeros(0, int))
    warm = min(picks, default=0)
    for bars in kinds:
        bars = np.unique(bars[bars < T - 1])
        if bars.size and every_bar and cutoffs is None:
            after = bars[bars >= warm]
            picks.add(int(after[0] if after.size else bars[-1]))
        elif bars.size:
            # the middle one when only one is taken: early and late bars are the rare ones
            take = np.linspace(0, bars.size - 1, min(bars.size, n) + 2)[1:-1] if n < bars.size \
                else np.arange(bars.size)
            picks.update(int(bars[int(round(k))]) for k in take)
    bars = sorted(p for p in picks if 0 <= p < T - 1)
    if every_bar and cutoffs is None:
        # truncated and scrambled replays of a cutoff at bar i: about 2 i + _LATER bars
        cost = np.cumsum([2 * i + _LATER for i in bars])
        bars = [i for i, c in zip(bars, cost) if c <= max(T, 2 * bars[0] + _LATER)] if bars else []
    return [times[i] for i in bars]


def _first_act(a: np.ndarray, rows: int = 64) -> int | None:
    """The first bar where an intents array says anything (True, or a number other than 0
    and NaN); None if it never does. Read a few rows at a time: it is about the warm-up,
    and a run's arrays are large."""
    if a.ndim < 2:  # a stop level per parameter set: no bars
        return None
    for t0 in range(0, len(a), rows):
        block = a[t0: t0 + rows].reshape(min(rows, len(a) - t0), -1)
        acts = (block if a.dtype == bool else (block != 0) & (block == block)).any(axis=1)
        if acts.any():
            return t0 + int(np.argmax(acts))
    return None


def scrambled(market: MarketData, c: TimeLike, rng: np.random.Generator) -> MarketData:
    """``market`` with everything after ``c`` scrambled: every field's later bars rotated, and the
    rows of every reference table dated after ``c`` given other values, symbols and times."""
    ds, tables, _ = _scrambled_parts(market, market.index_of(c), rng)
    # the arrays already hold the moved actions; the table follows the arrays
    return MarketData(ds, universes=tables["universes"], events=tables["events"],
                      regimes=tables["regimes"])


def _scrambled_parts(market: MarketData, i: int, rng: np.random.Generator,
                     fields: frozenset[str] | None = None, tables: bool = True,
                     later: int | None = None
                     ) -> tuple[xr.Dataset, dict[str, pl.DataFrame | None], np.ndarray]:
    """The fields (``fields`` only, when given), reference tables (unless not ``tables``:
    the core reads none) and delistings of :func:`scrambled` after bar ``i``; with
    ``later``, only that many bars after ``i`` (each still another later bar's values)."""
    T = len(market.time)
    n = max(T - i - 1, 0)
    shift = int(rng.integers(1, n)) if n > 1 else 0
    keep = T if later is None else min(T, i + 1 + later)
    src = market.ds.isel(time=slice(0, keep))
    ds = xr.Dataset({name: (src[name].dims,
                            _rows_after(np.asarray(market.ds[name].values), i, shift, keep))
                     for name in src.data_vars if fields is None or name in fields},
                    coords=src.coords, attrs=src.attrs)
    T = keep
    when = np.datetime64(market.time[i], "ns")
    out: dict[str, pl.DataFrame | None] = {}
    for name, col in _TABLE_TIME.items() if tables else ():
        table = getattr(market, name)
        if not table.height:
            out[name] = None
            continue
        known = {"actions": "declared", "universes": "announced"}.get(name)
        stamp = table.select(pl.coalesce(known, col) if known else pl.col(col)).to_series()
        late = stamp.to_numpy().astype("datetime64[ns]") > when
        if late.any():
            table = _scramble_rows(table, late, rng, market.time[i + 1:] if i + 1 < T else None)
        out[name] = table
    delist = np.asarray(market.delist_bar).copy()
    moved = delist > i
    # a delisting after the cutoff moves to another later bar, or away
    delist[moved] = rng.choice(np.append(np.arange(i + 1, T), -1), int(moved.sum()))
    return ds, out, delist


def _rows_after(a: np.ndarray, i: int, shift: int, keep: int) -> np.ndarray:
    """The first ``keep`` rows of ``a`` with its rows after ``i`` rotated by ``shift``: every
    later bar holds another later bar's values (block copies, at memory speed, where a
    gather of rows in a random order is several times slower)."""
    out = np.empty((keep, *a.shape[1:]), dtype=a.dtype)
    out[: i + 1] = a[: i + 1]
    tail, rest = a[i + 1:], out[i + 1:]
    n, m = len(tail), len(rest)
    first = min(m, n - shift)
    rest[:first] = tail[shift: shift + first]
    rest[first:] = tail[: m - first]
    return out


def _scramble_rows(table: pl.DataFrame, late: np.ndarray, rng: np.random.Generator,
                   future: np.ndarray | None) -> pl.DataFrame:
    cols = {}
    idx = np.flatnonzero(late)
    for name in table.columns:
        values = table[name].to_numpy().copy()
        if values.dtype.kind == "f":
            values[idx] = rng.permutation(values[idx]) * rng.uniform(0.5, 2.0, idx.size) \
                - rng.normal(0, 1, idx.size)
        elif name in _KNOWN_AT:
            values[idx] = np.datetime64("NaT")  # known at the scrambled effective date
        elif values.dtype.kind == "M" and future is not None and len(future):
            values[idx] = np.sort(rng.choice(future, idx.size)).astype(values.dtype)
        elif name == "symbol":
            values[idx] = rng.permutation(values[idx])
        cols[name] = pl.Series(name, values, dtype=table[name].dtype) \
            if values.dtype.kind != "M" else pl.Series(name, values).cast(table[name].dtype)
    out = pl.DataFrame(cols)
    if "end" in out.columns and "start" in out.columns:
        out = out.with_columns(end=pl.when(pl.col("end") > pl.col("start")).then(pl.col("end")))
    return out
