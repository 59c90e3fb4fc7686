"""Keep the libraries pitgrid loads out of the garbage collector's way.

Importing numba, xarray, pandas, zarr and polars, and loading numba's registries,
makes about 300,000 container objects (functions, classes, dicts, tuples) that live
until the process ends. Python's cyclic collector walks them all in every full
collection: several times during the imports, and at exit, where its last
collections tear the whole heap down (0.4-1.3 s measured, more than a W1 run).
``gc.freeze()`` exists for such objects, but it freezes every object, a program's
own included: frozen, the program's reference cycles are never collected, and at
exit neither their ``__del__`` nor the flush of a file they hold runs.

So each pitgrid module runs its body in :func:`frozen_imports` (:func:`install`
hooks pitgrid's imports): collections are paused while it imports what it needs;
then one young collection takes the garbage the block made (a closure over a copy
of ``sys.modules``, frozen, would keep every module alive for good), the objects it
allocated are frozen, and every object that existed before goes back to the
collector. What a program allocates outside pitgrid's imports, before or after, is
collected as Python always does, at exit too. ``PITGRID_EXIT_GC=1`` turns this off.

Example:
    >>> with frozen_imports():
    ...     import json
    >>> json.dumps([1])
    '[1]'
"""
from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

_depth = 0
_gc_track: Any = None


def _supported() -> bool:
    # gc.freeze and the C API's tracking calls mean this only on CPython with its GIL
    return (sys.implementation.name == "cpython" and hasattr(gc, "freeze")
            and getattr(sys, "_is_gil_enabled", lambda: True)()
            and os.environ.get("PITGRID_EXIT_GC") != "1")


def _alone() -> bool:
    # another thread's allocations inside the block would be frozen with it; daemon
    # threads (zarr's event loop) are cut off at exit anyway, so only the others count
    me = threading.current_thread()
    return not any(t is not me and t.is_alive() and not t.daemon for t in threading.enumerate())


def _tracking() -> Any:
    global _gc_track
    if _gc_track is None:
        import ctypes

        track, untrack = ctypes.pythonapi.PyObject_GC_Track, ctypes.pythonapi.PyObject_GC_UnTrack
        track.argtypes = untrack.argtypes = [ctypes.py_object]
        track.restype = untrack.restype = None
        _gc_track = (track, untrack)
    return _gc_track


@contextmanager
def frozen_imports() -> Iterator[None]:
    """Run the block with collections paused, then freeze what it allocated and nothing else.

    Nested blocks are one block. Outside CPython, outside the main thread, while another
    non-daemon thread runs, or with ``PITGRID_EXIT_GC=1``, the block just runs.

    Example:
        >>> import gc
        >>> with frozen_imports():
        ...     import numbers  # a small module: too few objects to be worth freezing
        >>> gc.isenabled()
        True
    """
    global _depth
    if threading.current_thread() is not threading.main_thread() or not _supported():
        yield  # _depth is the main thread's alone
        return
    if _depth or not _alone():
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    track, untrack = _tracking()
    _depth = 1
    was_enabled = gc.isenabled()
    gc.disable()
    before = gc.get_objects()
    made = gc.get_count()[0]
    try:
        yield
    finally:
        _depth = 0
        # handing the old objects back costs a call each: worth it only when the block
        # made more (an import of numba, xarray...), not for a small module's
        if gc.get_count()[0] - made > len(before):
            # the block's own garbage first: a frozen cycle would keep what it references
            # for good (closures over a copy of sys.modules hold the program's __main__)
            gc.collect(0)
            gc.freeze()
            # what existed before goes back to the youngest generation, as if just
            # made: nothing of the program's own stays frozen
            for obj in before:
                if gc.is_tracked(obj):
                    untrack(obj)
                    track(obj)
        del before
        if was_enabled:
            gc.enable()


class _FrozenLoader:
    """A module's own loader, whose ``exec_module`` runs in :func:`frozen_imports`."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with frozen_imports():
            self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...
        if name == "_loader":  # a copy made without __init__
            raise AttributeError(name)
        return getattr(self._loader, name)


class _Finder:
    """Finds a package's submodules with the finders after it and wraps their loaders."""

    def __init__(self, package: str) -> None:
        self.prefix = package + "."

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> ModuleSpec | None:
        if not name.startswith(self.prefix):
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if hasattr(spec.loader, "exec_module"):
                    spec.loader = _FrozenLoader(spec.loader)
                return spec
        return None


def install(package: str) -> None:
    """Run every submodule of ``package`` in :func:`frozen_imports` when it is imported.

    Example:
        >>> install("pitgrid")  # done by ``import pitgrid``; a second call changes nothing
        >>> sum(isinstance(f, _Finder) for f in sys.meta_path)
        1
    """
    if not any(isinstance(f, _Finder) and f.prefix == package + "." for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(package))
