"""TranSLA's Boosting Interaction Module loss (the paper's Eqs. 8-9) as the loss term ``bim``.

The model returns ``layer_logits`` [N, L, K]: the K-bin logits of every encoder layer's class
token, the last layer's being the score's own (``score_logits``, trained by ``cross_entropy``).
With C^i = softmax of layer i's logits and q the target distribution (``score_dist``):

    L_bim = mean over the batch of  sum_{i=1}^{L-1} W(C^i) * CE(C^i, q),   CE = -sum_k q_k log C^i_k

``weighting`` chooses W:

* ``kl`` (default): W(C^i) = KL(C^i || C^{i+1}) = sum_k C^i_k (log C^i_k - log C^{i+1}_k). The
  paper's text calls the weight a Kullback-Leibler divergence and wants it small where
  consecutive class tokens agree ("the closer the distributions, the less information"); this is
  its Eq. 8 with the second factor's index read as i (a KL), and it is never negative.
* ``eq8``: Eq. 8 as printed, W(C^i) = sum_k (C^i_k log C^i_k - C^{i+1}_k log C^{i+1}_k), the
  difference of the two layers' negative entropies. It is negative whenever the deeper layer is
  the more confident one, and a negative weight *raises* that layer's cross-entropy: kept to
  reproduce the formula, not recommended.

Eq. 9 sums i = 1..N, but W(C^N) would need a layer N+1: the last layer is the model's prediction
and is trained by the ``cross_entropy`` term, so the sum stops at L-1. ``detach_weights`` (default
true) treats W as a weight, as the paper calls it: without it the gradient of W * CE would also
pull consecutive layers together (or apart), shrinking the weight instead of the error.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from saliq.errors import ConfigError

from .terms import LossTerm

WEIGHTINGS = ("kl", "eq8")


def bim_loss(
    layer_logits: torch.Tensor,
    dist: torch.Tensor,
    weighting: str = "kl",
    detach_weights: bool = True,
) -> torch.Tensor:
    """The BIM loss of ``layer_logits`` [N, L, K] against target distributions ``dist`` [N, K]."""
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"bim: weighting={weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    log_p = torch.log_softmax(layer_logits, dim=-1)
    p = log_p.exp()
    if weighting == "kl":
        weights = (p[:, :-1] * (log_p[:, :-1] - log_p[:, 1:])).sum(-1)  # [N, L-1]
    else:
        neg_entropy = (p * log_p).sum(-1)  # [N, L]: sum_k C_k log C_k
        weights = neg_entropy[:, :-1] - neg_entropy[:, 1:]
    if detach_weights:
        weights = weights.detach()
    cross_entropy = -(dist.unsqueeze(1) * log_p[:, :-1]).sum(-1)  # [N, L-1]
    return (weights * cross_entropy).sum(1).mean()


class BIM(LossTerm):
    """TranSLA's boosting interaction loss over the per-layer class-token logits."""

    name = "bim"
    kind = "quality"
    default_on = "layer_logits"
    default_target = "score_dist"
    options: ClassVar[dict] = {"weighting": "kl", "detach_weights": True}

    def _validate(self) -> None:
        if self.opts["weighting"] not in WEIGHTINGS:
            raise ConfigError(
                f"loss term {self.name!r}: weighting={self.opts['weighting']!r}; choose one of "
                f"{', '.join(WEIGHTINGS)}"
            )

    def compute(self, pred: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        where = f"loss term {self.label!r}"
        if pred.dim() != 3 or pred.shape[1] < 2:
            raise ConfigError(
                f"{where}: {self.on!r} must be [N, layers >= 2, bins] logits, got "
                f"{list(pred.shape)}; build the model with bim: true and num_layers >= 2"
            )
        if target.shape != (pred.shape[0], pred.shape[2]):
            raise ConfigError(
                f"{where}: target {self.target!r} is {list(target.shape)} but {self.on!r} is "
                f"{list(pred.shape)}; it must be [N, bins]"
            )
        return bim_loss(
            pred, target.to(pred.dtype), self.opts["weighting"], self.opts["detach_weights"]
        )
