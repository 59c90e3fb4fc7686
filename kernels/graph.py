"""Feature code as a graph of streams: trace it once, then advance it one bar at a time.

A strategy's ``features`` written with library kernels and elementwise array
arithmetic describes, bar for bar, one update per kernel. :func:`trace` runs that
code once on :class:`Node` placeholders instead of arrays: every kernel call and
every NumPy ufunc records a node, and anything else (indexing, reshaping, a
reduction, an array made from the data) raises :class:`NotStreamable` with the
reason. :class:`Graph` then evaluates the recorded nodes on one row per bar: the
kernels through their :class:`~pitgrid.kernels.Stream`, the ufuncs on the rows.
Row t of the graph equals row t of the batch code bit for bit, because the
streams are the batch kernels' own steps and a ufunc computes each element alone.

Example:
    >>> import numpy as np
    >>> from pitgrid import kernels as K
    >>> x = Node.source("close")
    >>> g = Graph({"gap": (x - K.sma(x, 2)) / x}, n_symbols=1)
    >>> [float(g.update({"close": np.array([v])})["gap"][0]) for v in (1.0, 3.0)]
    [nan, 0.3333333333333333]
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from .stream import _ROW_LOCAL, _SPECS, Stream

__all__ = ["Graph", "Node", "NotStreamable", "row_local", "traceable"]


class NotStreamable(TypeError):
    """Feature code that cannot run as a stream; the message says which operation."""


class Node(NDArrayOperatorsMixin):
    """A placeholder for a ``(time, symbol)`` array while feature code is traced."""

    __slots__ = ("kind", "key", "args", "params", "index")
    __array_priority__ = 1000

    def __init__(self, kind: str, key: Any, args: tuple = (), params: Mapping[str, Any] | None = None,
                 index: int | None = None) -> None:
        self.kind = kind      # "source", "kernel", "ufunc", "rows", "output"
        self.key = key        # source key, kernel name, ufunc, or row-local function
        self.args = args      # input nodes (or scalars, for ufuncs)
        self.params = dict(params or {})
        self.index = index    # which output of a multi-output kernel

    @classmethod
    def source(cls, key: Any) -> Node:
        return cls("source", key)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method != "__call__" or kwargs:
            raise NotStreamable(f"np.{ufunc.__name__}.{method} with {sorted(kwargs) or 'a method'} "
                                "is not elementwise on one row")
        if ufunc.nout != 1:
            raise NotStreamable(f"np.{ufunc.__name__} has {ufunc.nout} outputs")
        for a in inputs:
            if not isinstance(a, Node) and np.ndim(a) != 0:
                raise NotStreamable(f"np.{ufunc.__name__} mixes a traced array with an array "
                                    "that is not one (only scalars can be constants)")
        return Node("ufunc", ufunc, tuple(inputs))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.where and len(args) == 3 and not kwargs:
            return Node("ufunc", _where, tuple(args))
        raise NotStreamable(f"np.{getattr(func, '__name__', func)} reads more than one row "
                            "or is not supported on streams")

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotStreamable("the code turns a feature into a plain array (np.asarray, "
                            "indexing or a non-library function)")

    def __getitem__(self, item: Any) -> Any:
        raise NotStreamable(f"indexing a feature ([{item!r}]) reads rows by position")

    def __getattr__(self, name: str) -> Any:
        # an ndarray method (.astype, .clip, .mean ...): the feature code runs on arrays
        # instead, bar by bar; Python's own probes for special names get what they expect
        if name.startswith("__") or name in Node.__slots__:
            raise AttributeError(name)
        raise NotStreamable(f"feature code calls .{name}() on an array")

    def __iter__(self) -> Any:
        raise NotStreamable("iterating over a feature reads rows by position")

    def __bool__(self) -> bool:
        raise NotStreamable("a feature used as a truth value")

    def __len__(self) -> int:
        raise NotStreamable("len() of a feature reads the number of rows")

    @property
    def shape(self) -> tuple[int, ...]:
        raise NotStreamable("the shape of a feature depends on the number of rows")

    def __repr__(self) -> str:
        return f"Node({self.kind}, {getattr(self.key, '__name__', self.key)!r})"


def _where(cond: np.ndarray, a: Any, b: Any) -> np.ndarray:
    return np.where(cond, a, b)


def traceable(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (the allocating kernel ``name``), recording a node when given a :class:`Node`."""
    spec = _SPECS[name]
    signature = inspect.signature(fn)

    def call(*args: Any, **kwargs: Any) -> Any:
        if not any(isinstance(a, Node) for a in (*args, *kwargs.values())):
            return fn(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        inputs = tuple(arguments.pop(i) for i in spec.inputs)
        mask = arguments.pop("mask", None)
        for i, a in zip(spec.inputs, inputs):
            if not isinstance(a, Node):
                raise NotStreamable(f"{name}: input {i!r} is a plain array, not a traced feature")
        if any(isinstance(v, Node) for v in arguments.values()):
            raise NotStreamable(f"{name}: a parameter is a traced array")
        if mask is not None and not isinstance(mask, Node):
            raise NotStreamable(f"{name}: mask is a plain array, not traced membership")
        node = Node("kernel", name, inputs + ((mask,) if mask is not None else ()), arguments)
        Stream(name, 0, **arguments)  # the kernel's own parameter checks, now
        if spec.outputs is None:
            return node
        return spec.outputs(*(Node("output", name, (node,), index=i)
                              for i in range(len(spec.outputs._fields))))

    call.__name__ = fn.__name__
    call.__qualname__ = fn.__qualname__
    call.__doc__ = fn.__doc__
    call.__wrapped__ = fn  # type: ignore[attr-defined]
    call.__signature__ = signature  # type: ignore[attr-defined]
    return call


def row_local(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, a function of ``(time, symbol)`` arrays (and ``(time,)`` flags) that maps each
    row on its own, recording a node when given a :class:`Node`: the graph then runs it on
    blocks of rows, which gives row for row what it gives on the whole history.

    Example:
        >>> import numpy as np
        >>> half = row_local(lambda x: x / 2)
        >>> g = Graph({"h": half(Node.source("close"))}, n_symbols=1)
        >>> float(g.update({"close": np.array([3.0])})["h"][0])
        1.5
    """
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if not any(isinstance(a, Node) for a in (*args, *kwargs.values())):
            return fn(*args, **kwargs)
        return Node("rows", fn, (*args, *kwargs.values()), {"keywords": tuple(kwargs)})

    return call


def _call(node: Node, values: list[Any]) -> Any:
    names = node.params.get("keywords", ())
    n = len(values) - len(names)
    return node.key(*values[:n], **dict(zip(names, values[n:])))


class Graph:
    """The traced ``outputs`` (name -> node), one bar per :meth:`update`.

    ``update(sources)`` takes the bar's rows by source key and returns each output's
    row; ``advance(sources)`` takes blocks of consecutive bars and returns blocks.
    """

    def __init__(self, outputs: Mapping[str, Any], n_symbols: int) -> None:
        for name, node in outputs.items():
            if not isinstance(node, Node):
                raise NotStreamable(f"feature {name!r} does not depend on the data "
                                    f"(a {type(node).__name__}, not a traced array)")
        self.n_symbols = n_symbols
        self.order: list[Node] = []
        seen: set[int] = set()

        def visit(node: Node) -> None:
            if id(node) in seen:
                return
            seen.add(id(node))
            for a in node.args:
                if isinstance(a, Node):
                    visit(a)
            self.order.append(node)

        for node in outputs.values():
            visit(node)
        self.outputs = dict(outputs)
        self.sources = [n.key for n in self.order if n.kind == "source"]
        self.streams: dict[int, Stream] = {
            id(n): Stream(n.key, n_symbols, **n.params) for n in self.order if n.kind == "kernel"}

    def update(self, sources: Mapping[Any, np.ndarray]) -> dict[str, np.ndarray]:
        """One bar: ``sources`` holds the bar's row of each source; returns each output's row
        (kernels' rows belong to their streams and change with the next update)."""
        return self._evaluate(sources, Stream.update, True)

    def advance(self, sources: Mapping[Any, np.ndarray]) -> dict[str, np.ndarray]:
        """As many bars as the blocks in ``sources`` have rows, node by node: each kernel's
        stream advances over the whole block in one compiled call and each ufunc runs on
        the block. Row for row the same as :meth:`update` on each bar in turn, bit for bit:
        a kernel's row t reads its input rows up to t only, and a ufunc one element."""
        return self._evaluate(sources, Stream.advance, False)

    def _evaluate(self, sources: Mapping[Any, np.ndarray], step: Callable[..., Any],
                  one_row: bool) -> dict[str, np.ndarray]:
        rows: dict[int, Any] = {}
        for node in self.order:
            kind = node.kind
            if kind == "source":
                rows[id(node)] = sources[node.key]
            elif kind == "kernel":
                args = [rows[id(a)] for a in node.args]
                if node.key in _ROW_LOCAL and len(args) == 2:
                    rows[id(node)] = step(self.streams[id(node)], args[0], mask=args[1])
                else:
                    rows[id(node)] = step(self.streams[id(node)], *args)
            elif kind == "output":
                rows[id(node)] = rows[id(node.args[0])][node.index]
            elif kind == "rows" and one_row:  # a row-local function takes (time, symbol) arrays
                values = [np.asarray(rows[id(a)])[None] if isinstance(a, Node) else a
                          for a in node.args]
                rows[id(node)] = _call(node, values)[0]
            else:  # a ufunc, or a function that maps each row on its own (:func:`row_local`)
                rows[id(node)] = _call(node, [rows[id(a)] if isinstance(a, Node) else a
                                              for a in node.args])
        return {name: rows[id(node)] for name, node in self.outputs.items()}

    def kernels(self) -> list[str]:
        """The kernels in evaluation order (each a stream)."""
        return [n.key for n in self.order if n.kind == "kernel"]

    def state(self) -> dict[str, np.ndarray]:
        """Every stream's state, keyed ``"<position>/<name>"``, as plain arrays."""
        out = {}
        for i, node in enumerate(n for n in self.order if n.kind == "kernel"):
            for k, v in self.streams[id(node)].state().items():
                out[f"{i}/{k}"] = v
        return out

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        for i, node in enumerate(n for n in self.order if n.kind == "kernel"):
            prefix = f"{i}/"
            self.streams[id(node)].load_state(
                {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
