"""What a loss term may look at during one training step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from saliq.errors import ConfigError

Model = Callable[[dict[str, torch.Tensor]], Mapping[str, torch.Tensor]]


BOX_KEYS = ("crop_boxes", "grid_boxes")  # [N, K, 4] normalised (x0, y0, x1, y1): no width axis


def mirror_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Normalised (x0, y0, x1, y1) boxes of the horizontally flipped frame: x -> 1 - x."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([1.0 - x1, y0, 1.0 - x0, y1], dim=-1)


def hflip(values: Mapping[str, Any]) -> dict[str, Any]:
    """Horizontal flip of every image-like tensor (3 or more dims) on its last (width) axis.

    Tensors of 1 or 2 dims (scores ``[N]``, features ``[N, C]``, score distributions ``[N, 5]``)
    have no width axis and pass unchanged: flipping their last axis would permute the batch or
    the bins. Crop boxes (``BOX_KEYS``) are coordinates, not pixels: they are mirrored.
    Non-tensors pass unchanged.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in BOX_KEYS and isinstance(value, torch.Tensor):
            out[key] = mirror_boxes(value)
            continue
        flip = isinstance(value, torch.Tensor) and value.dim() >= 3
        out[key] = value.flip(-1) if flip else value
    return out


@dataclass
class LossContext:
    """One step's model, inputs, outputs and batch, handed to every loss term.

    ``model`` is called as ``model(inputs_dict) -> outputs_dict`` (the model contract); it is only
    needed by terms that run extra passes (``flip_consistency``, any term with ``flip: true``).
    ``flipped_outputs()`` runs the model on the horizontally flipped inputs once per step and
    caches the result, so several terms share one extra pass. The pass runs under the caller's
    grad mode: during training, gradients flow through it (terms detach where they say so).
    """

    model: Model | None
    inputs: Mapping[str, torch.Tensor]
    outputs: Mapping[str, torch.Tensor]
    batch: Mapping[str, torch.Tensor]
    _flipped_outputs: dict[str, torch.Tensor] | None = field(default=None, init=False, repr=False)
    _flipped_batch: dict[str, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def flipped_inputs(self) -> dict[str, torch.Tensor]:
        """The model inputs flipped horizontally (see :func:`hflip`)."""
        return hflip(self.inputs)

    def flipped_outputs(self) -> dict[str, torch.Tensor]:
        """The model's outputs for the flipped inputs; computed on first use, then cached."""
        if self._flipped_outputs is None:
            if self.model is None:
                raise ConfigError(
                    "a loss term needs the model run on flipped inputs, but LossContext has "
                    "model=None; pass the model to LossContext(model, inputs, outputs, batch)"
                )
            self._flipped_outputs = dict(self.model(self.flipped_inputs()))
        return self._flipped_outputs

    def flipped_batch(self) -> dict[str, torch.Tensor]:
        """The targets as seen by the flipped pass: maps flipped, scores and distributions kept."""
        if self._flipped_batch is None:
            self._flipped_batch = hflip(self.batch)
        return self._flipped_batch
