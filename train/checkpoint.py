"""Checkpoints: safetensors (no pickle: loading never runs code) + spec + config + metrics.

A *model* checkpoint holds the weights and, in the safetensors metadata, the ModelSpec,
the training config and the metrics. A *training-state* checkpoint (``last.safetensors``)
adds the optimizer moments and the epoch so training can resume.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from saliq.atomic import atomic_path
from saliq.checkpoint import (
    CONFIG_KEY,
    METRICS_KEY,
    OPTIM_PREFIX,
    STATE_KEY,
    load_spec,
    read_checkpoint_info,
    read_metadata,
)
from saliq.errors import ModelFormatError
from saliq.spec import METADATA_KEY, ModelSpec

from .models import model_from_spec

__all__ = [
    "CONFIG_KEY",
    "METRICS_KEY",
    "OPTIM_PREFIX",
    "STATE_KEY",
    "load_checkpoint",
    "load_spec",
    "load_training_state",
    "read_metadata",
    "release_checkpoint",
    "save_checkpoint",
]


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    spec: ModelSpec,
    config: dict | None = None,
    metrics: dict | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    state: dict | None = None,
    half: bool = False,
) -> Path:
    tensors = {
        k: (v.half() if half and v.is_floating_point() else v).detach().contiguous()
        for k, v in model.state_dict().items()
    }
    if optimizer is not None:
        for idx, per_param in optimizer.state_dict()["state"].items():
            for name, value in per_param.items():
                if torch.is_tensor(value):
                    tensors[f"{OPTIM_PREFIX}{idx}.{name}"] = value.detach().contiguous()
    meta = {
        METADATA_KEY: spec.to_json(),
        CONFIG_KEY: json.dumps(config or {}, sort_keys=True),
        METRICS_KEY: json.dumps(metrics or {}, sort_keys=True),
    }
    if state is not None:
        meta[STATE_KEY] = json.dumps(state, sort_keys=True)
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, ModelSpec, dict, dict]:
    """Build the model from its spec, load weights: (model in eval mode, spec, config, metrics)."""
    info = read_checkpoint_info(path)
    model = model_from_spec(info.spec, weights_path=path)
    return model, info.spec, info.config, info.metrics


def load_training_state(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict:
    """Restore model weights and optimizer moments from ``last.safetensors``; return the state."""
    meta = read_metadata(path)
    if STATE_KEY not in meta:
        raise ModelFormatError(f"{path}: has no training state; resume from a last.safetensors")
    tensors = load_file(str(path))
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(OPTIM_PREFIX)})
    state = json.loads(meta[STATE_KEY])
    optim_state = optimizer.state_dict()
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(OPTIM_PREFIX):
            idx, name = key[len(OPTIM_PREFIX) :].split(".", 1)
            per_param.setdefault(int(idx), {})[name] = value
    optim_state["state"] = per_param
    optimizer.load_state_dict(optim_state)
    return state


def release_checkpoint(source: str | Path, target: str | Path, half: bool = True) -> Path:
    """A shippable copy: weights only (no optimizer state), fp16 storage by default.

    Export the ONNX model from this file, not from the fp32 original, so that both shipped
    artifacts hold the same (rounded) weights and agree to float32 precision.
    """
    model, spec, config, metrics = load_checkpoint(source)
    return save_checkpoint(target, model, spec, config, metrics, half=half)


def extract_submodule(
    source: str | Path, prefix: str, spec: ModelSpec, target: str | Path, half: bool = True
) -> Path:
    """A checkpoint of one submodule of another model (e.g. the frozen whole-frame SGDNet
    inside a crop-view model: the previous default model, recovered from the new one)."""
    tensors = load_file(str(source))
    head = prefix.rstrip(".") + "."
    weights = {k[len(head) :]: v.float() for k, v in tensors.items() if k.startswith(head)}
    if not weights:
        raise ModelFormatError(f"{source}: no weights under {head!r}")
    from .models import model_from_spec

    model = model_from_spec(spec)
    model.load_state_dict(weights)  # strict: the submodule must be exactly that model
    info = read_checkpoint_info(source)
    config = {
        "extracted_from": str(Path(source).name),
        "prefix": head,
        "source_spec": info.spec.name,
    }
    return save_checkpoint(target, model, spec, config, {}, half=half)


def reconfigure_checkpoint(
    source: str | Path,
    target: str | Path,
    architecture: str,
    update: Callable[[dict, ModelSpec], dict],
) -> Path:
    """A copy of a checkpoint whose model is rebuilt from ``update(model_config, spec)`` with
    the same weights (loaded strictly: the new configuration must not change any parameter),
    e.g. a crop-scoring model set to read another number of grid crops."""
    from saliq.errors import ConfigError

    from .models import create_model
    from .models.contract import respec

    model, spec, config, metrics = load_checkpoint(source)
    if spec.architecture != architecture:
        raise ConfigError(f"{source}: a {spec.architecture} checkpoint, not {architecture}")
    model_config = update(dict(spec.model_config), spec)
    kwargs = {k: v for k, v in model_config.items() if k != "backbone_weights"}
    rebuilt = create_model(architecture, **kwargs)
    rebuilt.load_state_dict(model.state_dict())
    new_spec = respec(rebuilt, spec, model_config)
    return save_checkpoint(target, rebuilt.eval(), new_spec, config, metrics)
