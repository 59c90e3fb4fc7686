"""The point-in-time check: the step driver audits the batch run at every bar.

:func:`check_point_in_time` runs the strategy twice, each time in a fresh process
on a read-only store: once in the batch engine and once in the step driver, which
hands the strategy only what is known at each bar (:mod:`pitgrid.cycle.view`). Any
feature, intent or order that differs at any bar is a leak: the batch run read
something the step run could not know. The two runs share no process, no module
state and no market object, so a cache, a field written into the market or an
array written in place cannot carry the future from one to the other. Then the
simulation itself is checked: with the batch run's decisions, the data after a
cutoff is truncated or scrambled (every field and every reference table) and
nothing at or before the cutoff may change.

``every_bar=False`` is the quick sampled mode: truncate and scramble after a few
cutoffs and rerun the whole strategy each time (each run in its own process). The
cutoffs always include the end of the warm-up, corporate-action dates, listings,
delistings and period ends.
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData, TimeLike
from pitgrid.drivers.common import as_market, resolve_settings
from pitgrid.engine.config import SimConfig

_TABLE_TIME = {"actions": "ex_date", "events": "knowledge_time", "universes": "start",
               "regimes": "time"}
_KNOWN_AT = frozenset({"declared", "announced", "end_announced"})


@dataclass
class Difference:
    """The first thing that differs: where, what, and what it means."""

    cutoff: np.datetime64 | None  # None: found by the step driver's audit, at any bar
    how: str  # "step driver", "truncated" or "scrambled"
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

    @property
    def ok(self) -> bool:
        return not self.differences

    def __str__(self) -> str:
        scope = "at every bar" if self.every_bar else f"at {len(self.cutoffs)} cutoffs"
        if self.ok:
            return f"point-in-time: ok {scope}"
        d = self.differences[0]
        where = f"at {d.time}" + (f" ({d.symbol})" if d.symbol else "")
        if d.how == "step driver":
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
    market = as_market(market).load()
    with _read_only_store(market) as store:
        blob = _dump(strategy)
        settings = config.to_dict() if isinstance(config, SimConfig) else dict(config or {})
        if every_bar:
            # both at once, one per core
            children = [_Child(kind, str(store), blob, settings) for kind in ("batch", "step")]
            batch, step = (c.result() for c in children)
            cuts = _cutoffs(market, cutoffs, batch)
            report = PointInTimeReport(cuts, every_bar=True)
            diff = _audit(market, batch, step)
            if diff is not None:
                report.differences.append(diff)
                return report
            diff = _simulation_check(market, strategy, config, batch, cuts, seed)
            if diff is not None:
                report.differences.append(diff)
            return report
        full = _Child("batch", str(store), blob, settings).result()
        _raise_child_error(full)
        cuts = _cutoffs(market, cutoffs, full)
        report = PointInTimeReport(cuts, every_bar=False)
        rng = np.random.default_rng(seed)
        for c in cuts:
            for how, other in (("truncated", market.truncate(c)), ("scrambled", scrambled(market, c, rng))):
                with _read_only_store(other, always=True) as other_store:
                    run = _Child("batch", str(other_store), blob, settings).result()
                _raise_child_error(run)
                diff = _first_difference(full, run, c, market)
                if diff is not None:
                    report.differences.append(Difference(c, how, *diff))
                    return report
        return report


# ---------------------------------------------------------------------- the runs
def _dump(strategy: Strategy) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(strategy)


def _run(kind: str, store: str, blob: bytes, settings: dict[str, Any],
         path: list[str]) -> dict[str, Any]:
    """One run in a fresh process: decisions, features, orders and equity to compare.
    ``path`` is the caller's ``sys.path``, so the strategy's module imports as it did there."""
    import sys

    import cloudpickle

    sys.path[:0] = [p for p in path if p not in sys.path]
    from pitgrid.cycle.data import FeatureData
    from pitgrid.data.market import open_market
    from pitgrid.drivers.batch import backtest
    from pitgrid.drivers.common import features_for
    from pitgrid.drivers.step import StepDriver

    import warnings

    from pitgrid.drivers.step import SlowPathWarning

    warnings.simplefilter("ignore", SlowPathWarning)  # the audit is about leaks, not speed
    strategy = cloudpickle.loads(blob)
    market = open_market(store).load()
    driver = None
    try:
        if kind == "batch":
            features = {} if strategy.has_hook else dict(features_for(market, strategy, FeatureData(market)))
            res = backtest(market, strategy, settings)
        else:
            driver = StepDriver(market, strategy, settings, keep_features=True)
            res = driver.run(progress=False)
            features = {} if strategy.has_hook else driver.features()
    except Exception as exc:  # the strategy failed on what it was handed: part of the finding
        bar = None if driver is None else driver.t
        return {"error": f"{type(exc).__name__}: {exc}", "bar": bar, "kind": kind}
    intents = res.extra["intents"]
    return {
        "intents": {k: getattr(intents, k) for k in ("entries", "exits", "weights")
                    if getattr(intents, k) is not None},
        "features": {k: np.asarray(v) for k, v in features.items()},
        "trades": res.trades, "unfilled": res.unfilled, "filtered": res.filtered,
        "equity": np.asarray(res.equity.values),
    }


def _raise_child_error(run: dict[str, Any]) -> None:
    if "error" in run:
        raise RuntimeError(f"the {run['kind']} run failed: {run['error']}")


class _Child:
    """One run of :func:`_run` in a new interpreter (``python -c``): it starts with none of
    the caller's module state and none of the other run's, and runs nothing of the caller's
    main script. The caller's ``sys.path`` goes along, so the strategy's module imports as
    it did there. ``result()`` waits for it."""

    _CODE = "from pitgrid.drivers.pit import _child_main; _child_main()"

    def __init__(self, *args: Any) -> None:
        import pickle
        import subprocess

        # stderr to a file: a pipe nobody reads while stdout is read could fill and stall it
        self.errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-c", self._CODE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.errors)
        self.payload = pickle.dumps((*args, sys.path))
        # feed the arguments now; the process reads them before it starts its run
        assert self.proc.stdin is not None
        self.proc.stdin.write(self.payload)
        self.proc.stdin.close()

    def result(self) -> dict[str, Any]:
        import pickle

        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        code = self.proc.wait()
        self.errors.seek(0)
        err = self.errors.read().decode(errors="replace")
        self.errors.close()
        if code != 0:
            tail = err.strip().splitlines()[-1:] or ["no message"]
            raise RuntimeError(f"a check run's process failed (exit {code}): {tail[0]}")
        return pickle.loads(out)


def _child_main() -> None:
    """The entry of a check run's process: arguments on stdin, the result on stdout."""
    import pickle

    args = pickle.loads(sys.stdin.buffer.read())
    result = _run(*args)
    sys.stdout.buffer.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.flush()


class _read_only_store:
    """The market's store, or a temporary one written for the check."""

    def __init__(self, market: MarketData, always: bool = False) -> None:
        self.market = market
        self.always = always
        self.tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        if self.market.store_path is not None and not self.always:
            return self.market.store_path
        from pitgrid.data.store import write_market

        self.tmp = tempfile.TemporaryDirectory(prefix="pitgrid-check-")
        path = Path(self.tmp.name) / "market"
        write_market(self.market, path)
        return path

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


# ---------------------------------------------------------------------- comparing
def _audit(market: MarketData, batch: dict[str, Any], step: dict[str, Any]) -> Difference | None:
    """The first bar at which a feature, an intent or an order of the two runs differs."""
    times, symbols = market.time, market.symbols
    if "error" in batch:
        raise RuntimeError(f"the batch run failed: {batch['error']}")
    if "error" in step:
        bar = step["bar"]
        return Difference(None, "step driver", "error", None if bar is None else times[min(bar, len(times) - 1)],
                          None, step["error"],
                          "The strategy fails when handed only what is known at the bar: it reads or "
                          "writes past it (a row after t, an attribute that is not there, an array "
                          "made writeable).")
    # (bar, features before decisions, kind, name, symbol) of each first difference
    found: list[tuple[int, int, str, str, int]] = []
    for order, (kind, key) in enumerate((("feature", "features"), ("decision", "intents"))):
        for name, a in batch[key].items():
            if name not in step[key]:
                continue
            bad = ~_same(np.asarray(a), np.asarray(step[key][name]))
            if bad.ndim > 2:
                bad = bad.reshape(*bad.shape[:2], -1).any(axis=-1)
            if bad.any():
                t, s = np.argwhere(bad)[0]
                found.append((int(t), order, kind, name, int(s)))
    if found:
        t, _, kind, name, s = min(found)
        key = "features" if kind == "feature" else "intents"
        source, other = batch[key][name], step[key][name]
        meaning = ("This feature, computed on the bars up to t, differs from the batch run's row t: "
                   "it reads data after t." if kind == "feature" else
                   "The rule decides differently when it sees only what is known at t: it reads "
                   "rows after t, or state that outlives one run.")
        return Difference(None, "step driver", kind, times[t], str(symbols[s]),
                          f"{name} batch {np.asarray(source)[t, s]!r}, step {np.asarray(other)[t, s]!r}",
                          meaning)
    diff = _orders_difference(batch, step, times[-1])
    if diff is not None:
        return Difference(None, "step driver", *diff,
                          "The same decisions led to different orders: a hook or a setting read "
                          "something after t.")
    return None


def _same(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.shape != y.shape:
        return np.zeros(x.shape[:2], dtype=bool)
    if x.dtype.kind == "f":
        return (x == y) | (np.isnan(x) & np.isnan(y))
    return x == y


def _orders_difference(a: dict[str, Any], b: dict[str, Any], c: np.datetime64
                       ) -> tuple[str, np.datetime64, str | None, str] | None:
    for what, ta, tb in (("fill", a["trades"], b["trades"]), ("order", a["filtered"], b["filtered"]),
                         ("order", a["unfilled"], b["unfilled"])):
        ta = ta.filter(pl.col("time") <= c)
        tb = tb.filter(pl.col("time") <= c)
        if not ta.equals(tb):
            n = min(ta.height, tb.height)
            k = next((j for j in range(n) if ta.row(j) != tb.row(j)), n)
            row = ta.row(k, named=True) if k < ta.height else tb.row(k, named=True)
            return (what, np.datetime64(row["time"]), row["symbol"],
                    f"{ta.row(k) if k < ta.height else None} -> {tb.row(k) if k < tb.height else None}")
    return None


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
    diff = _orders_difference(full, other, c)
    if diff is not None:
        return (*diff, "An order at or before the cutoff depends on data after it.")
    ea, eb = full["equity"][..., : i + 1], other["equity"][..., : i + 1]
    if not np.array_equal(ea, eb):
        t = int(np.argmax(ea != eb))
        return ("equity", market.time[t], None, f"{ea[t]!r} -> {eb[t]!r}",
                "The accounting at or before the cutoff depends on data after it.")
    return None


def _simulation_check(market: MarketData, strategy: Strategy, config: Any, batch: dict[str, Any],
                      cuts: list[np.datetime64], seed: int) -> Difference | None:
    """The batch run's decisions, simulated on data cut and scrambled after each cutoff."""
    from pitgrid.engine.simulate import simulate

    cfg, size_value = resolve_settings(strategy, config)
    intents = batch["intents"]

    def run(m: MarketData) -> dict[str, Any]:
        n = len(m.time)
        res = simulate(m, **{k: np.asarray(v)[:n] for k, v in intents.items()},
                       size_value=size_value, **cfg.to_dict())
        return {"intents": {}, "trades": res.trades, "unfilled": res.unfilled,
                "filtered": res.filtered, "equity": np.asarray(res.equity.values)}

    full = run(market)
    rng = np.random.default_rng(seed)
    for c in cuts:
        for how, other in (("truncated", market.truncate(c)), ("scrambled", scrambled(market, c, rng))):
            diff = _first_difference(full, run(other), c, market)
            if diff is not None:
                return Difference(c, how, *diff)
    return None


# ---------------------------------------------------------------------- cutoffs, scrambling
def _cutoffs(market: MarketData, cutoffs: Any, run: dict[str, Any]) -> list[np.datetime64]:
    times = market.time
    T = len(times)
    if cutoffs is not None and not isinstance(cutoffs, int):
        return sorted({times[market.index_of(c)] for c in cutoffs})
    n = 8 if cutoffs is None else int(cutoffs)
    picks: set[int] = set(np.linspace(T // 8, T - 2, max(n // 2, 1)).astype(int).tolist())
    # the end of the warm-up: the first bar with any decision
    firsts = [int(np.argmax(np.any(np.nan_to_num(np.asarray(a, dtype=float)) != 0, axis=1)))
              for a in run.get("intents", {}).values()]
    picks.update(f for f in firsts if 0 < f < T - 1)
    special: list[int] = []
    for name, none in (("split_ratio", 1.0), ("dividend", 0.0)):
        if name in market.fields:
            rows = np.flatnonzero((np.asarray(market[name].values) != none).any(axis=1))
            special.extend(rows.tolist())
    valid = np.asarray(market["valid"].values, dtype=bool)
    first_valid = np.argmax(valid, axis=0)
    special.extend(first_valid[(first_valid > 0) & valid.any(axis=0)].tolist())
    special.extend(b for b in market.delist_bar.tolist() if b > 0)
    period = np.asarray(times, "datetime64[M]")
    special.extend(np.flatnonzero(period[1:] != period[:-1]).tolist())  # last bar of each month
    special = sorted({s for s in special if 0 <= s < T - 1})
    if special:
        take = np.linspace(0, len(special) - 1, min(len(special), n)).round().astype(int)
        picks.update(special[i] for i in take)
    return [times[i] for i in sorted(p for p in picks if 0 <= p < T - 1)]


def scrambled(market: MarketData, c: TimeLike, rng: np.random.Generator) -> MarketData:
    """``market`` with everything after ``c`` scrambled: every field's bars permuted, and the
    rows of every reference table dated after ``c`` given other values, symbols and times."""
    i = market.index_of(c)
    ds = market.ds.copy(deep=True)
    T = len(market.time)
    if i + 1 < T:
        order = np.concatenate([np.arange(i + 1), i + 1 + rng.permutation(T - i - 1)])
        for name in ds.data_vars:
            ds[name] = ds[name].copy(data=np.asarray(ds[name].values)[order])
    when = np.datetime64(market.time[i], "ns")
    tables = {}
    for name, col in _TABLE_TIME.items():
        table = getattr(market, name)
        if not table.height:
            tables[name] = None
            continue
        known = {"actions": "declared", "universes": "announced"}.get(name)
        stamp = table.select(pl.coalesce(known, col) if known else pl.col(col)).to_series()
        late = stamp.to_numpy().astype("datetime64[ns]") > when
        if late.any():
            table = _scramble_rows(table, late, rng, market.time[i + 1:] if i + 1 < T else None)
        tables[name] = table
    # the arrays already hold the permuted actions; the table follows the arrays
    return MarketData(ds, universes=tables["universes"], events=tables["events"],
                      regimes=tables["regimes"])


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
