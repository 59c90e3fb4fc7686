"""Streaming form of every kernel: one bar at a time over the whole universe.

``Stream(name, n_symbols, **params)`` (or :func:`stream`) keeps the state of the
kernel ``name`` of ``KERNELS`` for ``n_symbols`` symbols in preallocated arrays
and advances it by one bar per :meth:`Stream.update`. The batch kernel
``name_nb`` is the loop over the same jitted step (``name_step_nb``), so a stream
fed the rows of ``x`` one by one returns, row for row, exactly the batch result
(NaN gaps, late listings, delistings and all): the same operations in the same
order on the same values.

Nothing here is compiled: the steps live in the kernel modules (numba's cache
does not follow helpers across files), and :class:`Stream` only dispatches.
"""
from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import numpy as np

from . import cross_section, moving, oscillators, relations, returns, signals, volatility
from ._common import ddof_arg, float_arg, window_arg
from .oscillators import MACD, _macd_args
from .volatility import Bands

__all__ = ["Stream", "stream"]


class _Spec(NamedTuple):
    module: Any
    inputs: tuple[str, ...]  # row inputs; ``y`` is one value per bar (a scalar)
    params: tuple[tuple[str, Any], ...]  # (name, default or _REQUIRED), the wrapper's order
    outputs: Any  # None for one output row, else the NamedTuple of rows
    dtype: type


_REQUIRED = object()
_W = (("window", _REQUIRED),)

_SPECS: dict[str, _Spec] = {
    "sma": _Spec(moving, ("x",), _W, None, np.float64),
    "ema": _Spec(moving, ("x",), _W, None, np.float64),
    "wma": _Spec(moving, ("x",), _W, None, np.float64),
    "rolling_max": _Spec(moving, ("x",), _W, None, np.float64),
    "rolling_min": _Spec(moving, ("x",), _W, None, np.float64),
    "rolling_std": _Spec(volatility, ("x",), _W + (("ddof", 1),), None, np.float64),
    "rolling_zscore": _Spec(volatility, ("x",), _W + (("ddof", 1),), None, np.float64),
    "bollinger": _Spec(volatility, ("x",), (("window", 20), ("k", 2.0), ("ddof", 0)), Bands,
                       np.float64),
    "atr": _Spec(volatility, ("high", "low", "close"), (("window", 14),), None, np.float64),
    "rsi": _Spec(oscillators, ("x",), (("window", 14),), None, np.float64),
    "macd": _Spec(oscillators, ("x",), (("fast", 12), ("slow", 26), ("signal", 9)), MACD,
                  np.float64),
    "simple_returns": _Spec(returns, ("x",), (), None, np.float64),
    "log_returns": _Spec(returns, ("x",), (), None, np.float64),
    "momentum": _Spec(returns, ("x",), _W, None, np.float64),
    "rolling_corr": _Spec(relations, ("x", "y"), _W, None, np.float64),
    "rolling_beta": _Spec(relations, ("x", "y"), _W, None, np.float64),
    "cs_rank": _Spec(cross_section, ("x",), (("pct", True),), None, np.float64),
    "cs_zscore": _Spec(cross_section, ("x",), (("ddof", 1),), None, np.float64),
    "crossover": _Spec(signals, ("a", "b"), (), None, np.bool_),
    "crossunder": _Spec(signals, ("a", "b"), (), None, np.bool_),
    "crosses": _Spec(signals, ("a", "b"), (), signals.Crosses, np.bool_),
}
_ROW_LOCAL = ("cs_rank", "cs_zscore")  # read one row only: no state, the batch kernel on one row


def _checked_params(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The batch wrapper's parameter checks, applied once at construction."""
    spec = _SPECS[name]
    names = [p for p, _ in spec.params]
    unknown = set(given) - set(names)
    if unknown:
        raise TypeError(f"{name} has no parameter(s) {sorted(unknown)}; it takes {names}")
    p = {}
    for key, default in spec.params:
        if key in given:
            p[key] = given[key]
        elif default is _REQUIRED:
            raise TypeError(f"{name} needs the parameter {key!r}")
        else:
            p[key] = default
    if name == "macd":
        return dict(zip(names, _macd_args(p["fast"], p["slow"], p["signal"])))
    if "window" in p:
        p["window"] = window_arg(p["window"])
    if "ddof" in p:
        p["ddof"] = ddof_arg(p["ddof"], p.get("window"))
    if "k" in p:
        p["k"] = float_arg(p["k"], "k")
    if "pct" in p:
        p["pct"] = bool(p["pct"])
    return p


class Stream:
    """One-bar updates of the kernel ``name`` over ``n_symbols`` symbols.

    ``params`` are the batch wrapper's, by the same names and defaults (``window``,
    ``ddof``, ``k``, ``fast``, ``slow``, ``signal``, ``pct``). :meth:`update` takes one
    row per input: a length-``n_symbols`` array (``y`` of :func:`rolling_corr` and
    :func:`rolling_beta` is a single number per bar), and returns the output row(s) of
    that bar. The returned arrays are owned by the stream and overwritten by the next
    update: copy them to keep them.
    """

    def __init__(self, name: str, n_symbols: int, **params: Any) -> None:
        if name not in _SPECS:
            raise ValueError(f"unknown kernel {name!r}; one of {sorted(_SPECS)}")
        self.name = name
        self.n_symbols = window_arg(n_symbols, "n_symbols", minimum=0)
        self.params = _checked_params(name, params)
        spec = _SPECS[name]
        pvals = tuple(self.params.values())
        n_out = 1 if spec.outputs is None else len(spec.outputs._fields)
        self._outs = tuple(np.empty(self.n_symbols, dtype=spec.dtype) for _ in range(n_out))
        self._result = self._outs[0] if spec.outputs is None else spec.outputs(*self._outs)
        self._n_inputs = len(spec.inputs)
        self._scalar_input = tuple(i == "y" for i in spec.inputs)
        self.n_updates = 0
        self._row_local = name in _ROW_LOCAL
        if self._row_local:
            self._state_names: tuple[str, ...] = ()
            self._state: tuple[np.ndarray, ...] = ()
            self._row_kernel = getattr(spec.module, name + "_nb")
            self._pvals = pvals
            self._outs2d = tuple(o.reshape(1, -1) for o in self._outs)
            return
        self._step = getattr(spec.module, name + "_step_nb")
        self._block = getattr(spec.module, name + "_block_nb")
        sig = list(inspect.signature(self._step.py_func).parameters)
        self._state_names = tuple(sig[1 + len(spec.inputs) + len(pvals):len(sig) - n_out])
        self._state = tuple(getattr(spec.module, name + "_state")(self.n_symbols, *pvals))
        assert len(self._state) == len(self._state_names), name
        self._tail = pvals, self._state, self._outs

    def _rows(self, rows: tuple[Any, ...]) -> list[Any]:
        if len(rows) != self._n_inputs:
            raise TypeError(f"{self.name}.update takes {self._n_inputs} row(s): "
                            f"{', '.join(_SPECS[self.name].inputs)}")
        out = []
        for r, scalar in zip(rows, self._scalar_input):
            if scalar:
                out.append(float(r))
            else:
                a = np.ascontiguousarray(r, dtype=np.float64)
                if a.shape != (self.n_symbols,):
                    raise ValueError(f"a row must have shape ({self.n_symbols},), got {a.shape}")
                out.append(a)
        return out

    def update(self, *rows: Any, mask: Any = None):
        """Advance by one bar; returns the output row (or NamedTuple of rows) of that bar.

        ``mask`` (the cross-sectional kernels only) is the bar's membership row, as the
        batch wrappers' ``mask=``: non-members are missing.
        """
        args = self._rows(rows)
        if mask is not None and not self._row_local:
            raise TypeError(f"{self.name} reads one symbol at a time: it takes no mask")
        if self._row_local:
            x = args[0] if mask is None else cross_section._members(args[0][None, :], mask[None, :])
            self._row_kernel(x.reshape(1, -1), *self._pvals, *self._outs2d)
        else:
            pvals, state, outs = self._tail
            self._step(self.n_updates, *args, *pvals, *state, *outs)
        self.n_updates += 1
        return self._result

    def advance(self, *blocks: Any, mask: Any = None):
        """Advance by as many bars as ``blocks`` have rows, in one compiled call; returns the
        output rows of those bars (a new ``(bars, n_symbols)`` array, or NamedTuple of them).

        The same as :meth:`update` on each row in turn, bit for bit: the kernel's block
        function is its step on each row (``y`` is then one value per bar).

        Example:
            >>> import numpy as np
            >>> s = Stream("sma", 1, window=2)
            >>> s.advance(np.array([[1.0], [3.0], [5.0]]))[:, 0].tolist()
            [nan, 2.0, 4.0]
        """
        args = self._blocks(blocks)
        n = args[0].shape[0]
        spec = _SPECS[self.name]
        outs = tuple(np.empty((n, self.n_symbols), dtype=spec.dtype) for _ in self._outs)
        if mask is not None and not self._row_local:
            raise TypeError(f"{self.name} reads one symbol at a time: it takes no mask")
        if self._row_local:
            x = args[0] if mask is None else cross_section._members(args[0], np.asarray(mask))
            self._row_kernel(x, *self._pvals, *outs)
        else:
            pvals, state, _ = self._tail
            self._block(self.n_updates, *args, *pvals, *state, *outs)
        self.n_updates += n
        return outs[0] if spec.outputs is None else spec.outputs(*outs)

    def _blocks(self, blocks: tuple[Any, ...]) -> list[np.ndarray]:
        if len(blocks) != self._n_inputs:
            raise TypeError(f"{self.name}.advance takes {self._n_inputs} block(s): "
                            f"{', '.join(_SPECS[self.name].inputs)}")
        out = [np.ascontiguousarray(b, dtype=np.float64) for b in blocks]
        # a series given as one column, as the batch wrappers take it
        out = [np.ascontiguousarray(a[:, 0]) if scalar and a.ndim == 2 and a.shape[1] == 1 else a
               for a, scalar in zip(out, self._scalar_input)]
        n = out[0].shape[0] if out[0].ndim else -1
        for a, scalar in zip(out, self._scalar_input):
            want = (n,) if scalar else (n, self.n_symbols)
            if a.shape != want:
                raise ValueError(f"{self.name}.advance: a block must have shape {want} "
                                 f"(bars{'' if scalar else ', n_symbols'}), got {a.shape}")
        return out

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the state arrays, with the kernel's parameters and the update count.

        Plain arrays: ``np.savez(path, **s.state())`` stores it, and
        ``Stream.from_state(name, dict(np.load(path)))`` continues bit for bit.
        """
        s = {k: a.copy() for k, a in zip(self._state_names, self._state)}
        s["n_updates"] = np.array(self.n_updates, dtype=np.int64)
        s["n_symbols"] = np.array(self.n_symbols, dtype=np.int64)
        for k, v in self.params.items():
            s["param_" + k] = np.array(v)
        return s

    def load_state(self, state: dict[str, Any]) -> None:
        """Overwrite this stream's state with ``state`` (from :meth:`state` of the same kernel,
        parameters and universe size); the next update continues from it."""
        expected = set(self._state_names) | {"n_updates", "n_symbols"} | {
            "param_" + k for k in self.params}
        if set(state) != expected:
            raise ValueError(f"state keys {sorted(state)} do not match {sorted(expected)}")
        if int(state["n_symbols"]) != self.n_symbols:
            raise ValueError(f"state is for {int(state['n_symbols'])} symbols, "
                             f"this stream has {self.n_symbols}")
        for k, v in self.params.items():
            if np.asarray(state["param_" + k]).item() != v:
                raise ValueError(f"state has {k}={np.asarray(state['param_' + k]).item()!r}, "
                                 f"this stream {k}={v!r}")
        n = int(state["n_updates"])
        if n < 0:
            raise ValueError("n_updates must be >= 0")
        for k, a in zip(self._state_names, self._state):
            src = np.asarray(state[k])
            if src.shape != a.shape or src.dtype != a.dtype:
                raise ValueError(f"state[{k!r}] has shape {src.shape} and dtype {src.dtype}, "
                                 f"expected {a.shape} and {a.dtype}")
        for k, a in zip(self._state_names, self._state):
            np.copyto(a, state[k])
        self.n_updates = n

    @classmethod
    def from_state(cls, name: str, state: dict[str, Any]) -> "Stream":
        """A new stream of kernel ``name`` continuing from ``state`` (parameters included)."""
        params = {k[len("param_"):]: np.asarray(v).item() for k, v in state.items()
                  if k.startswith("param_")}
        s = cls(name, int(state["n_symbols"]), **params)
        s.load_state(state)
        return s

    def __repr__(self) -> str:
        p = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return (f"Stream({self.name!r}, n_symbols={self.n_symbols}{', ' if p else ''}{p}; "
                f"n_updates={self.n_updates})")


def stream(name: str, n_symbols: int, **params: Any) -> Stream:
    """``Stream(name, n_symbols, **params)``."""
    return Stream(name, n_symbols, **params)
