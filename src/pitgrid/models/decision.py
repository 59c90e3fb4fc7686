"""The stateless decision function: class probabilities + position + last trade bar -> signal.

Two entry points share one rule set:

* :meth:`DecisionFunction.raw_signals` (batch engine): threshold + argmax over a
  whole ``(time, symbol, class)`` block, no position filters. Position awareness
  and the minimum spacing between trades depend on the path, so the batch engine
  applies them inside its compiled loop over t.
* :meth:`DecisionFunction.__call__` (step driver): the same model-level rule for
  one step's ``(symbol, class)`` probabilities, then the position filters.
  ``__call__ = raw_signals + position filters``: where ``raw_signals`` says
  neither entry nor exit, ``__call__`` holds; where it says entry or exit,
  ``__call__`` signals unless a filter blocks it.

Every symbol gets a reason code (see ``REASONS``), in the order the rules apply:

============================  ===========================================================
reason                        when
============================  ===========================================================
``missing_features``          probabilities are NaN (missing feature in the window),
                              or the inference status says so
``inference_error``           the inference status says the forward pass failed
``hold``                      the argmax class is neither buy nor sell
``low_confidence``            the argmax is buy or sell but its probability < threshold
``already_long``              buy while long
``flat``                      sell while flat and shorts are not allowed
``already_short``             sell while short (shorts allowed)
``no_short``                  sell while short although shorts are not allowed (a
                              short position inherited from elsewhere is not added to)
``min_bars``                  a buy or sell that passed the rules above, within
                              ``min_bars_between`` bars of the symbol's last trade
``buy`` / ``sell``            the signal went through: +1 / -1
============================  ===========================================================

A buy while short is +1 (cover) and a sell while long is -1 (exit); with
``allow_short`` a sell while flat is -1 (open a short). What size a signal
trades is the sizing stage's business.

Example:
    >>> import numpy as np
    >>> f = DecisionFunction(threshold=0.6)
    >>> probs = np.array([[0.1, 0.2, 0.7], [0.1, 0.2, 0.7], [0.7, 0.2, 0.1], [np.nan] * 3])
    >>> signal, reason = f(probs, position=np.array([0.0, 5.0, 0.0, 0.0]),
    ...                    last_trade_bar=np.array([-1, -1, -1, -1]), t=10)
    >>> signal.tolist(), reason.tolist()
    ([1, 0, 0, 0], ['buy', 'already_long', 'flat', 'missing_features'])
"""
from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pitgrid.models.status import STATUS_ERROR, STATUS_MISSING

#: Reason names; ``reason_codes`` arrays hold indices into this tuple.
REASONS: tuple[str, ...] = (
    "buy", "sell", "hold", "low_confidence", "missing_features", "inference_error",
    "min_bars", "already_long", "already_short", "flat", "no_short",
)
(BUY, SELL, HOLD, LOW_CONFIDENCE, MISSING_FEATURES, INFERENCE_ERROR,
 MIN_BARS, ALREADY_LONG, ALREADY_SHORT, FLAT, NO_SHORT) = range(len(REASONS))
_REASON_ARRAY = np.asarray(REASONS)


def reason_names(codes: np.ndarray) -> np.ndarray:
    """Reason codes (int8, any shape) -> array of reason strings.

    Example:
        >>> reason_names(np.array([0, 2], dtype=np.int8)).tolist()
        ['buy', 'hold']
    """
    return _REASON_ARRAY[np.asarray(codes)]


@dataclass(frozen=True)
class DecisionFunction:
    """Stateless decision rule; see the module docstring for the reasons and their order.

    Example:
        >>> import numpy as np
        >>> f = DecisionFunction(threshold=0.5)
        >>> entries, exits = f.raw_signals(np.array([[[0.1, 0.3, 0.6], [0.5, 0.3, 0.2]]]))
        >>> entries.tolist(), exits.tolist()
        ([[True, False]], [[False, True]])
    """

    threshold: float = 0.5
    min_bars_between: int = 0
    allow_short: bool = False
    classes: tuple[str, ...] = ("sell", "hold", "buy")

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0.0 <= t <= 1.0:
            raise ValueError(f"threshold must be a number in [0, 1], got {t!r}")
        try:
            if isinstance(self.min_bars_between, bool):
                raise TypeError
            m = operator.index(self.min_bars_between)
        except TypeError:
            raise ValueError(
                f"min_bars_between must be an integer >= 0, got {self.min_bars_between!r}"
            ) from None
        if m < 0:
            raise ValueError(f"min_bars_between must be an integer >= 0, got {m}")
        if not isinstance(self.allow_short, bool):
            raise ValueError(f"allow_short must be true or false, got {self.allow_short!r}")
        classes = self.classes
        if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"classes must be a list of strings, got {classes!r}")
        classes = tuple(classes)
        if len(set(classes)) != len(classes) or "buy" not in classes or "sell" not in classes:
            raise ValueError("classes must be distinct and include 'buy' and 'sell', "
                             f"got {list(classes)}")
        # frozen: normalised values go in through object.__setattr__
        object.__setattr__(self, "threshold", float(t))
        object.__setattr__(self, "min_bars_between", int(m))
        object.__setattr__(self, "classes", classes)

    def model_reasons(self, probs: Any, status: Any = None) -> np.ndarray:
        """Model-level reason codes (int8, ``probs.shape[:-1]``): ``buy``, ``sell``, ``hold``,
        ``low_confidence``, ``missing_features`` or ``inference_error`` per row.

        ``status`` (inference status codes, same leading shape) marks failed rows;
        without it, NaN probabilities read as ``missing_features``.

        Example:
            >>> import numpy as np
            >>> codes = DecisionFunction().model_reasons(np.array([[0.3, 0.3, 0.4]]))
            >>> reason_names(codes).tolist()
            ['low_confidence']
        """
        p = np.asarray(probs)
        if p.ndim < 1 or p.shape[-1] != len(self.classes):
            raise ValueError(f"probs must end in a class axis of {len(self.classes)} "
                             f"({list(self.classes)}), got shape {p.shape}")
        # column by column: numpy's reductions over a 3-long last axis are several times slower
        cols = [p[..., k] for k in range(p.shape[-1])]
        codes = np.full(p.shape[:-1], HOLD, dtype=np.int8)
        for label, go in (("buy", BUY), ("sell", SELL)):
            k = self.classes.index(label)
            # the argmax, ties to the first class as in np.argmax; NaN compares False
            is_top = np.ones(codes.shape, dtype=bool)
            for j, col in enumerate(cols):
                if j != k:
                    is_top &= cols[k] > col if j < k else cols[k] >= col
            confident = cols[k] >= self.threshold
            codes[is_top & confident] = go
            codes[is_top & ~confident] = LOW_CONFIDENCE
        missing = np.zeros(codes.shape, dtype=bool)
        for col in cols:
            missing |= np.isnan(col)
        codes[missing] = MISSING_FEATURES
        if status is not None:
            s = np.asarray(status)
            if s.shape != codes.shape:
                raise ValueError(f"status has shape {s.shape}, expected {codes.shape}")
            codes[s == STATUS_MISSING] = MISSING_FEATURES
            codes[s == STATUS_ERROR] = INFERENCE_ERROR
        return codes

    def raw_signals(self, probs: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(entries, exits)`` bool arrays shaped ``probs.shape[:-1]``: threshold + argmax
        only. An entry is a ``buy`` row of :meth:`model_reasons`, an exit a ``sell`` row.

        Example:
            >>> import numpy as np
            >>> e, x = DecisionFunction(threshold=0.7).raw_signals(np.array([[0.1, 0.3, 0.6]]))
            >>> e.tolist(), x.tolist()
            ([False], [False])
        """
        codes = self.model_reasons(probs)
        return codes == BUY, codes == SELL

    def __call__(self, probs: Any, position: Any, last_trade_bar: Any, t: int,
                 *, status: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """One step: ``probs (symbol, class)``, ``position (symbol,)``, ``last_trade_bar
        (symbol,)`` (-1: never traded), bar index ``t`` -> ``(signal int8 (symbol,) in
        {-1, 0, +1}, reason (symbol,) str)``. ``status``: the step's inference status.

        Example:
            >>> import numpy as np
            >>> f = DecisionFunction(min_bars_between=5)
            >>> f(np.array([[0.0, 0.1, 0.9]]), np.array([0.0]), np.array([8]), t=10)[1].tolist()
            ['min_bars']
        """
        p = np.asarray(probs)
        if p.ndim != 2:
            raise ValueError(f"probs must be (symbol, class), got shape {p.shape}")
        position = np.asarray(position, dtype=np.float64)
        last = np.asarray(last_trade_bar, dtype=np.int64)
        for name, a in (("position", position), ("last_trade_bar", last)):
            if a.shape != p.shape[:1]:
                raise ValueError(f"{name} has shape {a.shape}, expected ({p.shape[0]},)")
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise ValueError(f"t must be a bar index >= 0, got {t!r}")
        codes = self.model_reasons(p, status)
        buy, sell = codes == BUY, codes == SELL
        codes[buy & (position > 0)] = ALREADY_LONG
        if not self.allow_short:
            codes[sell & (position == 0)] = FLAT
        codes[sell & (position < 0)] = ALREADY_SHORT if self.allow_short else NO_SHORT
        recent = (last >= 0) & (t - last < self.min_bars_between)
        codes[((codes == BUY) | (codes == SELL)) & recent] = MIN_BARS
        signal = (codes == BUY).astype(np.int8) - (codes == SELL).astype(np.int8)
        return signal, reason_names(codes)
