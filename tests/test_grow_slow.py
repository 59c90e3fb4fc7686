"""Slow: paper trading on the real sample grown in 60 pieces, and kills at random moments."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import pitgrid as pg
from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross

from test_grow import PAPER

pytestmark = pytest.mark.slow

# the paper config of the fast tests, trading the S&P 500 membership
CONFIG = PAPER.replace("[strategy]", '[universe]\nid = "sp500"\n[strategy]')
STRATEGIES = {
    "ma_cross": ("{ fast = 50, slow = 200 }", MovingAverageCross(fast=50, slow=200, universe="sp500")),
    "momentum": ("{ lookback = 126, top = 50, every = 21 }",
                 CrossSectionalMomentum(lookback=126, top=50, every=21, universe="sp500")),
}


PITGRID = str(Path(sys.executable).parent / "pitgrid")


def _cli(*args: str) -> None:
    subprocess.run([PITGRID, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_real_sample_paper_trading_in_60_appends_is_the_batch_run(shared_data, real_market, tmp_path):
    bars = pl.read_csv(shared_data / "prices.csv.gz", infer_schema=False)
    membership = shared_data / "sp500_membership_intervals.csv"
    first = bars.filter(pl.col("time") <= "2015-12-31")
    rest = bars.filter(pl.col("time") > "2015-12-31")
    days = rest["time"].unique().sort().to_list()
    cuts = np.linspace(0, len(days), 61).round().astype(int)
    head = tmp_path / "head.csv"
    first.write_csv(head)
    pieces = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        p = tmp_path / f"piece{i:02d}.csv"
        rest.filter(pl.col("time").is_in(days[a:b])).write_csv(p)
        pieces.append(p)
    store = tmp_path / "grown"
    pg.ingest(head, store, universes=membership, unknown_symbols="drop", progress=False)
    traders = {}
    for name, (params, _) in STRATEGIES.items():
        config = tmp_path / f"{name}.toml"
        config.write_text(CONFIG.format(store=store, name=name, params=params, db=tmp_path / "p.db"))
        traders[name] = pg.PaperTrader(config, tmp_path / f"state_{name}")
        traders[name].update()
    for p in pieces:
        pg.ingest(p, store, append=True, universes=membership, unknown_symbols="drop",
                  finished=p == pieces[-1], progress=False)
        for trader in traders.values():
            trader.update()
    assert pg.open_market(store).fingerprint() == real_market.fingerprint()
    for name, (_, strategy) in STRATEGIES.items():
        batch = pg.backtest(real_market, strategy, {"fees_bps": 5})
        trader = traders[name]
        driver = pg.StepDriver.load(trader._current(), pg.open_market(store), strategy)
        step = driver.result()
        assert driver.t == len(real_market.time)
        assert np.array_equal(step.equity.values, batch.equity.values), name
        assert np.array_equal(step.positions.values, batch.positions.values), name
        assert step.trades.equals(batch.trades), name
        whole = pg.StepDriver(real_market, strategy, {"fees_bps": 5})
        whole.run(progress=False)
        assert driver.next_orders().equals(whole.next_orders()), name


def test_kills_at_random_moments_during_appends_and_paper_runs(tmp_path):
    ds = pg.synthetic_prices(400, 40, seed=9)
    bars = pg.long_bars(ds)
    times = bars["time"].unique().sort().to_list()
    cuts = np.linspace(150, 400, 11).round().astype(int)
    bars.filter(pl.col("time") < times[150]).write_csv(tmp_path / "head.csv")
    pieces = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        p = tmp_path / f"p{i}.csv"
        bars.filter(pl.col("time").is_in(times[a:b])).write_csv(p)
        pieces.append(p)
    bars.write_csv(tmp_path / "all.csv")
    store = tmp_path / "store"
    _cli("ingest", str(tmp_path / "head.csv"), "--store", str(store), "--no-progress")
    config = tmp_path / "paper.toml"
    config.write_text(PAPER.format(
        store=store, name="ma_cross", params="{ fast = 5, slow = 20 }", db=tmp_path / "p.db"))
    state = tmp_path / "state"
    rng = np.random.default_rng(0)
    kills = 0
    # how long a command has been seen to take at most: kills land inside it on a fast
    # machine as on a slow one
    took = {"ingest": 2.5, "paper": 2.5}
    for p in pieces:
        for command in (["ingest", str(p), "--store", str(store), "--append", "--no-progress"],
                        ["paper", str(config), "--state", str(state)]):
            for _ in range(2):  # a killed attempt, then one that may finish
                proc = subprocess.Popen([PITGRID, *command],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wait = rng.uniform(0.1, 0.9) * took[command[0]]
                time.sleep(wait)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                else:
                    took[command[0]] = min(took[command[0]], wait)
                proc.wait()
                # readable after any kill: the store, and the paper state if there is one
                assert len(pg.open_market(store).time) >= 150
            if command[0] == "ingest":
                n = len(pg.open_market(store).time)
                if n < int(cuts[pieces.index(p) + 1]):
                    _cli(*command)
            else:
                _cli(*command)
    assert kills >= 20
    assert not list(tmp_path.glob(".store.*"))
    market = pg.open_market(store)
    assert len(market.time) == 400
    full = pg.open_market(pg.ingest(tmp_path / "all.csv", tmp_path / "full", progress=False))
    strategy = MovingAverageCross(fast=5, slow=20)
    batch = pg.backtest(full, strategy, {"fees_bps": 5})
    trader = pg.PaperTrader(config, state)
    driver = pg.StepDriver.load(trader._current(), market, strategy)
    assert driver.t == 400
    assert np.array_equal(driver.result().equity.values, batch.equity.values)
    assert driver.result().trades.equals(batch.trades)
