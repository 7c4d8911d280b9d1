"""Loss functions. Each formula lives here once."""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-8


def sum_normalise(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    return (flat / (flat.sum(1, keepdim=True) + EPS)).view_as(maps)


def tv_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Total-variation distance between sum-normalised maps, 0.5 * sum |p - q|, batch mean."""
    diff = (sum_normalise(pred) - sum_normalise(target)).abs().flatten(1).sum(1)
    return 0.5 * diff.mean()


class SGDNetLoss(nn.Module):
    """L1 quality + alpha * TV saliency, weighted 1/(1+alpha) and alpha/(1+alpha) (SGDNet)."""

    def __init__(self, alpha: float = 0.25) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(
        self,
        score: torch.Tensor,
        saliency: torch.Tensor,
        target_score: torch.Tensor,
        target_saliency: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        quality = (score - target_score).abs().mean()
        if target_saliency.shape[-2:] != saliency.shape[-2:]:
            target_saliency = nn.functional.adaptive_avg_pool2d(
                target_saliency, saliency.shape[-2:]
            )
        sal = tv_distance(saliency, target_saliency)
        total = quality / (1 + self.alpha) + sal * self.alpha / (1 + self.alpha)
        return {"loss": total, "quality": quality.detach(), "saliency": sal.detach()}
