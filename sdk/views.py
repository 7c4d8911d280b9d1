"""Preprocessing version 2: crop views at native pixel scale (docs/preprocessing.md).

This is the Python reference of the definition; ``csrc/`` implements the same for the CPU
twin and the CUDA kernels, and the tests hold every implementation to the float64 oracle.
Version 2 = version 1's whole-frame view (unchanged) + detail crops placed on version 1's
saliency prior + an optional grid of crops, each cut from the source frame at the canonical
("native") scale and processed alone by version 1's formulas.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from .errors import ModelFormatError

VIEWS_VERSION = 2
CROP_INPUTS = ("crops", "crop_gradient", "crop_boxes", "crop_weights")
GRID_INPUTS = ("grid", "grid_boxes")
MAX_GRID_CROPS = 64


@dataclass(frozen=True)
class ViewConfig:
    """The crop views' parameters; serialised in the spec as ``view_config``."""

    detail_crops: int = 4  # K
    crop_size: int = 96  # P, output pixels per side
    salient_crops: int = 3  # K_s of K placed on prior peaks; the rest cover the background
    grid_crops: int = 0  # n
    grid_size: int = 224  # Pg
    canonical_long_side: int = 1920  # L_c: "native" = as a camera this size records it

    def __post_init__(self) -> None:
        ints = {f.name: getattr(self, f.name) for f in fields(self)}
        bad = [k for k, v in ints.items() if not isinstance(v, int) or isinstance(v, bool)]
        if bad:
            raise ModelFormatError(f"view_config {bad} must be integers")
        if not 1 <= self.detail_crops <= 64 or not 0 <= self.salient_crops <= self.detail_crops:
            raise ModelFormatError(
                f"view_config: need 1 <= detail_crops <= 64 and 0 <= salient_crops <= "
                f"detail_crops, got {self.detail_crops}, {self.salient_crops}"
            )
        if not 0 <= self.grid_crops <= MAX_GRID_CROPS:
            raise ModelFormatError(f"view_config: grid_crops must be in 0..{MAX_GRID_CROPS}")
        for name in ("crop_size", "grid_size"):
            if getattr(self, name) < 8 or getattr(self, name) % 8:
                raise ModelFormatError(f"view_config: {name} must be a multiple of 8, >= 8")
        if self.canonical_long_side < 64:
            raise ModelFormatError("view_config: canonical_long_side must be >= 64")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict | None) -> ViewConfig:
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ModelFormatError(f"view_config: unknown keys {unknown}; known {sorted(known)}")
        return cls(**raw)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-frame shapes of the crop outputs."""
        k, p, n, pg = self.detail_crops, self.crop_size, self.grid_crops, self.grid_size
        return {
            "crops": (k, 3, p, p),
            "crop_gradient": (k, 1, p, p),
            "crop_boxes": (k, 4),
            "crop_weights": (k,),
            "grid": (n, 3, pg, pg),
            "grid_boxes": (n, 4),
        }


def canonical_frame(frame: np.ndarray, long_side: int = 1920) -> np.ndarray:
    """A whole decoded frame at its canonical ("native") scale: area-reduced so that its long
    side is ``long_side`` (aspect kept); frames already that small are returned unchanged.

    The crops read source pixels directly (``window_side``); this is for code that needs the
    whole frame at that scale: native-resolution training data and the camera evaluation.
    """
    from .preprocess import _cv2

    height, width = frame.shape[:2]
    if max(height, width) <= long_side:
        return frame
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return _cv2().resize(frame, size, interpolation=_cv2().INTER_AREA)


def window_side(width: int, height: int, size: int, long_side: int) -> int:
    """Q: source pixels per side of a crop of ``size`` output pixels (native scale)."""
    scale = min(1.0, long_side / max(width, height))
    side = int(math.floor(size / scale + 0.5))
    return min(side, width, height)  # frames smaller than a crop: magnified to fit


def _clamp_origin(centre: float, side: int, limit: int) -> int:
    return int(min(max(math.floor(centre - side / 2.0 + 0.5), 0), limit - side))


def _cell_centres(prior_shape: tuple[int, int], width: int, height: int) -> np.ndarray:
    """[H'*W', 2] source (x, y) of every prior cell's centre, row-major."""
    rows, cols = prior_shape
    ys = (np.arange(rows) + 0.5) * height / rows
    xs = (np.arange(cols) + 0.5) * width / cols
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)


def place_detail_crops(
    prior: np.ndarray, width: int, height: int, config: ViewConfig
) -> tuple[np.ndarray, int, np.ndarray]:
    """Top-left corners [K, 2] (x0, y0), the side Q, and saliency weights [K] of the crops."""
    prior = np.asarray(prior, dtype=np.float64)
    side = window_side(width, height, config.crop_size, config.canonical_long_side)
    centres = _cell_centres(prior.shape, width, height)
    values = prior.ravel()
    origins = np.stack(
        [
            [_clamp_origin(x, side, width) for x in centres[:, 0]],
            [_clamp_origin(y, side, height) for y in centres[:, 1]],
        ],
        axis=1,
    )
    crop_centres = origins + side / 2.0
    available = np.ones(len(values), dtype=bool)
    chosen: list[int] = []

    def suppress(cell: int) -> None:
        x0, y0 = origins[cell]
        lo_x, hi_x = x0 - side / 2.0, x0 + 1.5 * side
        lo_y, hi_y = y0 - side / 2.0, y0 + 1.5 * side
        inside = (
            (centres[:, 0] >= lo_x)
            & (centres[:, 0] < hi_x)
            & (centres[:, 1] >= lo_y)
            & (centres[:, 1] < hi_y)
        )
        available[inside] = False

    for _ in range(config.salient_crops):
        if not available.any():
            break
        masked = np.where(available, values, -np.inf)
        best = int(np.argmax(masked))  # first maximum in row-major order
        if not masked[best] > 0:
            break  # no peak left: the rest is coverage
        chosen.append(best)
        suppress(best)
    while len(chosen) < config.detail_crops:
        pool = available if available.any() else np.ones(len(values), dtype=bool)
        if chosen:
            placed = crop_centres[chosen]
            dist = np.sqrt(((crop_centres[:, None, :] - placed[None, :, :]) ** 2).sum(-1))
            score = np.where(pool, dist.min(axis=1), -np.inf)
            best = int(np.argmax(score))
        else:
            middle = np.array([width / 2.0, height / 2.0])
            dist = np.sqrt(((crop_centres - middle) ** 2).sum(-1))
            best = int(np.argmin(np.where(pool, dist, np.inf)))
        chosen.append(best)
        suppress(best)

    windows = origins[chosen]
    weights = np.array(
        [_window_weight(prior, centres, x0, y0, side, width, height) for x0, y0 in windows]
    )
    return windows.astype(np.int64), side, weights.astype(np.float32)


def _window_weight(
    prior: np.ndarray, centres: np.ndarray, x0: int, y0: int, side: int, width: int, height: int
) -> float:
    """Mean prior of the cells centred inside the window; else the cell under its centre."""
    inside = (
        (centres[:, 0] >= x0)
        & (centres[:, 0] < x0 + side)
        & (centres[:, 1] >= y0)
        & (centres[:, 1] < y0 + side)
    )
    if inside.any():
        # Summed one value at a time in row-major order (cumsum; np.mean's pairwise order is
        # NumPy's internal choice), as csrc/views.h does: the float32 weights agree to the bit.
        values = prior.ravel()[inside]
        return float(np.cumsum(values)[-1] / len(values))
    rows, cols = prior.shape
    row = min(rows - 1, int((y0 + side / 2.0) * rows / height))
    col = min(cols - 1, int((x0 + side / 2.0) * cols / width))
    return float(prior[row, col])


def grid_windows(width: int, height: int, config: ViewConfig) -> tuple[np.ndarray, int]:
    """Top-left corners [n, 2] and side of the grid crops."""
    n = config.grid_crops
    side = window_side(width, height, config.grid_size, config.canonical_long_side)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64), side
    # At most n rows: a very tall frame would otherwise put all n windows in its top rows.
    rows = min(n, max(1, round(math.sqrt(n * height / width))))
    cols = math.ceil(n / rows)
    out = []
    for r in range(rows):
        for c in range(cols):
            if len(out) < n:
                cx, cy = (c + 0.5) * width / cols, (r + 0.5) * height / rows
                out.append((_clamp_origin(cx, side, width), _clamp_origin(cy, side, height)))
    while len(out) < n:  # rows * cols < n cannot happen, but keep the shape promise
        out.append(out[-1])
    return np.array(out, dtype=np.int64), side


def boxes(windows: np.ndarray, side: int, width: int, height: int) -> np.ndarray:
    """Normalised (x0, y0, x1, y1) of each window."""
    x0, y0 = windows[:, 0].astype(np.float64), windows[:, 1].astype(np.float64)
    out = np.stack([x0 / width, y0 / height, (x0 + side) / width, (y0 + side) / height], axis=1)
    return out.astype(np.float32).reshape(len(windows), 4)


def cut_crops(
    rgb: np.ndarray,
    windows: np.ndarray,
    side: int,
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Each window of the decoded RGB frame -> (normalised [K,3,P,P], gradient [K,1,P,P])."""
    from .preprocess import gradient_map, resize_stretch

    mean_a = np.asarray(mean, dtype=np.float32)[:, None, None]
    std_a = np.asarray(std, dtype=np.float32)[:, None, None]
    crops = np.empty((len(windows), 3, size, size), dtype=np.float32)
    grads = np.empty((len(windows), 1, size, size), dtype=np.float32)
    for i, (x0, y0) in enumerate(windows):
        window = rgb[y0 : y0 + side, x0 : x0 + side]
        resized = resize_stretch(window, size, size)
        crops[i] = (resized.transpose(2, 0, 1) / np.float32(255.0) - mean_a) / std_a
        grads[i, 0] = gradient_map(resized)
    return crops, grads
