"""SGDNet's loss (Yang et al., ACM MM 2019): the fixed form the trainer uses today, and its
configuration for :func:`build_loss`."""

from __future__ import annotations

import torch
from torch import nn

from ..config import sgdnet_loss_config  # noqa: F401  (the one definition; re-exported)
from .functional import tv_distance


class SGDNetLoss(nn.Module):
    """L1 quality + alpha * TV saliency, weighted 1/(1+alpha) and alpha/(1+alpha) (SGDNet).

    Kept for the current trainer; ``build_loss(sgdnet_loss_config(alpha))`` is the same loss.
    """

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
            hw = (int(saliency.shape[-2]), int(saliency.shape[-1]))
            target_saliency = nn.functional.adaptive_avg_pool2d(target_saliency, hw)
        sal = tv_distance(saliency, target_saliency)
        total = quality / (1 + self.alpha) + sal * self.alpha / (1 + self.alpha)
        return {"loss": total, "quality": quality.detach(), "saliency": sal.detach()}
