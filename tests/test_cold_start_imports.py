"""What a fresh process pays for: no library for ``import pitgrid``, no dask (nor scipy.sparse,
torch, plotly, the command line's libraries) for a backtest that never uses them, and dask
still recognised the moment it is used."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pitgrid as pg


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_a_backtest_on_a_store_never_imports_dask(tmp_path):
    from pitgrid.data.store import write_market

    store = write_market(pg.MarketData(pg.synthetic_prices(120, 4, seed=0)), tmp_path / "s")
    out = _run(f"""
        import sys
        import pitgrid as pg
        from pitgrid.strategies import MovingAverageCross
        m = pg.open_market({str(store)!r})
        res = pg.backtest(m, MovingAverageCross(fast=3, slow=10), {{"fill": "close"}})
        print(float(res.equity[-1]) > 0, sorted(k for k in {_UNUSED!r} if k in sys.modules))
    """)
    assert out.split("\n")[0] == "True []"


# what neither ``import pitgrid`` nor a first backtest on a store needs
_UNUSED = ("dask", "dask.array", "scipy.sparse", "torch", "plotly", "typer", "click", "rich",
           "tqdm", "sqlalchemy", "psycopg", "sqlite3", "matplotlib", "IPython")
# what ``import pitgrid`` leaves to the first use of a public name
_HEAVY = ("numpy", "numba", "llvmlite", "xarray", "pandas", "polars", "zarr", "scipy", "ctypes")


def test_import_pitgrid_imports_no_library():
    out = _run(f"""
        import sys
        import pitgrid
        print(sorted(k for k in {_HEAVY + _UNUSED!r} if k in sys.modules))
    """)
    assert out.strip() == "[]"


def test_dask_arrays_are_still_dask_arrays_once_dask_is_used(tmp_path):
    from pitgrid.data.store import write_market

    store = write_market(pg.MarketData(pg.synthetic_prices(60, 5, seed=1)), tmp_path / "s")
    out = _run(f"""
        import sys
        import numpy as np
        import pitgrid as pg
        import pitgrid.data  # where the deferral is installed
        import xarray as xr
        from xarray.namedarray.utils import is_duck_dask_array
        plain = xr.DataArray(np.ones((4, 4)))
        assert "dask.array" not in sys.modules
        import dask.array as da
        lazy = xr.DataArray(da.ones((4, 4), chunks=2))
        assert lazy.chunks == ((2, 2), (2, 2)) and is_duck_dask_array(lazy.data)
        assert not is_duck_dask_array(plain.data) and float(lazy.sum()) == 16.0
        m = pg.open_market({str(store)!r}, chunks={{}})
        eager = pg.open_market({str(store)!r})
        assert is_duck_dask_array(m.ds["close"].data)
        np.testing.assert_array_equal(m.ds["close"].values, eager.ds["close"].values)
        print("ok")
    """)
    assert out.strip() == "ok"


def test_the_command_line_skips_the_final_collections_a_library_keeps(tmp_path):
    """The trade-off of freezing at exit, every way: a reference cycle that is garbage at
    exit is collected as Python would in a program that imports pitgrid, left to the
    operating system by the command line, and collected there too with PITGRID_EXIT_GC=1."""
    import os

    def collected(module: str, **env: str) -> bool:
        marker = tmp_path / f"collected-{module}-{len(env)}"
        code = f"""
            import {module}
            class Cycle:
                def __del__(self):
                    open({str(marker)!r}, "w").close()
            a = Cycle()
            a.me = a
            del a
        """
        base = {k: v for k, v in os.environ.items() if k != "PITGRID_EXIT_GC"}
        subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=120,
                       env={**base, **env})
        return marker.exists()

    assert collected("pitgrid")
    assert not collected("pitgrid.cli")
    assert collected("pitgrid.cli", PITGRID_EXIT_GC="1")
