"""pitgrid.results: the results database and HTML reports (DESIGN.md section 8).

Names load on first use, so the database never pulls in plotly.

Example:
    >>> from pitgrid.results import ResultsDB, write_report   # doctest: +SKIP
    >>> run = ResultsDB("runs.db").load_run(run_id)             # doctest: +SKIP
    >>> write_report(run, "run.html")                           # doctest: +SKIP
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "ResultsDB": "pitgrid.results.db",
    "StoredRun": "pitgrid.results.db",
    "code_version": "pitgrid.results.db",
    "write_report": "pitgrid.results.report",
    "write_grid_report": "pitgrid.results.report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pitgrid.results' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.results.db import ResultsDB, StoredRun, code_version
    from pitgrid.results.report import write_grid_report, write_report
