# cython: language_level=3
"""A callable whose target no Python attribute exposes.

The step driver hands a strategy a view that must not lead back to the full market.
A Python closure shows its cells (``__closure__``) and an object its attributes; a
``Sealed`` keeps its function in a C field, with no attribute, no ``__dict__`` and no
pickling support that would hand the function out.
"""
cimport cython


@cython.auto_pickle(False)
@cython.final
cdef class Sealed:
    """``Sealed(fn)(*args)`` is ``fn(*args)``; ``fn`` itself cannot be read back."""

    cdef object _fn

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args):
        return self._fn(*args)

    def __repr__(self):
        return "<sealed>"
