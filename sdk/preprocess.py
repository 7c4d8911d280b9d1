"""Preprocessing version 1, the one definition shared by training and inference.

DESIGN.md gives the text. Two implementations: the native extension ``saliq._preproc``
(csrc/: the CPU twin of the CUDA kernels), used whenever it is built, and the Python
(NumPy + OpenCV) implementation below, which served before the native code landed and now
is the reference it is tested against (``Preprocessor(..., implementation="python")``).

Steps: decode to RGB float [0, 255] -> separable stretch resize (area
where an axis shrinks, half-pixel bilinear where it grows) -> ``image`` normalised NCHW,
``gradient`` (Sobel magnitude of luma, fixed scale) and ``prior`` (pooled, blurred,
centre-weighted gradient at 1/4 resolution).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidImageError

PREPROCESSING_VERSION = 1  # the default; version 2 adds crop views (sdk/views.py)
SUPPORTED_PREPROCESSING_VERSIONS = frozenset({1, 2})

PACKED_FORMATS = {"BGR": 3, "RGB": 3, "BGRA": 4, "RGBA": 4, "GRAY": 1}
FORMATS = (*PACKED_FORMATS, "NV12")
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # applied to R, G, B
GRADIENT_SCALE = 1020.0 * math.sqrt(2.0)  # max Sobel magnitude of a [0, 255] image
PRIOR_STRIDE = 4
PRIOR_BLUR_SIGMA_FRACTION = 0.03  # of max(H, W), in input pixels (~1 degree of visual angle)
PRIOR_CENTRE_SIGMA_FRACTION = 0.2  # of the pooled width / height
UINT16_TO_UINT8 = 257.0
# NV12 -> RGB: BT.601/709, limited or full range (OpenCV's default is bt601 limited).
_YUV_MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


IMPLEMENTATIONS = ("auto", "native", "python")


def native_module():
    """The compiled extension, or None where saliq was installed without it."""
    try:
        from . import _preproc
    except ImportError:
        return None
    return _preproc


def set_native_threads(count: int) -> None:
    """CPU threads per native preprocessing call (0 = all cores); data workers use 1."""
    module = native_module()
    if module is not None:
        module.set_num_threads(count)


def _cv2():
    try:
        import cv2
    except ImportError:
        from .errors import BackendUnavailableError

        raise BackendUnavailableError(
            "OpenCV is needed for preprocessing: pip install 'saliq[cpu]' "
            "(or use your platform's OpenCV build)"
        ) from None
    return cv2


def decode_to_rgb(
    frame: np.ndarray, fmt: str = "BGR", matrix: str = "bt601", yuv_range: str = "limited"
) -> np.ndarray:
    """Step 1: any supported frame -> float32 HxWx3 RGB in [0, 255]."""
    fmt = fmt.upper()
    if fmt not in FORMATS:
        raise InvalidImageError(f"unknown pixel format {fmt!r}; use one of {', '.join(FORMATS)}")
    if frame.dtype == np.uint8:
        pixels = frame.astype(np.float32)
    elif frame.dtype == np.uint16:
        pixels = frame.astype(np.float32) / UINT16_TO_UINT8
    else:
        raise InvalidImageError(
            f"unsupported dtype {frame.dtype}; pass uint8 or uint16 pixels "
            "(convert float images with np.clip(x * 255, 0, 255).astype(np.uint8))"
        )
    if fmt == "NV12":
        return _nv12_to_rgb(pixels, matrix, yuv_range)
    channels = PACKED_FORMATS[fmt]
    if channels == 1:
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        if pixels.ndim != 2:
            raise InvalidImageError(f"GRAY frames must be HxW, got shape {frame.shape}")
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] != channels:
        raise InvalidImageError(
            f"{fmt} frames must be HxWx{channels}, got shape {frame.shape}; "
            "pass fmt= matching the array"
        )
    rgb = pixels[:, :, :3]
    if fmt.startswith("BGR"):
        rgb = rgb[:, :, ::-1]
    return np.ascontiguousarray(rgb)


def _nv12_to_rgb(pixels: np.ndarray, matrix: str, yuv_range: str) -> np.ndarray:
    if matrix not in _YUV_MATRICES or yuv_range not in ("limited", "full"):
        raise InvalidImageError(
            f"NV12 needs matrix in {sorted(_YUV_MATRICES)} and range in limited|full, "
            f"got {matrix!r}, {yuv_range!r}"
        )
    if pixels.ndim != 2 or pixels.shape[0] % 3:
        raise InvalidImageError(f"NV12 frames are (H*3/2)xW arrays, got shape {pixels.shape}")
    height, width = pixels.shape[0] * 2 // 3, pixels.shape[1]
    if height % 2 or width % 2:
        raise InvalidImageError(f"NV12 needs even width and height, got {width}x{height}")
    y = pixels[:height]
    uv = pixels[height:].reshape(height // 2, width // 2, 2)
    uv = np.repeat(np.repeat(uv, 2, axis=0), 2, axis=1)  # chroma replicated over its 2x2 block
    u, v = uv[:, :, 0] - 128.0, uv[:, :, 1] - 128.0
    if yuv_range == "limited":
        y = (y - 16.0) * (255.0 / 219.0)
        u, v = u * (255.0 / 224.0), v * (255.0 / 224.0)
    kr, kb = _YUV_MATRICES[matrix]
    kg = 1.0 - kr - kb
    r = y + 2.0 * (1.0 - kr) * v
    b = y + 2.0 * (1.0 - kb) * u
    g = (y - kr * r - kb * b) / kg
    return np.clip(np.stack([r, g, b], axis=2), 0.0, 255.0).astype(np.float32)


def resize_stretch(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Step 2: separable per-axis resize; area where an axis shrinks, bilinear otherwise."""
    cv2 = _cv2()
    out = np.ascontiguousarray(rgb, dtype=np.float32)
    if out.shape[1] != width:
        interp = cv2.INTER_AREA if width < out.shape[1] else cv2.INTER_LINEAR
        out = cv2.resize(out, (width, out.shape[0]), interpolation=interp)
    if out.shape[0] != height:
        interp = cv2.INTER_AREA if height < out.shape[0] else cv2.INTER_LINEAR
        out = cv2.resize(out, (width, height), interpolation=interp)
    return out.reshape(height, width, 3)


def gradient_map(rgb: np.ndarray) -> np.ndarray:
    """Step 4: Sobel magnitude of luma, replicated border, fixed scale into [0, 1]."""
    cv2 = _cv2()
    r, g, b = LUMA_WEIGHTS
    luma = (r * rgb[:, :, 0] + g * rgb[:, :, 1] + b * rgb[:, :, 2]).astype(np.float32)
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx * gx + gy * gy) / np.float32(GRADIENT_SCALE)


def prior_blur_sigma(height: int, width: int) -> float:
    return PRIOR_BLUR_SIGMA_FRACTION * max(height, width) / PRIOR_STRIDE


def centre_gaussian(height: int, width: int, sigma_fraction: float) -> np.ndarray:
    """exp(-((x - W/2)/(f W))^2/2 - ((y - H/2)/(f H))^2/2) at pixel centres."""
    xs = (np.arange(width) + 0.5 - width / 2.0) / (sigma_fraction * width)
    ys = (np.arange(height) + 0.5 - height / 2.0) / (sigma_fraction * height)
    return np.exp(-0.5 * ys[:, None] ** 2 - 0.5 * xs[None, :] ** 2).astype(np.float32)


def saliency_prior(gradient: np.ndarray) -> np.ndarray:
    """Step 5: area-pool 4x4, Gaussian blur, centre weighting, divide by the maximum."""
    cv2 = _cv2()
    height, width = gradient.shape
    pooled = gradient.reshape(
        height // PRIOR_STRIDE, PRIOR_STRIDE, width // PRIOR_STRIDE, PRIOR_STRIDE
    ).mean(axis=(1, 3), dtype=np.float32)
    sigma = prior_blur_sigma(height, width)
    ksize = 2 * math.ceil(3 * sigma) + 1
    blurred = cv2.GaussianBlur(
        pooled, (ksize, ksize), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE
    )
    pooled_h, pooled_w = pooled.shape
    weighted = blurred * centre_gaussian(pooled_h, pooled_w, PRIOR_CENTRE_SIGMA_FRACTION)
    peak = float(weighted.max())
    return weighted / np.float32(peak) if peak > 0 else weighted


@dataclass(frozen=True)
class Preprocessor:
    """Frames -> {"image": [N,3,H,W], "gradient": [N,1,H,W], "prior": [N,1,H/4,W/4]}."""

    height: int
    width: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    dtype: str = "float32"
    version: int = PREPROCESSING_VERSION
    implementation: str = "auto"  # auto: native where built, else python
    views: Any = None  # version 2: a saliq.views.ViewConfig (crop views); None in version 1

    def __post_init__(self) -> None:
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}")
        if self.implementation == "native" and native_module() is None:
            from .errors import BackendUnavailableError

            raise BackendUnavailableError(
                "saliq._preproc is not built; reinstall saliq with a C++ compiler present"
            )
        if self.height % 32 or self.width % 32 or self.height <= 0 or self.width <= 0:
            raise ValueError(
                f"H and W must be positive multiples of 32, got {self.height}x{self.width}"
            )
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, got {self.dtype!r}")
        if self.version not in SUPPORTED_PREPROCESSING_VERSIONS:
            raise ValueError(f"preprocessing version {self.version} is not implemented here")
        if (self.version >= 2) != (self.views is not None):
            raise ValueError("version 2 needs views=ViewConfig(...); version 1 takes none")

    @classmethod
    def from_spec(cls, spec, dtype: str = "float32", implementation: str = "auto") -> Preprocessor:
        views = None
        if spec.preprocessing_version >= 2:
            from .views import ViewConfig

            views = ViewConfig.from_dict(spec.view_config)
        return cls(
            spec.input_height,
            spec.input_width,
            tuple(spec.mean),
            tuple(spec.std),
            dtype,
            version=spec.preprocessing_version,
            implementation=implementation,
            views=views,
        )

    def _add_views(
        self, frames: Sequence[np.ndarray], fmt: str, out: dict[str, np.ndarray], **decode_kwargs
    ) -> dict[str, np.ndarray]:
        """Version 2: the crop views of every frame, placed on its (already computed) prior."""
        from . import views as V

        cfg = self.views
        dtype = np.dtype(self.dtype)
        shapes = cfg.shapes()
        extra = {
            name: np.empty((len(frames), *shapes[name]), dtype=np.float32)
            for name in (*V.CROP_INPUTS, *V.GRID_INPUTS)
        }
        for i, frame in enumerate(frames):
            rgb = decode_to_rgb(frame, fmt, **decode_kwargs)
            height, width = rgb.shape[:2]
            windows, side, weights = V.place_detail_crops(
                np.asarray(out["prior"][i, 0], np.float32), width, height, cfg
            )
            crops, grads = V.cut_crops(rgb, windows, side, cfg.crop_size, self.mean, self.std)
            extra["crops"][i], extra["crop_gradient"][i] = crops, grads
            extra["crop_boxes"][i] = V.boxes(windows, side, width, height)
            extra["crop_weights"][i] = weights
            if cfg.grid_crops:
                grid, grid_side = V.grid_windows(width, height, cfg)
                extra["grid"][i] = V.cut_crops(
                    rgb, grid, grid_side, cfg.grid_size, self.mean, self.std
                )[0]
                extra["grid_boxes"][i] = V.boxes(grid, grid_side, width, height)
        merged = {**out, **extra}
        for name in ("image", "gradient", "prior", "crops", "crop_gradient", "grid"):
            merged[name] = merged[name].astype(dtype)  # boxes and weights stay float32
        return merged

    @property
    def uses_native(self) -> bool:
        return self.implementation != "python" and native_module() is not None

    def _native(self, frames: list[np.ndarray], fmt: str, dtype: str, **decode_kwargs):
        """The CPU twin; version 2's crop views too (placed on the float32 prior natively)."""
        views = self.views.to_dict() if self.views is not None else None
        try:
            return native_module().preprocess(
                [np.ascontiguousarray(f) for f in frames],
                fmt.upper(),
                self.height,
                self.width,
                list(self.mean),
                list(self.std),
                dtype,
                views=views,
                **decode_kwargs,
            )
        except (ValueError, TypeError) as exc:
            raise InvalidImageError(str(exc)) from None

    def cuda(
        self,
        frames: Any,
        fmt: str = "BGR",
        stream: Any = None,
        out: dict[str, Any] | None = None,
        **decode_kwargs,
    ) -> dict[str, Any]:
        """The same outputs computed on the GPU by ``saliq._preproc.preprocess_cuda``.

        ``frames``: a list of frames or one batch array ``[N, ...]``; host arrays, or device
        arrays read in place (``__cuda_array_interface__``: CuPy, PyTorch; or DLPack).
        ``stream``: None, an int ``cudaStream_t`` or a torch/CuPy stream. ``out``: None
        returns host numpy arrays (synchronised); a dict of C-contiguous device arrays
        ("image", "gradient", "prior"; version 2 adds "crops", "crop_gradient", "crop_boxes",
        "crop_weights" and, when grid_crops > 0, "grid", "grid_boxes") is written on
        ``stream``, ready for ``TensorRTBackend.infer_device`` without a host round trip.
        Version 2 waits once for the small priors (the crops are placed on the host); the crop
        kernels are then queued asynchronously.
        """
        native = native_module()
        reason = native.cuda_unavailable_reason() if native else "saliq._preproc is not built"
        if reason:
            from .errors import BackendUnavailableError

            raise BackendUnavailableError(f"GPU preprocessing unavailable: {reason}")
        try:
            return native.preprocess_cuda(
                frames,
                fmt.upper(),
                self.height,
                self.width,
                list(self.mean),
                list(self.std),
                self.dtype,
                stream=stream,
                out=out,
                views=self.views.to_dict() if self.views is not None else None,
                **decode_kwargs,
            )
        except (ValueError, TypeError) as exc:
            raise InvalidImageError(str(exc)) from None

    def one(self, frame: np.ndarray, fmt: str = "BGR", **decode_kwargs) -> dict[str, np.ndarray]:
        """One frame -> unbatched float32 outputs (image 3xHxW, gradient 1xHxW, prior 1xH/4xW/4;
        version 2 adds the crop views)."""
        if self.views is not None:
            one = dataclasses.replace(self, dtype="float32")
            return {key: value[0] for key, value in one([frame], fmt, **decode_kwargs).items()}
        if self.uses_native:
            out = self._native([frame], fmt, "float32", **decode_kwargs)
            return {key: value[0] for key, value in out.items()}
        rgb = resize_stretch(decode_to_rgb(frame, fmt, **decode_kwargs), self.height, self.width)
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        image = ((rgb / np.float32(255.0) - mean) / std).transpose(2, 0, 1)
        gradient = gradient_map(rgb)
        return {
            "image": np.ascontiguousarray(image, dtype=np.float32),
            "gradient": gradient[None],
            "prior": saliency_prior(gradient)[None],
        }

    def __call__(
        self, frames: np.ndarray | Sequence[np.ndarray], fmt: str = "BGR", **decode_kwargs
    ) -> dict[str, np.ndarray]:
        if isinstance(frames, np.ndarray):
            frames = [frames]
        if len(frames) == 0:
            raise InvalidImageError("empty batch: pass at least one frame")
        if self.uses_native:  # versions 1 and 2 in one native call
            return self._native(list(frames), fmt, self.dtype, **decode_kwargs)
        # Crops are placed on the float32 prior (float16 would tie peaks that float32 tells
        # apart); float16 outputs are rounded from the float32 results at the end.
        dtype = "float32" if self.views is not None else self.dtype
        whole = dataclasses.replace(self, views=None, version=1)
        outs = [whole.one(f, fmt, **decode_kwargs) for f in frames]
        out = {key: np.stack([o[key] for o in outs]).astype(dtype) for key in outs[0]}
        if self.views is not None:
            out = self._add_views(list(frames), fmt, out, **decode_kwargs)
        return out
