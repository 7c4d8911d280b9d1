"""The one place saliq reads a PyTorch pickle: ``.pth``/``.pt`` -> ``.safetensors``.

Everything else in saliq loads weights from safetensors only, which cannot run code on load.
Unpickling can, so it happens here alone, once per file, through
``torch.load(..., weights_only=True)`` (PyTorch's restricted unpickler: tensors and plain
containers only). Command line (registered by sdk/cli.py)::

    saliq convert-weights resnet50.pth resnet50.safetensors --backbone resnet50

Accepted layouts: a plain state dict, or ``{"state_dict": ...}`` / ``{"model": ...}`` (other
entries such as an optimizer or epoch are ignored); a DataParallel ``module.`` prefix is
stripped. With a backbone name the keys and shapes are checked against that backbone before
anything is written (the file must then load with ``build_backbone(name, weights=DST)``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saliq.atomic import atomic_path
from saliq.errors import BackendUnavailableError, ConfigError, ModelFormatError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["convert_pth", "read_pth"]

_WRAPPER_KEYS = ("state_dict", "model")
_DP_PREFIX = "module."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _state_dict_of(obj: Any, path: Path) -> dict[str, Tensor]:
    import torch

    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ModelFormatError(
            f"{path}: holds a {type(obj).__name__}, not a state dict; save "
            "model.state_dict() (or {'state_dict': ...}) and convert that"
        )
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors or not obj:
        what = f"entries {not_tensors[:5]} are not tensors" if not_tensors else "it is empty"
        raise ModelFormatError(
            f"{path}: not a state dict ({what}); expected {{name: tensor}}, optionally inside "
            "{'state_dict': ...} or {'model': ...}"
        )
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        # DataParallel / DistributedDataParallel save every key as "module.<name>".
        name = str(key)[len(_DP_PREFIX) :] if str(key).startswith(_DP_PREFIX) else str(key)
        if name in out:
            raise ModelFormatError(f"{path}: key {name!r} appears with and without 'module.'")
        out[name] = value
    return out


def read_pth(path: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict inside a PyTorch ``.pth``/``.pt`` file (CPU tensors).

    The only ``torch.load`` in saliq, always with ``weights_only=True``. A file that is not a
    readable checkpoint, or that holds arbitrary objects, raises :class:`ModelFormatError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; check the path")
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            "reading a .pth file needs PyTorch: pip install 'saliq[train]'"
        ) from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises EOFError, KeyError, OSError, RuntimeError...
        # The restricted unpickler names the first class it refused; other failures
        # (garbage bytes, truncation) mean the file is not a checkpoint at all.
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if refused:
            raise ModelFormatError(
                f"{path}: holds Python objects besides tensors ({refused.group(1)}), which "
                "saliq will not unpickle (that could run code); in a session you trust, "
                "re-save only the weights: torch.save(model.state_dict(), 'weights.pth')"
            ) from None
        raise ModelFormatError(
            f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)}); the file is "
            "truncated, corrupt or not a torch.save file"
        ) from None
    return _state_dict_of(obj, path)


def convert_pth(
    src: str | os.PathLike, dst: str | os.PathLike, backbone: str | None = None
) -> Path:
    """Convert ``src`` (a PyTorch pickle) to ``dst`` (``.safetensors``), written atomically.

    With ``backbone`` (a :func:`~saliq.train.models.backbones.build_backbone` name) every key
    and shape is checked against it first; a mismatch raises and writes nothing.
    Returns ``dst``.
    """
    dst = Path(dst)
    if dst.suffix.lower() != ".safetensors":
        raise ConfigError(f"{dst}: the destination must end in .safetensors")
    state = read_pth(src)
    if backbone is not None:
        from saliq.train.models.backbones import build_backbone

        model = build_backbone(backbone, freeze_bn=False)
        model.load_weights(state, source=str(src))
    from safetensors.torch import save_file

    # safetensors refuses views and tensors sharing storage: give each its own memory.
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    metadata = {"format": "pt", "converted_from": Path(src).name}
    if backbone is not None:
        metadata["backbone"] = backbone
    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return dst
