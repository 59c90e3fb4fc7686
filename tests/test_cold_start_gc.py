"""What pitgrid's imports freeze (pitgrid.frozen_imports): the objects they allocate,
never a program's own, so that the program's garbage, its ``__del__`` and its files'
flushes at exit behave as in a Python process that never imported pitgrid."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import pitgrid as pg


def _run(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "PITGRID_EXIT_GC"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env={**base, **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from pitgrid.data.store import write_market

    return write_market(pg.MarketData(pg.synthetic_prices(120, 4, seed=0)),
                        tmp_path_factory.mktemp("cold") / "s")


def test_the_libraries_are_frozen_and_the_programs_objects_are_not(store):
    out = _run(f"""
        import gc
        def frozen(obj):  # tracked, yet in no generation the collector walks
            return gc.is_tracked(obj) and not any(o is obj for o in gc.get_objects())
        class Node:
            pass
        early = Node(); early.me = early  # the program's, made before pitgrid is imported
        import pitgrid as pg
        from pitgrid.strategies import MovingAverageCross
        import numba, xarray
        res = pg.backtest(pg.open_market({str(store)!r}), MovingAverageCross(fast=3, slow=10),
                          {{"fill": "close"}})
        late = Node(); late.me = late
        print(frozen(numba.njit), frozen(xarray.Dataset.__init__), frozen(MovingAverageCross),
              frozen(early), frozen(late), frozen(res), gc.isenabled(),
              gc.get_freeze_count() > 100_000)
    """)
    assert out.split() == ["True", "True", "True", "False", "False", "False", "True", "True"]


@pytest.mark.parametrize("env", [{}, {"PITGRID_EXIT_GC": "1"}], ids=["frozen", "PITGRID_EXIT_GC=1"])
def test_a_program_exits_as_without_pitgrid(tmp_path, store, env):
    """Garbage made before and after the imports is collected while the program runs; at
    exit an unflushed file of ``__main__`` is flushed and a live cycle's ``__del__`` runs."""
    def program(with_pitgrid: bool) -> tuple[str, list[str], str]:
        out_dir = tmp_path / ("with" if with_pitgrid else "without")
        out_dir.mkdir()
        imports = ("import pitgrid as pg\nfrom pitgrid.strategies import MovingAverageCross\n"
                   f"pg.backtest(pg.open_market({str(store)!r}), "
                   "MovingAverageCross(fast=3, slow=10))" if with_pitgrid else "")
        code = textwrap.dedent(f"""
            import gc, os
            OUT = {str(out_dir)!r}
            class Cycle:
                def __init__(self, name):
                    self.name, self.me = name, self
                def __del__(self, _open=open, _join=os.path.join):
                    _open(_join(OUT, self.name), "w").close()
            before = Cycle("garbage-made-before")
            """) + imports + textwrap.dedent("""
            del before
            Cycle("garbage-made-after")
            print(gc.collect() > 0, sorted(os.listdir(OUT)))
            alive = Cycle("alive-at-exit")
            log = open(os.path.join(OUT, "unflushed.txt"), "w")
            log.write("flushed at exit")
            def handler():  # a function of __main__: its globals are a reference cycle
                return log
            """)
        printed = _run(code, **env)
        return printed, sorted(os.listdir(out_dir)), (out_dir / "unflushed.txt").read_text()

    with_pitgrid = program(True)
    assert with_pitgrid == program(False)
    assert with_pitgrid == (
        "True ['garbage-made-after', 'garbage-made-before']\n",
        ["alive-at-exit", "garbage-made-after", "garbage-made-before", "unflushed.txt"],
        "flushed at exit")


def test_a_block_freezes_what_it_made_and_restores_the_collector():
    out = _run("""
        import gc, threading
        from pitgrid.frozen_imports import frozen_imports
        def frozen(obj):
            return gc.is_tracked(obj) and not any(o is obj for o in gc.get_objects())
        old = [[] for _ in range(10)]
        gc.disable()  # the program's choice, kept
        with frozen_imports():
            with frozen_imports():  # nested: one block
                made = [[] for _ in range(100_000)]
            print(gc.isenabled(), frozen(made))
        print(gc.isenabled(), frozen(made), frozen(made[0]), frozen(old), frozen(old[0]))
        gc.enable()
        with frozen_imports():
            few = [[]]  # fewer objects than the block would hand back: nothing frozen
        print(frozen(few))
        stop = threading.Event()
        worker = threading.Thread(target=stop.wait)
        worker.start()
        with frozen_imports():  # another thread could be allocating: nothing frozen
            many = [[] for _ in range(100_000)]
        stop.set(); worker.join()
        print(frozen(many), gc.isenabled())
    """)
    assert out.split("\n")[:4] == ["False False", "False True True False False", "False",
                                  "False True"]


def test_no_freezing_with_pitgrid_exit_gc(store):
    out = _run(f"""
        import gc
        import pitgrid as pg
        from pitgrid.strategies import MovingAverageCross
        pg.backtest(pg.open_market({str(store)!r}), MovingAverageCross(fast=3, slow=10))
        print(gc.get_freeze_count())
    """, PITGRID_EXIT_GC="1")
    assert out.strip() == "0"


def test_pitgrid_modules_keep_their_sources_and_reload():
    """The hook wraps the loaders of pitgrid's modules; what reads through a loader still works."""
    out = _run("""
        import importlib, inspect, linecache, traceback
        import pitgrid.strategies as s
        import pitgrid.engine.codes as codes
        assert "class MovingAverageCross" in inspect.getsource(s)
        assert s.__loader__.get_source("pitgrid.strategies") == inspect.getsource(s)
        try:
            s.MovingAverageCross(fast=5, slow=2)
        except ValueError:
            assert "raise ValueError" in traceback.format_exc()
        assert importlib.reload(codes) is codes and codes.__spec__.origin.endswith("codes.py")
        import importlib.resources
        assert importlib.resources.files("pitgrid").joinpath("strategies.py").read_text() \
            == inspect.getsource(s)
        print("ok")
    """)
    assert out.strip() == "ok"


def test_an_import_from_another_thread_freezes_nothing():
    out = _run("""
        import gc, threading
        import pitgrid
        worker = threading.Thread(target=lambda: __import__("pitgrid.strategies"))
        worker.start(); worker.join()
        import pitgrid.strategies  # already imported: nothing runs here
        print(gc.get_freeze_count(), gc.isenabled())
    """)
    assert out.strip() == "0 True"
