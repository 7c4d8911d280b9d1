"""Synthetic camera distortions at five calibrated levels, applied to the working frame.

The working frame is the photo already stretch-resized to the model's input size (uint8
HxWx3 RGB), so every size below (blur radius, block size, ...) is in model-input pixels and
a level means the same thing whatever the photo's original resolution was.

Each type has one parameter table, ``<TYPE>_LEVELS``, indexed by ``level - 1``: level 1 is
mild but visible, level 5 is severe while the type stays recognisable. The tables were set
so that a level is roughly equally bad across types (benchmarks/distortion_calibration.py
prints PSNR/SSIM per type and level to check it). That calibration is what lets one label
serve every type:

    quality_label(level) = 1 - QUALITY_STEP_PER_LEVEL * level     (0.18 per level)

so level 0 (pristine) = 1.0, level 1 = 0.82, ... level 5 = 0.10. A fractional level (a
*severity* in [0, 5], ``apply_severity``) interpolates the parameter table between its
neighbouring levels, with each type's no-op parameter (``ZERO_PARAMETER``) at level 0, so
defects milder than level 1 (a camera's faint noise, a high-quality JPEG) are trained too;
its label is the same line, ``1 - 0.18 * severity``. Randomness (motion
angle, noise, cast direction, veil colour) comes only from the ``numpy.random.Generator``
passed in, so a (frame, type, level, generator state) always gives the same output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from saliq.spec import NO_DEFECT

MAX_LEVEL = 5
QUALITY_STEP_PER_LEVEL = 0.18

# sRGB-like transfer; exposure happens in linear light, where a sensor integrates photons.
DISPLAY_GAMMA = 2.2

# --- parameter tables, one entry per level 1..5 -------------------------------------------
DEFOCUS_RADIUS_PX = (1.0, 1.8, 2.8, 4.0, 5.5)  # disk (circle of confusion) radius
MOTION_LENGTH_PX = (4.0, 7.0, 11.0, 16.0, 23.0)  # blur streak length, angle uniform
GAUSSIAN_NOISE_SIGMA = (6.0, 11.0, 18.0, 28.0, 42.0)  # read-noise std, 0-255 units
SHOT_NOISE_PHOTONS = (300.0, 110.0, 45.0, 20.0, 10.0)  # photons collected at full white
IMPULSE_FRACTION = (0.005, 0.012, 0.025, 0.05, 0.09)  # share of sub-pixels stuck hot/dead
JPEG_QUALITY = (43, 27, 17, 11, 7)  # cv2.IMWRITE_JPEG_QUALITY
UNDEREXPOSURE_STOPS_GAMMA = ((0.5, 1.05), (1.0, 1.1), (1.5, 1.17), (2.1, 1.25), (2.8, 1.35))
OVEREXPOSURE_STOPS = (0.5, 1.0, 1.5, 2.1, 2.8)  # linear-light gain = 2**stops, then clip
HAZE_VEIL_FRACTION = (0.15, 0.28, 0.42, 0.56, 0.70)  # blend weight of the airlight veil
# Types that a grayscale frame cannot show: never trained as GRAY (the label would be noise).
COLOUR_TYPES = frozenset({"colour_cast"})
COLOUR_CAST_LOG2_GAIN = (0.15, 0.28, 0.42, 0.58, 0.78)  # amplitude of per-channel log2 gain
PIXELATE_FACTOR = (2.0, 3.0, 4.0, 6.0, 8.0)  # sensor/zoom downscale before nearest upscale

# The parameter at level 0: the type's no-op (or its faintest form); fractional severities
# interpolate between it and level 1. Shot noise interpolates 1 / photons (noise variance).
ZERO_PARAMETER: dict[str, Any] = {
    "defocus_blur": 0.0,
    "motion_blur": 1.0,
    "gaussian_noise": 0.0,
    "shot_noise": math.inf,
    "impulse_noise": 0.0,
    "jpeg": 95,
    "underexposure": (0.0, 1.0),
    "overexposure": 0.0,
    "haze": 0.0,
    "colour_cast": 0.0,
    "pixelate": 1.0,
}
RECIPROCAL_PARAMETERS = frozenset({"shot_noise"})

HAZE_VEIL_RANGE = (205.0, 245.0)  # airlight brightness; haze veils are bright, near-neutral
HAZE_VEIL_TINT = 6.0  # max per-channel deviation of the veil from neutral


def quality_label(level: float) -> float:
    """Training target in [0.1, 1]: 1 for pristine, 0.18 lower per level (or severity)."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be in 0..{MAX_LEVEL}, got {level}")
    return 1.0 - QUALITY_STEP_PER_LEVEL * level


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _to_linear(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) / 255.0) ** DISPLAY_GAMMA


def _from_linear(lin: np.ndarray) -> np.ndarray:
    return _to_uint8(255.0 * np.clip(lin, 0.0, 1.0) ** (1.0 / DISPLAY_GAMMA))


def _filter(rgb: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    out = cv2.filter2D(rgb.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)
    return _to_uint8(out)


def _disk_kernel(radius: float) -> np.ndarray:
    # Supersampled so non-integer radii give distinct, smoothly growing kernels.
    ss = 8
    half = math.ceil(radius)
    coords = (np.arange((2 * half + 1) * ss) + 0.5) / ss - (half + 0.5)
    inside = (coords[None, :] ** 2 + coords[:, None] ** 2) <= radius**2
    kernel = inside.reshape(2 * half + 1, ss, 2 * half + 1, ss).mean(axis=(1, 3))
    return (kernel / kernel.sum()).astype(np.float32)


def _line_kernel(length: float, angle_rad: float) -> np.ndarray:
    # Anti-aliased segment drawn on a supersampled canvas, then area-reduced.
    ss = 8
    half = math.ceil(length / 2)
    size = (2 * half + 1) * ss
    canvas = np.zeros((size, size), np.float32)
    centre = size / 2.0
    dx, dy = math.cos(angle_rad) * length * ss / 2, math.sin(angle_rad) * length * ss / 2
    shift = 4  # cv2.line fixed-point bits, for sub-pixel endpoints
    p0 = (round((centre - dx) * 2**shift), round((centre - dy) * 2**shift))
    p1 = (round((centre + dx) * 2**shift), round((centre + dy) * 2**shift))
    cv2.line(canvas, p0, p1, 1.0, thickness=ss, lineType=cv2.LINE_AA, shift=shift)
    kernel = cv2.resize(canvas, (2 * half + 1, 2 * half + 1), interpolation=cv2.INTER_AREA)
    return kernel / kernel.sum()


def defocus_blur(rgb: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    if radius <= 0:
        return rgb.copy()
    if radius < 1.0:
        # A pillbox under half a pixel stays inside the centre pixel (no blur at all): below
        # radius 1, blend from no blur to the radius-1 disk so the strength keeps growing.
        kernel = radius * _disk_kernel(1.0)
        kernel[1, 1] += 1.0 - radius
        return _filter(rgb, kernel)
    return _filter(rgb, _disk_kernel(radius))


def motion_blur(rgb: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    return _filter(rgb, _line_kernel(length, rng.uniform(0.0, math.pi)))


def gaussian_noise(rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0.0, sigma, size=rgb.shape)
    return _to_uint8(rgb.astype(np.float64) + noise)


def shot_noise(rgb: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    # Photon counts are Poisson in linear light, so dark areas get the largest relative noise.
    if math.isinf(photons):
        return rgb.copy()
    lin = _to_linear(rgb).astype(np.float64)
    return _from_linear(rng.poisson(lin * photons) / photons)


def impulse_noise(rgb: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    # Per sub-pixel: stuck photosites show up as coloured specks after demosaicing.
    out = rgb.copy()
    hit = rng.random(rgb.shape) < fraction
    out[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255).astype(np.uint8)
    return out


def jpeg(rgb: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    ok, data = cv2.imencode(
        ".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(round(quality))]
    )
    if not ok:
        raise RuntimeError("cv2.imencode failed to write JPEG")
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])


def underexposure(
    rgb: np.ndarray, stops_gamma: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    # Less light in linear space, then an extra gamma > 1 for the camera's tone-curve toe
    # that crushes what little shadow detail is left (uint8 rounding adds the banding).
    stops, gamma = stops_gamma
    encoded = _from_linear(_to_linear(rgb) * 2.0**-stops).astype(np.float32) / 255.0
    return _to_uint8(255.0 * encoded**gamma)


def overexposure(rgb: np.ndarray, stops: float, rng: np.random.Generator) -> np.ndarray:
    # Per-channel clipping is what a saturated sensor does; highlights lose hue too.
    return _from_linear(_to_linear(rgb) * 2.0**stops)


def haze(rgb: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    veil = rng.uniform(*HAZE_VEIL_RANGE) + rng.uniform(-HAZE_VEIL_TINT, HAZE_VEIL_TINT, 3)
    return _to_uint8(rgb.astype(np.float32) * (1.0 - fraction) + veil.astype(np.float32) * fraction)


def colour_cast(rgb: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    # A wrong white balance is a per-channel gain in linear light. The direction on the
    # chroma circle is random (amber/blue, green/magenta and between); the gains are
    # rebalanced so luminance is kept, leaving colour as the only damage.
    theta = rng.uniform(0.0, 2.0 * math.pi)
    log_gain = amplitude * np.cos(theta - np.array([0.0, 2.0, 4.0]) * math.pi / 3.0)
    luma = np.array([0.2126, 0.7152, 0.0722])
    gains = 2.0**log_gain
    gains /= float(luma @ gains)
    return _from_linear(_to_linear(rgb) * gains.astype(np.float32))


def pixelate(rgb: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    height, width = rgb.shape[:2]
    small_w, small_h = max(1, round(width / factor)), max(1, round(height / factor))
    small = cv2.resize(rgb, (small_w, small_h), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


@dataclass(frozen=True)
class Distortion:
    """One distortion type: its per-level parameters and the function that applies them."""

    name: str
    levels: tuple[Any, ...]  # parameter for level 1..MAX_LEVEL
    unit: str
    fn: Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]

    def __call__(self, rgb: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
        return apply_distortion(rgb, self.name, level, rng)


DISTORTIONS: dict[str, Distortion] = {
    d.name: d
    for d in (
        Distortion("defocus_blur", DEFOCUS_RADIUS_PX, "disk radius, px", defocus_blur),
        Distortion("motion_blur", MOTION_LENGTH_PX, "streak length, px", motion_blur),
        Distortion("gaussian_noise", GAUSSIAN_NOISE_SIGMA, "std, 0-255", gaussian_noise),
        Distortion("shot_noise", SHOT_NOISE_PHOTONS, "photons at white", shot_noise),
        Distortion("impulse_noise", IMPULSE_FRACTION, "sub-pixel fraction", impulse_noise),
        Distortion("jpeg", JPEG_QUALITY, "JPEG quality", jpeg),
        Distortion("underexposure", UNDEREXPOSURE_STOPS_GAMMA, "(EV, toe gamma)", underexposure),
        Distortion("overexposure", OVEREXPOSURE_STOPS, "EV", overexposure),
        Distortion("haze", HAZE_VEIL_FRACTION, "veil weight", haze),
        Distortion("colour_cast", COLOUR_CAST_LOG2_GAIN, "log2 gain amplitude", colour_cast),
        Distortion("pixelate", PIXELATE_FACTOR, "downscale factor", pixelate),
    )
}
# Stable class index for type heads and grouping: independent of which subset is trained.
TYPE_NAMES: tuple[str, ...] = tuple(sorted(DISTORTIONS))

# What a defect-type head reports: the defect a person would fix, not the simulation that made
# it ("none" = pristine). Every training type maps to one class.
DEFECT_OF_TYPE: dict[str, str] = {
    "defocus_blur": "blur",
    "motion_blur": "motion",
    "gaussian_noise": "noise",
    "shot_noise": "noise",
    "impulse_noise": "noise",
    "jpeg": "compression",
    "pixelate": "compression",
    "underexposure": "exposure",
    "overexposure": "exposure",
    "colour_cast": "colour_cast",
    "haze": "haze",
}
DEFECT_CLASSES: tuple[str, ...] = (NO_DEFECT, *dict.fromkeys(DEFECT_OF_TYPE.values()))


def apply_distortion(
    rgb: np.ndarray, name: str, level: int, rng: np.random.Generator
) -> np.ndarray:
    """Apply type ``name`` at ``level`` (0 = unchanged) to a uint8 HxWx3 RGB working frame."""
    if name not in DISTORTIONS:
        raise KeyError(f"unknown distortion {name!r}; known: {', '.join(TYPE_NAMES)}")
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be in 0..{MAX_LEVEL}, got {level}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB frame, got {rgb.dtype} {rgb.shape}")
    if level == 0:
        return rgb
    dist = DISTORTIONS[name]
    out = dist.fn(np.ascontiguousarray(rgb), dist.levels[level - 1], rng)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    return out


def parameter_at(name: str, severity: float) -> Any:
    """Type ``name``'s parameter at a fractional level in [0, MAX_LEVEL] (tables at integers)."""
    if name not in DISTORTIONS:
        raise KeyError(f"unknown distortion {name!r}; known: {', '.join(TYPE_NAMES)}")
    if not 0 <= severity <= MAX_LEVEL:
        raise ValueError(f"severity must be in [0, {MAX_LEVEL}], got {severity}")
    table = (ZERO_PARAMETER[name], *DISTORTIONS[name].levels)
    low = min(int(math.floor(severity)), MAX_LEVEL - 1)
    t = severity - low
    a, b = table[low], table[low + 1]
    if t == 0.0:
        return a
    if t == 1.0:
        return b

    def mix(x: float, y: float) -> float:
        if name in RECIPROCAL_PARAMETERS:
            inv = (1.0 - t) * (0.0 if math.isinf(x) else 1.0 / x) + t / y
            return math.inf if inv == 0 else 1.0 / inv
        return (1.0 - t) * x + t * y

    if isinstance(a, tuple):
        return tuple(mix(x, y) for x, y in zip(a, b, strict=True))
    return mix(a, b)


def apply_severity(
    rgb: np.ndarray, name: str, severity: float, rng: np.random.Generator
) -> np.ndarray:
    """Like apply_distortion at a fractional level: an integer severity gives the same frame."""
    if float(severity).is_integer():
        return apply_distortion(rgb, name, int(severity), rng)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB frame, got {rgb.dtype} {rgb.shape}")
    param = parameter_at(name, severity)
    out = DISTORTIONS[name].fn(np.ascontiguousarray(rgb), param, rng)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    return out
