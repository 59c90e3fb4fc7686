"""Memory checks before a run allocates (issue 11, item 14)."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import xarray as xr

import pitgrid as pg
import pitgrid.engine.memory as mem
from pitgrid.engine.memory import InsufficientMemoryError, estimate_simulate
from pitgrid.strategies import RSIMeanReversion


@pytest.fixture(autouse=True)
def _no_limit(monkeypatch):
    monkeypatch.delenv(mem.ENV_LIMIT, raising=False)


def _limit_between(monkeypatch, low: int, high: int) -> None:
    assert low < high
    monkeypatch.setenv(mem.ENV_LIMIT, str((low + high) / 2 / 2**20))


def _sparse_signals(ds):
    # a few trades, so the trade tables do not dominate what keep= changes
    entries = np.zeros(ds["close"].shape, dtype=bool)
    exits = np.zeros_like(entries)
    entries[10::200] = True
    exits[110::200] = True
    return entries, exits


def test_the_issue_case_is_refused_before_anything_is_allocated(monkeypatch):
    # 10,000 bars x 5,000 symbols, as in the issue, from zero-stride arrays that take no memory
    T, S = 10_000, 5_000
    ds = xr.Dataset(
        {f: (("time", "symbol"), np.broadcast_to(100.0, (T, S))) for f in ("close", "volume")},
        coords={"time": np.arange(T), "symbol": np.arange(S)})
    weights = xr.DataArray(np.broadcast_to(0.0001, (T, S)), dims=("time", "symbol"))
    monkeypatch.setenv(mem.ENV_LIMIT, "2048")
    tracemalloc.start()
    try:
        with pytest.raises(InsufficientMemoryError) as info:
            pg.simulate(ds, weights=weights, keep="full", accounts="per_symbol", fill="close")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20  # one (time, symbol) float array would take 400 MB
    err = info.value
    assert isinstance(err, MemoryError) and err.available == 2048 * 2**20
    assert err.needed > 4 * 2**30 > err.available
    msg = str(err)
    assert "\n" not in msg
    assert "simulate of 1 parameter set x 10000 bars x 5000 symbols (keep='full')" in msg
    assert f"needs about {mem.format_bytes(err.needed)}" in msg
    assert "but 2.0 GiB is available (PITGRID_MEMORY_LIMIT_MB=2048)" in msg
    assert "keep='equity'" in msg and "fewer parameter sets, symbols or bars" in msg


def test_simulate_keep_full_is_refused_where_keep_equity_fits(monkeypatch):
    ds = pg.synthetic_prices(2000, 200, seed=0)
    entries, exits = _sparse_signals(ds)
    kw = dict(entries=entries, exits=exits, per_symbol=True, next_open=True)
    full = estimate_simulate(ds, P=1, keep_full=True, **kw).total
    lean = estimate_simulate(ds, P=1, keep_full=False, **kw).total
    _limit_between(monkeypatch, lean, full)
    with pytest.raises(InsufficientMemoryError, match=r"pass keep='equity'"):
        pg.simulate(ds, entries=entries, exits=exits, keep="full", accounts="per_symbol")
    res = pg.simulate(ds, entries=entries, exits=exits, keep="equity", accounts="per_symbol")
    assert res.positions is None and np.isfinite(res.equity.values).all()


@pytest.mark.parametrize("keep, accounts", [("full", "per_symbol"), ("full", "shared"),
                                            ("equity", "shared")])
def test_the_simulate_estimate_tracks_what_a_run_allocates(keep, accounts):
    ds = pg.synthetic_prices(3000, 300, seed=1)
    entries, exits = _sparse_signals(ds)
    est = estimate_simulate(ds, P=1, keep_full=keep == "full", per_symbol=accounts == "per_symbol",
                            next_open=True, entries=entries, exits=exits).total
    tracemalloc.start()
    try:
        res = pg.simulate(ds, entries=entries, exits=exits, keep=keep, accounts=accounts)
        # kept positions and accounts are built when first read: what keep="full" is for
        res.positions, res.cash, res.account_equity
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 0.5 <= est / peak <= 2.0, (est, peak)


def test_backtest_is_refused_naming_keep_and_runs_with_keep_equity(monkeypatch):
    market = pg.MarketData(pg.synthetic_prices(1500, 300, seed=0))
    cfg = pg.SimConfig(accounts="per_symbol")
    full = mem.check_backtest(market, cfg, keep="full").total
    lean = mem.check_backtest(market, cfg, keep="equity").total
    _limit_between(monkeypatch, lean, full)
    strategy = RSIMeanReversion()
    with pytest.raises(InsufficientMemoryError) as info:
        pg.backtest(market, strategy, {"accounts": "per_symbol"})
    assert "backtest of 1500 bars x 300 symbols (keep='full')" in str(info.value)
    assert "keep='equity'" in str(info.value) and "fewer symbols" in str(info.value)
    res = pg.backtest(market, strategy, {"accounts": "per_symbol"}, keep="equity")
    assert res.positions is None


def test_a_grid_budget_that_cannot_fit_is_refused_and_a_smaller_one_runs(monkeypatch):
    market = pg.MarketData(pg.synthetic_prices(1000, 200, seed=0))
    params = {"window": [5, 10, 14, 20], "low": [20.0, 30.0]}
    variants = [RSIMeanReversion(window=w, low=lo) for w in params["window"] for lo in params["low"]]
    cfg = pg.SimConfig()
    whole = mem.check_grid(market, cfg, variants, chunk_sets=8, budget_mb=256).total
    single = mem.check_grid(market, cfg, variants, chunk_sets=1, budget_mb=0.01).total
    _limit_between(monkeypatch, single, whole)
    with pytest.raises(InsufficientMemoryError) as info:
        pg.grid(market, RSIMeanReversion(), params, progress=False)
    msg = str(info.value)
    assert "grid of 8 parameter sets over 1000 bars x 200 symbols in chunks of up to 8" in msg
    assert "lower memory_budget_mb" in msg
    g = pg.grid(market, RSIMeanReversion(), params, memory_budget_mb=0.01, progress=False)
    assert g.table.height == 8 and g.info["chunks"] == 8


def test_the_error_is_exported():
    assert pg.InsufficientMemoryError is InsufficientMemoryError
    assert issubclass(pg.InsufficientMemoryError, MemoryError)


# ---------------------------------------------------------------------------- available memory


def test_limit_override_must_be_a_positive_number(monkeypatch):
    monkeypatch.setenv(mem.ENV_LIMIT, "1.5")
    assert mem.available_memory() == (int(1.5 * 2**20), "PITGRID_MEMORY_LIMIT_MB=1.5")
    for bad in ("lots", "0", "-4", "nan", "inf"):
        monkeypatch.setenv(mem.ENV_LIMIT, bad)
        with pytest.raises(ValueError, match=f"PITGRID_MEMORY_LIMIT_MB='{bad}' must be a positive"):
            mem.available_memory()


@pytest.fixture
def proc(tmp_path, monkeypatch):
    """A fake /proc and /sys/fs/cgroup."""
    monkeypatch.setattr(mem, "_MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(mem, "_PROC_CGROUP", tmp_path / "cgroup")
    monkeypatch.setattr(mem, "_CGROUP_ROOT", tmp_path / "sys")
    (tmp_path / "meminfo").write_text("MemTotal: 16000000 kB\nMemAvailable:  8000000 kB\n")
    return tmp_path


def test_meminfo_alone(proc):
    assert mem.available_memory() == (8_000_000 * 1024, f"{proc / 'meminfo'} MemAvailable")


def test_nothing_readable_refuses_nothing(proc):
    (proc / "meminfo").unlink()
    assert mem.available_memory() is None
    mem.ensure_fits(mem.MemoryEstimate({"huge": 1 << 60}), "a run", "nothing")


def test_cgroup_v2_limit_of_an_ancestor_counts_and_page_cache_is_reclaimable(proc):
    (proc / "cgroup").write_text("0::/user.slice/job\n")
    job = proc / "sys" / "user.slice" / "job"
    job.mkdir(parents=True)
    (job / "memory.max").write_text("max\n")
    (job / "memory.current").write_text(f"{1 << 30}\n")
    parent = job.parent
    (parent / "memory.max").write_text(f"{4 << 30}\n")
    (parent / "memory.current").write_text(f"{3 << 30}\n")
    (parent / "memory.stat").write_text(f"anon 100\ninactive_file {1 << 30}\n")
    room, source = mem.available_memory()
    assert room == 2 << 30  # 4 GiB limit - (3 GiB used - 1 GiB of reclaimable cache)
    assert source == f"cgroup limit {parent / 'memory.max'}"


def test_cgroup_v1_limit_below_meminfo(proc):
    (proc / "cgroup").write_text("4:memory:/not/mounted/here\n0::/\n")
    v1 = proc / "sys" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{3 << 30}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{2 << 30}\n")
    assert mem.available_memory()[0] == 1 << 30
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert mem.available_memory()[0] == 8_000_000 * 1024
