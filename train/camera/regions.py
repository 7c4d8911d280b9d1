"""Salient and background regions of a frame from human fixations, as feathered masks.

The salient region is the ``fraction`` of pixels with the highest fixation density, the
background the ``fraction`` with the lowest. Far from every fixation the density is exactly
0 (a Gaussian blur has finite support), so ties are broken by distance to the frame centre
(further = less salient, as human viewing is centre-biased): the regions always hold
exactly ``fraction`` of the pixels. Each binary region is then feathered with a Gaussian of
``feather_px``, so that a distortion confined to it has no hard edge, which would itself be
a (sharp, salient) defect.
"""

from __future__ import annotations

import numpy as np

from saliq.errors import ConfigError

REGION_FRACTION = 0.30
FEATHER_SIGMA_PX = 4.0


def rank_pixels(density: np.ndarray) -> np.ndarray:
    """Flat pixel indices from least to most salient (density, then closeness to the centre)."""
    d = np.asarray(density, np.float64)
    if d.ndim != 2 or not np.all(np.isfinite(d)):
        raise ConfigError(f"density must be a finite 2-D map, got shape {d.shape}")
    h, w = d.shape
    yy, xx = np.mgrid[0:h, 0:w]
    closeness = -((yy + 0.5 - h / 2) ** 2 + (xx + 0.5 - w / 2) ** 2)
    return np.lexsort((closeness.ravel(), d.ravel()))  # last key is the primary one


def region_masks(
    density: np.ndarray,
    fraction: float = REGION_FRACTION,
    feather_px: float = FEATHER_SIGMA_PX,
) -> tuple[np.ndarray, np.ndarray]:
    """(salient, background) float32 [H, W] masks in [0, 1] from a fixation density map."""
    import cv2

    if not 0 < fraction <= 0.5:
        raise ConfigError(f"region fraction must be in (0, 0.5], got {fraction}")
    order = rank_pixels(density)
    h, w = np.shape(density)
    count = max(1, round(fraction * h * w))
    salient = np.zeros(h * w, np.float32)
    background = np.zeros(h * w, np.float32)
    salient[order[-count:]] = 1.0
    background[order[:count]] = 1.0
    masks = []
    for m in (salient.reshape(h, w), background.reshape(h, w)):
        if feather_px > 0:
            m = cv2.GaussianBlur(m, (0, 0), feather_px, borderType=cv2.BORDER_REPLICATE)
        masks.append(np.clip(m, 0.0, 1.0))
    return masks[0], masks[1]
