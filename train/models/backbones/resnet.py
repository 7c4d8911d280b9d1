"""ResNet-18/34/50 backbones with torchvision's module names, loaded from safetensors.

torchvision is not a dependency, so the networks are written here; the module names
(``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``layer1.0.downsample.0``, ``fc``) are exactly
torchvision's, so a torchvision ``state_dict()`` loads without renaming.

Weights are accepted only as ``.safetensors``, which cannot execute code on load. Convert a
torchvision ``.pth`` once with ``saliq convert-weights resnet50.pth resnet50.safetensors
--backbone resnet50`` (docs/backbones.md).

Feature stages: the outputs of ``layer1`` .. ``layer4`` (strides 4, 8, 16, 32).
Inputs: RGB in [0, 1], normalised with :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .base import Backbone
from .pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneConfig,
    FeatureInfo,
    torchvision_config,
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


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        # Always a module (Identity when unused) so forward has no None branch.
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    # torchvision "v1.5": the stride sits on the 3x3 conv, not the first 1x1.
    expansion = 4

    def __init__(
        self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


_LAYERS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


def _feature_info(expansion: int) -> tuple[FeatureInfo, ...]:
    return tuple(
        FeatureInfo(c * expansion, s, f"layer{i + 1}")
        for i, (c, s) in enumerate(zip((64, 128, 256, 512), (4, 8, 16, 32)))
    )


def _pretrained_cfg(name: str) -> BackboneConfig:
    return torchvision_config(
        name, "resnet", "conv1.*, layer1.0.*, fc.*", _feature_info(_LAYERS[name][0].expansion)
    )


RESNET_PRETRAINED: dict[str, BackboneConfig] = {name: _pretrained_cfg(name) for name in _LAYERS}


class ResNet(Backbone):
    """torchvision-compatible ResNet; ``forward_features`` gives layer1..layer4 outputs.

    ``num_classes=0`` builds it without ``avgpool``/``fc``; ``forward`` then returns features.
    """

    head_prefixes = ("fc.",)

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_ch = 64
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        e = block.expansion
        if num_classes > 0:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512 * e, num_classes)
        self.feature_info = _feature_info(e)
        self._init_weights()

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], width: int, blocks: int, stride: int
    ) -> nn.Sequential:
        out_ch = width * block.expansion
        downsample = None
        if stride != 1 or self._in_ch != out_ch:
            # Named as torchvision's downsample.0 (conv) / downsample.1 (bn).
            downsample = nn.Sequential(
                _conv1x1(self._in_ch, out_ch, stride), nn.BatchNorm2d(out_ch)
            )
        layers = [block(self._in_ch, width, stride, downsample)]
        self._in_ch = out_ch
        layers += [block(out_ch, width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # Same scheme as torchvision, so training from scratch behaves the same.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]

    def forward(self, x: Tensor) -> Any:
        feats = self.forward_features(x)
        if not self.has_head:
            return feats
        return self.fc(torch.flatten(self.avgpool(feats[-1]), 1))


def load_safetensors_weights(model: Backbone, weights_path: str | Path) -> None:
    """Load weights from a ``.safetensors`` file into ``model`` (torchvision key names).

    Raises :class:`~saliq.errors.ModelFormatError` for any other file format (``.pth``/``.pt``
    pickles are refused because unpickling can run code: convert them with
    ``saliq convert-weights``), and when keys are missing, unexpected or mis-shaped.
    """
    from .weights import read_safetensors

    model.load_weights(read_safetensors(weights_path), source=str(weights_path))


def _resnet(name: str, weights_path: str | Path | None, num_classes: int) -> ResNet:
    block, layers = _LAYERS[name]
    model = ResNet(block, layers, num_classes=num_classes)
    model.pretrained_cfg = RESNET_PRETRAINED[name]
    if weights_path is not None:
        load_safetensors_weights(model, weights_path)
    return model


def resnet18(weights_path: str | Path | None = None, num_classes: int = 1000) -> ResNet:
    """ResNet-18; ``weights_path`` is an optional torchvision-named ``.safetensors`` file."""
    return _resnet("resnet18", weights_path, num_classes)


def resnet34(weights_path: str | Path | None = None, num_classes: int = 1000) -> ResNet:
    """ResNet-34; ``weights_path`` is an optional torchvision-named ``.safetensors`` file."""
    return _resnet("resnet34", weights_path, num_classes)


def resnet50(weights_path: str | Path | None = None, num_classes: int = 1000) -> ResNet:
    """ResNet-50 (v1.5); ``weights_path`` is an optional torchvision-named ``.safetensors`` file."""
    return _resnet("resnet50", weights_path, num_classes)
