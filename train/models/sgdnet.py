"""SGDNet (Yang et al., "SGDNet: an end-to-end saliency-guided deep neural network for NR-IQA").

backbone -> 1x1 conv to ``feature_dim`` (f_raw) -> 1x1 conv saliency head S (ReLU)
-> f_m = SE(f_raw) * S -> global average pool -> MLP 1024-1024-1 (dropout 0.5) -> score.
The "direct" variant takes the saliency map as an input (here the preprocessing prior)
instead of predicting it; ``use_saliency=False`` is Table 4's Baseline (no saliency head, no
weighting: a score-only model), with ``use_se`` its +CA row. Where we differ from the paper
(it used ResNet-50 at stride 32): f_raw fuses the stride-16 and stride-32 stages so that the
predicted saliency map has a usable resolution (14x14 at 224x224), and the score passes
through a sigmoid so it is in [0, 1] by construction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saliq.errors import ConfigError
from saliq.preprocess import PRIOR_STRIDE

from .backbones import build_backbone
from .blocks import MultiLevelFuse, ScoreMLP, SqueezeExcite
from .contract import IQAModel
from .registry import register_model

SALIENCY_BIAS_INIT = 1.0  # start the ReLU saliency head alive everywhere (uniform weighting)


class SGDNet(IQAModel):
    outputs = ("score", "saliency")
    aux_outputs = ("features",)  # the pooled saliency-weighted features (consistency losses)

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        pretrained: bool = False,
        backbone_weights: str | None = None,
        feature_strides: tuple[int, ...] = (16, 32),
        feature_dim: int = 512,
        hidden: tuple[int, ...] = (1024, 1024),
        dropout: float = 0.5,
        use_se: bool = True,
        direct_saliency: bool = False,
        use_saliency: bool = True,
        frozen_prefixes: tuple[str, ...] = (),
        freeze_bn: bool = True,
        drop_connect: bool = True,
    ) -> None:
        super().__init__()
        # Early, generic layers stay at their ImageNet weights (frozen_prefixes: a third faster
        # per CPU step) and BN keeps ImageNet statistics: CPU batches are too small for them.
        weights = backbone_weights or ("imagenet" if pretrained else None)
        self.backbone = build_backbone(
            backbone, weights=weights, frozen=tuple(frozen_prefixes), freeze_bn=freeze_bn
        )
        if not drop_connect:  # deterministic steps (e.g. comparing 1 and N processes)
            for module in self.backbone.modules():
                if hasattr(module, "drop_connect_rate"):
                    module.drop_connect_rate = 0.0
        strides = list(self.backbone.feature_strides)
        self.levels = [strides.index(s) for s in feature_strides]
        self.saliency_stride = min(feature_strides)
        channels = [self.backbone.feature_channels[i] for i in self.levels]
        self.fuse = MultiLevelFuse(channels, feature_dim)
        self.se = SqueezeExcite(feature_dim) if use_se else nn.Identity()
        if direct_saliency and not use_saliency:
            raise ConfigError(
                "sgdnet: direct_saliency=true multiplies by the prior, use_saliency=false by "
                "nothing; set one of them (Table 4: Direct rows or Baseline rows)"
            )
        self.direct_saliency = direct_saliency
        self.use_saliency = use_saliency
        # The direct variant reads the saliency map (the preprocessing prior) as an input.
        self.inputs = ("image", "prior") if direct_saliency else ("image",)
        if not use_saliency:
            # Table 4's Baseline and +CA rows: no saliency head, no weighting, score only.
            self.outputs = ("score",)
        elif not direct_saliency:
            self.saliency_head = nn.Conv2d(feature_dim, 1, 1)
            nn.init.constant_(self.saliency_head.bias, SALIENCY_BIAS_INIT)
        self.head = ScoreMLP(feature_dim, tuple(hidden), dropout)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats = self.backbone.forward_features(inputs["image"])
        f_raw = F.relu(self.fuse([feats[i] for i in self.levels]))
        if not self.use_saliency:
            pooled = self.se(f_raw).mean((2, 3))
            return {"score": self.head(pooled), "features": pooled}
        if self.direct_saliency:
            # The prior is at stride 4; a fixed kernel (not an adaptive pool to a traced
            # size) keeps the graph exportable with a dynamic batch.
            kernel = self.saliency_stride // PRIOR_STRIDE
            saliency = F.avg_pool2d(inputs["prior"], kernel) if kernel > 1 else inputs["prior"]
        else:
            saliency = F.relu(self.saliency_head(f_raw))
        pooled = (self.se(f_raw) * saliency).mean((2, 3))
        return {"score": self.head(pooled), "saliency": saliency, "features": pooled}


@register_model
def sgdnet(**cfg) -> SGDNet:
    return SGDNet(**cfg)
