"""The one source of parity and benchmark frames: procedural photo-like scenes, NumPy + OpenCV.

Every check that compares two runtimes (``saliq export onnx`` against PyTorch, ``saliq
export trt`` against ONNX Runtime, the Triton tests, the benchmarks) scores these frames, so
they must exist wherever the runtime does: no sample-photo packages (scikit-image,
scikit-learn), no training code, nothing downloaded. OpenCV is imported only when a frame is
made, so importing this module needs NumPy alone.

A scene is drawn from a seed: sky/ground gradients under uneven light, textured ground,
buildings with window grids, discs with shading and rings, hills, text-like strokes, then
camera optics (a little blur, vignetting, sensor noise). Each scene has flat areas, fine
edges and high-frequency texture, so blur, noise and compression change what a quality
model sees, and its salient objects give saliency maps structure.

:func:`parity_frames` cycles distortion levels 0 (pristine) to 5 over the scenes, so a
comparison sees scores that spread over the whole range; frame ``i`` has level ``i % 6``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np

from .errors import BackendUnavailableError

DISTORTIONS = ("blur", "noise", "jpeg", "dark", "bright")
MAX_LEVEL = 5
LEVELS = MAX_LEVEL + 1  # level 0 is the pristine scene
SCENES = 8  # distinct scenes that parity_frames cycles through
MIN_SIZE = 16
REFERENCE_SIDE = 224  # blur radii and stroke widths are defined at this frame size

# Severity per level 1..5. Blur sigmas are in pixels of a 224-pixel frame (scaled with the
# frame); noise sigmas in 8-bit levels; JPEG qualities for cv2.imencode; exposure gains.
BLUR_SIGMA = (0.6, 1.2, 2.0, 3.2, 5.0)
NOISE_SIGMA = (5.0, 10.0, 18.0, 30.0, 48.0)
JPEG_QUALITY = (50, 30, 18, 10, 5)
DARK_GAIN = (0.75, 0.55, 0.4, 0.28, 0.18)
BRIGHT_GAIN = (1.3, 1.6, 2.0, 2.6, 3.4)


def _cv2():
    try:
        import cv2
    except ImportError:
        raise BackendUnavailableError(
            "OpenCV is needed to draw parity/benchmark frames: pip install 'saliq[cpu]' "
            "(or use your platform's OpenCV build)"
        ) from None
    return cv2


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), got {size!r}") from None
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(f"frame size {height}x{width} is below {MIN_SIZE}x{MIN_SIZE}")
    return height, width


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid, cubic-upsampled (uneven light)."""
    cv2 = _cv2()
    height, width = shape
    grid = rng.uniform(-1, 1, (cells, max(2, round(cells * width / height)))).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Band-limited fine texture (grass, gravel, fabric), zero mean, unit-ish amplitude."""
    cv2 = _cv2()
    noise = rng.standard_normal(shape).astype(np.float32)
    fine = cv2.GaussianBlur(noise, (0, 0), sigma)
    return fine / (float(fine.std()) + 1e-6)


def _colour(rng: np.random.Generator, low: int = 30, high: int = 230) -> tuple[float, ...]:
    return tuple(float(c) for c in rng.integers(low, high, 3))


def scene(index: int, size: Sequence[int] = (224, 224), seed: int = 0) -> np.ndarray:
    """One pristine procedural scene, uint8 HxWx3 RGB; the same (index, size, seed) gives the
    same pixels on every machine with the same NumPy and OpenCV."""
    cv2 = _cv2()
    height, width = _check_size(size)
    rng = np.random.default_rng([int(seed), int(index)])
    scale = min(height, width) / REFERENCE_SIDE
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]

    # Sky above a tilted horizon, ground below; each brightens towards the horizon.
    horizon = rng.uniform(0.3, 0.65)
    tilt = rng.uniform(-0.12, 0.12)
    xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    below = ys > horizon + tilt * xs
    sky_top, sky_low = np.array(_colour(rng, 60, 200)), np.array(_colour(rng, 150, 250))
    ground_far, ground_near = np.array(_colour(rng, 60, 200)), np.array(_colour(rng, 20, 140))
    t_sky = np.clip(ys / max(horizon, 1e-3), 0, 1)[..., None]
    t_ground = np.clip((ys - horizon) / max(1 - horizon, 1e-3), 0, 1)[..., None]
    sky = sky_top * (1 - t_sky) + sky_low * t_sky
    ground = ground_far * (1 - t_ground) + ground_near * t_ground
    img = np.where(below[..., None], ground, sky).astype(np.float32)  # a new H x W x 3 array
    grain = _texture(rng, (height, width), 1.5 * scale) * float(rng.uniform(6, 14))
    img += (below * grain)[..., None]

    thick = max(1, round(scale))
    # Hills on the horizon.
    for _ in range(int(rng.integers(1, 3))):
        cx, peak = rng.uniform(0, width), rng.uniform(0.08, 0.25) * height
        half = rng.uniform(0.15, 0.4) * width
        base = (horizon + tilt * (cx / width - 0.5)) * height
        pts = np.array([[cx - half, base + 2], [cx, base - peak], [cx + half, base + 2]])
        cv2.fillPoly(img, [pts.astype(np.int32)], _colour(rng, 40, 160), cv2.LINE_AA)

    # Buildings with window grids: long straight edges and regular fine detail.
    for _ in range(int(rng.integers(1, 4))):
        w = rng.uniform(0.08, 0.22) * width
        h = rng.uniform(0.2, 0.5) * height
        x0 = rng.uniform(0, width - w)
        y1 = min(height - 1.0, (horizon + rng.uniform(0.05, 0.3)) * height)
        y0 = max(0.0, y1 - h)
        wall = np.array(_colour(rng, 70, 220))
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + w), int(y1)), tuple(wall), -1)
        step = max(4.0, 9.0 * scale)
        window = tuple(float(c) for c in np.clip(wall * rng.uniform(0.3, 0.6), 0, 255))
        for wy in np.arange(y0 + step / 2, y1 - step, step):
            for wx in np.arange(x0 + step / 2, x0 + w - step / 2, step):
                cv2.rectangle(
                    img,
                    (int(wx), int(wy)),
                    (int(wx + step * 0.45), int(wy + step * 0.55)),
                    window,
                    -1,
                )

    # Shaded discs with rings: smooth gradients next to sharp curved edges.
    for _ in range(int(rng.integers(2, 5))):
        r = rng.uniform(0.05, 0.16) * min(height, width)
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        colour = np.array(_colour(rng, 40, 255))
        yy, xx = np.ogrid[:height, :width]
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / r
        shade = np.clip(1.15 - 0.5 * d, 0, 1.2)[..., None] * colour
        inside = (d <= 1.0)[..., None]
        img = np.where(inside, shade, img).astype(np.float32)
        if rng.random() < 0.5:
            for k in range(1, 4):
                cv2.circle(
                    img,
                    (int(cx), int(cy)),
                    int(r * k / 4),
                    _colour(rng, 0, 255),
                    thick,
                    cv2.LINE_AA,
                )

    # Text-like strokes: dense high-contrast edges, as on signs and labels.
    fonts = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX)
    letters = np.array(list(string.ascii_uppercase + string.digits))
    for _ in range(int(rng.integers(1, 4))):
        text = "".join(rng.choice(letters, int(rng.integers(3, 9))))
        font_scale = float(rng.uniform(0.35, 0.8) * scale)
        org = (int(rng.uniform(0, 0.6) * width), int(rng.uniform(0.15, 0.95) * height))
        # Text is drawn as an 8-bit coverage mask (putText draws on 8-bit images only) and
        # blended, which keeps its anti-aliased edges.
        mask = np.zeros((height, width), np.uint8)
        font = fonts[int(rng.integers(len(fonts)))]
        cv2.putText(mask, text, org, font, font_scale, 255, thick, cv2.LINE_AA)
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        img = img * (1.0 - alpha) + np.array(_colour(rng, 0, 255), np.float32) * alpha

    # Camera: uneven light, slight optical blur, vignetting, sensor noise.
    light = 1.0 + 0.18 * _smooth_field(rng, (height, width), 4)
    img *= light[..., None]
    img = cv2.GaussianBlur(img, (0, 0), 0.5 * max(scale, 1.0))
    vy = (ys - 0.5) ** 2
    vx = (np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]) ** 2
    img *= (1.0 - 0.35 * (vx + vy))[..., None]
    img += rng.normal(0.0, 1.5, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def distort(
    frame: np.ndarray, kind: str, level: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """``frame`` (uint8 HxWx3 RGB) with distortion ``kind`` at ``level`` 0 (none) to 5."""
    if kind not in DISTORTIONS:
        raise ValueError(f"unknown distortion {kind!r}; choose one of {', '.join(DISTORTIONS)}")
    if not 0 <= int(level) <= MAX_LEVEL:
        raise ValueError(f"distortion level {level} outside 0..{MAX_LEVEL}")
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames are uint8 HxWx3, got {frame.dtype} {frame.shape}")
    level = int(level)
    if level == 0:
        return frame.copy()
    cv2 = _cv2()
    rng = rng if rng is not None else np.random.default_rng(level)
    i = level - 1
    if kind == "blur":
        sigma = BLUR_SIGMA[i] * min(frame.shape[:2]) / REFERENCE_SIDE
        return cv2.GaussianBlur(frame, (0, 0), sigma)
    if kind == "noise":
        noisy = frame.astype(np.float32) + rng.normal(0.0, NOISE_SIGMA[i], frame.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if kind == "jpeg":
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY[i]])
        if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
            raise RuntimeError("OpenCV could not JPEG-encode the frame")
        return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
    gain = DARK_GAIN[i] if kind == "dark" else BRIGHT_GAIN[i]
    return np.clip(np.rint(frame.astype(np.float32) * gain), 0, 255).astype(np.uint8)


def parity_plan(count: int, seed: int = 0) -> list[tuple[int, str, int]]:
    """(scene index, distortion, level) of each frame :func:`parity_frames` makes.

    Level ``i % 6`` spreads severities evenly; the scene shifts with the level so that every
    level sees every scene; the distortion type is drawn from ``seed``.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    rng = np.random.default_rng([int(seed), 1])
    plan = []
    for i in range(count):
        level = i % LEVELS
        kind = DISTORTIONS[int(rng.integers(len(DISTORTIONS)))]
        plan.append(((i // LEVELS + level) % SCENES, kind, level))
    return plan


def parity_frames(
    count: int = 64, size: Sequence[int] = (224, 224), seed: int = 0
) -> list[np.ndarray]:
    """``count`` uint8 RGB frames of ``size`` at distortion levels 0-5 (see :func:`parity_plan`).

    Distortions are defined on the working frame, so pass the model's input size to get
    frames whose severity is what the model sees.
    """
    height, width = _check_size(size)
    plan = parity_plan(count, seed)
    scenes: dict[int, np.ndarray] = {}
    rng = np.random.default_rng([int(seed), 2])
    frames = []
    for index, kind, level in plan:
        if index not in scenes:
            scenes[index] = scene(index, (height, width), seed)
        frames.append(np.ascontiguousarray(distort(scenes[index], kind, level, rng)))
    return frames


def pristine_frames(
    count: int, size: Sequence[int] = (1080, 1920), seed: int = 0, order: str = "RGB"
) -> list[np.ndarray]:
    """``count`` different undistorted scenes (benchmark input); ``order`` "RGB" or "BGR"."""
    if order not in ("RGB", "BGR"):
        raise ValueError(f"order must be 'RGB' or 'BGR', got {order!r}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    frames = [scene(i, size, seed) for i in range(count)]
    if order == "BGR":
        frames = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]
    return frames


__all__ = [
    "DISTORTIONS",
    "LEVELS",
    "MAX_LEVEL",
    "distort",
    "parity_frames",
    "parity_plan",
    "pristine_frames",
    "scene",
]
