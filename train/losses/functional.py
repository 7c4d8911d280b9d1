"""The loss formulas as plain tensor functions: each formula lives here once.

Every function is differentiable (almost everywhere: ``abs``, ``max`` and ``min`` have kinks) and
returns a scalar averaged over the batch. Saliency functions take ``[N, C, H, W]`` maps of the same
shape (resize first with :func:`match_size`) and compare each map as a whole; the saliency
*similarities* (CC, SIM) are returned as similarities, the loss terms turn them into quantities to
minimise (``1 - CC``, ``1 - SIM``). The NumPy definitions they reproduce are in
``saliq.train.metrics``; tests/test_losses.py checks each against them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..metrics import KLD_EPS

# Added to a map's sum before dividing: keeps an all-zero map at zero instead of nan.
EPS = 1e-8
# Scale-relative regulariser of the CC / SIM denominators: a constant map (undefined CC/SIM)
# gives a similarity of 0 with a bounded gradient, and any non-constant map is off by ~1e-8.
REL_EPS = 1e-8
TINY = 1e-30  # the all-zero map's floor under REL_EPS


def sum_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each map (everything after the batch axis) divided by its sum, so it sums to 1."""
    flat = maps.flatten(1)
    return (flat / (flat.sum(1, keepdim=True) + EPS)).view_as(maps)


def match_size(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``target`` resized to ``like``'s spatial size: area pooling down, bilinear up.

    Targets are densities, usually finer than the prediction grid; area pooling keeps their
    mass where it was. A coarser target is interpolated bilinearly (half-pixel centres).
    """
    if target.dim() != 4 or like.dim() != 4:
        raise ValueError(
            f"saliency maps must be [N, C, H, W]; got target {tuple(target.shape)} and "
            f"prediction {tuple(like.shape)}"
        )
    hw = (int(like.shape[-2]), int(like.shape[-1]))
    if tuple(target.shape[-2:]) == hw:
        return target
    if target.shape[-2] >= hw[0] and target.shape[-1] >= hw[1]:
        return F.adaptive_avg_pool2d(target, hw)
    return F.interpolate(target, size=hw, mode="bilinear", align_corners=False)


def tv_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Total-variation distance between sum-normalised maps, 0.5 * sum |p - q|, batch mean."""
    diff = (sum_normalise(pred) - sum_normalise(target)).abs().flatten(1).sum(1)
    return 0.5 * diff.mean()


def kl_divergence(pred: torch.Tensor, target: torch.Tensor, eps: float = KLD_EPS) -> torch.Tensor:
    """KL(target || pred) of the sum-normalised maps, MIT form, batch mean (``metrics.kld``).

    ``sum q * log(eps + q / (p + eps))``; both maps must be non-negative.
    """
    p = sum_normalise(pred).flatten(1)
    q = sum_normalise(target).flatten(1)
    return (q * torch.log(eps + q / (p + eps))).sum(1).mean()


def _flat(maps: torch.Tensor) -> torch.Tensor:
    return maps.flatten(1)


def correlation(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pearson CC between each predicted and target map, batch mean (``metrics.cc``).

    A constant map has no defined CC; here it counts 0 (``metrics.cc`` says nan).
    """
    x, y = _flat(pred), _flat(target)
    xc = x - x.mean(1, keepdim=True)
    yc = y - y.mean(1, keepdim=True)

    def _std(v: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        # Relative to the map's own scale, so the result does not depend on the map's units.
        return torch.sqrt(v.pow(2).mean(1) + REL_EPS * raw.pow(2).mean(1) + TINY)

    return ((xc * yc).mean(1) / (_std(xc, x) * _std(yc, y))).mean()


def _unit_distribution(maps: torch.Tensor) -> torch.Tensor:
    # MIT's SIM: min-max normalise to [0, 1], then divide by the sum.
    x = _flat(maps)
    lo = x.amin(1, keepdim=True)
    hi = x.amax(1, keepdim=True)
    scale = x.abs().amax(1, keepdim=True)
    unit = (x - lo) / (hi - lo + REL_EPS * scale + TINY)
    return unit / (unit.sum(1, keepdim=True) + TINY)


def similarity(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SIM (histogram intersection of min-max + sum normalised maps), batch mean (``metrics.sim``).

    In [0, 1]; a constant map counts 0 (``metrics.sim`` says nan).
    """
    return torch.minimum(_unit_distribution(pred), _unit_distribution(target)).sum(1).mean()


def kld_cc_sim(
    pred: torch.Tensor,
    target: torch.Tensor,
    kld: float = 5.0,
    cc: float = -1.0,
    sim: float = -1.0,
    eps: float = KLD_EPS,
) -> torch.Tensor:
    """BioSIQNet's saliency loss ``kld * KLD + cc * CC + sim * SIM`` (default 5, -1, -1)."""
    total = kld * kl_divergence(pred, target, eps)
    return total + cc * correlation(pred, target) + sim * similarity(pred, target)


def soft_cross_entropy(logits: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Cross-entropy ``-sum_k q_k log softmax(z)_k`` against a target distribution, batch mean."""
    return -(dist * torch.log_softmax(logits, dim=1)).sum(1).mean()


def ranking_indices(labels: torch.Tensor) -> tuple[int, int, int, int]:
    """Batch positions of the (highest, second-highest, lowest, second-lowest) label.

    A stable sort, so tied labels are taken in batch order (deterministic).
    """
    order = torch.argsort(labels.detach().flatten(), stable=True).tolist()
    return order[-1], order[-2], order[0], order[1]


LABEL_TIE = 1e-6  # labels closer than this are one level: no ordering to learn


def relative_ranking(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """TReS relative-ranking loss (Golestaneh et al., WACV 2022, Eq. 5) for one batch.

    With q the predictions and s the labels of the samples with the highest (max), second-highest
    (max'), lowest (min) and second-lowest (min') label, d(x, y) = |x - y|:

        max(0, d(q_max, q_max') - d(q_max, q_min) + m1)
      + max(0, d(q_min', q_min) - d(q_max, q_min) + m2),   m1 = s_max' - s_min, m2 = s_max - s_min'

    The margins come from the labels (no gradient). With perfect predictions (q = s) both hinges
    are exactly 0, ties included. Needs at least 4 samples; fewer give 0 (connected to the graph).
    """
    q, s = pred.flatten(), labels.detach().flatten().to(pred.dtype)
    if q.numel() != s.numel():
        raise ValueError(f"ranking: {q.numel()} predictions but {s.numel()} labels")
    if q.numel() < 4:
        return q.sum() * 0.0
    hi, hi2, lo, lo2 = ranking_indices(s)
    m1 = s[hi2] - s[lo]
    m2 = s[hi] - s[lo2]
    spread = (q[hi] - q[lo]).abs()
    top = torch.relu((q[hi] - q[hi2]).abs() - spread + m1)
    bottom = torch.relu((q[lo2] - q[lo]).abs() - spread + m2)
    return top + bottom


def group_pairwise_hinge(
    pred: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """Mean over ordered pairs of one group (same content) with different labels of

        max(0, margin * (s_i - s_j) - (q_i - q_j)),   s_i > s_j

    so a frame must outscore a worse frame of the same content by ``margin`` times their
    label gap: the within-content ordering a severity ranking (within-group SRCC) measures,
    which a per-frame regression only implies. Without such pairs: 0, connected to the graph.
    """
    q, s = pred.flatten(), labels.detach().flatten().to(pred.dtype)
    g = groups.flatten().to(q.device)
    if not q.numel() == s.numel() == g.numel():
        raise ValueError(
            f"group ranking: {q.numel()} predictions, {s.numel()} labels, {g.numel()} groups"
        )
    gap = s[:, None] - s[None, :]
    pairs = (g[:, None] == g[None, :]) & (gap > LABEL_TIE)
    if not bool(pairs.any()):
        return q.sum() * 0.0
    hinge = torch.relu(margin * gap - (q[:, None] - q[None, :]))
    return hinge[pairs].mean()
