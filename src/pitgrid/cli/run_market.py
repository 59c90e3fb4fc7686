"""The market a saved run traded, for its report: the store (or synthetic universe) its
config recorded, or the store given with ``--data``.

A report needs it to value holdings, mark open positions and credit dividends. A run
from a config records its data (``config["run"]["data"]``); a run saved from Python
records none, and a store may have moved. Either way the report is still written,
with one note saying what it lacks.

Example:
    >>> market, note = run_market(run, None)            # doctest: +SKIP
    >>> note                                             # doctest: +SKIP
    'note: the run records no data: holdings are not valued ... (pass --data STORE)'
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.data.market import MarketData
    from pitgrid.results.db import StoredRun

_WITHOUT = "holdings are not valued and dividends not credited"


def run_market(run: StoredRun, data: Path | None) -> tuple[MarketData | None, str | None]:
    """The market to report ``run`` with and a one-line note (None when all is as recorded).

    ``data``: a store to use instead of the recorded one (ValueError when it is not one).
    A market whose fingerprint differs from the run's is still used (an appended store
    keeps every earlier bar as it was), with a note saying so.
    """
    import pitgrid as pg
    from pitgrid.data.store import is_store

    recorded = run.config.get("run", {}).get("data") or {}
    if data is not None:
        if not is_store(data):
            raise ValueError(f"--data {data} is not a pitgrid store (make one with "
                             "`pitgrid ingest SRC --store PATH`)")
        market, where = pg.open_market(data), str(data)
    elif recorded.get("store"):
        store = Path(recorded["store"])
        if not is_store(store):
            return None, (f"note: the run's store {store} is gone: {_WITHOUT} "
                          "(pass --data STORE)")
        market, where = pg.open_market(store), str(store)
    elif recorded.get("synthetic"):
        s: dict[str, Any] = recorded["synthetic"]
        market = pg.MarketData(pg.synthetic_prices(s["n_time"], s["n_symbols"], seed=s["seed"]))
        where = "the synthetic universe"
    else:
        return None, f"note: the run records no data: {_WITHOUT} (pass --data STORE)"
    if market.fingerprint() != run.data_fingerprint:
        return market, (f"note: {where} has changed since the run (fingerprint "
                        f"{market.fingerprint()[:12]}, the run's {run.data_fingerprint[:12]}): "
                        "holdings are valued on its data as it is now")
    return market, None
