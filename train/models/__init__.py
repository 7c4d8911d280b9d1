"""Model zoo: one registry, members imported explicitly (no package walking)."""

from __future__ import annotations

from functools import partial

from . import (  # noqa: F401  (registers)
    backbones,
    biosiqnet,
    dualtask,
    efficientnet_lite,
    resnet,
    sgdnet,
    transla,
    tres,
    views,
)
from .backbones import backbone_config, build_backbone
from .contract import GraphModule, IQAModel, model_from_spec, model_spec
from .registry import (
    create_backbone,
    create_model,
    list_backbones,
    list_models,
    register_backbone,
    register_model,
)

EFFICIENTNET_LITE_MEAN_STD = (
    efficientnet_lite.EFFICIENTNET_LITE_MEAN,
    efficientnet_lite.EFFICIENTNET_LITE_STD,
)

# The older entry point create_backbone(name, pretrained=..., weights_path=...) for every
# backbone that build_backbone knows.
for _name in backbones.list_backbones():
    register_backbone(_name, partial(backbones.create_legacy, _name))
del _name


def backbone_normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input mean/std the backbone's pretrained weights expect (goes into the ModelSpec)."""
    config = backbone_config(name)
    return tuple(config.mean), tuple(config.std)


__all__ = [
    "GraphModule",
    "IQAModel",
    "model_from_spec",
    "model_spec",
    "backbone_config",
    "backbone_normalisation",
    "build_backbone",
    "create_backbone",
    "create_model",
    "list_backbones",
    "list_models",
    "register_backbone",
    "register_model",
]
