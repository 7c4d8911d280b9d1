"""Reading saliq checkpoints (.safetensors + embedded spec), with no training code and no torch.

A checkpoint holds the weights and, in its safetensors metadata, the ModelSpec, the training
config and the metrics (see ``saliq.train.checkpoint`` for writing). Loading never runs code:
safetensors is a flat tensor format, not a pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelFormatError
from .spec import METADATA_KEY, ModelSpec

CONFIG_KEY = "saliq_config"
METRICS_KEY = "saliq_metrics"
STATE_KEY = "saliq_train_state"
OPTIM_PREFIX = "optim."  # optimizer moments in a training-state checkpoint, not weights


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    spec: ModelSpec
    config: dict
    metrics: dict


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors metadata of a saliq checkpoint, or a one-line ModelFormatError."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such checkpoint file")
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:  # a hard dependency of saliq; only a broken install lacks it
        raise ModelFormatError("safetensors is not installed: pip install safetensors") from None
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(
            f"{path}: not a safetensors checkpoint ({exc}); pass a saliq .safetensors file"
        ) from None
    if METADATA_KEY not in meta:
        raise ModelFormatError(
            f"{path}: a safetensors file without a saliq spec; it was not written by saliq train"
        )
    return meta


def _json_field(meta: dict[str, str], key: str, path: Path) -> dict:
    try:
        value = json.loads(meta.get(key, "{}"))
    except ValueError:
        raise ModelFormatError(f"{path}: corrupt {key} metadata; re-save the checkpoint") from None
    return value if isinstance(value, dict) else {}


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Spec, training config and metrics of a checkpoint (weights are not read)."""
    path = Path(path)
    meta = read_metadata(path)
    spec = ModelSpec.from_metadata(meta, source=str(path))
    return CheckpointInfo(
        path, spec, _json_field(meta, CONFIG_KEY, path), _json_field(meta, METRICS_KEY, path)
    )


def load_spec(path: str | Path) -> ModelSpec:
    return read_checkpoint_info(path).spec
