"""The ``pitgrid`` command line, one module per kind of command a user meets:

- ``data_commands``: ``ingest``, ``info``;
- ``run_commands``: ``run``, ``grid``, ``walkforward``, ``check``, ``paper``, ``demo``;
- ``results_commands``: ``runs``, ``show``, ``compare``, ``report``;

with ``output`` (tables that fit the terminal, CSV and JSON), ``database`` (the
default results database, runs by id prefix), ``run_market`` (the data a saved run
traded, for its report) and ``errors`` (how a command fails).

Exit codes: 0 ok, 1 a run failed, 2 bad usage, a bad config, unusable data or a
results database that cannot be reached (the message is printed on one line, without
a traceback). Names that come from data, files or the database (symbols, paths,
strategies, universes) are printed as they are, never read as console markup.

Example:
    $ pitgrid ingest prices.csv.gz --store prices.pitgrid \\
          --membership sp500_membership_intervals.csv --drop-unknown-symbols
    $ pitgrid info prices.pitgrid
    $ pitgrid run examples/ma_cross.toml --benchmark SPY
    $ pitgrid grid examples/momentum_grid.toml
    $ export PITGRID_DB=$PWD/pitgrid_out/pitgrid.db
    $ pitgrid runs --limit 5
    $ pitgrid show 1a2b3c4d
    $ pitgrid compare 1a2b3c4d 5e6f7a8b --format csv
    $ pitgrid report 1a2b3c4d -o run.html --benchmark SPY
    $ pitgrid demo
"""
from __future__ import annotations

from pitgrid.cli.app import app

# the command modules register their commands on import, in the order --help lists them
import pitgrid.cli.data_commands  # noqa: E402,F401  isort: skip
import pitgrid.cli.run_commands  # noqa: E402,F401  isort: skip
import pitgrid.cli.results_commands  # noqa: E402,F401  isort: skip

__all__ = ["app"]
