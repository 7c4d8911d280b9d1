"""The one backend interface: ``infer(inputs) -> outputs``, validated against the ModelSpec."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..errors import BackendClosedError, InvalidImageError, ModelFormatError
from ..spec import ModelSpec

MAX_BATCH = 256  # per infer() call; the Assessor chunks larger lists


class Backend(ABC):
    """Subclasses implement ``_infer``; the public ``infer`` validates inputs once."""

    name: str = "backend"

    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        self.spec = spec
        self.device = device

        self.closed = False

    def expected_shape(self, input_name: str) -> tuple[int, ...]:
        return self.spec.tensor_shape(input_name)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model; returns exactly the spec's outputs, each [N, *per-sample shape]."""
        if self.closed:
            raise BackendClosedError(
                f"{self.name}: this model was closed; open it again with saliq.load(...)"
            )
        missing = set(self.spec.inputs) - set(inputs)
        if missing:
            raise InvalidImageError(f"{self.name}: missing model inputs {sorted(missing)}")
        for name in self.spec.inputs:
            array = inputs[name]
            if not isinstance(array, np.ndarray) or array.dtype != np.float32:
                raise InvalidImageError(f"{self.name}: input {name!r} must be a float32 ndarray")
        batch = self.check_shapes({name: inputs[name].shape for name in self.spec.inputs})
        for name in self.spec.inputs:
            if not np.isfinite(inputs[name]).all():
                raise InvalidImageError(f"{self.name}: input {name!r} contains NaN or inf")
        if not batch or batch > MAX_BATCH:
            raise InvalidImageError(f"{self.name}: batch size {batch} outside 1..{MAX_BATCH}")
        outputs = self._infer(
            {name: np.ascontiguousarray(inputs[name]) for name in self.spec.inputs}
        )
        missing_out = [name for name in self.spec.outputs if name not in outputs]
        if missing_out:
            raise ModelFormatError(
                f"{self.name}: the model produced no {missing_out} although its spec lists "
                f"them; re-export it with this saliq"
            )
        return {name: outputs[name] for name in self.spec.outputs}

    def check_shapes(self, shapes: dict[str, tuple[int, ...]]) -> int:
        """Each input is [N, *expected_shape] with one N for all; returns N."""
        batch = None
        for name, shape in shapes.items():
            expected = self.expected_shape(name)
            if len(shape) != 1 + len(expected) or tuple(shape[1:]) != expected:
                raise InvalidImageError(
                    f"{self.name}: input {name!r} has shape {tuple(shape)}, expected "
                    f"[N, {', '.join(map(str, expected))}]"
                )
            if batch is None:
                batch = shape[0]
            elif shape[0] != batch:
                raise InvalidImageError(f"{self.name}: inputs disagree on the batch size")
        return batch or 0

    @abstractmethod
    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None:
        """Release runtime resources (sessions, contexts); later calls raise a clear error."""
        if not self.closed:
            self.closed = True
            self._close()

    def _close(self) -> None:  # noqa: B027  (optional hook)
        """Subclasses release their sessions/contexts here (called once)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
