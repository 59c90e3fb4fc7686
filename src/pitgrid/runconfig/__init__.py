"""Run configuration files: one TOML file names the data, strategy, costs and outputs of a run.

Sections (``examples/ma_cross.toml``, ``examples/momentum_grid.toml`` and
``examples/model/model_run.toml`` are complete ones)::

    [data]        store = "prices.pitgrid"                     an ingested store, or
                  synthetic = { n_time = 2520, n_symbols = 500, seed = 7 }
                  start = 2012-01-03, end = 2019-12-31         optional: trade start..end only
                                                               (features warm up before start)
    [universe]    id = "sp500"                                 optional: trade only its members
    [strategy]    name = "ma_cross"                            a shipped strategy (class name or
                                                               alias, "model" for a model) or
                                                               "module:Class"
                  params = { fast = 10, slow = [50, 100] }     a list value is a grid axis
    [costs]       fees_bps, slippage_bps, spread_bps, ...      SimConfig fields, split in four
    [execution]   fill, size, size_value, init_cash, ...       sections for readability
    [risk]        allow_short, max_leverage, max_positions, ...
    [exits]       sl_stop, tp_stop, sl_trail, time_stop,       per-position exits; a list of
                  stop_first, trail_on, order_ttl               stop levels is a grid axis
    [model]       bundle = "model_dir"                         a model bundle, loaded and checked
                                                               before the run; without [strategy]
                                                               the run is the model's own strategy
    [outputs]     db = "pitgrid.db", reports = "pitgrid_out", keep = 5, by = "sharpe",
                  audit = false (true: the point-in-time check at every bar, recorded with the run)

Relative paths written in a file are read from the file's folder, so a config runs the
same from any working directory; outputs the file does not name go to the working
directory. Every key is checked before anything runs: an error names the file, the
dotted key and the allowed values.

Modules: :mod:`~pitgrid.runconfig.schema` (sections, :class:`RunConfig`),
:mod:`~pitgrid.runconfig.values` (single values), :mod:`~pitgrid.runconfig.strategies`
and :mod:`~pitgrid.runconfig.sections` (each section), :mod:`~pitgrid.runconfig.loading`
(TOML to RunConfig), :mod:`~pitgrid.runconfig.running` (run and save),
:mod:`~pitgrid.runconfig.combine` (results as stored).

Example:
    >>> cfg = load_run_config("examples/momentum_grid.toml")     # doctest: +SKIP
    >>> cfg.is_grid, cfg.axes()                                   # doctest: +SKIP
    (True, {'lookback': [63, 126, 252], 'top': [10, 25]})
    >>> outcome = run_grid(cfg)                                   # doctest: +SKIP
"""
from __future__ import annotations

from pitgrid.runconfig.loading import load_run_config, run_config_from_dict
from pitgrid.runconfig.running import (
    RunOutcome, run_backtest, run_grid, run_walkforward, stored_params,
)
from pitgrid.runconfig.schema import ALIASES, RunConfig, RunConfigError, SyntheticData

__all__ = ["ALIASES", "RunConfig", "RunConfigError", "RunOutcome", "SyntheticData",
           "load_run_config", "run_backtest", "run_config_from_dict", "run_grid",
           "run_walkforward", "stored_params"]
