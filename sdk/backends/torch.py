"""PyTorch backend: runs a training checkpoint (.safetensors) directly.

It needs torch and the architecture definitions (``saliq.train.models``), both imported only
when this backend is chosen; checkpoints are read by the runtime's own reader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checkpoint import read_checkpoint_info
from ..errors import BackendUnavailableError
from ..spec import ModelSpec
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
        from saliq.train.models.contract import model_from_spec

        spec = read_checkpoint_info(path).spec
        super().__init__(spec, device=device)
        if threads:
            torch.set_num_threads(threads)
        self.model = model_from_spec(spec, weights_path=path).to(device)

    @classmethod
    def from_module(cls, model, spec: ModelSpec, device: str = "cpu") -> TorchBackend:
        """An in-memory model (``model(dict) -> dict``) behind the backend interface, its
        inputs validated against ``spec`` as a file-backed backend's are."""
        backend = cls.__new__(cls)
        Backend.__init__(backend, spec, device=device)
        backend.model = model.eval()  # a reference run: no dropout, BN statistics frozen
        return backend

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = _torch()
        with torch.inference_mode():
            named = {name: torch.from_numpy(inputs[name]).to(self.device) for name in inputs}
            out = self.model(named)
        return {name: out[name].float().cpu().numpy() for name in self.spec.outputs}

    def _close(self) -> None:
        self.model = None
