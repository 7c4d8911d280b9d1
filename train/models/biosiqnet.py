"""BioSIQNet (Wang, Ma, Tan, Liu, Chen and Liu, "A bioinspired deep learning framework for
saliency-based image quality assessment", IEEE TNNLS 2025), CNN version, on saliq's contract.

Three tasks: a quality branch (TB_iq) and two saliency branches predicting the high- and the
low-saliency part of a saliency map (TB_hs, TB_ls; the targets come from
``saliq.train.data.saliency_split``: the map split at 120/255 of its maximum). Features of the
saliency branches are fused into the quality branch with learnable scalars, initialised to 1:

    after block l (low):   F = alpha * F_ls + beta * F_iq           (Eq. 1, default l = 2)
    after block h (high):  F = gamma * F_hs + sigma * F_iq          (Eq. 2, default h = 4)

"Block k" is backbone stage k, at stride 2^(k+1) (4, 8, 16, 32); for VGG19 blocks 1..4 end
at pool2..pool5, so block 2 ends at the text's "third pooling layer" and Table II's "Block 2"
is the same place. Both fusions at one block apply Eq. 1 then Eq. 2.

Saliency decoders (Sec. III-B): five steps [3x3 conv + ReLU -> 2x nearest upsample] from
stride 32; the fifth conv gives the one-channel map (ReLU: non-negative, as KL needs). The
paper upsamples five times, to stride 1; here upsampling stops at ``saliency_stride`` (the
remaining steps keep the grid), so the map is cheaper where a coarser one suffices.

Encoders (``encoders``):
* ``separate`` (the paper): three ImageNet encoders. F_ls / F_hs are the saliency encoders'
  own block outputs; the quality encoder runs block by block with the fusions in between.
* ``shared`` (the CPU default): one encoder. Its block outputs are the quality branch's own,
  so fusing them would only rescale; F_ls / F_hs are instead the saliency decoders' conv
  outputs at the block's stride (1x1-projected to its channels), and the quality pass
  re-enters the encoder after the earliest fusion block with the fused features (same
  weights), running the later blocks once more. Lite0 at 224 x 224: 1.4 GFLOPs (separate 2.3,
  no saliency branch 0.7).

Quality head ("CNN-tailored": ReLU and FC layers): global average pool -> MLP -> sigmoid.

Views: with ``views.grid_crops`` = 0 the network judges the whole ``image`` (train it on
native-resolution crops: ``data.crop: [288, 384]`` with the model input 288 x 384, as the paper
does). With n > 0 (preprocessing version 2) it scores each of the n native-scale ``grid`` crops
and averages them, and predicts the maps on the whole ``image``: :func:`grid_view_checkpoint`
turns a checkpoint trained on crops into that serving form (same weights).

Exported: ``score``; ``saliency`` = the high-saliency map (where attention goes first; present
with the high branch); ``crop_scores`` in grid mode. Training-only: ``saliency_high``,
``saliency_low`` (the two maps the losses read) and ``features`` (pooled quality features).
Choices where the paper is silent: docs/models.md ("BioSIQNet").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from saliq.errors import ConfigError, ModelFormatError
from saliq.views import VIEWS_VERSION, ViewConfig

from .backbones import Backbone, build_backbone
from .backbones.efficientnet_lite import EfficientNetLite
from .backbones.resnet import ResNet
from .backbones.vgg import VGG
from .blocks import ScoreMLP
from .contract import IQAModel
from .registry import register_model

BLOCKS = (1, 2, 3, 4)
BLOCK_STRIDES = {1: 4, 2: 8, 3: 16, 4: 32}
TOP_STRIDE = 32  # the decoders start from the last block
DECODER_STEPS = 5
ENCODERS = ("shared", "separate")
MAP_BIAS_INIT = 1.0  # the map's ReLU starts alive everywhere (a dead map has no gradient)


def encoder_blocks(backbone: nn.Module) -> tuple[tuple[nn.Module, ...], ...]:
    """The backbone cut into its four blocks: block k maps block k-1's output (block 1: the
    image) to the stage-k feature of ``forward_features``. The modules are the backbone's own
    (no copies), so weights and frozen prefixes stay the backbone's."""
    if isinstance(backbone, EfficientNetLite):
        stages, cuts = list(backbone.stages), list(backbone.feature_stages)
        bounds = [-1, *cuts]
        parts = [tuple(stages[a + 1 : b + 1]) for a, b in zip(bounds, bounds[1:])]
        return ((backbone.stem, *parts[0]), *parts[1:])
    if isinstance(backbone, ResNet):
        stem = (backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool, backbone.layer1)
        return (stem, (backbone.layer2,), (backbone.layer3,), (backbone.layer4,))
    if isinstance(backbone, VGG):
        layers = list(backbone.features)
        taps = sorted(int(f.module.split(".")[1]) for f in backbone.feature_info)  # features.N
        bounds = [-1, *taps]
        return tuple(tuple(layers[a + 1 : b + 1]) for a, b in zip(bounds, bounds[1:]))
    raise ConfigError(
        f"biosiqnet: cannot cut a {type(backbone).__name__} into blocks; use an "
        "efficientnet_lite*, resnet* or vgg* backbone"
    )


def run_block(block: tuple[nn.Module, ...], x: torch.Tensor) -> torch.Tensor:
    for module in block:
        x = module(x)
    return x


class SaliencyDecoder(nn.Module):
    """Five [3x3 conv + ReLU -> 2x nearest upsample] steps from stride 32 (Sec. III-B); the
    fifth conv outputs the map. Upsampling stops once ``stride`` is reached. ``forward`` returns
    the map and each stride's first conv output (the shared encoder fuses those)."""

    def __init__(self, in_channels: int, widths: Sequence[int], stride: int) -> None:
        super().__init__()
        channels = [in_channels, *widths, 1]
        convs = [nn.Conv2d(a, b, 3, padding=1) for a, b in zip(channels, channels[1:])]
        assert convs[-1].bias is not None
        nn.init.constant_(convs[-1].bias, MAP_BIAS_INIT)
        self.convs = nn.ModuleList(convs)
        self.upsamples = int(round(math.log2(TOP_STRIDE // stride)))
        self.widths = tuple(widths)
        self.stride = stride

    def step_strides(self) -> tuple[int, ...]:
        """The stride each conv runs at."""
        return tuple(TOP_STRIDE >> min(i, self.upsamples) for i in range(DECODER_STEPS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        features: dict[int, torch.Tensor] = {}
        for i, (conv, stride) in enumerate(zip(self.convs, self.step_strides())):
            x = F.relu(conv(x))
            if i < DECODER_STEPS - 1:
                features.setdefault(stride, x)
            if i < self.upsamples:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x, features


class ScalarFusion(nn.Module):
    """F = a * F_saliency + b * F_iq with learnable scalars a, b initialised to 1 (Eqs. 1-2)."""

    def __init__(self, project: nn.Module | None = None) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.ones(()))
        self.b = nn.Parameter(torch.ones(()))
        self.project = project if project is not None else nn.Identity()

    def forward(self, saliency_feature: torch.Tensor, iq_feature: torch.Tensor) -> torch.Tensor:
        return self.a * self.project(saliency_feature) + self.b * iq_feature


def _check_block(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in BLOCKS:
        raise ConfigError(f"biosiqnet: {name}={value!r} must be a block number 1, 2, 3 or 4")
    return value


class BioSIQNet(IQAModel):
    # ImageNet-initialised parameters (for an optimiser's backbone learning-rate scale)
    backbone_prefixes = ("backbone.", "saliency_encoders.")

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        pretrained: bool = False,
        backbone_weights: str | None = None,
        encoders: str = "shared",
        low_saliency: bool = True,
        high_saliency: bool = True,
        low_block: int = 2,
        high_block: int = 4,
        decoder_channels: Sequence[int] = (64, 32, 32, 16),
        saliency_stride: int = 4,
        hidden: Sequence[int] = (256,),
        dropout: float = 0.5,
        frozen_prefixes: Sequence[str] = (),
        freeze_bn: bool = True,
        drop_connect: bool = True,
        views: dict | None = None,
    ) -> None:
        super().__init__()
        if encoders not in ENCODERS:
            raise ConfigError(f"biosiqnet: encoders={encoders!r}; choose shared or separate")
        self.low_block = _check_block("low_block", low_block)
        self.high_block = _check_block("high_block", high_block)
        widths = tuple(decoder_channels)
        if len(widths) != DECODER_STEPS - 1 or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths
        ):
            raise ConfigError(
                f"biosiqnet: decoder_channels={list(widths)} must be {DECODER_STEPS - 1} positive "
                "integers (the widths of the first four decoder convs; the fifth gives the map)"
            )
        if saliency_stride not in (1, 2, 4, 8, 16, 32):
            raise ConfigError(
                f"biosiqnet: saliency_stride={saliency_stride!r} must be 1, 2, 4, 8, 16 or 32 "
                "(the paper decodes to 1)"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"biosiqnet: dropout={dropout} must be in [0, 1)")
        self.shared = encoders == "shared"
        self.low, self.high = bool(low_saliency), bool(high_saliency)
        fused = [(self.low_block, "low")] * self.low + [(self.high_block, "high")] * self.high
        if self.shared:
            for block, name in fused:
                if BLOCK_STRIDES[block] < saliency_stride:
                    raise ConfigError(
                        f"biosiqnet: the shared encoder fuses the {name}-saliency decoder's "
                        f"features at block {block} (stride {BLOCK_STRIDES[block]}), but the "
                        f"decoder stops at stride {saliency_stride}; set saliency_stride <= "
                        f"{BLOCK_STRIDES[block]} or encoders: separate"
                    )
        self._setup_views(views)

        weights = backbone_weights or ("imagenet" if pretrained else None)

        def encoder() -> Backbone:
            net = build_backbone(
                backbone, weights=weights, frozen=tuple(frozen_prefixes), freeze_bn=freeze_bn
            )
            if not drop_connect:  # deterministic passes (e.g. comparing runs step for step)
                for module in net.modules():
                    if hasattr(module, "drop_connect_rate"):
                        setattr(module, "drop_connect_rate", 0.0)  # noqa: B010
            return net

        # TB_iq (or the one shared encoder) keeps the name every saliq model uses: backbone.*
        self.backbone = encoder()
        self._blocks = encoder_blocks(self.backbone)  # a plain tuple: not a second registration
        channels = dict(zip(BLOCKS, self.backbone.feature_channels))
        top = channels[4]
        self.saliency_stride = int(saliency_stride)
        self.saliency_encoders = nn.ModuleDict()
        self._saliency_blocks: dict[str, tuple] = {}
        self.decoders = nn.ModuleDict()
        self.fusions = nn.ModuleDict()
        for block, name in fused:
            if not self.shared:
                self.saliency_encoders[name] = encoder()  # TB_ls / TB_hs
                self._saliency_blocks[name] = encoder_blocks(self.saliency_encoders[name])
            decoder = SaliencyDecoder(top, widths, self.saliency_stride)
            self.decoders[name] = decoder
            project = None
            if self.shared:
                width = widths[decoder.step_strides().index(BLOCK_STRIDES[block])]
                project = nn.Conv2d(width, channels[block], 1)
            self.fusions[name] = ScalarFusion(project)
        self.head = ScoreMLP(top, tuple(hidden), dropout)

        self.outputs = ("score",) + (("saliency",) if self.high else ())
        if self.grid_crops:
            self.outputs += ("crop_scores",)
        self.aux_outputs = tuple(f"saliency_{n}" for n in ("high", "low") if n in self.decoders)
        self.aux_outputs += ("features",)

    def _setup_views(self, views: dict | None) -> None:
        try:
            view = ViewConfig.from_dict(views)
        except ModelFormatError as exc:
            raise ConfigError(f"biosiqnet: {exc}") from None
        self.grid_crops, self.grid_size = view.grid_crops, view.grid_size
        if self.grid_crops:
            if view.grid_size % TOP_STRIDE:
                raise ConfigError(
                    f"biosiqnet: views.grid_size={view.grid_size} must be a multiple of "
                    f"{TOP_STRIDE} (the decoders start from stride 32)"
                )
            self.inputs = ("image", "grid")
            self.preprocessing_version = VIEWS_VERSION
            self.view_config = view.to_dict()
        else:
            self.inputs = ("image",)

    def extra_output_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        return {"crop_scores": (self.grid_crops,)} if self.grid_crops else {}

    # ------------------------------------------------------------------ one view
    def _encode(self, blocks: tuple, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in blocks:
            x = run_block(block, x)
            feats.append(x)
        return feats

    def run_view(self, x: torch.Tensor, score: bool = True) -> dict[str, torch.Tensor]:
        """One batch of views [B, 3, H, W] -> maps, and with ``score`` the quality logit [B]
        and pooled features [B, C]."""
        out: dict[str, torch.Tensor] = {}
        injected: dict[int, list[tuple[nn.Module, torch.Tensor]]] = {}
        trunk = self._encode(self._blocks, x) if self.shared else None
        for name, decoder in self.decoders.items():
            block = self.low_block if name == "low" else self.high_block
            if self.shared:
                assert trunk is not None
                out[f"saliency_{name}"], steps = decoder(trunk[-1])
                feature = steps[BLOCK_STRIDES[block]]
            else:
                feats = self._encode(self._saliency_blocks[name], x)
                out[f"saliency_{name}"] = decoder(feats[-1])[0]
                feature = feats[block - 1]
            injected.setdefault(block, []).append((self.fusions[name], feature))
        if not score:
            return out
        if self.shared:
            assert trunk is not None
            # Blocks up to the first fusion are the trunk's: only the later ones run again.
            start = min(injected, default=len(BLOCKS))
            h = trunk[start - 1]
            for fusion, feature in injected.get(start, ()):
                h = fusion(feature, h)
        else:
            start, h = 0, x
        for index in range(start, len(BLOCKS)):
            h = run_block(self._blocks[index], h)
            for fusion, feature in injected.get(index + 1, ()):  # in order: Eq. 1, then Eq. 2
                h = fusion(feature, h)
        pooled = h.mean((2, 3))
        out["features"] = pooled
        out["logit"] = self.head.net(pooled).squeeze(1)
        return out

    # ------------------------------------------------------------------ contract
    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = inputs["image"]
        if self.grid_crops:
            grid = inputs["grid"]
            n, size = self.grid_crops, self.grid_size
            if not torch.jit.is_tracing() and tuple(grid.shape[1:]) != (n, 3, size, size):
                raise ValueError(
                    f"biosiqnet: grid must be [N, {n}, 3, {size}, {size}] (the spec's "
                    f"view_config), got {list(grid.shape)}"
                )
            crops = self.run_view(grid.reshape(-1, 3, size, size))
            crop_scores = torch.sigmoid(crops["logit"]).reshape(image.shape[0], n)
            result = {
                "score": crop_scores.mean(1),
                "crop_scores": crop_scores,
                "features": crops["features"].reshape(image.shape[0], n, -1).mean(1),
            }
            # The maps come from the whole frame: where people look is a property of the scene.
            whole = self.run_view(image, score=False)
        else:
            whole = self.run_view(image)
            result = {"score": torch.sigmoid(whole["logit"]), "features": whole["features"]}
        for name in ("high", "low"):
            if name in self.decoders:
                result[f"saliency_{name}"] = whole[f"saliency_{name}"]
        if self.high:
            result["saliency"] = result["saliency_high"]
        return result


@register_model
def biosiqnet(**cfg) -> BioSIQNet:
    return BioSIQNet(**cfg)


def grid_view_checkpoint(
    source: str | Path, target: str | Path, grid_crops: int, grid_size: int | None = None
) -> Path:
    """A copy of a BioSIQNet checkpoint that scores ``grid_crops`` native-scale grid crops of
    ``grid_size`` pixels (default: the model input's short side) and averages them, with the
    maps from the whole frame (preprocessing version 2). The weights are unchanged: the network
    is fully convolutional up to its global pooling, so a model trained on native crops scores
    native-scale grid crops as it was trained. ``grid_crops=0`` turns it back to the whole view.
    """
    from ..checkpoint import reconfigure_checkpoint

    def set_grid(model_config: dict, spec) -> dict:
        size = int(grid_size or min(spec.input_height, spec.input_width))
        model_config.pop("views", None)
        if grid_crops:
            model_config["views"] = {"grid_crops": int(grid_crops), "grid_size": size}
        return model_config

    return reconfigure_checkpoint(source, target, "biosiqnet", set_grid)
