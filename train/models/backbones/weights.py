"""Reading a user's backbone weights file: safetensors only (loading it never runs code)."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from saliq.errors import ConfigError, ModelFormatError

__all__ = ["PICKLE_SUFFIXES", "read_safetensors"]

# Formats written by torch.save: unpickling them can run arbitrary code.
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".tar", ".ckpt", ".pkl")


def read_safetensors(path: str | os.PathLike, backbone: str | None = None) -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` file on the CPU.

    A ``.pth``/``.pt`` (pickle) file raises :class:`ModelFormatError` naming the conversion
    command; a missing file raises :class:`ConfigError`; a corrupt one ModelFormatError.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        flag = f" --backbone {backbone}" if backbone else " [--backbone NAME]"
        raise ModelFormatError(
            f"{path}: PyTorch pickle files are not loaded (unpickling can run code); convert it "
            f"once: saliq convert-weights {path} {path.with_suffix('.safetensors')}{flag}"
        )
    if suffix != ".safetensors":
        raise ModelFormatError(
            f"{path}: backbone weights must be a .safetensors file (got {suffix or 'no suffix'})"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: backbone weights file not found; check the path")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: not a valid safetensors file ({exc})") from exc
