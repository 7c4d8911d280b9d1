"""VGG-16 / VGG-19 (no batch norm) with torchvision's module names, loaded from safetensors.

The layout is torchvision's: ``features.N`` (conv / ReLU / max-pool in one Sequential, conv
keys ``features.0.weight``, ...), then ``avgpool`` and ``classifier.{0,3,6}``, so a torchvision
``vgg16().state_dict()`` loads without renaming (convert its ``.pth`` with
``saliq convert-weights``).

Feature stages: the outputs of the 2nd to 5th max-pools (``pool2`` .. ``pool5``, strides 4, 8,
16, 32; channels 128, 256, 512, 512). We tap the pool outputs rather than the conv blocks
before them because only the pools sit at exactly strides 4/8/16/32 (``conv3_3`` is at stride
4, ``conv5_3`` at 16), and ``pool5`` is what the ImageNet classifier itself reads.

Inputs: RGB in [0, 1], normalised with ImageNet mean/std.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .base import Backbone
from .pretrained import (
    BackboneConfig,
    FeatureInfo,
    torchvision_config,
)

__all__ = ["VGG", "VGG_LAYERS", "VGG_PRETRAINED", "vgg16", "vgg19"]

_M = 0  # a max-pool in the layer lists below
# torchvision's cfgs "D" (VGG-16) and "E" (VGG-19): conv widths, _M = 2x2 max-pool.
VGG_LAYERS: dict[str, tuple[int, ...]] = {
    "vgg16": (64, 64, _M, 128, 128, _M, 256, 256, 256, _M, 512, 512, 512, _M, 512, 512, 512, _M),
    "vgg19": (
        64,
        64,
        _M,
        128,
        128,
        _M,
        256,
        256,
        256,
        256,
        _M,
        512,
        512,
        512,
        512,
        _M,
        512,
        512,
        512,
        512,
        _M,
    ),  # fmt: skip
}


def _feature_info(layers: tuple[int, ...]) -> tuple[FeatureInfo, ...]:
    """pool2..pool5 as (channels, stride, features.N), N counting conv, ReLU and pool modules."""
    info = []
    index, channels, stride = 0, 3, 1
    for width in layers:
        if width == _M:
            stride *= 2
            if stride >= 4:
                info.append(FeatureInfo(channels, stride, f"features.{index}"))
            index += 1
        else:
            channels = width
            index += 2  # conv + ReLU
    return tuple(info)


def _pretrained_cfg(name: str) -> BackboneConfig:
    return torchvision_config(
        name, "vgg", "features.N.*, classifier.N.*", _feature_info(VGG_LAYERS[name])
    )


VGG_PRETRAINED: dict[str, BackboneConfig] = {name: _pretrained_cfg(name) for name in VGG_LAYERS}


class VGG(Backbone):
    """torchvision-compatible VGG; ``forward_features`` gives the pool2..pool5 outputs.

    ``num_classes=0`` builds it without ``avgpool``/``classifier`` (the 120 M-parameter
    fully connected layers); ``forward`` then returns the feature list.
    """

    head_prefixes = ("classifier.",)

    def __init__(self, layers: tuple[int, ...], num_classes: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        modules: list[nn.Module] = []
        in_ch = 3
        for width in layers:
            if width == _M:
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = width
        self.features = nn.Sequential(*modules)
        if num_classes > 0:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, num_classes),
            )
        self.feature_info = _feature_info(layers)
        # Fixed at construction: forward has no data-dependent control flow (static ONNX).
        self._taps = frozenset(int(f.module.split(".")[1]) for f in self.feature_info)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's scheme, so training from scratch behaves the same.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        feats: list[Tensor] = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._taps:
                feats.append(x)
        return feats

    def forward(self, x: Tensor) -> Any:
        feats = self.forward_features(x)
        if not self.has_head:
            return feats
        return self.classifier(torch.flatten(self.avgpool(feats[-1]), 1))


def _vgg(name: str, weights_path: str | Path | None, num_classes: int) -> VGG:
    model = VGG(VGG_LAYERS[name], num_classes=num_classes)
    model.pretrained_cfg = VGG_PRETRAINED[name]
    if weights_path is not None:
        from .weights import read_safetensors

        model.load_weights(read_safetensors(weights_path), source=str(weights_path))
    return model


def vgg16(weights_path: str | Path | None = None, num_classes: int = 1000) -> VGG:
    """VGG-16; ``weights_path`` is an optional torchvision-named ``.safetensors`` file."""
    return _vgg("vgg16", weights_path, num_classes)


def vgg19(weights_path: str | Path | None = None, num_classes: int = 1000) -> VGG:
    """VGG-19; ``weights_path`` is an optional torchvision-named ``.safetensors`` file."""
    return _vgg("vgg19", weights_path, num_classes)
