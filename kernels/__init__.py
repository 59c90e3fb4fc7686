"""Causal numba kernels over (time, symbol) arrays, importable as ``pitgrid.kernels``.

Every kernel comes in three forms, named the same way everywhere:

``name(x, ...)``
    allocates and returns the result (a NumPy array shaped like ``x``, or a
    NamedTuple of arrays for the multi-output kernels :func:`macd`,
    :func:`bollinger` and :func:`crosses`). Accepts anything array-like; a
    1-D input is one symbol.
``name_into(x, ..., out)``
    writes into a caller-preallocated output (float64, or bool for the signal
    kernels; C-contiguous; the input's shape; not overlapping any input) and
    returns it. All parameters are positional and required, in the same order as
    the raw kernel.
``name_nb(x, ..., out)``
    the raw ``@njit(cache=True, nogil=True)`` kernel: 2-D C-contiguous float64
    inputs, preallocated outputs, no Python objects, GIL released. Callable from
    other numba code. Checks only shapes and parameter ranges.

The rules every kernel follows (details in each module's docstring and in
docs/kernels.md):

* Causal: output row ``t`` reads input rows ``<= t`` only.
* A non-finite input (NaN, +inf, -inf) is a missing bar.
* Window kernels (SMA, WMA, rolling std / z-score / max / min, Bollinger,
  rolling correlation / beta) are NaN until ``window`` rows are present, and NaN
  for every window that contains a missing bar.
* Recursive kernels (EMA, RSI, MACD, ATR) skip a missing bar: the state is held,
  that row's output is NaN, the next present bar continues from the held state.
  Their warm-up counts present bars.
* Point kernels (returns, log returns, momentum) read two rows and are NaN when
  either is missing. Cross-sectional kernels (rank, z-score) read one row and
  leave missing symbols NaN. Crossover / crossunder (and :func:`crosses`, both
  in one pass) are False where anything they read is missing.
* Outputs are finite or NaN, never infinite.

Every kernel also streams: ``Stream(name, n_symbols, **params).update(*rows)``
advances it by one bar over the whole universe and returns that bar's output
row(s), bit for bit the batch kernel's (``name_nb`` is the loop over the same
jitted one-row step); ``.state()`` / ``Stream.from_state`` save and restore it.

Importing this package imports numba and loads its registries (what the first call
of any jitted function would do) but compiles nothing; each kernel compiles on its
first call (or loads from numba's on-disk cache in ``kernels/__pycache__``).
"""
from __future__ import annotations

from numba.core.registry import cpu_target

# What the first call of any jitted function loads, compiled or read from the cache:
# numba's typing and lowering registries (about 70,000 objects, scipy's BLAS bindings
# among them). Loaded while this package is imported, they are frozen with the other
# libraries' objects (pitgrid.frozen_imports) instead of walked by every collection.
cpu_target.typing_context.refresh()
cpu_target.target_context.refresh()

from .cross_section import (
    cs_rank, cs_rank_into, cs_rank_nb, cs_zscore, cs_zscore_into, cs_zscore_nb,
)
from .moving import (
    ema, ema_into, ema_nb, rolling_max, rolling_max_into, rolling_max_nb, rolling_min,
    rolling_min_into, rolling_min_nb, sma, sma_into, sma_nb, wma, wma_into, wma_nb,
)
from .oscillators import MACD, macd, macd_into, macd_nb, rsi, rsi_into, rsi_nb
from .relations import (
    rolling_beta, rolling_beta_into, rolling_beta_nb, rolling_corr, rolling_corr_into,
    rolling_corr_nb,
)
from .returns import (
    log_returns, log_returns_into, log_returns_nb, momentum, momentum_into, momentum_nb,
    simple_returns, simple_returns_into, simple_returns_nb,
)
from .stream import Stream, stream
from .signals import (
    Crosses, crosses, crosses_into, crosses_nb, crossover, crossover_into, crossover_nb,
    crossunder, crossunder_into, crossunder_nb,
)
from .volatility import (
    Bands, atr, atr_into, atr_nb, bollinger, bollinger_into, bollinger_nb, rolling_std,
    rolling_std_into, rolling_std_nb, rolling_zscore, rolling_zscore_into, rolling_zscore_nb,
)

#: Base names of the library kernels; each has ``name``, ``name_into`` and ``name_nb``.
KERNELS: tuple[str, ...] = (
    "sma", "ema", "wma", "rolling_max", "rolling_min",
    "rolling_std", "rolling_zscore", "bollinger", "atr",
    "rsi", "macd",
    "simple_returns", "log_returns", "momentum",
    "rolling_corr", "rolling_beta",
    "cs_rank", "cs_zscore",
    "crossover", "crossunder", "crosses",
)

from .graph import traceable as _traceable

# the allocating forms record a stream node when handed a traced feature
# (pitgrid.kernels.graph); on arrays they are the plain kernels
for _name in KERNELS:
    globals()[_name] = _traceable(_name, globals()[_name])
del _name

__all__ = [
    "KERNELS", "Bands", "Crosses", "MACD", "Stream", "stream", "sma", "sma_into", "sma_nb", "ema",
    "ema_into", "ema_nb", "wma",
    "wma_into", "wma_nb", "rolling_max", "rolling_max_into", "rolling_max_nb", "rolling_min",
    "rolling_min_into", "rolling_min_nb", "rolling_std", "rolling_std_into", "rolling_std_nb",
    "rolling_zscore", "rolling_zscore_into", "rolling_zscore_nb", "bollinger", "bollinger_into",
    "bollinger_nb", "atr", "atr_into", "atr_nb", "rsi", "rsi_into", "rsi_nb", "macd", "macd_into",
    "macd_nb", "simple_returns", "simple_returns_into", "simple_returns_nb", "log_returns",
    "log_returns_into", "log_returns_nb", "momentum", "momentum_into", "momentum_nb",
    "rolling_corr", "rolling_corr_into", "rolling_corr_nb", "rolling_beta", "rolling_beta_into",
    "rolling_beta_nb", "cs_rank", "cs_rank_into", "cs_rank_nb", "cs_zscore", "cs_zscore_into",
    "cs_zscore_nb", "crossover", "crossover_into", "crossover_nb", "crossunder",
    "crossunder_into", "crossunder_nb", "crosses", "crosses_into", "crosses_nb",
]
