"""A model strategy's features in the step driver: kernel streams, a window, one forward pass.

Each bar, every feature of the bundle advances by one row through its kernel's
:class:`~pitgrid.kernels.Stream` (the batch kernel's own step, so the row equals
:func:`~pitgrid.models.features.build_features` at that bar bit for bit), the row
enters a window of the last ``lookback`` rows (NaN before the first bar, as
:func:`~pitgrid.models.inference.feature_window` pads), and all symbols go through
the model in one forward pass.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pitgrid.kernels import Stream
from pitgrid.models.features import field_sources
from pitgrid.models.inference import predict_step

if TYPE_CHECKING:  # pragma: no cover
    from pitgrid.models.bundle import ModelBundle


class ModelStream:
    """The feature stream of :class:`pitgrid.models.ModelStrategy` (``probs``, ``status``).

    Example:
        >>> s = ModelStream(bundle, n_symbols=500)            # doctest: +SKIP
        >>> s.update(rows)["probs"].shape                      # doctest: +SKIP
        (500, 3)
    """

    def __init__(self, bundle: ModelBundle, n_symbols: int, threads: int | None = 1) -> None:
        self.bundle = bundle
        self.threads = threads
        self.specs = bundle.features
        self.streams = [Stream(spec.kernel, n_symbols, **spec.params) for spec in self.specs]
        self.sources = field_sources(self.specs)
        self._source_of = {field: (kind, field) for kind, field in self.sources}
        self.window = np.full((bundle.lookback, n_symbols, len(self.specs)), np.nan, dtype=np.float32)

    def update(self, rows: dict[Any, np.ndarray]) -> dict[str, np.ndarray]:
        self.window[:-1] = self.window[1:]
        for i, (spec, stream) in enumerate(zip(self.specs, self.streams)):
            value = stream.update(*(rows[self._source_of[f]] for f in spec.fields))
            self.window[-1, :, i] = getattr(value, spec.output) if spec.output else value
        pred = predict_step(self.bundle, self.window, threads=self.threads)
        return {"probs": pred.probs, "status": pred.status}

    def state(self) -> dict[str, np.ndarray]:
        out = {"window": self.window.copy()}
        for i, stream in enumerate(self.streams):
            out.update({f"{i}/{k}": v for k, v in stream.state().items()})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if np.shape(state["window"]) != self.window.shape:
            raise ValueError(f"saved window {np.shape(state['window'])}, expected {self.window.shape}")
        self.window[...] = state["window"]
        for i, stream in enumerate(self.streams):
            stream.load_state({k[len(f"{i}/"):]: v for k, v in state.items() if k.startswith(f"{i}/")})
