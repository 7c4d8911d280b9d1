"""The dual-task models of Kirillov, Moskalenko and Vatolin ("Bridging the gap between saliency
prediction and image quality assessment", 2024), on saliq's model contract.

    backbone -> last feature map A (the stride-32 stage; ``feature_dim``: + 1x1 conv + ReLU,
        standing in for EfficientNet-B0's 1280-channel head conv that saliq's backbones omit)
      -> global average pool -> MLP (Linear, ReLU, dropout) -> logit z -> sigmoid: score

and, by ``saliency`` (the paper's three rows of Table II):

* ``"none"``: score only (Baseline as a score-only model);
* ``"decoder"``: sigmoid(1x1 conv(A)) (Baseline-Sal-Loss: one layer added);
* ``"gradcam"``: ReLU(sum_k a_k A^k), a_k = mean_ij dz/dA^k_ij, detached (Baseline-GradCAM-Loss:
  nothing added; trained with a saliency loss it is GradCAM-Loss, with a quality loss only it
  is the Baseline's zero-shot GradCAM).

GradCAM is computed in closed form: for GAP + MLP, dz/dA^k_ij = g_k / (h w) with g = dz/dp the
gradient of the logit w.r.t. the pooled vector p, a product of the Linear weights and the
ReLU (and, in training, dropout) masks of this very pass. So the forward pass needs no
autograd, works under ``torch.no_grad()`` and exports to ONNX as a few MatMul/Mul nodes;
:func:`gradcam_autograd` is the literal definition, kept as the reference the tests hold the
closed form to. z is the logit before saliq's sigmoid (the paper's y is the regression
output): the sigmoid's slope s(1 - s) would only rescale each image's map, and shrink it
towards zero for confident scores. Choices where the paper is silent: docs/models.md
("Dual-task").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from saliq.errors import ConfigError

from .backbones import build_backbone
from .blocks import MultiLevelFuse, ScoreMLP
from .contract import IQAModel
from .registry import register_model

SALIENCY_MODES = ("none", "decoder", "gradcam")


def mlp_logit_and_gradient(
    net: nn.Sequential, pooled: torch.Tensor, with_gradient: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run a ScoreMLP's layers (Linear, ReLU, Dropout) on ``pooled`` [N, C]: the logit [N] and,
    with ``with_gradient``, dlogit/dpooled [N, C] (or [1, C] with no hidden layer), detached.

    The gradient is the vector-Jacobian product written out: the last Linear's weight row,
    times each ReLU's mask and each dropout's keep mask (the ones this pass drew), times each
    earlier Linear's weight. Dropout is applied as ``x * keep`` so that its mask is at hand.
    """
    steps: list[tuple[str, torch.Tensor]] = []  # in order: ("linear", W) and ("mask", m)
    h = pooled
    for layer in net:
        if isinstance(layer, nn.Linear):
            h = layer(h)
            steps.append(("linear", layer.weight))
        elif isinstance(layer, nn.ReLU):
            steps.append(("mask", (h > 0).to(h.dtype)))
            h = F.relu(h)
        elif isinstance(layer, nn.Dropout):
            if layer.training and layer.p > 0:
                keep = F.dropout(torch.ones_like(h), layer.p, training=True)
                steps.append(("mask", keep))
                h = h * keep
        else:  # a layer whose derivative this closed form does not know
            raise TypeError(f"mlp_logit_and_gradient: unsupported layer {type(layer).__name__}")
    logit = h.squeeze(1)
    if not with_gradient:
        return logit, None
    grad = steps[-1][1]  # the last Linear's weight [1, width]: dz/dh of the last activation
    for kind, value in reversed(steps[:-1]):
        # a mask multiplies per sample ([N, width]); a Linear maps back: [N, out] @ [out, in]
        grad = grad * value if kind == "mask" else grad @ value
    return logit, grad.detach()


class DualTask(IQAModel):
    """Backbone + GAP + MLP, with an optional saliency output (``saliency``: none, decoder,
    gradcam)."""

    aux_outputs = ("features",)  # the pooled features p (consistency losses, probes)

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        pretrained: bool = False,
        backbone_weights: str | None = None,
        saliency: str = "gradcam",
        feature_strides: Sequence[int] = (32,),
        feature_dim: int | None = 1280,
        hidden: Sequence[int] = (512,),
        dropout: float = 0.2,
        frozen_prefixes: Sequence[str] = (),
        freeze_bn: bool = True,
    ) -> None:
        super().__init__()
        if saliency not in SALIENCY_MODES:
            raise ConfigError(
                f"dualtask: saliency={saliency!r} is unknown; use one of "
                f"{', '.join(SALIENCY_MODES)} (Baseline, Sal-Loss, GradCAM-Loss)"
            )
        weights = backbone_weights or ("imagenet" if pretrained else None)
        self.backbone = build_backbone(
            backbone, weights=weights, frozen=tuple(frozen_prefixes), freeze_bn=freeze_bn
        )
        strides = list(self.backbone.feature_strides)
        unknown = [s for s in feature_strides if s not in strides]
        if not feature_strides or unknown:
            raise ConfigError(
                f"dualtask: feature_strides={list(feature_strides)} must be a non-empty subset "
                f"of the backbone's strides {strides}"
            )
        if feature_dim is None and len(feature_strides) > 1:
            raise ConfigError(
                f"dualtask: feature_strides={list(feature_strides)} fuses several stages, which "
                "needs feature_dim (the fused channels, e.g. 512); or use feature_strides: [32]"
            )
        if feature_dim is not None and feature_dim < 1:
            raise ConfigError(f"dualtask: feature_dim={feature_dim} must be >= 1 (or null)")
        self.levels = [strides.index(s) for s in sorted(feature_strides)]
        self.saliency_stride = min(feature_strides)
        channels = [self.backbone.feature_channels[i] for i in self.levels]
        # A 1x1 conv + ReLU (several stages: resampled to the finest, concatenated, projected);
        # None reads the last stage as it is (Lite's linear-bottleneck output).
        self.neck = MultiLevelFuse(channels, feature_dim) if feature_dim is not None else None
        width = feature_dim if feature_dim is not None else channels[0]
        self.saliency = saliency
        self.outputs = ("score",) if saliency == "none" else ("score", "saliency")
        if saliency == "decoder":
            self.decoder = nn.Conv2d(width, 1, 1)
        self.head = ScoreMLP(width, tuple(hidden), dropout)

    def feature_map(self, image: torch.Tensor) -> torch.Tensor:
        """A, the map the head pools and GradCAM weighs ([N, C, h, w])."""
        feats = self.backbone.forward_features(image)
        if self.neck is None:
            return feats[self.levels[0]]
        return F.relu(self.neck([feats[i] for i in self.levels]))

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        a_map = self.feature_map(inputs["image"])
        pooled = a_map.mean((2, 3))
        gradcam = self.saliency == "gradcam"
        logit, grad = mlp_logit_and_gradient(self.head.net, pooled, with_gradient=gradcam)
        out = {"score": torch.sigmoid(logit), "features": pooled}
        if self.saliency == "decoder":
            out["saliency"] = torch.sigmoid(self.decoder(a_map))
        elif gradcam:
            out["saliency"] = gradcam_map(a_map, grad)
        return out


def gradcam_map(a_map: torch.Tensor, pooled_grad: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_k a_k A^k) with a_k = pooled_grad_k / (h w): the gradient w.r.t. each cell of
    A^k is that of its mean divided by the number of cells, so its mean over cells is too."""
    h, w = a_map.shape[-2:]
    weights = pooled_grad / (h * w)
    return F.relu((a_map * weights[:, :, None, None]).sum(1, keepdim=True))


def gradcam_autograd(head: ScoreMLP, a_map: torch.Tensor) -> torch.Tensor:
    """The paper's definition by autograd: a_k = mean_ij dz/dA^k_ij of the logit z of
    GAP + ``head`` on ``a_map``, detached; the map keeps its graph through A."""
    with torch.enable_grad():
        probe = a_map.detach().requires_grad_(True)
        logit = head.net(probe.mean((2, 3))).squeeze(1)
        (grad,) = torch.autograd.grad(logit.sum(), probe)
    weights = grad.mean((2, 3))
    return F.relu((a_map * weights[:, :, None, None]).sum(1, keepdim=True))


@register_model
def dualtask(**cfg) -> DualTask:
    return DualTask(**cfg)
