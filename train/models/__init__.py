"""Model zoo: one registry, members imported explicitly (no package walking)."""

from __future__ import annotations

from . import efficientnet_lite, resnet, sgdnet  # noqa: F401  (registers the members)
from .registry import (
    create_backbone,
    create_model,
    list_backbones,
    list_models,
    register_backbone,
    register_model,
)

EFFICIENTNET_LITE_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

register_backbone("efficientnet_lite0", efficientnet_lite.efficientnet_lite0)
register_backbone("resnet18", resnet.resnet18)
register_backbone("resnet50", resnet.resnet50)

_NORMALISATION = {
    "efficientnet_lite0": EFFICIENTNET_LITE_MEAN_STD,
    "resnet18": (resnet.IMAGENET_MEAN, resnet.IMAGENET_STD),
    "resnet50": (resnet.IMAGENET_MEAN, resnet.IMAGENET_STD),
}


def backbone_normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input mean/std the backbone's pretrained weights expect (goes into the ModelSpec)."""
    mean, std = _NORMALISATION[name]
    return tuple(mean), tuple(std)


__all__ = [
    "backbone_normalisation",
    "create_backbone",
    "create_model",
    "list_backbones",
    "list_models",
    "register_backbone",
    "register_model",
]
