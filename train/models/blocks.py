"""Small building blocks shared by the saliency-guided IQA heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al.): GAP -> FC -> ReLU -> FC -> sigmoid -> rescale."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * weights


class MultiLevelFuse(nn.Module):
    """Concatenate backbone stages resampled to the finest chosen stride, then 1x1 conv."""

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(sum(in_channels), out_channels, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        resampled = [feats[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]
        ]
        return self.proj(torch.cat(resampled, dim=1))


class ScoreMLP(nn.Module):
    """GAP features -> hidden layers (ReLU, dropout) -> one sigmoid score in [0, 1]."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x)).squeeze(1)


def freeze_batchnorm(module: nn.Module) -> None:
    """Keep ImageNet BN statistics: batches of 8-16 on a CPU are too small to re-estimate them."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
