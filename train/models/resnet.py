"""Compatibility shim: ResNet moved to :mod:`saliq.train.models.backbones`."""

from __future__ import annotations

from .backbones.resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESNET_PRETRAINED,
    BasicBlock,
    Bottleneck,
    ResNet,
    load_safetensors_weights,
    resnet18,
    resnet34,
    resnet50,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESNET_PRETRAINED",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "load_safetensors_weights",
    "resnet18",
    "resnet34",
    "resnet50",
]
