"""Optimisers and learning-rate schedules from ``OptimConfig`` (the seeds' choices)."""

from __future__ import annotations

import math

import torch

from ..config import OptimConfig


def param_groups(model: torch.nn.Module, optim: OptimConfig) -> list[dict]:
    """Backbone parameters at ``lr * backbone_lr_scale``, the rest at ``lr``; frozen ones out."""
    backbone, head = [], []
    # A model with several pretrained encoders names them all (BioSIQNet's separate encoders).
    prefixes = tuple(getattr(model, "backbone_prefixes", ("backbone.",)))
    for name, param in model.named_parameters():
        if param.requires_grad:
            (backbone if name.startswith(prefixes) else head).append(param)
    groups = [
        {"params": backbone, "lr": optim.lr * optim.backbone_lr_scale},
        {"params": head, "lr": optim.lr},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: torch.nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, optim)
    if optim.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=optim.weight_decay)
    return torch.optim.AdamW(groups, weight_decay=optim.weight_decay)


def _step_factor(optim: OptimConfig, steps_per_epoch: int, total_steps: int):
    warmup = optim.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if optim.schedule == "cosine":
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if optim.schedule == "step":
            return optim.gamma ** ((step // steps_per_epoch) // optim.step_epochs)
        return 1.0

    return factor


class Schedule:
    """Per-step schedules (cosine, step, constant; all with linear warm-up) or, for
    ``plateau``, a per-epoch reduce-on-plateau on the validation metric (higher is better)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, optim: OptimConfig, steps_per_epoch: int
    ) -> None:
        self.kind = optim.schedule
        if self.kind == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=optim.gamma, patience=optim.plateau_patience
            )
        else:
            total = steps_per_epoch * optim.epochs
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, _step_factor(optim, steps_per_epoch, total)
            )

    def after_step(self) -> None:
        if self.kind != "plateau":
            self.scheduler.step()

    def after_epoch(self, metric: float) -> None:
        if self.kind == "plateau" and math.isfinite(metric):
            self.scheduler.step(metric)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)
