"""SGDNet-Views: the whole-frame view for saliency and global defects, native-scale detail
crops for pixel-level ones, fused with the saliency prior's weights (preprocessing v2).

whole frame (224x224)  -> SGDNet -> saliency map, global quality q_g
K detail crops (P x P, camera pixels, placed on the prior; docs/preprocessing.md)
                       -> EfficientNet-Lite trunk to stride 16 -> 1x1 conv -> mean + std pool
                       -> MLP -> crop quality q_k (sigmoid)
fusion: w_k = crop saliency weights + a floor, normalised; Q_s = sum_k w_k q_k (where people
look), q_min = min_k q_k (a severe defect anywhere still costs), then
score = sigmoid(a_g logit q_g + a_s logit Q_s + a_m logit q_min + b), initialised to a_g = 1,
a_s = a_m = b = 0 so that the untrained fusion reproduces the whole-frame model exactly.
Region scores: (salient, background) = the crop qualities weighted by w_k and by 1 - w_k/max w.
The mean and standard deviation pools of the crop features are both kept because noise and
blur show in the spread of local responses more than in their mean.

Optional defect-type head (``defect_classes``): which defect most likely lowered the score,
as probabilities over the classes (the exported ``defect_probs`` output; the spec names the
classes). It reads the whole view's pooled features (exposure, colour, haze) and the mean and
the maximum over crops of the crop features (noise, blur, compression), and the per-channel
mean and spread and a soft luma histogram (CDF at 10 levels) of the whole view and of the
crops (exposure and colour casts are about levels, which pooled features normalise away),
standardised, through an MLP (128 hidden units, dropout 0.5). It is fitted after the
branches, with them frozen (saliq.train.fit_defects), so it changes no score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saliq.errors import ConfigError
from saliq.spec import DEFECT_PROBS
from saliq.views import VIEWS_VERSION, ViewConfig

from .backbones import backbone_config, build_backbone
from .contract import IQAModel
from .registry import register_model
from .sgdnet import SGDNet

WEIGHT_FLOOR = 0.05  # every crop keeps a share of the vote, however unsalient
LOGIT_EPS = 1e-4


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS)
    return torch.log(p) - torch.log1p(-p)


def _trunk_to_stride16(backbone: nn.Module) -> nn.Sequential:
    """The backbone's layers up to its stride-16 stage (crops are small: no stride 32)."""
    stages = getattr(backbone, "stages", None)
    if stages is None or not hasattr(backbone, "stem"):
        raise ConfigError("the crop trunk needs an EfficientNet-Lite backbone (stem + stages)")
    last = backbone.feature_stages[list(backbone.feature_strides).index(16)]
    return nn.Sequential(backbone.stem, *list(stages)[: last + 1])


DEFECT_HIDDEN = 128
COLOUR_STATS = 3  # per-channel statistics: exposure and colour casts are about levels
# Luma CDF at these levels of the [0, 1] pixel range (a soft count, exportable): under- and
# over-exposure move mass to the ends of the histogram.
LUMA_LEVELS = tuple(0.05 + 0.1 * k for k in range(10))
LUMA_SOFTNESS = 0.01
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # BT.601, as the gate's exposure rule


def _luma_cdf(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """[N, ..., 3, H, W] pixels normalised with per-channel ``mean``/``std`` (the backbone's)
    -> [N, len(LUMA_LEVELS)] share at or below each level of [0, 1] luma."""
    weights = pixels.new_tensor(LUMA_WEIGHTS)
    # luma of the un-normalised pixels, folded into one weighted sum plus a constant
    scale = (weights * std).view(3, 1, 1)
    luma = (pixels * scale).sum(-3).flatten(1) + (weights * mean).sum()
    levels = pixels.new_tensor(LUMA_LEVELS).view(1, -1, 1)
    return torch.sigmoid((levels - luma[:, None, :]) / LUMA_SOFTNESS).mean(2)


def _mean_std(flat: torch.Tensor) -> torch.Tensor:
    """[N, C, L] -> [N, 2C]: the mean and the standard deviation over L of each row."""
    mean = flat.mean(2)
    std = (flat - mean[..., None]).pow(2).mean(2).add(1e-6).sqrt()
    return torch.cat([mean, std], dim=1)


def _channel_stats(pixels: torch.Tensor) -> torch.Tensor:
    """[N, ..., 3, H, W] -> [N, 6]: per-channel mean and standard deviation over the rest."""
    per_channel = pixels.transpose(1, -3).flatten(2) if pixels.dim() == 5 else pixels.flatten(2)
    return _mean_std(per_channel)


class DefectHead(nn.Module):
    """Standardise (fitted shift/scale buffers), then an MLP with dropout; softmax over classes."""

    def __init__(
        self, in_features: int, classes: int, hidden: int = DEFECT_HIDDEN, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp((features - self.shift) / self.scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(features), dim=1)


class SGDNetViews(IQAModel):
    inputs = ("image", "crops", "crop_weights")
    outputs = ("score", "saliency", "region_scores")
    aux_outputs = ("crop_scores", "global_score", "features")

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        pretrained: bool = False,
        backbone_weights: str | None = None,
        feature_strides: tuple[int, ...] = (16, 32),
        frozen_prefixes: tuple[str, ...] = (),
        crop_frozen_prefixes: tuple[str, ...] = (),
        crop_dim: int = 128,
        crop_hidden: int = 64,
        freeze_whole_view: bool = False,
        drop_connect: bool = True,
        views: dict | None = None,
        defect_classes: tuple[str, ...] | list[str] = (),
        **sgdnet_kwargs,
    ) -> None:
        super().__init__()
        self.whole = SGDNet(
            backbone=backbone,
            pretrained=pretrained,
            backbone_weights=backbone_weights,
            feature_strides=feature_strides,
            frozen_prefixes=frozen_prefixes,
            drop_connect=drop_connect,
            **sgdnet_kwargs,
        )
        self.saliency_stride = self.whole.saliency_stride
        weights = backbone_weights or ("imagenet" if pretrained else None)
        crop_backbone = build_backbone(
            backbone, weights=weights, frozen=tuple(crop_frozen_prefixes), freeze_bn=True
        )
        self.crop_trunk = _trunk_to_stride16(crop_backbone)
        # The normalisation the inputs carry, undone by the defect head's luma histogram; not
        # saved (it is the backbone's configuration, in the spec as mean/std).
        config = backbone_config(backbone)
        for name, values in (("pixel_mean", config.mean), ("pixel_std", config.std)):
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32), persistent=False)
        self.preprocessing_version = VIEWS_VERSION
        self.view_config = ViewConfig.from_dict(views).to_dict()
        channels = crop_backbone.feature_channels[list(crop_backbone.feature_strides).index(16)]
        self.crop_proj = nn.Conv2d(channels, crop_dim, 1)
        self.crop_head = nn.Sequential(
            nn.Linear(2 * crop_dim, crop_hidden), nn.ReLU(inplace=True), nn.Linear(crop_hidden, 1)
        )
        self.fusion = nn.Linear(3, 1)
        with torch.no_grad():
            self.fusion.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
            self.fusion.bias.zero_()
        self.defect_classes = tuple(str(c) for c in defect_classes)
        if (
            len(set(self.defect_classes)) != len(self.defect_classes)
            or len(self.defect_classes) == 1
        ):
            raise ConfigError(
                f"sgdnet_views: defect_classes {list(self.defect_classes)} must be empty or at "
                "least two distinct names"
            )
        if self.defect_classes:
            whole_dim = self.whole.head.net[0].in_features  # the pooled features' width
            in_features = whole_dim + 4 * crop_dim + 4 * COLOUR_STATS + 2 * len(LUMA_LEVELS)
            self.defect_head = DefectHead(in_features, len(self.defect_classes))
            self.outputs = (*type(self).outputs, DEFECT_PROBS)
            self.aux_outputs = (*type(self).aux_outputs, "defect_features")
        self.freeze_whole_view = freeze_whole_view
        if freeze_whole_view:
            for param in self.whole.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> SGDNetViews:
        super().train(mode)
        for module in self.crop_trunk.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        if self.freeze_whole_view:
            self.whole.eval()  # a frozen branch has no dropout noise either
        return self

    def crop_features(self, crops: torch.Tensor) -> torch.Tensor:
        """[N, K, 3, P, P] crops -> [N, K, 2 * crop_dim] mean and std pools of the features."""
        n, k = crops.shape[:2]
        feats = F.relu(self.crop_proj(self.crop_trunk(crops.flatten(0, 1))))
        return _mean_std(feats.flatten(2)).view(n, k, -1)

    def crop_quality(self, crops: torch.Tensor) -> torch.Tensor:
        """[N, K, 3, P, P] crops -> [N, K] quality in [0, 1]."""
        pooled = self.crop_features(crops)
        return torch.sigmoid(self.crop_head(pooled)).squeeze(2)

    @staticmethod
    def evidence(
        global_score: torch.Tensor, crop_scores: torch.Tensor, crop_weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fusion's inputs [N, 3] (logits of q_g, Q_s, q_min) and the region scores [N, 2]."""
        raw = crop_weights.clamp(min=0.0)
        weights = (raw + WEIGHT_FLOOR) / (raw + WEIGHT_FLOOR).sum(1, keepdim=True)
        salient = (weights * crop_scores).sum(1)
        worst = crop_scores.min(1).values
        background_w = 1.0 - raw / raw.max(1, keepdim=True).values.clamp(min=1e-6)
        background_w = background_w + 1e-3
        background = (background_w * crop_scores).sum(1) / background_w.sum(1)
        evidence = torch.stack([_logit(global_score), _logit(salient), _logit(worst)], dim=1)
        return evidence, torch.stack([salient, background], dim=1)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        whole = self.whole({"image": inputs["image"]})
        pooled = self.crop_features(inputs["crops"])
        crop_scores = torch.sigmoid(self.crop_head(pooled)).squeeze(2)
        evidence, regions = self.evidence(whole["score"], crop_scores, inputs["crop_weights"])
        score = torch.sigmoid(self.fusion(evidence)).squeeze(1)
        out = {
            "score": score,
            "saliency": whole["saliency"],
            "region_scores": regions,
            "crop_scores": crop_scores,
            "global_score": whole["score"],
            "features": whole["features"],
        }
        if self.defect_classes:
            features = torch.cat(
                [
                    whole["features"],
                    pooled.mean(1),
                    pooled.amax(1),
                    _channel_stats(inputs["image"]),
                    _channel_stats(inputs["crops"]),
                    _luma_cdf(inputs["image"], self.pixel_mean, self.pixel_std),
                    _luma_cdf(inputs["crops"], self.pixel_mean, self.pixel_std),
                ],
                dim=1,
            )
            out["defect_features"] = features
            out[DEFECT_PROBS] = self.defect_head(features)
        return out

    def extra_output_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        shapes = {"region_scores": (2,)}
        if self.defect_classes:
            shapes[DEFECT_PROBS] = (len(self.defect_classes),)
        return shapes


@register_model
def sgdnet_views(**cfg) -> SGDNetViews:
    return SGDNetViews(**cfg)
