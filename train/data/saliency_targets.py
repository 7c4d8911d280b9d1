"""Saliency training targets: human fixations -> a smooth density map at the target size.

Fixations (x, y) are in the photo's own pixel coordinates (0-based pixel centres). The photo
is stretch-resized to the model input, so a fixation moves the same way: each axis scales by
out / src independently. The blur is sigma = sigma_fraction * max(out_h, out_w) (0.03 is
about one degree of visual angle, the usual choice), computed at a working grid of at least
WORK_LONG_SIDE pixels on the long side and area-resized down, so a tiny target (e.g. 7x7)
still gets a smooth map rather than a few isolated spikes. Every map sums to 1.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

WORK_LONG_SIDE = 64


def flip_fixations(fixations: np.ndarray, width: int) -> np.ndarray:
    """Mirror (x, y) fixations left-right in a photo ``width`` pixels wide."""
    out = np.array(fixations, np.float32, copy=True).reshape(-1, 2)
    out[:, 0] = (width - 1) - out[:, 0]
    return out


def _sum_normalise(density: np.ndarray) -> np.ndarray:
    total = float(density.sum(dtype=np.float64))
    if not math.isfinite(total) or total <= 0:
        return np.full(density.shape, 1.0 / density.size, np.float32)
    return (density / total).astype(np.float32)


def resize_map(density: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D map to ``out_hw`` (area when shrinking, bilinear otherwise)."""
    out_h, out_w = out_hw
    density = np.asarray(density, np.float32).squeeze()
    if density.shape == (out_h, out_w):
        return density.copy()
    shrinking = out_h * out_w < density.size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(density, (out_w, out_h), interpolation=interp)


def fixation_density(
    fixations: np.ndarray | None,
    src_hw: tuple[int, int],
    out_hw: tuple[int, int],
    sigma_fraction: float = 0.03,
    prior: np.ndarray | None = None,
    flip: bool = False,
) -> np.ndarray:
    """Sum-normalised float32 density at ``out_hw`` from [K, 2] (x, y) fixations.

    With no fixation inside the photo, falls back to ``prior`` (any 2-D map, resized) or,
    without one, to a uniform map. ``flip`` mirrors the fixations left-right first; a prior
    is taken as already matching the (flipped) frame.
    """
    src_h, src_w = src_hw
    out_h, out_w = out_hw
    pts = np.zeros((0, 2), np.float32) if fixations is None else np.asarray(fixations, np.float32)
    pts = pts.reshape(-1, 2)
    if flip:
        pts = flip_fixations(pts, src_w)
    inside = (pts[:, 0] > -0.5) & (pts[:, 0] < src_w - 0.5)
    inside &= (pts[:, 1] > -0.5) & (pts[:, 1] < src_h - 0.5)
    pts = pts[inside]
    if len(pts) == 0:
        if prior is None:
            return np.full((out_h, out_w), 1.0 / (out_h * out_w), np.float32)
        return _sum_normalise(np.maximum(resize_map(prior, out_hw), 0.0))

    # Integer multiple of the output so the final area resize is an exact block average.
    scale = max(1, math.ceil(WORK_LONG_SIDE / max(out_h, out_w)))
    work_h, work_w = out_h * scale, out_w * scale
    # Pixel-centre convention: continuous coordinate x + 0.5 scales by work / src.
    cols = np.clip(((pts[:, 0] + 0.5) * work_w / src_w).astype(np.int64), 0, work_w - 1)
    rows = np.clip(((pts[:, 1] + 0.5) * work_h / src_h).astype(np.int64), 0, work_h - 1)
    counts = np.zeros((work_h, work_w), np.float32)
    np.add.at(counts, (rows, cols), 1.0)
    sigma = sigma_fraction * max(work_h, work_w)
    ksize = 2 * math.ceil(3 * sigma) + 1
    # Constant (zero) border: attention near an edge should not be mirrored back inside.
    blurred = cv2.GaussianBlur(
        counts, (ksize, ksize), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT
    )
    if scale > 1:
        blurred = cv2.resize(blurred, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return _sum_normalise(blurred)
