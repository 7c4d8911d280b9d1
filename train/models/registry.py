"""One registry of model builders, timm-style: ``create_model(name, **cfg)``."""

from __future__ import annotations

from collections.abc import Callable

from saliq.errors import ConfigError

_MODELS: dict[str, Callable] = {}
_BACKBONES: dict[str, Callable] = {}


def register_model(fn: Callable) -> Callable:
    _MODELS[fn.__name__] = fn
    return fn


def register_backbone(name: str, fn: Callable) -> None:
    """Register ``fn(pretrained=..., weights_path=...)`` for :func:`create_backbone`.

    The built-in backbones are registered by ``saliq.train.models`` through
    ``backbones.create_legacy``; new code should call ``backbones.build_backbone``.
    """
    _BACKBONES[name] = fn


def _lookup(table: dict[str, Callable], kind: str, name: str) -> Callable:
    try:
        return table[name]
    except KeyError:
        raise ConfigError(
            f"unknown {kind} {name!r}; available: {', '.join(sorted(table))}"
        ) from None


def create_model(name: str, **cfg):
    """Build a registered architecture (e.g. ``create_model("sgdnet", backbone=...)``)."""
    return _lookup(_MODELS, "model", name)(**cfg)


def create_backbone(name: str, **cfg):
    """Older entry point: ``create_backbone(name, pretrained=False, weights_path=None)``."""
    return _lookup(_BACKBONES, "backbone", name)(**cfg)


def list_models() -> list[str]:
    return sorted(_MODELS)


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)
