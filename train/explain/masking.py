"""MoRF / LeRF masking curves (Kirillov et al. 2024, Sec. III-B, after Tomsett et al. 2019).

For one image and one explanation map (high = relevant):

1. the map is resized to the frame and Gaussian-blurred with a large kernel: the paper's
   ~101 px on KonIQ's 1024 x 768 photos, scaled with the frame, k = 2 round(50 L / 1024) + 1
   for a frame of long side L (189 px at 1920), sigma from the kernel by OpenCV's rule
   (0.3 ((k - 1)/2 - 1) + 0.8: 15.5 px at k = 101). The blur turns the blocky,
   zero-heavy maps of a 14 x 14 CAM into a ranking with few ties;
2. the pixels are ranked by the blurred map (remaining ties: by a 4x wider blur, then by
   position), so a fraction f masks exactly round(f H W) pixels: the map's top-f quantile for
   MoRF (most relevant first, keeping the trivial regions), its bottom-f for LeRF;
3. masked pixels are filled with black, or with the model's normalisation mean ("mean": what
   the network reads as zero; EfficientNet-Lite's mid grey, ImageNet's mean for ImageNet-
   normalised backbones, the paper's second fill);
4. the masked frame is scored; the curve is the score against f.

Random baseline: maps of uniform noise on a coarse grid (14 x 14 cells by default, the size of
the models' saliency and CAM grids), upsampled and blurred the same way, so that random
regions are blobs as large as an explanation's; the mean over draws.

Summary per map (trapezoidal areas over f in [0, 1], scores in [0, 1]): ``gap`` = area(LeRF)
- area(MoRF), > 0 when masking the most relevant regions lowers the score more than masking
the least relevant; ``morf_below_random`` = area(random) - area(MoRF) and
``lerf_above_random`` = area(LeRF) - area(random).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from saliq.errors import ConfigError

MODES = ("morf", "lerf")
FILLS = ("black", "mean")
DEFAULT_FRACTIONS = tuple(round(0.1 * i, 1) for i in range(11))  # 0, 0.1, ..., 1
PAPER_KERNEL = 101  # px, at the paper's resolution
PAPER_LONG_SIDE = 1024  # KonIQ-10k's 1024 x 768
TIE_BREAK_WIDTH = 4  # the second ranking key's kernel, in multiples of the first
RANDOM_GRID = (14, 14)

Scorer = Callable[[list[np.ndarray]], np.ndarray]  # RGB uint8 frames -> scores


def _cv2():
    import cv2

    return cv2


def blur_kernel_size(height: int, width: int) -> int:
    """The paper's ~101 px kernel scaled to a frame of this size (odd, at least 3)."""
    return max(3, 2 * round(PAPER_KERNEL // 2 * max(height, width) / PAPER_LONG_SIDE) + 1)


def smooth_map(explanation: np.ndarray, height: int, width: int) -> np.ndarray:
    """The map at the frame's size, blurred with the scaled kernel."""
    cv2 = _cv2()
    m = np.asarray(explanation, np.float32)
    if m.ndim != 2 or min(m.shape) < 1 or not np.all(np.isfinite(m)):
        raise ConfigError(f"an explanation map must be a finite 2-D array, got shape {m.shape}")
    if m.shape != (height, width):
        m = cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
    k = blur_kernel_size(height, width)
    return cv2.GaussianBlur(m, (k, k), 0, borderType=cv2.BORDER_REFLECT)


def _wide_blur(smoothed: np.ndarray) -> np.ndarray:
    """The tie-break key: the blurred map blurred ``TIE_BREAK_WIDTH`` times wider, computed
    at 1/8 of the size (a kernel of hundreds of pixels costs seconds at full size)."""
    cv2 = _cv2()
    height, width = smoothed.shape
    small_size = (max(1, width // 8), max(1, height // 8))
    small = cv2.resize(smoothed, small_size, interpolation=cv2.INTER_AREA)
    k = 2 * (TIE_BREAK_WIDTH * blur_kernel_size(height, width) // 16) + 1
    small = cv2.GaussianBlur(small, (k, k), 0, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def relevance_order(explanation: np.ndarray, height: int, width: int) -> np.ndarray:
    """Flat pixel indices of the frame, most relevant first (blurred map; ties as above)."""
    first = smooth_map(explanation, height, width)
    order = np.argsort(-first.ravel(), kind="stable")
    values = first.ravel()[order]
    same = values[1:] == values[:-1]
    if same.any():  # re-sort only the tied runs: they keep their block, in the second key
        tied = np.zeros(order.size, dtype=bool)
        tied[1:] |= same
        tied[:-1] |= same
        second = _wide_blur(first).ravel()
        sub = order[tied]
        # np.lexsort sorts by its last key first, ascending and stably (position: the rest).
        order[tied] = sub[np.lexsort((-second[sub], -first.ravel()[sub]))]
    return order


def masks_for(order: np.ndarray, fraction: float, mode: str, height: int, width: int):
    """Boolean [H, W] mask (True = masked) of ``fraction`` of the pixels for ``mode``."""
    if mode not in MODES:
        raise ConfigError(f"masking mode {mode!r} is unknown; use one of {', '.join(MODES)}")
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"masked fraction {fraction} must be in [0, 1]")
    count = int(round(fraction * order.size))
    chosen = order[:count] if mode == "morf" else order[order.size - count :]
    mask = np.zeros(order.size, dtype=bool)
    mask[chosen] = True
    return mask.reshape(height, width)


def fill_value(fill: str, mean: Sequence[float]) -> np.ndarray:
    """RGB uint8 colour a masked pixel gets."""
    if fill == "black":
        return np.zeros(3, np.uint8)
    if fill == "mean":
        return np.clip(np.round(np.asarray(mean, np.float64) * 255.0), 0, 255).astype(np.uint8)
    raise ConfigError(f"fill {fill!r} is unknown; use one of {', '.join(FILLS)}")


def apply_mask(rgb: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """A copy of ``rgb`` with the ``mask`` pixels set to ``colour``."""
    out = rgb.copy()
    np.copyto(out, colour, where=mask[..., None])
    return out


def masked_frame(
    rgb: np.ndarray, order: np.ndarray, fraction: float, mode: str, colour: np.ndarray
) -> np.ndarray:
    """``apply_mask(rgb, masks_for(order, ...), colour)`` without building the mask."""
    count = int(round(fraction * order.size))
    chosen = order[:count] if mode == "morf" else order[order.size - count :]
    out = rgb.copy()
    out.reshape(-1, rgb.shape[-1])[chosen] = colour
    return out


def random_map(height: int, width: int, rng: np.random.Generator, grid=RANDOM_GRID):
    """Uniform noise on a coarse grid, upsampled: random regions of an explanation's size."""
    cv2 = _cv2()
    cells = rng.random(grid).astype(np.float32)
    return cv2.resize(cells, (width, height), interpolation=cv2.INTER_LINEAR)


def curve_area(fractions: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoidal area under a curve over the masked fraction."""
    f, v = np.asarray(fractions, np.float64), np.asarray(values, np.float64)
    return float(np.sum((f[1:] - f[:-1]) * (v[1:] + v[:-1]) / 2.0))


def masking_curves(
    score: Scorer,
    rgb: np.ndarray,
    maps: Mapping[str, np.ndarray],
    fills: Sequence[str] = ("black",),
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    random_draws: int = 3,
    rng: np.random.Generator | None = None,
    chunk: int = 16,
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Scores of one RGB frame masked by each map, per fill:
    ``{fill: {map: {"morf": [...], "lerf": [...]}, "random": {"random": [...]}}}`` (the
    random curve: the mean of ``random_draws`` maps, the same maps for every fill).

    f = 0 and f = 1 (nothing or everything masked) are the same frame for every map and are
    scored once per fill. Frames are made and scored ``chunk`` at a time (1080p: 6 MB each).
    """
    fractions = [float(f) for f in fractions]
    rising = bool(fractions) and sorted(fractions) == fractions
    if not rising or not 0.0 <= fractions[0] <= fractions[-1] <= 1.0:
        raise ConfigError(f"fractions must rise within [0, 1], got {fractions}")
    if random_draws < 0:
        raise ConfigError(f"random_draws must be >= 0, got {random_draws}")
    colours = {fill: fill_value(fill, mean) for fill in fills}
    rng = rng if rng is not None else np.random.default_rng(0)
    height, width = rgb.shape[:2]
    orders = {name: relevance_order(m, height, width) for name, m in maps.items()}
    for draw in range(random_draws):
        orders[f"random/{draw}"] = relevance_order(random_map(height, width, rng), height, width)
    # The distinct frames to score (fill, order, mode, fraction) and which curve point reads
    # which of them.
    frames: list[tuple[str, str, str, float]] = []
    points: list[tuple[str, str, str, int, int]] = []  # (fill, curve, mode, f index, frame)
    for fill in fills:
        extremes: dict[float, int] = {}
        for name in orders:
            for mode in ("morf",) if name.startswith("random/") else MODES:
                for i, f in enumerate(fractions):
                    if f in (0.0, 1.0):
                        slot = extremes.setdefault(f, len(frames))
                        if slot == len(frames):
                            frames.append((fill, name, mode, f))
                    else:
                        slot = len(frames)
                        frames.append((fill, name, mode, f))
                    points.append((fill, name, mode, i, slot))
    scores = np.empty(len(frames))
    for start in range(0, len(frames), chunk):
        batch = [
            masked_frame(rgb, orders[name], f, mode, colours[fill])
            for fill, name, mode, f in frames[start : start + chunk]
        ]
        scores[start : start + len(batch)] = np.asarray(score(batch), np.float64)
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for fill, name, mode, i, slot in points:
        curve = out.setdefault(fill, {}).setdefault(name, {})
        curve.setdefault(mode, [0.0] * len(fractions))[i] = float(scores[slot])
    for curves in out.values():
        draws = [curves.pop(f"random/{d}")["morf"] for d in range(random_draws)]
        if draws:
            curves["random"] = {"random": np.mean(draws, axis=0).tolist()}
    return out


def summarise(curves: Mapping[str, Mapping[str, Sequence[float]]], fractions: Sequence[float]):
    """Areas per map and the three comparisons of the module docstring."""
    out: dict[str, dict[str, float]] = {}
    rand = curves.get("random", {}).get("random")
    rand_area = curve_area(fractions, rand) if rand is not None else None
    for name, modes in curves.items():
        if name == "random":
            continue
        morf, lerf = curve_area(fractions, modes["morf"]), curve_area(fractions, modes["lerf"])
        row = {"area_morf": morf, "area_lerf": lerf, "gap": lerf - morf}
        if rand_area is not None:
            row.update(
                area_random=rand_area,
                morf_below_random=rand_area - morf,
                lerf_above_random=lerf - rand_area,
            )
        out[name] = row
    return out
