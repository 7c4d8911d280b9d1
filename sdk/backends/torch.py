"""PyTorch backend: runs a training checkpoint (.safetensors) directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError
from .base import Backend


def _torch():
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            "the torch backend needs PyTorch: pip install torch==2.13.0 'saliq[train]'"
        ) from None
    return torch


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 0) -> None:
        torch = _torch()
        from saliq.train.checkpoint import load_checkpoint

        model, spec, _, _ = load_checkpoint(path)
        super().__init__(spec, device=device)
        if threads:
            torch.set_num_threads(threads)
        self.model = model.to(device)

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = _torch()
        with torch.inference_mode():
            args = [torch.from_numpy(inputs[name]).to(self.device) for name in self.spec.inputs]
            score, saliency = self.model(*args)
        return {"score": score.cpu().numpy(), "saliency": saliency.cpu().numpy()}

    def close(self) -> None:
        self.model = None
