"""Compatibility shim: EfficientNet-Lite moved to :mod:`saliq.train.models.backbones`."""

from __future__ import annotations

from .backbones.efficientnet_lite import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    LITE0_CONFIG,
    LITE1_CONFIG,
    LITE2_CONFIG,
    LITE_PRETRAINED,
    ConvBNAct,
    EfficientNetLite,
    EfficientNetLiteConfig,
    MBConv,
    StageConfig,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
    load_imagenet_weights,
    load_lukemelas_state_dict,
    lukemelas_key_map,
    pretrained_lite0_path,
    pretrained_lite_path,
)

__all__ = [
    "EFFICIENTNET_LITE_MEAN",
    "EFFICIENTNET_LITE_STD",
    "LITE0_CONFIG",
    "LITE1_CONFIG",
    "LITE2_CONFIG",
    "LITE_PRETRAINED",
    "ConvBNAct",
    "EfficientNetLite",
    "EfficientNetLiteConfig",
    "MBConv",
    "StageConfig",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "load_imagenet_weights",
    "load_lukemelas_state_dict",
    "lukemelas_key_map",
    "pretrained_lite0_path",
    "pretrained_lite_path",
]
