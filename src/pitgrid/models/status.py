"""Inference status codes, int8 per (time, symbol) row: what inference writes and decisions read.

A layer of its own so that the decision rule and inference both depend on it
rather than on each other.

Example:
    >>> STATUS_NAMES[STATUS_MISSING]
    'missing_features'
"""
from __future__ import annotations

STATUS_OK, STATUS_MISSING, STATUS_ERROR = 0, 1, 2
STATUS_NAMES: tuple[str, ...] = ("ok", "missing_features", "inference_error")
