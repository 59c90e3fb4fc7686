"""What a model bundle is made of on disk, and the error that points into it.

The lowest layer of :mod:`pitgrid.models`: features, the bundle reader and the
strategy all raise :class:`BundleError`, so it depends on nothing of theirs.

Example:
    >>> str(BundleError("m/metadata.json", "lookback", "must be a positive integer"))
    'm/metadata.json: lookback: must be a positive integer'
"""
from __future__ import annotations

import os
from pathlib import Path

METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.pt"


class BundleError(ValueError):
    """A model bundle that cannot be used; ``file`` and ``field`` say where.

    Example:
        >>> str(BundleError("m/metadata.json", "lookback", "must be a positive integer"))
        'm/metadata.json: lookback: must be a positive integer'
    """

    def __init__(self, file: str | os.PathLike[str], field: str | None, message: str) -> None:
        self.file = Path(file)
        self.field = field
        where = f"{self.file}: {field}" if field else str(self.file)
        super().__init__(f"{where}: {message}")
