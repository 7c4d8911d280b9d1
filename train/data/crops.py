"""Native-resolution crops for MOS photos (``data.crop: [h, w]``).

Training takes a random h x w window of the photo at its own pixels (mirrored left-right
with probability 0.5); validation and test take the centre window. The preprocessing then
resizes the window to the model input (an identity when the sizes are equal), so the model
sees camera-scale noise and blur instead of a whole photo shrunk to 224 px.

Photos smaller than the crop on an axis: the photo is first upscaled uniformly (aspect
kept) by the smallest factor that makes it at least h x w, with the SDK's resize (bilinear
where an axis grows), rounded to uint8; then the window is cut as usual. A 300 x 500 photo
with a 384 x 384 crop becomes 384 x 640 and a random 384 x 384 window of it is taken.

Rotation (``data.rotate_deg`` r > 0, training only): after the window and the flip, the frame
is rotated by an angle uniform in [-r, r] degrees about its centre, same size, bilinear, the
corners filled by reflection (BORDER_REFLECT_101: no black wedges a model could read as a
defect, and no zoom, so native pixel scale is kept). Annotations follow through
``rotate_points`` with the same matrix. r = 0 draws nothing: items are bit-identical to
builds without rotation.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from saliq.errors import ConfigError
from saliq.preprocess import resize_stretch

FLIP_PROB = 0.5
MAX_ROTATE_DEG = 180.0


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


def augment_photo(
    photo: np.ndarray,
    crop_hw: tuple[int, int] | None,
    rng: np.random.Generator | None,
    flip_prob: float = FLIP_PROB,
    rotate_deg: float = 0.0,
) -> tuple[np.ndarray, bool, float]:
    """``crop_photo`` plus rotation: (frame, flipped, angle in degrees; 0.0 unrotated).

    Draw order (y, x, flip, angle); the angle is drawn only when ``rng`` is given and
    ``rotate_deg`` > 0, so with rotation off the draws (and items) are those of crop_photo.
    Pass ``flipped`` and ``angle`` to the item builder (``flipped=``, ``rotation=``).
    """
    frame, flipped = crop_photo(photo, crop_hw, rng, flip_prob)
    angle = draw_rotation(rng, rotate_deg)
    return (rotate_frame(frame, angle) if angle else frame), flipped, angle


def check_rotation(rotate_deg: object) -> float:
    """``data.rotate_deg`` as a float in [0, 180]; ConfigError naming the fix otherwise."""
    if isinstance(rotate_deg, bool) or not isinstance(rotate_deg, int | float):
        raise ConfigError(f"data.rotate_deg must be a number of degrees, got {rotate_deg!r}")
    if not 0.0 <= float(rotate_deg) <= MAX_ROTATE_DEG:
        raise ConfigError(
            f"data.rotate_deg={rotate_deg} must be in [0, {MAX_ROTATE_DEG:g}] (the largest "
            "angle of the uniform [-r, r] draw; 0 turns rotation off)"
        )
    return float(rotate_deg)


def draw_rotation(rng: np.random.Generator | None, rotate_deg: float) -> float:
    """An angle uniform in [-rotate_deg, rotate_deg]; 0.0 WITHOUT drawing when rotation is off
    (``rng`` None or ``rotate_deg`` 0), so later draws of an item are unchanged."""
    if rng is None or not rotate_deg:
        return 0.0
    return float(rng.uniform(-rotate_deg, rotate_deg))


def rotation_matrix(hw: tuple[int, int], angle: float) -> np.ndarray:
    """The 2x3 affine of a rotation by ``angle`` degrees (counter-clockwise as displayed)
    about the centre of an ``hw`` frame, in pixel-centre coordinates (pixel i at i)."""
    height, width = hw
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    return cv2.getRotationMatrix2D(centre, float(angle), 1.0)


def rotate_frame(frame: np.ndarray, angle: float) -> np.ndarray:
    """``frame`` (HxW or HxWxC, any dtype cv2 warps) rotated by ``angle`` degrees about its
    centre, same size, bilinear, corners filled by reflection; uint8 stays uint8."""
    height, width = frame.shape[:2]
    rotated = cv2.warpAffine(
        np.ascontiguousarray(frame),
        rotation_matrix((height, width), angle),
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    if frame.ndim == 3 and rotated.ndim == 2:  # cv2 drops a single channel axis
        rotated = rotated[:, :, None]
    return rotated


def rotate_points(
    points: np.ndarray | None, hw: tuple[int, int], angle: float
) -> np.ndarray | None:
    """[K, 2] (x, y) pixel positions moved as ``rotate_frame`` moves their pixels (may land
    outside the frame: the density builder drops those)."""
    if points is None:
        return None
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    matrix = rotation_matrix(hw, angle).astype(np.float64)
    moved = pts.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return moved.astype(np.float32)


def to_frame_points(
    points: np.ndarray | None,
    src_hw: tuple[int, int],
    frame_hw: tuple[int, int],
    flipped: bool = False,
) -> np.ndarray | None:
    """[K, 2] (x, y) annotation positions in an ``src_hw`` image -> the pixel grid of a frame
    that is that image stretched to ``frame_hw`` (mirrored first when ``flipped``)."""
    if points is None:
        return None
    pts = np.array(points, np.float32, copy=True).reshape(-1, 2)
    (src_h, src_w), (out_h, out_w) = src_hw, frame_hw
    if flipped:
        pts[:, 0] = (src_w - 1) - pts[:, 0]
    # Pixel-centre convention (as data/saliency_targets.py): x + 0.5 scales by out / src.
    pts[:, 0] = (pts[:, 0] + 0.5) * (out_w / src_w) - 0.5
    pts[:, 1] = (pts[:, 1] + 0.5) * (out_h / src_h) - 0.5
    return pts
