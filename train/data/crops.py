"""Native-resolution crops for MOS photos (``data.crop: [h, w]``).

Training takes a random h x w window of the photo at its own pixels (mirrored left-right
with probability 0.5); validation and test take the centre window. The preprocessing then
resizes the window to the model input (an identity when the sizes are equal), so the model
sees camera-scale noise and blur instead of a whole photo shrunk to 224 px.

Photos smaller than the crop on an axis: the photo is first upscaled uniformly (aspect
kept) by the smallest factor that makes it at least h x w, with the SDK's resize (bilinear
where an axis grows), rounded to uint8; then the window is cut as usual. A 300 x 500 photo
with a 384 x 384 crop becomes 384 x 640 and a random 384 x 384 window of it is taken.
"""

from __future__ import annotations

import math

import numpy as np

from saliq.errors import ConfigError
from saliq.preprocess import resize_stretch

FLIP_PROB = 0.5


def check_crop(crop: object) -> tuple[int, int] | None:
    """``None`` or a validated (h, w) of positive ints, from a config value."""
    if crop is None:
        return None
    if (
        not isinstance(crop, list | tuple)
        or len(crop) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in crop)
    ):
        raise ConfigError(f"data.crop must be null or [height, width] in pixels, got {crop!r}")
    return int(crop[0]), int(crop[1])


def fit_to_crop(photo: np.ndarray, crop_hw: tuple[int, int]) -> np.ndarray:
    """``photo`` (uint8 HxWx3) unchanged if it holds the crop, else the smallest uniform upscale
    (aspect kept) that does."""
    height, width = photo.shape[:2]
    crop_h, crop_w = crop_hw
    scale = max(crop_h / height, crop_w / width)
    if scale <= 1.0:
        return photo
    # ceil, then max with the crop: float rounding must never leave an axis one pixel short.
    new_h = max(crop_h, math.ceil(height * scale - 1e-9))
    new_w = max(crop_w, math.ceil(width * scale - 1e-9))
    grown = resize_stretch(photo.astype(np.float32), new_h, new_w)
    return np.clip(np.rint(grown), 0, 255).astype(np.uint8)


def crop_window(
    photo_hw: tuple[int, int],
    crop_hw: tuple[int, int],
    rng: np.random.Generator | None,
) -> tuple[int, int]:
    """Top-left (y, x) of the window: uniform with ``rng``, the centre without."""
    (height, width), (crop_h, crop_w) = photo_hw, crop_hw
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop {crop_hw} larger than the photo {photo_hw}; fit_to_crop first")
    if rng is None:
        return (height - crop_h) // 2, (width - crop_w) // 2
    return int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))


def crop_photo(
    photo: np.ndarray,
    crop_hw: tuple[int, int] | None,
    rng: np.random.Generator | None,
    flip_prob: float = FLIP_PROB,
) -> tuple[np.ndarray, bool]:
    """The frame the preprocessing sees and whether it was mirrored.

    ``rng`` given (training): random window, mirrored with ``flip_prob``; ``rng`` None
    (validation/test): centre window, never mirrored. ``crop_hw`` None keeps the whole photo.
    Draw order is fixed (y, x, flip) so a seed always gives the same item.
    """
    if crop_hw is not None:
        photo = fit_to_crop(photo, crop_hw)
        y, x = crop_window(photo.shape[:2], crop_hw, rng)
        photo = photo[y : y + crop_hw[0], x : x + crop_hw[1]]
    flipped = rng is not None and bool(rng.random() < flip_prob)
    if flipped:
        photo = photo[:, ::-1]
    return np.ascontiguousarray(photo), flipped
