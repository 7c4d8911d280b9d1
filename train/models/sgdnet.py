"""SGDNet (Yang et al., "SGDNet: an end-to-end saliency-guided deep neural network for NR-IQA").

backbone -> 1x1 conv to ``feature_dim`` (f_raw) -> 1x1 conv saliency head S (ReLU)
-> f_m = SE(f_raw) * S -> global average pool -> MLP 1024-1024-1 (dropout 0.5) -> score.
The "direct" variant takes the saliency map as an input (here the preprocessing prior)
instead of predicting it. Where we differ from the paper (it used ResNet-50 at stride 32):
f_raw fuses the stride-16 and stride-32 stages so that the predicted saliency map has a
usable resolution (14x14 at 224x224), and the score passes through a sigmoid so it is in
[0, 1] by construction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saliq.preprocess import PRIOR_STRIDE

from .blocks import MultiLevelFuse, ScoreMLP, SqueezeExcite, freeze_batchnorm
from .contract import IQAModel
from .registry import create_backbone, register_model

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
        frozen_prefixes: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        kwargs = {"weights_path": backbone_weights} if backbone_weights else {}
        if pretrained:
            kwargs["pretrained"] = True
        self.backbone = create_backbone(backbone, **kwargs)
        _drop_classifier(self.backbone)
        strides = list(self.backbone.feature_strides)
        self.levels = [strides.index(s) for s in feature_strides]
        self.saliency_stride = min(feature_strides)
        channels = [self.backbone.feature_channels[i] for i in self.levels]
        self.fuse = MultiLevelFuse(channels, feature_dim)
        self.se = SqueezeExcite(feature_dim) if use_se else nn.Identity()
        self.direct_saliency = direct_saliency
        # The direct variant reads the saliency map (the preprocessing prior) as an input.
        self.inputs = ("image", "prior") if direct_saliency else ("image",)
        if not direct_saliency:
            self.saliency_head = nn.Conv2d(feature_dim, 1, 1)
            nn.init.constant_(self.saliency_head.bias, SALIENCY_BIAS_INIT)
        self.head = ScoreMLP(feature_dim, tuple(hidden), dropout)
        freeze_batchnorm(self.backbone)
        # Early, generic layers stay at their ImageNet weights: a third faster per CPU step.
        for name, param in self.backbone.named_parameters():
            if name.startswith(tuple(frozen_prefixes)):
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> SGDNet:
        super().train(mode)
        freeze_batchnorm(self.backbone)
        return self

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats = self.backbone.forward_features(inputs["image"])
        f_raw = F.relu(self.fuse([feats[i] for i in self.levels]))
        if self.direct_saliency:
            # The prior is at stride 4; a fixed kernel (not an adaptive pool to a traced
            # size) keeps the graph exportable with a dynamic batch.
            kernel = self.saliency_stride // PRIOR_STRIDE
            saliency = F.avg_pool2d(inputs["prior"], kernel) if kernel > 1 else inputs["prior"]
        else:
            saliency = F.relu(self.saliency_head(f_raw))
        pooled = (self.se(f_raw) * saliency).mean((2, 3))
        return {"score": self.head(pooled), "saliency": saliency, "features": pooled}


def _drop_classifier(backbone: nn.Module) -> None:
    """SGDNet reads stage features only; the ImageNet head would be dead weight in the file."""
    for name in ("head", "classifier", "fc"):
        if isinstance(getattr(backbone, name, None), nn.Module):
            setattr(backbone, name, nn.Identity())


@register_model
def sgdnet(**cfg) -> SGDNet:
    return SGDNet(**cfg)
