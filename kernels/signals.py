"""Stateless signal rules: crossover and crossunder of two arrays, apart or together.

Conventions (shared by every ``pitgrid.kernels`` module, see docs/kernels.md):

* Inputs are ``(time, symbol)``, C-contiguous float64; the output is bool.
  ``name(...)`` allocates, ``name_into(..., out)`` writes into a checked
  preallocated bool array, ``name_nb(..., out)`` is the raw
  ``@njit(cache=True, nogil=True)`` kernel.
* Causal: output row ``t`` reads rows ``t - 1`` and ``t`` only.
* ``crossover[t]  = a[t] > b[t] and a[t-1] <= b[t-1]``;
  ``crossunder[t] = a[t] < b[t] and a[t-1] >= b[t-1]``.
  :func:`crosses` gives both (``Crosses(over, under)``) in one pass over ``a`` and
  ``b``, bit for bit the two kernels' results.
* Missing value: any non-finite input (NaN, +inf, -inf) is missing. A bool has no
  NaN, so a row is False when any of the four values it reads is missing: there
  is no cross on row 0, on a missing bar, or on the first bar after a gap.
* The wrappers broadcast ``b`` to the shape of ``a``: a scalar threshold, a
  ``(time, 1)`` column (one value per bar), a ``(1, symbol)`` row. A 1-D ``b``
  against a 2-D ``a`` is refused as ambiguous. The raw kernels need equal shapes.

Streaming: ``name_nb`` is the loop over ``name_step_nb`` (one row, all symbols;
the state is how ``a`` stood to ``b`` on the previous row: missing, equal, above
or below), see ``pitgrid.kernels.Stream``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from ._common import as_panel, distinct_outputs, out_view

__all__ = [
    "Crosses",
    "crossover", "crossover_into", "crossover_nb",
    "crossunder", "crossunder_into", "crossunder_nb",
    "crosses", "crosses_into", "crosses_nb",
]


class Crosses(NamedTuple):
    """Both crosses of ``a`` over ``b``: ``over`` (crossover), ``under`` (crossunder)."""

    over: np.ndarray
    under: np.ndarray


_INF = np.inf
_OVER = 1  # which outputs a step writes: bit 0 crossover, bit 1 crossunder
_UNDER = 2
# how a stands to b on a row (the state: the previous row's; missing before row 0)
_MISSING, _EQUAL, _ABOVE, _BELOW = 0, 1, 2, 3


# --------------------------------------------------------------------------- jitted


@njit(cache=True, nogil=True)
def _cross_state(n_sym):
    """How ``a`` stood to ``b`` on the previous row, per symbol (``_MISSING`` before row 0:
    no cross on row 0)."""
    return (np.full(n_sym, _MISSING, dtype=np.int8),)


@njit(cache=True, nogil=True)
def _relation(x, y):
    """``_MISSING`` when ``x`` or ``y`` is not finite, else ``_EQUAL``, ``_ABOVE`` or ``_BELOW``.

    Comparisons and arithmetic on bools, no branch, so the row loops vectorise."""
    finite = (x < _INF) & (x > -_INF) & (y < _INF) & (y > -_INF)
    return finite * (_EQUAL + (_ABOVE - _EQUAL) * (x > y) + (_BELOW - _EQUAL) * (x < y))


@njit(cache=True, nogil=True)
def _cross_step(a, b, prev_rel, over, under, which):
    """One row of the crosses ``which`` asks for (the other output is not written).

    Over: above now, equal or below before; under: below now, equal or above before.
    Keeping the previous row's relation, not its values, reads each value once."""
    n_sym = prev_rel.shape[0]
    if (a.shape[0] != n_sym or b.shape[0] != n_sym or over.shape[0] != n_sym
            or under.shape[0] != n_sym):
        raise ValueError("the input and output rows must have one value per symbol of the state")
    for j in range(n_sym):
        now = _relation(a[j], b[j])
        was = prev_rel[j]
        if which & _OVER:
            over[j] = (now == _ABOVE) & ((was == _EQUAL) | (was == _BELOW))
        if which & _UNDER:
            under[j] = (now == _BELOW) & ((was == _EQUAL) | (was == _ABOVE))
        prev_rel[j] = now


@njit(cache=True, nogil=True)
def _check(a, b, out):
    if (b.shape[0] != a.shape[0] or b.shape[1] != a.shape[1] or out.shape[0] != a.shape[0]
            or out.shape[1] != a.shape[1]):
        raise ValueError("a, b and out must have the same shape")


@njit(cache=True, nogil=True)
def crossover_state(n_sym):
    """State of :func:`crossover_step_nb`: prev_rel."""
    return _cross_state(n_sym)


@njit(cache=True, nogil=True)
def crossover_step_nb(t, a, b, prev_rel, out):
    """Advance :func:`crossover_nb` by one row for every symbol."""
    _cross_step(a, b, prev_rel, out, out, _OVER)


@njit(cache=True, nogil=True)
def crossover_block_nb(t0, a, b, prev_rel, out):
    """Rows ``t0 ..`` of :func:`crossover_nb`, advancing the given state a step per row."""
    for i in range(a.shape[0]):
        crossover_step_nb(t0 + i, a[i], b[i], prev_rel, out[i])


@njit(cache=True, nogil=True)
def crossover_nb(a, b, out):
    """``out[t] = a[t] > b[t] and a[t-1] <= b[t-1]`` (False where anything is missing)."""
    _check(a, b, out)
    (prev_rel,) = crossover_state(a.shape[1])
    crossover_block_nb(0, a, b, prev_rel, out)


@njit(cache=True, nogil=True)
def crossunder_state(n_sym):
    """State of :func:`crossunder_step_nb`: prev_rel."""
    return _cross_state(n_sym)


@njit(cache=True, nogil=True)
def crossunder_step_nb(t, a, b, prev_rel, out):
    """Advance :func:`crossunder_nb` by one row for every symbol."""
    _cross_step(a, b, prev_rel, out, out, _UNDER)


@njit(cache=True, nogil=True)
def crossunder_block_nb(t0, a, b, prev_rel, out):
    """Rows ``t0 ..`` of :func:`crossunder_nb`, advancing the given state a step per row."""
    for i in range(a.shape[0]):
        crossunder_step_nb(t0 + i, a[i], b[i], prev_rel, out[i])


@njit(cache=True, nogil=True)
def crossunder_nb(a, b, out):
    """``out[t] = a[t] < b[t] and a[t-1] >= b[t-1]`` (False where anything is missing)."""
    _check(a, b, out)
    (prev_rel,) = crossunder_state(a.shape[1])
    crossunder_block_nb(0, a, b, prev_rel, out)


@njit(cache=True, nogil=True)
def crosses_state(n_sym):
    """State of :func:`crosses_step_nb`: prev_rel."""
    return _cross_state(n_sym)


@njit(cache=True, nogil=True)
def crosses_step_nb(t, a, b, prev_rel, over, under):
    """Advance :func:`crosses_nb` by one row for every symbol."""
    _cross_step(a, b, prev_rel, over, under, _OVER | _UNDER)


@njit(cache=True, nogil=True)
def crosses_block_nb(t0, a, b, prev_rel, over, under):
    """Rows ``t0 ..`` of :func:`crosses_nb`, advancing the given state a step per row."""
    for i in range(a.shape[0]):
        crosses_step_nb(t0 + i, a[i], b[i], prev_rel, over[i], under[i])


@njit(cache=True, nogil=True)
def crosses_nb(a, b, over, under):
    """:func:`crossover_nb` into ``over`` and :func:`crossunder_nb` into ``under``, in one
    pass over ``a`` and ``b``."""
    _check(a, b, over)
    _check(a, b, under)
    (prev_rel,) = crosses_state(a.shape[1])
    crosses_block_nb(0, a, b, prev_rel, over, under)


# --------------------------------------------------------------------------- wrappers


def _pair(a, b):
    a2, shape = as_panel(a, "a")
    b_arr = np.asarray(b, dtype=np.float64)
    if len(shape) == 2 and b_arr.ndim == 1:
        raise ValueError("b is 1-D and a is (time, symbol): pass b[:, None] for one value per "
                         "bar or b[None, :] for one value per symbol")
    try:
        b_full = np.broadcast_to(b_arr, shape)
    except ValueError:
        raise ValueError(
            f"b of shape {b_arr.shape} does not broadcast to a's shape {shape}") from None
    b2 = np.ascontiguousarray(b_full).reshape(a2.shape)
    return a2, b2, shape


def crossover(a, b):
    """Bool array: ``a`` crosses above ``b`` on this bar."""
    a2, b2, shape = _pair(a, b)
    out = np.empty(a2.shape, dtype=np.bool_)
    crossover_nb(a2, b2, out)
    return out.reshape(shape)


def crossover_into(a, b, out):
    """:func:`crossover` written into the bool array ``out``; returns ``out``."""
    a2, b2, shape = _pair(a, b)
    crossover_nb(a2, b2, out_view(out, shape, (a2, b2), dtype=np.bool_))
    return out


def crossunder(a, b):
    """Bool array: ``a`` crosses below ``b`` on this bar."""
    a2, b2, shape = _pair(a, b)
    out = np.empty(a2.shape, dtype=np.bool_)
    crossunder_nb(a2, b2, out)
    return out.reshape(shape)


def crossunder_into(a, b, out):
    """:func:`crossunder` written into the bool array ``out``; returns ``out``."""
    a2, b2, shape = _pair(a, b)
    crossunder_nb(a2, b2, out_view(out, shape, (a2, b2), dtype=np.bool_))
    return out


def crosses(a, b):
    """``Crosses(over, under)``: :func:`crossover` and :func:`crossunder` of ``a`` and ``b``
    in one pass, what a rule that enters on one and exits on the other reads.

    Example:
        >>> import numpy as np
        >>> c = crosses(np.array([1.0, 3.0, 1.0]), 2.0)
        >>> c.over.tolist(), c.under.tolist()
        ([False, True, False], [False, False, True])
    """
    a2, b2, shape = _pair(a, b)
    over = np.empty(a2.shape, dtype=np.bool_)
    under = np.empty(a2.shape, dtype=np.bool_)
    crosses_nb(a2, b2, over, under)
    return Crosses(over.reshape(shape), under.reshape(shape))


def crosses_into(a, b, over, under):
    """:func:`crosses` written into the bool arrays ``over`` and ``under``; returns
    ``Crosses(over, under)``."""
    a2, b2, shape = _pair(a, b)
    distinct_outputs(over, under)
    crosses_nb(a2, b2, out_view(over, shape, (a2, b2), "over", np.bool_),
               out_view(under, shape, (a2, b2), "under", np.bool_))
    return Crosses(over, under)
