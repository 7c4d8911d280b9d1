"""Backbones, timm-style: ``build_backbone(name, weights=..., frozen=..., freeze_bn=...)``.

Every backbone is built without its ImageNet classifier and exposes a four-stage feature
pyramid (strides 4, 8, 16, 32) through ``forward_features``, ``feature_info``,
``feature_channels`` / ``feature_strides``, and its :class:`BackboneConfig` as
``pretrained_cfg`` (mean/std, native size, weight source, licence). The members are listed
explicitly below (no package walking). Table and weight conversion: docs/backbones.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from saliq.errors import BackendUnavailableError, ConfigError

from . import efficientnet_lite, resnet, vgg
from .base import Backbone, load_checked
from .pretrained import IMAGENET_MEAN, IMAGENET_STD, USER_SAFETENSORS, BackboneConfig, FeatureInfo
from .weights import PICKLE_SUFFIXES, read_safetensors

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGENET_WEIGHTS",
    "USER_SAFETENSORS",
    "Backbone",
    "BackboneConfig",
    "FeatureInfo",
    "backbone_config",
    "build_backbone",
    "create_legacy",
    "freeze_prefixes",
    "list_backbones",
    "load_checked",
    "read_safetensors",
]

# ``weights=`` values that mean "the ImageNet weights shipped by a pip package".
IMAGENET_WEIGHTS = ("imagenet", "pretrained")


@dataclass(frozen=True)
class _Entry:
    config: BackboneConfig
    build: Callable[[], Backbone]  # headless, randomly initialised
    load_imagenet: Callable[[Backbone], None] | None  # the packaged weights, where shipped


def _lite(variant: int) -> _Entry:
    name = f"efficientnet_lite{variant}"
    build = getattr(efficientnet_lite, name)
    return _Entry(
        efficientnet_lite.LITE_PRETRAINED[name],
        partial(build, num_classes=0),
        partial(efficientnet_lite.load_imagenet_weights, variant=variant),
    )


_BACKBONES: dict[str, _Entry] = {
    "efficientnet_lite0": _lite(0),
    "efficientnet_lite1": _lite(1),
    "efficientnet_lite2": _lite(2),
    "resnet18": _Entry(
        resnet.RESNET_PRETRAINED["resnet18"], partial(resnet.resnet18, num_classes=0), None
    ),
    "resnet34": _Entry(
        resnet.RESNET_PRETRAINED["resnet34"], partial(resnet.resnet34, num_classes=0), None
    ),
    "resnet50": _Entry(
        resnet.RESNET_PRETRAINED["resnet50"], partial(resnet.resnet50, num_classes=0), None
    ),
    "vgg16": _Entry(vgg.VGG_PRETRAINED["vgg16"], partial(vgg.vgg16, num_classes=0), None),
    "vgg19": _Entry(vgg.VGG_PRETRAINED["vgg19"], partial(vgg.vgg19, num_classes=0), None),
}


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`."""
    return sorted(_BACKBONES)


def _entry(name: str) -> _Entry:
    try:
        return _BACKBONES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown backbone {name!r}; available: {', '.join(list_backbones())}"
        ) from None


def backbone_config(name: str) -> BackboneConfig:
    """The pretrained configuration of backbone ``name`` (mean/std, native size, source...)."""
    return _entry(name).config


def _prefix_choices(param_names: Sequence[str]) -> list[str]:
    """Coarse prefixes to suggest: the top module, plus its index for containers."""
    choices: dict[str, None] = {}
    for n in param_names:
        parts = n.split(".")
        keep = 2 if len(parts) > 2 and parts[1].isdigit() else 1
        choices[".".join(parts[:keep]) + "."] = None
    return list(choices)


def freeze_prefixes(model: Backbone, prefixes: Sequence[str], name: str = "backbone") -> None:
    """Set ``requires_grad=False`` on parameters whose names start with any of ``prefixes``.

    A prefix matching no parameter raises :class:`ConfigError` listing usable prefixes (a typo
    would otherwise silently train what was meant to stay frozen).
    """
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    params = dict(model.named_parameters())
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in params)]
    if unknown:
        raise ConfigError(
            f"frozen prefixes {unknown} match no parameter of {name}; "
            f"use one of {', '.join(_prefix_choices(list(params)))}"
        )
    for n, param in params.items():
        if n.startswith(tuple(prefixes)):
            param.requires_grad_(False)


def _load_weights(model: Backbone, name: str, entry: _Entry, weights: str | os.PathLike) -> None:
    if isinstance(weights, str) and weights.lower() in IMAGENET_WEIGHTS:
        if entry.load_imagenet is None:
            raise ConfigError(
                f"{name} has no packaged ImageNet weights; pass weights='{name}.safetensors' "
                f"({entry.config.weights_layout} key names; in a training config: "
                f"model.kwargs.backbone_weights); convert a .pth with: saliq convert-weights "
                f"{name}.pth {name}.safetensors --backbone {name}"
            )
        try:
            entry.load_imagenet(model)
        except ImportError as exc:
            raise BackendUnavailableError(str(exc)) from exc
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ConfigError(
            f"weights={weights!r}: expected None, 'imagenet', or a path to a .safetensors file"
        )
    path = Path(weights)
    if path.suffix.lower() not in (*PICKLE_SUFFIXES, ".safetensors"):
        raise ConfigError(
            f"weights={str(weights)!r}: expected None, {' or '.join(map(repr, IMAGENET_WEIGHTS))}"
            ", or a path to a .safetensors file"
        )
    model.load_weights(read_safetensors(path, backbone=name), source=str(path))


def build_backbone(
    name: str,
    weights: str | os.PathLike | None = None,
    frozen: Sequence[str] = (),
    freeze_bn: bool = True,
) -> Backbone:
    """Build backbone ``name`` without its ImageNet classifier.

    ``weights``: None (random init), ``"imagenet"``/``"pretrained"`` (the pip-packaged ImageNet
    weights: EfficientNet-Lite0/1/2 only), or a ``.safetensors`` path (torchvision layout for
    ResNet/VGG; lukemelas or saliq layout for Lite). ``frozen``: parameter-name prefixes to
    exclude from training (e.g. ``("stem.", "stages.0.")``). ``freeze_bn``: BatchNorm layers
    keep their statistics and affine parameters, also after ``.train()``.
    """
    entry = _entry(name)
    model = entry.build()
    if weights is not None:
        _load_weights(model, name, entry, weights)
    if frozen:
        freeze_prefixes(model, frozen, name)
    if freeze_bn:
        model.set_freeze_bn(True)
    return model


def create_legacy(
    name: str, pretrained: bool = False, weights_path: str | os.PathLike | None = None
) -> Backbone:
    """The older entry point ``create_backbone(name, pretrained=..., weights_path=...)``.

    An explicit ``weights_path`` wins over ``pretrained`` (training configs default to
    ``pretrained: true``). BatchNorm is left to the caller, as before (SGDNet freezes it).
    """
    weights = weights_path if weights_path else ("imagenet" if pretrained else None)
    return build_backbone(name, weights=weights, freeze_bn=False)
