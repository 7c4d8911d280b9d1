"""ResNet-18 / ResNet-50 backbones with torchvision's module names, loaded from safetensors.

torchvision is not a dependency, so the networks are written here; the module names
(``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``layer1.0.downsample.0``, ``fc``) are exactly
torchvision's, so a torchvision ``state_dict()`` loads without renaming.

Weights are accepted only as ``.safetensors``, which cannot execute code on load. To convert a
torchvision checkpoint (run once, in an environment you trust)::

    import torch
    from safetensors.torch import save_file
    save_file(torch.load("resnet50.pth", weights_only=True), "resnet50.safetensors")

Inputs: RGB in [0, 1], normalised with :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from saliq.errors import ModelFormatError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "load_safetensors_weights",
    "resnet18",
    "resnet50",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_CONVERT_HINT = (
    "convert it to safetensors first:\n"
    "    import torch\n"
    "    from safetensors.torch import save_file\n"
    '    save_file(torch.load("in.pth", weights_only=True), "out.safetensors")'
)


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


class ResNet(nn.Module):
    """torchvision-compatible ResNet; ``forward_features`` gives layer1..layer4 outputs."""

    feature_strides: tuple[int, int, int, int] = (4, 8, 16, 32)

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_ch = 64
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        e = block.expansion
        self.feature_channels: tuple[int, int, int, int] = (64 * e, 128 * e, 256 * e, 512 * e)
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

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)[-1]
        return self.fc(torch.flatten(self.avgpool(x), 1))


def load_safetensors_weights(model: nn.Module, weights_path: str | Path) -> None:
    """Load torchvision-named weights from a ``.safetensors`` file into ``model``.

    Raises :class:`ModelFormatError` for any other file format (``.pth``/``.pt`` pickles are
    refused because unpickling can run code), and also when keys are missing, unexpected or
    mis-shaped (the message lists them all).
    """
    path = Path(weights_path)
    if path.suffix.lower() != ".safetensors":
        raise ModelFormatError(
            f"{path}: backbone weights must be a .safetensors file; {_CONVERT_HINT}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found; check the path")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except SafetensorError as exc:
        raise ModelFormatError(f"{path}: not a valid safetensors file ({exc})") from exc

    own = model.state_dict()
    # Older torchvision checkpoints omit BN's num_batches_tracked; it does not affect inference.
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    if missing or unexpected:
        raise ModelFormatError(
            f"{path}: weights do not match {type(model).__name__} (torchvision key names "
            f"expected): missing keys {missing}, unexpected keys {unexpected}"
        )
    bad = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if v.shape != own[k].shape
    ]
    if bad:
        raise ModelFormatError(f"{path}: weight shape mismatch (file vs model): " + "; ".join(bad))
    model.load_state_dict(state, strict=False)


def resnet18(weights_path: str | Path | None = None) -> ResNet:
    """ResNet-18; ``weights_path`` is an optional torchvision-named ``.safetensors`` file."""
    model = ResNet(BasicBlock, (2, 2, 2, 2))
    if weights_path is not None:
        load_safetensors_weights(model, weights_path)
    return model


def resnet50(weights_path: str | Path | None = None) -> ResNet:
    """ResNet-50 (v1.5); ``weights_path`` is an optional torchvision-named ``.safetensors`` file."""
    model = ResNet(Bottleneck, (3, 4, 6, 3))
    if weights_path is not None:
        load_safetensors_weights(model, weights_path)
    return model
