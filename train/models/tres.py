"""TReS (Golestaneh, Dadsetan and Kitani, "No-reference image quality assessment via transformers,
relative ranking, and self-consistency", WACV 2022), on saliq's model contract.

Per crop (each of the n native-scale ``grid`` crops of preprocessing version 2):

    backbone stages F1..F4 -> per stage: channel L2 normalisation F / max(||F||_2, eps)
         (computed on F / max|F|, the same value, so that FP16 engines cannot overflow)
      -> L2 pooling sqrt(g * (F . F)) with g the 3x3 Hann window (np.hanning(5)[1:-1],
         normalised, stride 1) -> dropout -> average-pooled onto F4's grid
      -> concatenated (sum of stage channels; optionally a 1x1 projection to ``d_model``)
      -> transformer encoder (2 layers, 16 heads, feed-forward 64, DETR sine positional
         encoding added to the queries and keys of every layer) -> mean over tokens -> FC
      -> fused (concatenated) with F4 mean-pooled -> FC -> sigmoid: the crop's quality.

The image's score is the mean of its crops' qualities (the paper averages 50 random 224 x 224
patches at test time). ``transformer: false`` drops the whole attention branch (Table 4's
"ResNet50" rows: F4 pooled -> FC), ``positional_encoding: false`` the sine encoding.

Auxiliary outputs for the losses (docs/losses.md): ``features`` [N, n * (C4 + d)], every crop's
pooled f_conv (F4) and f_atten (encoder output), the paper's Eq. 6 inputs; ``conv_map``
[N, n, C4, h, w] and ``attention_map`` [N, n, d, h, w], the unpooled maps the authors' code
compares. Exported: ``score`` and ``crop_scores`` [n] (where in the frame quality is low).
Choices where the paper is silent or its code differs: docs/models.md ("TReS").
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from saliq.errors import ConfigError, ModelFormatError
from saliq.views import VIEWS_VERSION, ViewConfig

from .backbones import build_backbone
from .contract import IQAModel
from .registry import register_model

# The authors' L2pooling: np.hanning(5)[1:-1] = (0.5, 1, 0.5), outer product, sum 1.
HANN_TAPS = np.hanning(5)[1:-1]
L2POOL_EPS = 1e-12  # inside the square root (the authors' value): finite gradient at 0
NORM_EPS = 1e-12  # F.normalize's floor on the channel norm
PE_TEMPERATURE = 10000.0  # DETR's sine encoding
DEFAULT_VIEWS = {"grid_crops": 4, "grid_size": 224}
LAST_STRIDE = 32


def hann_kernel() -> torch.Tensor:
    """The 3x3 blurring window g of Eq. 1, normalised to sum 1."""
    window = np.outer(HANN_TAPS, HANN_TAPS)
    return torch.tensor(window / window.sum(), dtype=torch.float32)


def channel_l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """F / max(||F||_2, eps) over channels (Sec. 3.1), computed on F / max_c |F|: the same
    result, but the sum of squares stays <= C. TensorRT builds ReduceL2 as a sum of squares
    (ReduceSumSquare + Sqrt), which 2048 ResNet channels of magnitude ~10 overflow in FP16."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp_min(NORM_EPS)
    return F.normalize(x / scale, p=2.0, dim=1, eps=NORM_EPS)


class L2Pool(nn.Module):
    """P(x) = sqrt(g * (x . x) + eps) per channel (depthwise), g the 3x3 Hann window, stride 1,
    zero padding 1 (the output keeps the input's grid)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        weight = hann_kernel()[None, None].repeat(channels, 1, 1, 1)
        # A constant of the definition, not a weight: kept out of checkpoints.
        self.register_buffer("weight", weight, persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blurred = F.conv2d(x * x, self.weight, padding=1, groups=self.channels)
        return torch.sqrt(blurred + L2POOL_EPS)


def sine_positional_encoding(dim: int, height: int, width: int) -> torch.Tensor:
    """DETR's normalised sine encoding of an h x w grid, as tokens [h*w, dim] (row-major).

    The first dim/2 channels encode the row, the last dim/2 the column; each half interleaves
    sin (even) and cos (odd) of position / T^(2 floor(i/2) / (dim/2)), positions 1..h scaled
    to (0, 2 pi].
    """
    half = dim // 2
    ys = torch.arange(1, height + 1, dtype=torch.float64) / (height + 1e-6) * 2 * math.pi
    xs = torch.arange(1, width + 1, dtype=torch.float64) / (width + 1e-6) * 2 * math.pi
    steps = torch.arange(half, dtype=torch.float64)
    freq = PE_TEMPERATURE ** (2 * torch.div(steps, 2, rounding_mode="floor") / half)

    def encode(pos: torch.Tensor) -> torch.Tensor:  # [P] -> [P, half]
        angles = pos[:, None] / freq
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(ys)[:, None, :].expand(height, width, half)
    pos_x = encode(xs)[None, :, :].expand(height, width, half)
    return torch.cat((pos_y, pos_x), dim=2).reshape(height * width, dim).float()


class SelfAttention(nn.Module):
    """Multi-head self-attention; the positional encoding is added to queries and keys only
    (DETR). Written out (not ``nn.MultiheadAttention``): torch's fused eval-mode fast path
    (``aten::_native_multi_head_attention``) has no ONNX export."""

    def __init__(self, dim: int, heads: int, tokens: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.tokens, self.dim = heads, tokens, dim
        self.head_dim = dim // heads
        self.qk = nn.Linear(dim, 2 * dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, d] -> [B, heads, L, d']
        return x.reshape(-1, self.tokens, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        q, k = self.qk(x if pos is None else x + pos).chunk(2, dim=-1)
        # Scale q before the product (as nn.MultiheadAttention): smaller logits in FP16.
        q = self._split(q) * self.head_dim**-0.5
        weights = torch.softmax(q @ self._split(k).transpose(-2, -1), dim=-1)
        mixed = self.dropout(weights) @ self._split(self.v(x))
        return self.out(mixed.transpose(1, 2).reshape(-1, self.tokens, self.dim))


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward W3 ReLU(W2 x + b2) + b3, each with a residual; LayerNorm
    before each sub-layer (``pre_norm``, the authors' code) or after it (the paper's text)."""

    def __init__(
        self, dim: int, heads: int, tokens: int, ff_dim: int, dropout: float, pre_norm: bool
    ) -> None:
        super().__init__()
        self.attention = SelfAttention(dim, heads, tokens, dropout)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim)
        )
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.drop1(self.attention(self.norm1(x), pos))
            return x + self.drop2(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop1(self.attention(x, pos)))
        return self.norm2(x + self.drop2(self.ff(x)))


class TransformerEncoder(nn.Module):
    """``layers`` encoder layers over [B, L, d] tokens; a final LayerNorm with pre-norm."""

    def __init__(
        self,
        dim: int,
        heads: int,
        tokens: int,
        layers: int,
        ff_dim: int,
        dropout: float,
        pre_norm: bool,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(dim, heads, tokens, ff_dim, dropout, pre_norm) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()
        for p in self.parameters():  # DETR's (and the authors') initialisation
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, pos)
        return self.norm(x)


class MultiScaleFeatures(nn.Module):
    """Sec. 3.1: each stage L2-normalised over channels, L2-pooled, dropped out, average-pooled
    onto the last stage's grid (kernel = stride ratio, as the authors' 8/4/2 pools), concatenated.
    """

    def __init__(self, channels: tuple[int, ...], strides: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.pools = nn.ModuleList(L2Pool(c) for c in channels)
        self.ratios = tuple(strides[-1] // s for s in strides)
        self.dropout = nn.Dropout(dropout)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for f, pool, ratio in zip(feats, self.pools, self.ratios):
            f = self.dropout(pool(channel_l2_normalise(f)))
            out.append(F.avg_pool2d(f, ratio) if ratio > 1 else f)
        return torch.cat(out, dim=1)


class TReS(IQAModel):
    inputs = ("image", "grid")
    outputs = ("score", "crop_scores")

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        pretrained: bool = False,
        backbone_weights: str | None = None,
        transformer: bool = True,
        positional_encoding: bool = True,
        d_model: int | None = None,
        nhead: int = 16,
        num_layers: int = 2,
        dim_feedforward: int = 64,
        transformer_dropout: float = 0.5,
        feature_dropout: float = 0.1,
        pre_norm: bool = True,
        frozen_prefixes: tuple[str, ...] = (),
        freeze_bn: bool = True,
        drop_connect: bool = True,
        views: dict | None = None,
    ) -> None:
        super().__init__()
        if positional_encoding and not transformer:
            raise ConfigError(
                "tres: positional_encoding needs the transformer; set transformer: true or "
                "positional_encoding: false"
            )
        dropouts = {"transformer_dropout": transformer_dropout, "feature_dropout": feature_dropout}
        for name, value in dropouts.items():
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"tres: {name}={value} must be in [0, 1)")
        try:
            view = ViewConfig.from_dict({**DEFAULT_VIEWS, **(views or {})})
        except ModelFormatError as exc:
            raise ConfigError(f"tres: {exc}") from None
        if view.grid_crops < 1:
            raise ConfigError("tres: scores the grid crops; set views.grid_crops >= 1 (<= 64)")
        if view.grid_size % LAST_STRIDE:
            raise ConfigError(
                f"tres: views.grid_size={view.grid_size} must be a multiple of {LAST_STRIDE} so "
                "that every stage pools exactly onto the last grid (224 in the paper)"
            )
        self.preprocessing_version = VIEWS_VERSION
        self.view_config = view.to_dict()
        self.grid_crops, self.grid_size = view.grid_crops, view.grid_size

        weights = backbone_weights or ("imagenet" if pretrained else None)
        self.backbone = build_backbone(
            backbone, weights=weights, frozen=tuple(frozen_prefixes), freeze_bn=freeze_bn
        )
        if not drop_connect:  # deterministic passes (e.g. comparing runs step for step)
            for module in self.backbone.modules():
                if hasattr(module, "drop_connect_rate"):
                    module.drop_connect_rate = 0.0
        channels = tuple(self.backbone.feature_channels)
        strides = tuple(self.backbone.feature_strides)
        last = channels[-1]
        side = view.grid_size // strides[-1]

        self.transformer = transformer
        self.aux_outputs = ("features", "conv_map")
        self.dim = 0  # the encoder width; 0 without the attention branch
        if transformer:
            concat = sum(channels)
            dim = concat if d_model is None else int(d_model)
            if dim < 1 or dim % nhead or (positional_encoding and dim % 2):
                source = "d_model" if d_model is not None else f"the stage channels {channels}"
                even = " and even (the sine encoding)" if positional_encoding else ""
                raise ConfigError(
                    f"tres: the encoder width {dim} (from {source}) must be a positive multiple "
                    f"of nhead={nhead}{even}; set model.kwargs.d_model to such a width (a 1x1 "
                    "projection is then added)"
                )
            self.multiscale = MultiScaleFeatures(channels, strides, feature_dropout)
            # Only when asked: the paper feeds the concatenated channels straight in.
            self.project = nn.Conv2d(concat, dim, 1) if d_model is not None else nn.Identity()
            self.encoder = TransformerEncoder(
                dim, nhead, side * side, num_layers, dim_feedforward, transformer_dropout, pre_norm
            )
            if positional_encoding:
                pos = sine_positional_encoding(dim, side, side)[None]
                self.register_buffer("pos", pos, persistent=False)  # a constant of the grid
            else:
                self.pos = None
            self.fc_attention = nn.Linear(dim, last)  # the authors' fc2 (3840 -> 2048)
            self.aux_outputs += ("attention_map",)
            self.dim = dim
        # the fusion FC: [f_atten -> C4, F4 pooled], or F4 pooled alone
        self.head = nn.Linear(2 * last if transformer else last, 1)

    def extra_output_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        return {"crop_scores": (self.grid_crops,)}

    def score_crops(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """[B, 3, P, P] crops -> their quality logits [B], pooled features and maps."""
        feats = self.backbone.forward_features(crops)
        conv_map = feats[-1]
        conv = conv_map.mean((2, 3))
        out = {"conv_map": conv_map}
        if self.transformer:
            fused = self.project(self.multiscale(feats))
            b, d, h, w = fused.shape
            tokens = fused.flatten(2).transpose(1, 2)
            attended = self.encoder(tokens, self.pos)
            out["attention_map"] = attended.transpose(1, 2).reshape(b, d, h, w)
            attention = attended.mean(1)
            out["features"] = torch.cat([conv, attention], dim=1)
            out["logit"] = self.head(torch.cat([self.fc_attention(attention), conv], dim=1))
        else:
            out["features"] = conv
            out["logit"] = self.head(conv)
        out["logit"] = out["logit"].squeeze(1)
        return out

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        grid = inputs["grid"]
        n, size = self.grid_crops, self.grid_size
        if not torch.jit.is_tracing() and tuple(grid.shape[1:]) != (n, 3, size, size):
            raise ValueError(
                f"tres: grid must be [N, {n}, 3, {size}, {size}] (the spec's view_config), "
                f"got {list(grid.shape)}"
            )
        # The whole-frame `image` is not scored (TReS judges native-scale crops). The contract
        # makes every model read it; taking the batch size from it keeps it a graph input (the
        # ONNX exporter drops an unused input, and the spec check then refuses the graph).
        batch = inputs["image"].shape[0]
        out = self.score_crops(grid.reshape(-1, 3, size, size))
        crop_scores = torch.sigmoid(out["logit"]).reshape(batch, n)
        result = {
            "score": crop_scores.mean(1),
            "crop_scores": crop_scores,
            # every crop's own features side by side: consistency compares crop with crop
            "features": out["features"].reshape(batch, -1),
            "conv_map": out["conv_map"].reshape(batch, n, *out["conv_map"].shape[1:]),
        }
        if self.transformer:
            maps = out["attention_map"]
            result["attention_map"] = maps.reshape(batch, n, *maps.shape[1:])
        return result


@register_model
def tres(**cfg) -> TReS:
    return TReS(**cfg)


def regrid_checkpoint(source: str | Path, target: str | Path, grid_crops: int) -> Path:
    """A copy of a TReS checkpoint that reads ``grid_crops`` crops per frame (same weights).

    The network scores each crop alone, so the crop count is a run-time choice: train on a few
    crops per item (CPU-cheap) and serve the paper's many (50), or the reverse on a device.
    """
    from ..checkpoint import reconfigure_checkpoint

    def regrid(model_config: dict, spec) -> dict:
        model_config["views"] = {**spec.view_config, "grid_crops": int(grid_crops)}
        return model_config

    return reconfigure_checkpoint(source, target, "tres", regrid)
