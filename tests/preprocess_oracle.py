"""Float64 NumPy oracle of preprocessing version 1 (DESIGN.md) and of version 2's crop pixels
(docs/preprocessing.md), written from the text alone.

It shares no code with saliq.preprocess on purpose: the two must agree independently.
"""

from __future__ import annotations

import math

import numpy as np


def axis_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] matrix: exact area averaging when shrinking, half-pixel bilinear otherwise."""
    w = np.zeros((n_out, n_in))
    if n_out < n_in:
        scale = n_in / n_out
        for j in range(n_out):
            lo, hi = j * scale, (j + 1) * scale
            for i in range(int(math.floor(lo)), min(n_in, int(math.ceil(hi)))):
                w[j, i] = (min(hi, i + 1) - max(lo, i)) / scale
    else:
        scale = n_in / n_out
        for j in range(n_out):
            src = min(max((j + 0.5) * scale - 0.5, 0.0), n_in - 1)
            i0 = int(math.floor(src))
            i1 = min(i0 + 1, n_in - 1)
            frac = src - i0
            w[j, i0] += 1 - frac
            w[j, i1] += frac
    return w


def resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    wy = axis_weights(rgb.shape[0], h)
    wx = axis_weights(rgb.shape[1], w)
    rows = np.tensordot(wy, rgb.astype(np.float64), axes=(1, 0))  # [h, W_in, 3]
    return np.tensordot(rows, wx, axes=(1, 1)).transpose(0, 2, 1)  # [h, w, 3]


def sobel_magnitude(rgb: np.ndarray) -> np.ndarray:
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    p = np.pad(y, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.sqrt(gx**2 + gy**2) / (1020 * math.sqrt(2))


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    r = math.ceil(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    p = np.pad(img, r, mode="edge")
    rows = sum(k[i] * p[:, i : i + img.shape[1]] for i in range(2 * r + 1))
    return sum(k[i] * rows[i : i + img.shape[0], :] for i in range(2 * r + 1))


def prior(gradient: np.ndarray) -> np.ndarray:
    h, w = gradient.shape
    pooled = gradient.reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3))
    blurred = gaussian_blur(pooled, 0.03 * max(h, w) / 4)
    hp, wp = pooled.shape
    xs = np.arange(wp) + 0.5
    ys = np.arange(hp) + 0.5
    centre = np.exp(
        -(((xs[None, :] - wp / 2) / (0.2 * wp)) ** 2) / 2
        - (((ys[:, None] - hp / 2) / (0.2 * hp)) ** 2) / 2
    )
    out = blurred * centre
    return out / out.max() if out.max() > 0 else out


def preprocess(rgb_uint: np.ndarray, h: int, w: int, mean, std) -> dict[str, np.ndarray]:
    """``rgb_uint``: HxWx3 RGB uint8 (or uint16) -> float64 outputs, unbatched."""
    rgb = rgb_uint.astype(np.float64)
    if rgb_uint.dtype == np.uint16:
        rgb = rgb / 257.0
    resized = resize(rgb, h, w)
    image = ((resized / 255.0 - np.array(mean)) / np.array(std)).transpose(2, 0, 1)
    grad = sobel_magnitude(resized)
    return {"image": image, "gradient": grad[None], "prior": prior(grad)[None]}


# YUV -> RGB, written from DESIGN.md step 1 (Kr, Kb of each matrix; studio swing for "limited").
_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def decode(frame: np.ndarray, fmt: str, matrix="bt601", yuv_range="limited") -> np.ndarray:
    """Step 1 in float64: a uint8/uint16 frame of any format -> HxWx3 RGB in [0, 255]."""
    x = frame.astype(np.float64)
    if frame.dtype == np.uint16:
        x = x / 257.0
    if fmt == "GRAY":
        x = x.reshape(x.shape[0], x.shape[1])
        return np.stack([x, x, x], axis=2)
    if fmt == "NV12":
        h = x.shape[0] * 2 // 3
        luma = x[:h]
        cb = np.kron(x[h:, 0::2], np.ones((2, 2))) - 128.0  # each chroma sample covers 2x2
        cr = np.kron(x[h:, 1::2], np.ones((2, 2))) - 128.0
        if yuv_range == "limited":
            luma = (luma - 16.0) * 255.0 / 219.0
            cb, cr = cb * 255.0 / 224.0, cr * 255.0 / 224.0
        kr, kb = _KR_KB[matrix]
        kg = 1.0 - kr - kb
        r = luma + 2.0 * (1.0 - kr) * cr
        g = luma - (2.0 * kb * (1.0 - kb) / kg) * cb - (2.0 * kr * (1.0 - kr) / kg) * cr
        b = luma + 2.0 * (1.0 - kb) * cb
        return np.clip(np.stack([r, g, b], axis=2), 0.0, 255.0)
    rgb = x[:, :, :3]
    return rgb[:, :, ::-1] if fmt.startswith("BGR") else rgb


def preprocess_frame(
    frame: np.ndarray, fmt: str, h: int, w: int, mean, std, matrix="bt601", yuv_range="limited"
) -> dict[str, np.ndarray]:
    """Any format (``decode``) -> float64 outputs, unbatched; the same steps as ``preprocess``."""
    resized = resize(decode(frame, fmt, matrix, yuv_range), h, w)
    image = ((resized / 255.0 - np.array(mean)) / np.array(std)).transpose(2, 0, 1)
    grad = sobel_magnitude(resized)
    return {"image": image, "gradient": grad[None], "prior": prior(grad)[None]}


# Version 2 (docs/preprocessing.md): crop views. The oracle covers a crop's pixels; where a
# crop goes is discrete and is tested against saliq.views on the same float32 prior.


def canonical_side(width: int, height: int, size: int, long_side: int) -> int:
    """Q from the text: s = min(1, L_c / long side); Q = round(P / s); at most the short side."""
    scale = min(1.0, long_side / max(width, height))
    return min(int(math.floor(size / scale + 0.5)), width, height)


def decode_window(
    frame: np.ndarray, fmt: str, x0: int, y0: int, side: int, matrix="bt601", yuv_range="limited"
) -> np.ndarray:
    """Step 1 for the side x side window at (x0, y0) only, float64 RGB.

    Packed formats: slice, then decode. NV12: cut the enclosing window of whole 2x2 chroma
    blocks (even origin, even size) out of both planes, decode it, then cut the window, so a
    window at an odd offset gets each pixel's chroma from its own block, as in the full frame.
    """
    if fmt != "NV12":
        return decode(frame[y0 : y0 + side, x0 : x0 + side], fmt, matrix, yuv_range)
    height = frame.shape[0] * 2 // 3
    ax0, ay0 = x0 - x0 % 2, y0 - y0 % 2
    ax1, ay1 = x0 + side + (x0 + side) % 2, y0 + side + (y0 + side) % 2
    luma = frame[ay0:ay1, ax0:ax1]
    chroma = frame[height + ay0 // 2 : height + ay1 // 2, ax0:ax1]  # (U, V) pairs stay whole
    rgb = decode(np.vstack([luma, chroma]), "NV12", matrix, yuv_range)
    return rgb[y0 - ay0 : y0 - ay0 + side, x0 - ax0 : x0 - ax0 + side]


def crop(
    frame: np.ndarray,
    fmt: str,
    window: tuple[int, int],
    side: int,
    size: int,
    mean,
    std,
    matrix="bt601",
    yuv_range="limited",
) -> dict[str, np.ndarray]:
    """One crop, float64: the window resized to size x size by version 1's resize (copy, area
    or bilinear), normalised as `image`, and the Sobel gradient of the crop alone."""
    x0, y0 = (int(v) for v in window)
    resized = resize(decode_window(frame, fmt, x0, y0, side, matrix, yuv_range), size, size)
    image = ((resized / 255.0 - np.array(mean)) / np.array(std)).transpose(2, 0, 1)
    return {"crops": image, "crop_gradient": sobel_magnitude(resized)[None]}


def crops(frame, fmt, windows, side, size, mean, std, **decode_kwargs) -> dict[str, np.ndarray]:
    """Every window's crop stacked: crops [K, 3, P, P], crop_gradient [K, 1, P, P]."""
    each = [crop(frame, fmt, w, side, size, mean, std, **decode_kwargs) for w in windows]
    return {key: np.stack([c[key] for c in each]) for key in ("crops", "crop_gradient")}


def boxes(windows, side: int, width: int, height: int) -> np.ndarray:
    """Normalised (x0/W0, y0/H0, (x0+Q)/W0, (y0+Q)/H0), float64."""
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    return np.stack(
        [w[:, 0] / width, w[:, 1] / height, (w[:, 0] + side) / width, (w[:, 1] + side) / height],
        axis=1,
    )
