"""Camera-like distortions at a frame's NATIVE resolution, for the camera-resolution evaluation.

Deliberately independent of train/data/distortions.py (no imports from it): the evaluation
must not share code, and so bugs or blind spots, with what a model is trained on.

Frames are uint8 ``[H, W, 3]`` BGR (OpenCV order; only JPEG cares about the order). Every
parameter is in the frame's own pixels and 8-bit levels, never in model-input pixels, and
all six types have the five levels of :data:`CAMERA_DISTORTIONS` (level 0 = the pristine
frame). Randomness (noise fields, the motion-blur angle) comes from one seed per
(photo, type) (:func:`group_seed`), so the five levels of a group are one distortion at
rising strength: the same noise pattern scaled up, the same blur direction lengthened.

Low-light model (``low_light``, exposure e, gain g = 1/e): the frame comes out e times as
bright as the pristine one in linear light (sRGB decoded), from a sensor run at g times its
base gain, i.e. the camera raised the gain as far as it could and the frame is still dark.
A pixel of output linear value v collected v * FULL_WELL / g photo-electrons (FULL_WELL
electrons fill the 8-bit range at base gain), so its shot noise (Poisson, drawn here as a
Gaussian of the same variance) has variance v * FULL_WELL / g electrons^2; read noise adds
READ_NOISE electrons rms; the gain multiplies both back into output units:
``out = v + sqrt(v * g / FULL_WELL + (READ_NOISE * g / FULL_WELL)^2) * z``, z ~ N(0, 1) per
pixel and channel, then clipped to [0, 1], sRGB encoded and rounded to 8 bits.

A ``region`` mask confines any distortion: ``out = mask * distorted + (1 - mask) * frame``
(mask in [0, 1], feathered by the caller so that the edge itself is not a defect).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from saliq.errors import ConfigError, InvalidImageError

LEVELS = (1, 2, 3, 4, 5)
PRISTINE = 0

# Electrons at 8-bit full scale at base gain, and read noise in electrons rms: a small
# (~1.5 um) phone-camera pixel. Level 1 then adds about 3 and level 5 about 10 8-bit levels of
# noise on mid-grey, while mid-grey darkens to 78 % and 38 % of its 8-bit value.
LOW_LIGHT_FULL_WELL = 3000.0
LOW_LIGHT_READ_NOISE = 3.0

# The one table of parameters: per type, what the parameter is and its value at levels 1..5.
# Levels are roughly geometric between the end points the issue fixes.
CAMERA_DISTORTIONS: dict[str, dict] = {
    "gaussian_noise": {
        "parameter": "std, 8-bit levels (additive, per pixel and channel)",
        "levels": (3.0, 6.0, 10.0, 16.0, 25.0),
    },
    "gaussian_blur": {
        "parameter": "sigma, px (cv2.GaussianBlur, reflect-101 border)",
        "levels": (0.7, 1.0, 1.5, 2.2, 3.0),
    },
    "defocus_blur": {
        "parameter": "disk radius, px (anti-aliased disk kernel)",
        "levels": (1.0, 2.0, 3.0, 4.5, 6.0),
    },
    "motion_blur": {
        "parameter": "length, px (line kernel; angle uniform in [0, 180) deg per photo, seeded)",
        "levels": (3.0, 5.0, 8.0, 13.0, 21.0),
    },
    "jpeg": {
        "parameter": "quality (cv2.imencode, OpenCV defaults: 4:2:0 chroma)",
        "levels": (70, 50, 35, 20, 10),
    },
    "low_light": {
        "parameter": "exposure e (linear light x e; shot + read noise at gain 1/e)",
        "levels": (0.6, 0.42, 0.3, 0.21, 0.15),
    },
}
TYPES = tuple(CAMERA_DISTORTIONS)

_SUPERSAMPLE = 8  # sub-pixels per pixel side when rasterising the disk and line kernels


def parameter(kind: str, level: int) -> float:
    """The physical parameter of ``kind`` at ``level`` (1..5), from the table."""
    _check_kind_level(kind, level, allow_pristine=False)
    return float(CAMERA_DISTORTIONS[kind]["levels"][level - 1])


def group_seed(photo: str, kind: str) -> int:
    """The seed of one (photo, type) group: stable across runs, processes and platforms."""
    return zlib.crc32(f"{photo}|{kind}".encode())


def motion_angle(seed: int) -> float:
    """The motion-blur direction (degrees) of a group: fixed per seed, so all levels share it."""
    return float(np.random.default_rng([seed, 1]).uniform(0.0, 180.0))


def disk_kernel(radius: float) -> np.ndarray:
    """Normalised defocus (pillbox) kernel; edge pixels weighted by the area the disk covers."""
    if not radius > 0:
        raise ConfigError(f"disk radius must be > 0 px, got {radius}")
    half = math.ceil(radius - 0.5) if radius > 0.5 else 0
    size = 2 * half + 1
    s = _SUPERSAMPLE
    # Sub-pixel centres across the kernel, in pixels from its centre.
    c = (np.arange(size * s) + 0.5) / s - size / 2
    inside = (c[None, :] ** 2 + c[:, None] ** 2) <= radius**2
    kernel = inside.reshape(size, s, size, s).mean(axis=(1, 3))
    return (kernel / kernel.sum()).astype(np.float32)


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Normalised linear-motion kernel: a segment ``length`` px long through the centre.

    Rasterised on a supersampled grid and area-averaged, so a horizontal 3-px motion is
    exactly [1/3, 1/3, 1/3] and other angles are anti-aliased. Point-symmetric, so
    correlation (cv2.filter2D) equals convolution.
    """
    if not length >= 1:
        raise ConfigError(f"motion length must be >= 1 px, got {length}")
    half = math.ceil(length / 2)
    size = 2 * half + 1
    s = _SUPERSAMPLE
    theta = math.radians(angle_deg)
    # Points every 1/4 sub-pixel along the segment [-L/2, L/2] (symmetric about 0).
    n = max(2, math.ceil(length * s * 4))
    t = (np.arange(n) + 0.5) / n * length - length / 2
    x = (t * math.cos(theta) + size / 2) * s
    y = (-t * math.sin(theta) + size / 2) * s
    fine = np.zeros((size * s, size * s), np.float64)
    cols = np.clip(np.floor(x).astype(np.int64), 0, size * s - 1)
    rows = np.clip(np.floor(y).astype(np.int64), 0, size * s - 1)
    np.add.at(fine, (rows, cols), 1.0)
    kernel = fine.reshape(size, s, size, s).sum(axis=(1, 3))
    kernel = 0.5 * (kernel + kernel[::-1, ::-1])  # exact point symmetry despite floor()
    return (kernel / kernel.sum()).astype(np.float32)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decoding, x in [0, 1]."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding, x in [0, 1]."""
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def distort(
    frame: np.ndarray,
    kind: str,
    level: int,
    seed: int,
    region: np.ndarray | None = None,
) -> np.ndarray:
    """``frame`` (uint8 [H, W, 3] BGR) with ``kind`` at ``level`` (0 = a pristine copy).

    ``seed``: use :func:`group_seed` (photo, type) so all levels of a group share it.
    ``region``: optional [H, W] mask in [0, 1]; the distortion is applied only where it is
    positive, blended with the original by its value.
    """
    _check_frame(frame)
    _check_kind_level(kind, level, allow_pristine=True)
    mask = None if region is None else _check_region(region, frame.shape[:2])
    if level == PRISTINE:
        return frame.copy()
    value = parameter(kind, level)
    if kind == "jpeg":
        out = _jpeg(frame, int(value)).astype(np.float32)
    else:
        x = frame.astype(np.float32)
        if kind == "gaussian_noise":
            out = x + value * _normal(seed, frame.shape)
        elif kind == "gaussian_blur":
            out = _filter(x, None, value)
        elif kind == "defocus_blur":
            out = _filter(x, disk_kernel(value))
        elif kind == "motion_blur":
            out = _filter(x, motion_kernel(value, motion_angle(seed)))
        else:  # low_light
            out = _low_light(x, value, _normal(seed, frame.shape))
    if mask is not None:
        # The blend is done before rounding, so a mask of 0 returns the frame bit-exactly.
        m = mask[:, :, None]
        out = m * out + (1.0 - m) * frame.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    # One N(0, 1) field per group; levels scale it, so they differ in strength only.
    return np.random.default_rng([seed, 0]).standard_normal(shape, dtype=np.float32)


def _filter(x: np.ndarray, kernel: np.ndarray | None, sigma: float = 0.0) -> np.ndarray:
    import cv2

    if kernel is None:
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, data = cv2.imencode(
        ".jpg", np.ascontiguousarray(frame), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise InvalidImageError(f"OpenCV could not JPEG-encode a {frame.shape} frame")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def _low_light(x: np.ndarray, exposure: float, z: np.ndarray) -> np.ndarray:
    gain = 1.0 / exposure
    v = exposure * srgb_to_linear(x / 255.0)
    var = (
        v * (gain / LOW_LIGHT_FULL_WELL) + (LOW_LIGHT_READ_NOISE * gain / LOW_LIGHT_FULL_WELL) ** 2
    )
    lin = np.clip(v + np.sqrt(var) * z, 0.0, 1.0)
    return (linear_to_srgb(lin) * 255.0).astype(np.float32)


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise InvalidImageError(
            f"distort takes a uint8 [H, W, 3] BGR frame, got {getattr(frame, 'dtype', type(frame))}"
            "; load it with cv2.imread(path, cv2.IMREAD_COLOR)"
        )
    if frame.ndim != 3 or frame.shape[2] != 3 or min(frame.shape[:2]) < 8:
        raise InvalidImageError(
            f"distort takes a [H, W, 3] frame of at least 8x8 pixels, got shape {frame.shape}"
        )


def _check_kind_level(kind: str, level: int, allow_pristine: bool) -> None:
    if kind not in CAMERA_DISTORTIONS:
        raise ConfigError(f"unknown camera distortion {kind!r}; known: {', '.join(TYPES)}")
    lowest = PRISTINE if allow_pristine else LEVELS[0]
    if not isinstance(level, (int, np.integer)) or not lowest <= level <= LEVELS[-1]:
        raise ConfigError(f"level must be an integer in {lowest}..{LEVELS[-1]}, got {level!r}")


def _check_region(region: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(region, dtype=np.float32)
    if mask.shape != tuple(hw):
        raise ConfigError(f"region mask is {mask.shape} but the frame is {tuple(hw)}; match them")
    if not np.all(np.isfinite(mask)) or mask.min() < 0 or mask.max() > 1:
        raise ConfigError("region mask values must be finite and in [0, 1]")
    return mask
