"""The point-in-time check: the step driver audits the batch run at every bar; planted leaks of
every kind the issue lists are caught, and no shipped strategy or example is flagged."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pitgrid as pg
from pitgrid import kernels as K
from pitgrid.cycle.strategy import Intents, Strategy
from pitgrid.drivers.pit import scrambled
from pitgrid.strategies import MovingAverageCross

from strategies_for_tests import (SHIPPED, BackAdjustedLevel, CentredAverage, EventTimeReader,
                                  VetoHook, market_with_everything)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from custom_strategy import Breakout  # noqa: E402


@pytest.fixture(scope="module")
def market():
    return market_with_everything()


@pytest.mark.parametrize("strategy", SHIPPED + [VetoHook(fast=5, slow=20), Breakout(window=20, exit_window=10)],
                         ids=lambda s: s.name)
@pytest.mark.parametrize("fill", ["close", "next_open"])
def test_no_false_alarm_on_shipped_strategies_hooks_and_examples(market, strategy, fill):
    report = pg.check_point_in_time(market, strategy, {"fill": fill, "fees_bps": 10})
    assert report.ok, str(report)


_CACHE: dict[int, np.ndarray] = {}


@dataclass(frozen=True, kw_only=True)
class ModuleCache(MovingAverageCross):
    """LEAK: a module-level cache of the slow average, filled once and sliced afterwards."""

    def features(self, data):
        if self.slow not in _CACHE:
            _CACHE[self.slow] = K.sma(data.adjusted("close"), self.slow)
        return {"fast": K.sma(data.adjusted("close"), self.fast), "slow": _CACHE[self.slow][: data.n_time]}


@dataclass(frozen=True, kw_only=True)
class MarketField(MovingAverageCross):
    """LEAK: stores a feature as a new field of the market's Dataset."""

    def features(self, data):
        data.market.ds["tomorrow"] = data.market.ds["close"].shift(time=-1)
        close = data.adjusted("close")
        return {"fast": K.sma(close, self.fast), "slow": K.sma(close, self.slow)}


@dataclass(frozen=True, kw_only=True)
class InPlaceShift(MovingAverageCross):
    """LEAK: makes the close it was given writeable and shifts tomorrow into today."""

    def features(self, data):
        close = data.adjusted("close")
        close.setflags(write=True)
        close[:-1] = close[1:].copy()
        return {"fast": K.sma(close, self.fast), "slow": K.sma(close, self.slow)}


@dataclass(frozen=True, kw_only=True)
class YearEndPeek(Strategy):
    """LEAK: on the last bar of each month, enters when tomorrow's close is higher."""

    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        close = data.adjusted("close")
        month = np.asarray(data.time, "datetime64[M]")
        last = np.r_[month[1:] != month[:-1], False]
        up = np.zeros(close.shape, dtype=bool)
        up[:-1] = close[1:] > close[:-1]
        return {"peek": (up & last[:, None]).astype(float)}

    def intents(self, data, f):
        return Intents(entries=f["peek"] > 0, exits=f["peek"] == 0)


@dataclass(frozen=True, kw_only=True)
class EarlyPeek(Strategy):
    """LEAK: in the first fifth of the data only, reads the close five bars ahead."""

    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        close = data.adjusted("close")
        ahead = np.full(close.shape, np.nan)
        n = close.shape[0]
        early = min(n, 32)
        ahead[: max(early - 5, 0)] = close[5:early]
        return {"gain": ahead / close}

    def intents(self, data, f):
        g = np.nan_to_num(f["gain"])
        return Intents(entries=g > 1.01, exits=g < 0.99)


LEAKS = [CentredAverage(), EventTimeReader(field="sentiment", enter_above=0.5), BackAdjustedLevel(),
         ModuleCache(fast=5, slow=20), MarketField(fast=5, slow=20), InPlaceShift(fast=5, slow=20),
         YearEndPeek(), EarlyPeek()]


@pytest.mark.parametrize("leak", LEAKS, ids=lambda s: s.name)
def test_every_planted_leak_is_caught_and_named(market, leak):
    report = pg.check_point_in_time(market, leak, {"fill": "close"})
    assert not report.ok
    d = report.differences[0]
    text = str(report)
    assert "LEAK" in text and d.meaning in text
    assert d.what in ("feature", "decision", "order", "fill", "equity", "error")
    if d.what in ("feature", "decision"):
        assert d.symbol in market.symbols and d.time in market.time


def test_the_sampled_mode_still_catches_a_feature_that_reads_ahead(market):
    report = pg.check_point_in_time(market, CentredAverage(), {"fill": "close"}, every_bar=False,
                                    cutoffs=[market.time[i] for i in (60, 90, 110)])
    assert not report.ok and report.differences[0].time <= report.differences[0].cutoff


def test_scrambling_changes_every_field_and_table_after_the_cutoff_only(market):
    c = market.time[60]  # before the dividend (bar 80) and the split (bar 106)
    other = scrambled(market, c, np.random.default_rng(1))
    for name in market.fields:
        a, b = np.asarray(market[name].values), np.asarray(other[name].values)
        np.testing.assert_array_equal(a[:61], b[:61])
        assert not np.array_equal(a[61:], b[61:]), name
    when = pl.lit(c).cast(pl.Datetime("ns"))
    for name, col in (("events", "knowledge_time"), ("universes", "start")):
        before = getattr(market, name).filter(pl.col(col) <= when)
        after = getattr(other, name).filter(pl.col(col) <= when)
        assert after.sort(col, "symbol").equals(before.sort(col, "symbol")), name
    late = market.events.filter(pl.col("knowledge_time") > when)
    assert not other.events.filter(pl.col("knowledge_time") > when)["value"].equals(late["value"])


def test_the_callers_own_state_cannot_hide_a_leak(market):
    # the caller's module cache already holds the full-length average, and the batch run in
    # the caller's process reads it; a step driver forked from the caller would inherit it
    # and the runs would agree; the step driver's process from the clean server does not
    leak = ModuleCache(fast=5, slow=20)
    pg.backtest(market, leak, {"fill": "close"})
    assert _CACHE
    report = pg.check_point_in_time(market, leak, {"fill": "close"})
    assert not report.ok and "LEAK" in str(report)


def test_the_simulation_check_catches_an_engine_that_reads_the_next_bar(market, monkeypatch):
    from pitgrid.drivers import pit
    from pitgrid.engine import simulate

    honest = simulate.market_arrays

    def peeking(*args, **kwargs):
        data = honest(*args, **kwargs)
        close = data["close"].copy()
        close[:-1] = data["close"][1:]  # the close of t+1 at bar t
        return {**data, "close": close}

    strategy = MovingAverageCross(fast=5, slow=20)
    res = pg.backtest(market, strategy, {"fill": "close"})
    intents = {"entries": res.extra["intents"].entries, "exits": res.extra["intents"].exits}
    for how in ("truncated", "scrambled"):  # each replay catches it alone
        cuts = [(k, market.time[i], how) for k, i in enumerate((60, 100))]
        with monkeypatch.context() as m:
            assert pit._simulation_check(market, strategy, {"fill": "close"}, intents, cuts, 0) is None
            m.setattr(simulate, "market_arrays", peeking)
            found = pit._simulation_check(market, strategy, {"fill": "close"}, intents, cuts, 0)
            # the first cutoff's, in whatever order the replays come (as the runs claim them)
            again = pit._simulation_check(market, strategy, {"fill": "close"}, intents,
                                          cuts[::-1], 0)
        assert found is not None and found.how == how
        assert found.cutoff == cuts[0][1] and again == found
        assert found.time <= found.cutoff and found.what in ("fill", "order", "equity")


def test_the_replays_are_shared_between_the_runs_and_each_done_once(market, tmp_path):
    from pitgrid.drivers import forked, pit

    # two processes claiming in turn: each replay goes to exactly one of them
    cuts = [market.time[i] for i in (10, 60, 100, 150)]
    jobs = pit._replays(market, cuts)
    assert sorted(jobs, key=str) == sorted(((k, c, how) for k, c in enumerate(cuts)
                                            for how in ("truncated", "scrambled")), key=str)
    mine: tuple[list, list] = ([], [])
    claiming = [pit._claimed(jobs, str(tmp_path), m) for m in mine]
    done = [next(claiming[0]), *claiming[1], *claiming[0]]
    assert sorted(done, key=str) == sorted(jobs, key=str) and mine[0] and mine[1]
    # the check's two runs at once, the batch run in this process
    strategy = MovingAverageCross(fast=5, slow=20)
    blob = pit._dump(strategy)
    with forked.Exports.lease(market) as folder, forked.scratch_folder("claims-") as claims:
        folder = str(folder)
        step = forked.submit(pit._run, "step", folder, blob, {}, cuts, 0, None, False, claims,
                             market=folder)
        batch = pit._batch_here(folder, blob, {}, cuts, 0, claims)
        step = step.result()
    assert batch["simulation"] is None and step["simulation"] is None
    both = batch["replayed"] + step["replayed"]
    assert sorted(both, key=str) == sorted(jobs, key=str)


@dataclass(frozen=True, kw_only=True)
class Dies(MovingAverageCross):
    """Ends its own process when handed fewer than ``bars`` bars (the step driver hands it
    each bar's prefix; the batch run, in the caller's process, the whole market)."""

    bars: int = 10**9

    def features(self, data):
        import os

        if data.n_time < self.bars:
            os._exit(3)
        return super().features(data)


def test_a_run_whose_process_dies_is_reported(market):
    # the check reports it instead of waiting forever: the step driver's process in the
    # every-bar mode, the whole run's in the sampled mode
    with pytest.raises(RuntimeError, match="died"):
        pg.check_point_in_time(market, Dies(fast=5, slow=20, bars=len(market.time)))
    with pytest.raises(RuntimeError, match="died"):
        pg.check_point_in_time(market, Dies(fast=5, slow=20), every_bar=False)


@dataclass(frozen=True, kw_only=True)
class Exits(MovingAverageCross):
    """Asks its process to exit in the batch run."""

    def features(self, data):
        sys.exit(4)


def test_a_batch_run_that_exits_does_not_end_the_caller(market, monkeypatch):
    from pitgrid.drivers import forked

    read = []
    result = forked.Run.result

    def reading(run):
        try:
            return result(run)
        finally:
            read.append(run)

    monkeypatch.setattr(forked.Run, "result", reading)
    with pytest.raises(RuntimeError, match="SystemExit"):
        pg.check_point_in_time(market, Exits(fast=5, slow=20))
    # the step driver's run was read too, so its files are gone, not left for nobody
    assert len(read) == 1


@dataclass(frozen=True, kw_only=True)
class Scribbles(MovingAverageCross):
    """Leaves what it computed on its instance, in the feature cache and in the market."""

    def features(self, data):
        out = super().features(data)
        object.__setattr__(self, "_seen", data.n_time)
        data.market.ds["scribble"] = data.market.ds["close"] * 0
        return out


def test_the_batch_run_in_the_callers_process_leaves_it_as_it_was(market):
    from pitgrid.drivers import common

    strategy = Scribbles(fast=5, slow=20)
    pg.clear_feature_cache()
    fields = set(market.ds.data_vars)
    pg.check_point_in_time(market, strategy)
    # a copy of the strategy ran, with a feature cache of its own, on a market of its own
    assert "_seen" not in vars(strategy)
    assert not common._FEATURE_CACHE and common._OWN_CACHE.get() is None
    assert set(market.ds.data_vars) == fields


@dataclass(frozen=True, kw_only=True)
class LongShortWithLevels(Strategy):
    """Clean, or (``peek=True``) a take-profit limit at tomorrow's high: a leak in the orders."""

    peek: bool = False
    intent_rows: ClassVar[int | None] = 2

    def features(self, data):
        close = data.adjusted("close")
        high = data.adjusted("high")
        if self.peek:
            level = np.full(high.shape, np.nan)
            level[:-1] = high[1:]
        else:
            level = high * 1.02
        return {"fast": K.sma(close, 5), "slow": K.sma(close, 20), "level": level}

    def intents(self, data, f):
        above = f["fast"] > f["slow"]
        before = np.vstack([above[:1], above[:-1]])  # each row's previous row
        up, down = above & ~before, ~above & before
        return Intents(entries=up, exits=down, short_entries=down, short_exits=up,
                       orders={"exit_limit": f["level"], "sl_stop": np.full(up.shape, 0.05)})


@pytest.mark.parametrize("config", [{"fill": "next_open", "allow_short": True, "unfilled": "carry"},
                                    {"fill": "close", "allow_short": True, "max_participation": 0.01}])
def test_order_logs_are_in_bar_order_as_the_audit_reads_them(market, config):
    # the audit cuts a log at a bar by searching its bar column
    strategy = LongShortWithLevels()
    logs = [pg.backtest(market, strategy, config).extra["order_log"][0],
            pg.StepDriver(market, strategy, config).run(progress=False).extra["order_log"][0]]
    for li in logs:
        assert len(li) > 10 and (np.diff(li[:, 0]) >= 0).all()


def test_short_signals_stops_and_order_levels_are_checked_too(market):
    config = {"fill": "next_open", "allow_short": True}
    assert pg.check_point_in_time(market, LongShortWithLevels(), config).ok
    report = pg.check_point_in_time(market, LongShortWithLevels(peek=True), config)
    assert not report.ok and "LEAK" in str(report)


def test_cuts_of_one_market_are_checked_one_after_another(market):
    # their export folders must differ though their cache keys share a long prefix
    strategy = MovingAverageCross(fast=5, slow=20)
    for i in (100, 120, 140):
        assert pg.check_point_in_time(market.truncate(market.time[i]), strategy).ok


def test_the_check_s_server_keeps_children_waiting_and_leaves_none_behind():
    import os
    import signal
    import time

    from pitgrid.drivers import forked

    assert forked.submit(os.getpid).result() != os.getpid()
    server = forked._Server.get()
    deadline = time.monotonic() + 30
    # the finished run's process may still be exiting beside the waiting ones
    while len(_waiting(server.proc.pid)) != forked._IDLE and time.monotonic() < deadline:
        time.sleep(0.05)
    waiting = _waiting(server.proc.pid)
    assert len(waiting) == forked._IDLE
    os.kill(waiting[0], signal.SIGKILL)  # a waiting child killed from outside is replaced
    time.sleep(0.2)
    assert {forked.submit(os.getpid).result() for _ in range(3)}.isdisjoint({waiting[0]})
    server.stop()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in waiting[1:]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in waiting[1:]), "children outlived their server"


_CALLER = """
import pitgrid as pg
from pitgrid.strategies import MovingAverageCross
market = pg.MarketData(pg.synthetic_prices(600, 60, seed=1))
pg.check_point_in_time(market, MovingAverageCross(fast=5, slow=20))
print("checked", flush=True)
while True:
    pg.check_point_in_time(market, MovingAverageCross(fast=5, slow=20))
"""


def test_a_caller_killed_during_its_checks_leaves_nothing_behind(tmp_path):
    # its markets and its runs' results are files in memory (/dev/shm): its server, which
    # sees it go, ends the runs under way and removes them
    import signal
    import subprocess
    import tempfile
    import time

    from pitgrid.drivers import forked

    scratch = Path(forked._scratch() or tempfile.gettempdir())
    before = set(scratch.glob("pitgrid-*"))
    script = tmp_path / "caller.py"
    script.write_text(_CALLER)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "checked"
        time.sleep(0.3)  # in the middle of a later check
        server = _waiting(proc.pid)
        assert server and {p.name.split("-")[2] for p in scratch.glob("pitgrid-markets-*")} >= {str(proc.pid)}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = set(scratch.glob("pitgrid-*")) - before
        if not left and not any(_alive(p) for p in server):
            break
        time.sleep(0.1)
    assert not left, f"left behind: {sorted(p.name for p in left)}"
    assert not any(_alive(p) for p in server), "the server outlived its caller"


@dataclass(frozen=True, kw_only=True)
class Slow(MovingAverageCross):
    """Takes a while to decide: long enough for its server to be killed meanwhile."""

    def features(self, data):
        import time

        time.sleep(0.5)
        return super().features(data)


def test_a_server_killed_during_a_check_takes_its_runs_with_it(market):
    import os
    import signal
    import tempfile
    import threading
    import time

    from pitgrid.drivers import forked

    pg.check_point_in_time(market, MovingAverageCross(fast=5, slow=20))  # the server is up
    server = forked._Server.get().proc.pid
    scratch = Path(forked._scratch() or tempfile.gettempdir())
    before = set(scratch.glob("pitgrid-run-*"))
    runs: list[int] = []

    def kill():
        runs.extend(_waiting(server))  # the runs' processes, and those waiting for the next
        os.kill(server, signal.SIGKILL)

    threading.Timer(0.2, kill).start()
    with pytest.raises(RuntimeError, match="server died"):
        pg.check_point_in_time(market, Slow(fast=5, slow=20))
    assert runs
    deadline = time.monotonic() + 10
    while (any(_alive(p) for p in runs) or set(scratch.glob("pitgrid-run-*")) - before) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in runs), "runs outlived their server"
    time.sleep(1)  # what a run that outlived it would write, after its own half second
    assert not set(scratch.glob("pitgrid-run-*")) - before, "a run wrote a result nobody reads"
    assert pg.check_point_in_time(market, MovingAverageCross(fast=5, slow=20)).ok  # a new server


def test_a_caller_that_stops_its_server_keeps_its_markets(market):
    # the server removes its caller's exported markets when the caller is gone, not when
    # the caller stops it and goes on checking on the markets it keeps
    from pitgrid.drivers import forked

    strategy = MovingAverageCross(fast=5, slow=20)
    assert pg.check_point_in_time(market, strategy).ok
    forked._Server.get().stop()
    assert pg.check_point_in_time(market, strategy).ok  # on the export kept from before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps_rollup")
def test_the_server_moves_its_memory_onto_huge_pages_where_the_kernel_can():
    # what a fork copies and a child's exit tears down: an entry per 2 MB, not per 4 KB
    import os
    import re
    import subprocess

    probe = subprocess.run([sys.executable, "-c", """
import ctypes, mmap, re
from pitgrid.drivers import forked
# private, on 4 KB pages: never advised
maps = [mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE) for _ in range(2)]
for m in maps:
    m.write(b"x" * (64 << 20))
# the kernel refuses the mapping it meets first (no huge pages for it): the other is done
min(maps, key=lambda m: ctypes.addressof(ctypes.c_char.from_buffer(m))).madvise(
    mmap.MADV_NOHUGEPAGE)
def huge():
    rollup = open("/proc/self/smaps_rollup").read()
    return int(re.search(r"AnonHugePages:\\s+(\\d+)", rollup).group(1))
before = huge()
forked._collapse()
print(before, huge())
"""], capture_output=True, text=True, check=True)
    before, after = map(int, probe.stdout.split())
    release = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        able = "[never]" not in f.read()
    if release >= (6, 1) and able:
        assert after >= before + (32 << 10), (before, after)  # KB: most of the other 64 MB
    else:  # nothing to do on such a kernel, and no failure
        assert after >= before


def test_the_server_asks_glibc_for_a_heap_on_huge_pages_unless_the_caller_said_otherwise():
    from pitgrid.drivers.forked import _Server, _huge_heap

    assert _huge_heap({"PATH": "/bin"}) == {"PATH": "/bin",
                                            "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    assert _huge_heap({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})["GLIBC_TUNABLES"] == \
        "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert _huge_heap({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})["GLIBC_TUNABLES"] == \
        "glibc.malloc.hugetlb=0"
    if sys.platform.startswith("linux"):  # what the running server was started with
        from pitgrid.drivers.forked import submit

        assert submit(max, 2, 3).result() == 3  # the server is up (its environment is set)
        with open(f"/proc/{_Server.get().proc.pid}/environ", "rb") as f:
            assert b"glibc.malloc.hugetlb=" in f.read()


def _waiting(pid: int) -> list[int]:
    """The live children of process ``pid`` (Linux)."""
    from pathlib import Path

    kids = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in kids.read_text().split() if _alive(int(x))] if kids.exists() else []


def _alive(pid: int) -> bool:
    from pathlib import Path

    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] not in ("Z", "X")


@dataclass(frozen=True, kw_only=True)
class RoundingFeature(MovingAverageCross):
    """Clean: an extra feature whose last bits depend on how many rows it was computed on
    (as whole-array numerics do), within the check's rounding tolerance."""

    def features(self, data):
        close = data.adjusted("close")
        wobble = 1.0 + 1e-13 * (close.shape[0] % 3)
        return {**super().features(data), "scaled": close * wobble}


@dataclass(frozen=True, kw_only=True)
class FutureFeatureUnused(MovingAverageCross):
    """LEAK: a feature that reads the next bar, though no decision uses it."""

    def features(self, data):
        close = data.adjusted("close")
        ahead = np.full(close.shape, np.nan)
        ahead[:-1] = close[1:]
        return {**super().features(data), "tomorrow": ahead}


@dataclass(frozen=True, kw_only=True)
class RoundingWeights(Strategy):
    """Clean: weights whose last bits depend on how many rows they were computed on."""

    def features(self, data):
        return {"close": data.adjusted("close")}

    def intents(self, data, f):
        c = f["close"]
        w = np.where(np.isfinite(c), 0.2 * (1.0 + 1e-13 * (c.shape[0] % 3)), np.nan)
        return Intents(weights=w)


def test_decisions_apart_only_by_rounding_are_not_a_leak(market):
    # their digests differ too: compared within rounding once the runs send the values
    assert pg.check_point_in_time(market, RoundingWeights(), {"fill": "close"}).ok


def test_features_apart_only_by_rounding_are_not_a_leak(market):
    # their digests differ: the check asks the runs for the values and compares them within
    # rounding
    assert pg.check_point_in_time(market, RoundingFeature(fast=5, slow=20), {"fill": "close"}).ok


def test_a_feature_that_reads_ahead_is_named_though_no_decision_uses_it(market):
    report = pg.check_point_in_time(market, FutureFeatureUnused(fast=5, slow=20), {"fill": "close"})
    assert not report.ok
    d = report.differences[0]
    assert d.what == "feature" and "tomorrow" in d.detail
    assert d.symbol in market.symbols and d.time == market.time[0]


def _heap_growth_after_prefault(nbytes: int, request_waiting: bool) -> int:
    """In a run's process: how far resident memory grew while prefaulting ``nbytes``."""
    import os

    from pitgrid.drivers import forked

    def resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    r, w = os.pipe()
    if request_waiting:
        os.write(w, b"x")
    assert forked._keep_heap()
    before = resident()
    forked._prefault(nbytes, r)
    return resident() - before


def test_a_waiting_child_prefaults_its_heap_until_a_request_comes():
    from pitgrid.drivers import forked

    n = 64 << 20
    assert forked.submit(_heap_growth_after_prefault, n, False).result() >= n // 2
    assert forked.submit(_heap_growth_after_prefault, n, True).result() < n // 8


@dataclass(frozen=True, kw_only=True)
class ShortRows(Strategy):
    """Declares one row but reads two (the step driver decides otherwise from bar 1: not a
    leak), and (``peek=True``) from a quarter of the data on also enters on tomorrow's
    close, read from the market in the rule: a leak behind the rows mismatch."""

    peek: bool = False
    intent_rows: ClassVar[int | None] = 1

    def features(self, data):
        return {"close": data.adjusted("close")}

    def intents(self, data, f):
        c = f["close"]
        rising = np.zeros(c.shape, dtype=bool)
        rising[1:] = c[1:] > c[:-1]
        if self.peek:
            whole = data.adjusted("close")
            n = whole.shape[0]
            ahead = np.zeros(whole.shape, dtype=bool)
            ahead[n // 4: n - 1] = whole[n // 4 + 1:] > whole[n // 4: n - 1]
            rising |= ahead[n - len(c):]
        return Intents(entries=rising, exits=~rising)


def test_a_leak_behind_a_rows_mismatch_is_confirmed_at_a_later_bar(market):
    clean = pg.check_point_in_time(market, ShortRows(), {"fill": "close"})
    assert clean.differences[0].how == "intent_rows" and "no leak found" in str(clean)
    report = pg.check_point_in_time(market, ShortRows(peek=True), {"fill": "close"})
    d = report.differences[0]
    assert d.how == "step driver" and d.what == "decision" and "LEAK" in str(report)
    # the first bar where the runs differ is the mismatch's; the leak is confirmed later
    assert market.index_of(d.time) >= len(market.time) // 4 > 1


def test_a_market_in_use_is_not_removed_by_other_checks():
    from pitgrid.drivers import forked

    markets = [pg.MarketData(pg.synthetic_prices(40, 2, seed=s)) for s in range(4)]
    with forked.Exports.lease(markets[0]) as held:
        for m in markets[1:]:  # more markets than are kept, one after another
            with forked.Exports.lease(m) as folder:
                assert folder.exists() and held.exists()
        assert held.exists()
    kept = list(forked.Exports._kept.values())
    assert len(kept) <= forked.Exports.KEEP and all(p.exists() for p in kept)


def test_checks_of_several_markets_in_several_threads_at_once():
    from concurrent.futures import ThreadPoolExecutor

    markets = [pg.MarketData(pg.synthetic_prices(80, 3, seed=s)) for s in range(4)]
    strategy = MovingAverageCross(fast=3, slow=10)
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda m: pg.check_point_in_time(m, strategy), markets * 2))
    assert all(r.ok for r in reports), [str(r) for r in reports if not r.ok]


def _allocate(nbytes: int) -> float:
    """A run whose memory grows by ``nbytes``."""
    import numpy as np

    return float(np.ones(nbytes // 8)[-1])


def _resident_at_start() -> int:
    from pitgrid.drivers import forked

    return forked._resident()


def test_after_a_run_that_grew_the_waiting_children_prefault_as_much():
    import time

    from pitgrid.drivers import forked

    forked._Server.get().stop()  # a new server knows nothing of earlier runs
    before = forked.submit(_resident_at_start).result()
    forked.submit(_allocate, 160 << 20).result()
    time.sleep(2.0)  # no run under way: the waiting children are replaced and prefault
    after = forked.submit(_resident_at_start).result()
    assert after - before > 100 << 20


def _close_sum(folder: str) -> float:
    from pitgrid.drivers import forked

    return float(np.nansum(forked.import_market(folder).ds["close"].values))


def test_a_market_the_server_imported_is_not_served_for_a_new_export_in_its_folder(tmp_path):
    import shutil
    import time

    from pitgrid.drivers import forked

    folder = tmp_path / "market"
    for seed in (1, 2):
        market = pg.MarketData(pg.synthetic_prices(50, 3, seed=seed))
        shutil.rmtree(folder, ignore_errors=True)
        forked.export_market(market, folder)
        want = float(np.nansum(market.ds["close"].values))
        assert forked.submit(_close_sum, str(folder), market=str(folder)).result() == want
        time.sleep(0.5)  # the server imports it between runs, for the next ones
        assert forked.submit(_close_sum, str(folder), market=str(folder)).result() == want


def _server_threads() -> set[str]:
    import os

    from pitgrid.drivers import forked

    pid = forked._Server.get().proc.pid
    return {open(f"/proc/{pid}/task/{t}/comm").read().strip() for t in os.listdir(f"/proc/{pid}/task")}


def test_the_server_starts_no_thread_a_child_could_wait_on(market):
    # imports start a few of their own (polars', jemalloc's); warming up, rehearsing and
    # importing a market for the children must start no other kind (a pool's workers)
    import subprocess
    import sys

    from pitgrid.drivers import forked

    forked._Server.get().stop()
    pg.check_point_in_time(market, MovingAverageCross(fast=5, slow=20))
    pg.check_point_in_time(market, MovingAverageCross(fast=5, slow=20))  # with it imported
    imports = subprocess.run(
        [sys.executable, "-c", "import os, pitgrid.drivers.pit, pitgrid.strategies; print(*{open("
         "f'/proc/self/task/{t}/comm').read().strip() for t in os.listdir('/proc/self/task')}, "
         "sep='\\n')"], capture_output=True, text=True, check=True)
    assert _server_threads() == set(imports.stdout.splitlines())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/pagemap")
def test_a_run_records_the_pages_it_wrote_and_a_waiting_child_copies_them(tmp_path):
    import os

    from pitgrid.drivers import forked

    shared = np.ones(64 * 4096 // 8)  # present in the parent, shared with a child
    page = lambda i: (shared.ctypes.data // 4096 + 1 + i)  # noqa: E731 - whole pages in it
    pid = os.fork()
    if pid == 0:  # the child: exits 0 when every check holds
        ok = False
        try:
            base = (page(0) * 4096 - shared.ctypes.data) // 8
            shared[base + 512 * 2] = 2.0  # writes page 2, reads page 5
            _ = shared[base + 512 * 5]
            forked._written_pages(str(tmp_path / "one"))
            one = set(np.fromfile(tmp_path / "one", dtype=np.uint64).tolist())
            r, _w = os.pipe()
            forked._populate(np.array([page(5)], dtype=np.uint64), r)
            forked._written_pages(str(tmp_path / "two"))
            two = set(np.fromfile(tmp_path / "two", dtype=np.uint64).tolist())
            ok = (page(2) in one and page(5) not in one and page(5) in two
                  and shared[base + 512 * 5] == 1.0)
        finally:
            os._exit(0 if ok else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _first_act_reference(a: np.ndarray) -> int | None:
    """Bar by bar: the first whose row holds a True, or a number other than 0 and NaN."""
    if a.ndim < 2:
        return None
    for t in range(len(a)):
        for x in np.asarray(a[t]).ravel().tolist():
            if x is True or (not isinstance(x, bool) and x != 0 and x == x):
                return t
    return None


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 200), st.integers(1, 4), st.sampled_from([bool, np.float64]),
       st.integers(0, 2**32 - 1))
def test_the_first_bar_an_intents_array_acts_on_matches_a_row_by_row_reference(n, s, dtype, seed):
    from pitgrid.drivers.pit import _first_act

    rng = np.random.default_rng(seed)
    a = np.zeros((n, s), dtype=dtype)
    if n and rng.random() < 0.8:  # mostly one acting bar somewhere, NaN weights around it
        a[rng.integers(0, n), rng.integers(0, s)] = True if dtype is bool else rng.normal()
    if dtype is not bool:
        a[rng.random((n, s)) < 0.3] = np.nan
    assert _first_act(a) == _first_act_reference(a)
    assert _first_act(a[:, 0]) is None  # a stop level per parameter set has no bars
