"""Losses built from configuration (``saliq.train.losses``).

``build_loss([{"name": "l1"}, {"name": "tv", "weight": 0.25}])`` gives a :class:`CompositeLoss`;
call it once per step with ``LossContext(model, inputs, outputs, batch)``. Terms and formulas:
docs/losses.md. The tensor formulas themselves are in :mod:`.functional`.
"""

from .composite import CompositeLoss, build_loss, build_term
from .context import LossContext, hflip
from .functional import (
    correlation,
    group_pairwise_hinge,
    kl_divergence,
    kld_cc_sim,
    match_size,
    relative_ranking,
    similarity,
    soft_cross_entropy,
    sum_normalise,
    tv_distance,
)
from .sgdnet import SGDNetLoss, sgdnet_loss_config
from .terms import TERMS, LossTerm
from .transla import BIM, bim_loss

TERMS[BIM.name] = BIM  # TranSLA's BIM term lives in its own file; registered here, explicitly

__all__ = [
    "BIM",
    "TERMS",
    "CompositeLoss",
    "LossContext",
    "LossTerm",
    "SGDNetLoss",
    "bim_loss",
    "build_loss",
    "build_term",
    "correlation",
    "hflip",
    "kl_divergence",
    "kld_cc_sim",
    "match_size",
    "relative_ranking",
    "group_pairwise_hinge",
    "sgdnet_loss_config",
    "similarity",
    "soft_cross_entropy",
    "sum_normalise",
    "tv_distance",
]
