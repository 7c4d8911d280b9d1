"""User input -> validated frames: paths, arrays and lists of them, with one-line errors.

Everything ``assess()`` accepts goes through here, so every way an input can be wrong is
reported once, as :class:`~saliq.errors.InvalidImageError` naming the input, the problem and
the fix. Frames come out as ``(pixels, fmt)`` pairs ready for
:func:`saliq.preprocess.decode_to_rgb`: uint8 or uint16 pixels (uint16 is divided by 257 by
the preprocessing, i.e. it is assumed to span the full 16-bit range) and ``fmt`` one of
BGR, RGB, BGRA, RGBA, GRAY.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidImageError

# Below this many pixels on a side there is no texture left for a quality model to judge
# (the prior alone is pooled 4x), so such inputs are rejected rather than scored.
MIN_SIDE = 8

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
# What a folder listing picks up: the still formats plus GIF, decoded (its first frame) like a
# GIF passed by name. GIF stays out of IMAGE_EXTENSIONS because saliq.sources.open_source
# plays a GIF named directly as a video (every frame), which that set decides.
FOLDER_EXTENSIONS = IMAGE_EXTENSIONS | {".gif"}
# A 1x1 GIF89a: OpenCV decodes GIF only from 4.11 on (older builds, common on Jetson, return
# None), so folder listings take GIFs only where this decodes.
_PROBE_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff,\x00\x00\x00\x00"
    b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
_GIF_DECODES: list[bool] = []  # filled on first use


def folder_extensions() -> frozenset[str]:
    """``FOLDER_EXTENSIONS`` where this OpenCV decodes GIF, else ``IMAGE_EXTENSIONS``: a folder
    that scored cleanly on an older OpenCV does not turn into error rows for its GIFs."""
    if not _GIF_DECODES:
        import cv2

        probe = cv2.imdecode(np.frombuffer(_PROBE_GIF, np.uint8), cv2.IMREAD_COLOR)
        _GIF_DECODES.append(probe is not None)
    return FOLDER_EXTENSIONS if _GIF_DECODES[0] else IMAGE_EXTENSIONS


COLOR_ORDERS = ("BGR", "RGB")

PathInput = str | os.PathLike[str]
# PIL.Image.Image is accepted too (duck-typed: the runtime never imports PIL).
ImageInput = PathInput | np.ndarray

_SUPPORTED = "HxW, HxWx1 (gray), HxWx3 (BGR/RGB) or HxWx4 (BGRA/RGBA) uint8/uint16 arrays"
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GIF_SIGNATURES = (b"GIF87a", b"GIF89a")
_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112
# A complete file ends with its end marker, give or take a little padding some encoders add;
# only when it is not there do we pay for walking the file's structure.
_TAIL_BYTES = 32
# In entropy-coded JPEG data 0xFF is always followed by 0x00 (stuffing), a restart marker
# (D0-D7) or another 0xFF (fill), so anything else is the next real marker.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def read_image(path: PathInput) -> tuple[np.ndarray, str]:
    """Read an image file as (pixels, fmt), fmt being "BGR", "BGRA" or "GRAY".

    8-bit and 16-bit files are supported; 16-bit PNG/TIFF stay uint16 (decoded with
    ``IMREAD_UNCHANGED``). A JPEG's EXIF orientation (1-8) is applied, as browsers and
    ``cv2.imread`` do, so a portrait photo comes out upright
    (:func:`read_image_oriented` also says which orientation was applied). The bytes are read
    by Python and decoded with ``cv2.imdecode`` so that non-ASCII paths work on every
    platform. Truncated JPEG/PNG files are rejected before decoding: OpenCV would otherwise
    return them with a grey bottom part (or not at all, depending on version and entry point).
    """
    pixels, fmt, _ = read_image_oriented(path)
    return pixels, fmt


def read_image_oriented(path: PathInput) -> tuple[np.ndarray, str, int]:
    """:func:`read_image`, plus the EXIF orientation that was applied (1 = none: the pixels
    as stored; always 1 for formats other than JPEG)."""
    if isinstance(path, (bytes, bytearray)):
        raise InvalidImageError(
            "got bytes, not a path; pass the path as str or pathlib.Path "
            "(for encoded image bytes, decode them with cv2.imdecode first)"
        )
    try:
        file = Path(os.fspath(path))
    except TypeError:
        raise InvalidImageError(
            f"expected a file path (str or os.PathLike), got {type(path).__name__}"
        ) from None
    try:
        is_dir = file.is_dir()
        size = file.stat().st_size
    except FileNotFoundError:
        raise InvalidImageError(f"{file}: file not found; check the path") from None
    except OSError as exc:
        raise InvalidImageError(
            f"{file}: cannot access ({exc.strerror or exc}); check the path and permissions"
        ) from None
    if is_dir:
        raise InvalidImageError(
            f"{file} is a directory, not an image file; pass a file "
            "(the CLI expands folders, or use saliq.imageio.expand_paths)"
        )
    if size == 0:
        raise InvalidImageError(f"{file} is empty (0 bytes); re-export or re-download it")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InvalidImageError(
            f"{file}: cannot read ({exc.strerror or exc}); check its permissions"
        ) from None

    if data.startswith(_JPEG_SOI) and _jpeg_complete(data) is False:
        raise InvalidImageError(
            f"{file} is a truncated JPEG (no end-of-image marker FFD9; the bottom of the "
            "picture is missing); re-download or re-export the file"
        )
    if data.startswith(_PNG_SIGNATURE) and _png_complete(data) is False:
        raise InvalidImageError(
            f"{file} is a truncated PNG (IEND chunk missing; the file was cut short); "
            "re-download or re-export the file"
        )

    pixels = _decode(data)
    if pixels is None and data.startswith(_GIF_SIGNATURES):
        from .preprocess import _cv2

        raise InvalidImageError(
            f"{file} is a GIF this OpenCV build cannot decode (OpenCV {_cv2().__version__}; GIF "
            "needs 4.11 or newer, built with its GIF codec): upgrade OpenCV or convert the file "
            "to PNG"
        )
    if pixels is None:
        raise InvalidImageError(
            f"{file} is not a readable image (unknown format or corrupt data); pass a JPEG, "
            "PNG, BMP, TIFF, WebP or GIF file"
        )
    # IMREAD_UNCHANGED (needed for 16-bit and alpha) ignores EXIF orientation, unlike
    # cv2.imread's default: apply it here, or portrait phone photos are scored sideways.
    orientation = jpeg_orientation(data) if data.startswith(_JPEG_SOI) else 1
    pixels = apply_orientation(pixels, orientation)
    checked, fmt = _check_pixels(pixels, str(file), "BGR", from_file=True)
    return checked, fmt, orientation


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation tag (0x0112) of a JPEG's APP1 segment: 1-8, or 1 when there is none
    or it cannot be read (a damaged EXIF block never stops the image from being scored)."""
    size = len(data)
    pos = 2
    while pos + 4 <= size and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: metadata comes before
            return 1
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return 1
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and segment.startswith(_EXIF_HEADER):
            return _tiff_orientation(segment[len(_EXIF_HEADER) :])
        pos += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    """Orientation from IFD0 of the TIFF structure inside an EXIF block (either byte order)."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8 or int.from_bytes(tiff[2:4], order) != 42:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    count = int.from_bytes(tiff[ifd : ifd + 2], order)
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        if int.from_bytes(tiff[entry : entry + 2], order) == _ORIENTATION_TAG:
            kind = int.from_bytes(tiff[entry + 2 : entry + 4], order)
            if kind != 3:  # SHORT, as the standard says; anything else is a broken writer
                return 1
            value = int.from_bytes(tiff[entry + 8 : entry + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright for EXIF ``orientation`` (1-8), as ``cv2.imread`` and
    browsers display them; 5-8 swap height and width. Views, not copies (made contiguous
    by the pixel checks)."""
    if orientation == 2:  # mirrored left-right
        return pixels[:, ::-1]
    if orientation == 3:  # rotated 180
        return pixels[::-1, ::-1]
    if orientation == 4:  # mirrored top-bottom
        return pixels[::-1]
    if orientation == 5:  # transpose (mirror about the main diagonal)
        return pixels.swapaxes(0, 1)
    if orientation == 6:  # stored rotated 90 counter-clockwise: turn 90 clockwise
        return pixels.swapaxes(0, 1)[:, ::-1]
    if orientation == 7:  # transverse (mirror about the anti-diagonal)
        return pixels[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:  # stored rotated 90 clockwise: turn 90 counter-clockwise
        return pixels.swapaxes(0, 1)[::-1]
    return pixels


def validate_array(
    arr: object, color: str = "BGR", *, name: str = "array"
) -> tuple[np.ndarray, str]:
    """Check an array passed directly and return (contiguous pixels, fmt).

    ``color`` ("BGR" or "RGB") is the channel order of 3- and 4-channel arrays; 2-D and
    HxWx1 arrays are GRAY whatever it says. ``name`` labels the array in error messages.
    """
    order = _color_order(color)
    if not isinstance(arr, np.ndarray):
        hint = ""
        if isinstance(arr, (list, tuple)):
            hint = " (nested lists: convert with np.asarray(x, dtype=np.uint8))"
        raise InvalidImageError(
            f"{name}: expected a numpy array, a PIL image or a file path, got "
            f"{type(arr).__name__}; "
            f"pass {_SUPPORTED}{hint}"
        )
    return _check_pixels(arr, name, order, from_file=False)


def is_device_frame(obj: object) -> bool:
    """True for an array in GPU memory: ``__cuda_array_interface__`` (CuPy, PyTorch CUDA) or
    DLPack on a CUDA device (JAX, TensorFlow, ...)."""
    if isinstance(obj, np.ndarray) or isinstance(obj, (str, os.PathLike)):
        return False
    try:
        if hasattr(obj, "__cuda_array_interface__"):
            return True
    except Exception:  # offered but refused (a torch tensor requiring grad): still a GPU array
        return True
    from .dlpack import DL_CUDA, dlpack_device, is_dlpack

    try:
        return is_dlpack(obj) and dlpack_device(obj)[0] == DL_CUDA
    except (TypeError, ValueError, RuntimeError, BufferError):
        return False


def frame_shape(obj: Any) -> tuple[int, ...]:
    """The shape of a host or GPU array (``.shape``, else its ``__cuda_array_interface__``)."""
    shape = getattr(obj, "shape", None)
    if shape is None:
        shape = obj.__cuda_array_interface__["shape"]
    return tuple(int(d) for d in shape)


def device_frame(obj: object, color: str, name: str) -> tuple[object, str]:
    """(the GPU array as given, its pixel format) from its shape, after the checks its
    ``__cuda_array_interface__`` allows (dtype, C-contiguous); DLPack-only arrays are checked
    where they are read (``Preprocessor.cuda``)."""
    shape = frame_shape(obj)
    try:
        cai = getattr(obj, "__cuda_array_interface__", None)
    except Exception:  # refused (a torch tensor requiring grad): read through DLPack later
        cai = None
    if isinstance(cai, dict):
        _check_device_layout(cai, shape, name)
    if len(shape) in (2, 3) and min(shape[:2]) < MIN_SIDE:
        raise InvalidImageError(
            f"{name}: image is {shape[1]}x{shape[0]} pixels, too small to assess; saliq needs "
            f"at least {MIN_SIDE} pixels on each side"
        )
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return obj, "GRAY"
    if len(shape) == 3 and shape[2] in (3, 4):
        return obj, color + ("A" if shape[2] == 4 else "")
    raise InvalidImageError(f"{name}: GPU frames must be {_SUPPORTED}, got shape {shape}")


def _check_device_layout(cai: dict, shape: tuple[int, ...], name: str) -> None:
    dtype = np.dtype(cai["typestr"])
    if dtype not in (np.uint8, np.uint16):
        raise InvalidImageError(
            f"{name}: GPU frames must be uint8 or uint16 pixels, got {dtype}; convert on the "
            "GPU first, e.g. (t * 255).clamp(0, 255).to(torch.uint8)"
        )
    strides = cai.get("strides")
    from .cuda_memory import is_c_contiguous

    if not is_c_contiguous(shape, strides, dtype.itemsize):
        raise InvalidImageError(
            f"{name}: the GPU frame of shape {shape} is not C-contiguous (strides "
            f"{tuple(strides)}, e.g. a crop or a permute); make it contiguous on the GPU "
            "first: tensor.contiguous() or cupy.ascontiguousarray(x)"
        )


def load_inputs(
    image_or_list: ImageInput | list[ImageInput] | tuple[ImageInput, ...],
    color: str = "BGR",
    device_refused: str = "this call takes host arrays",
) -> tuple[list[tuple[Any, str]], list[str], bool]:
    """Normalise what ``assess()`` received into (frames, display names, is_batch).

    A list or tuple is a batch (even of one); anything else is a single input. Names are the
    path as given for files, ``array[i]`` (i = position in the input) for arrays, and the
    file name (else ``image[i]``) for PIL images. PIL images are RGB whatever ``color`` says.
    Arrays in GPU memory are kept as they are where ``device_refused`` is empty; otherwise
    they are an error that gives it as the reason.
    """
    order = _color_order(color)
    is_batch = isinstance(image_or_list, (list, tuple))
    items = list(image_or_list) if is_batch else [image_or_list]
    if not items:
        raise InvalidImageError("empty list of images; pass at least one path or array")
    frames: list[tuple[np.ndarray, str]] = []
    names: list[str] = []
    for index, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            frames.append(read_image(item))
            names.append(os.fspath(item))
        elif is_pil_image(item):
            name = getattr(item, "filename", "") or f"image[{index}]"
            frames.append(pil_to_frame(item, name=name))
            names.append(name)
        else:
            name = f"array[{index}]"
            if is_device_frame(item):
                if device_refused:
                    raise InvalidImageError(
                        f"{name} is in GPU memory, which needs the GPU preprocessing, "
                        f"unavailable here: {device_refused}; copy it to the host first "
                        "(tensor.cpu().numpy(), cupy.asnumpy(x))"
                    )
                frames.append(device_frame(item, order, name))
            else:
                frames.append(validate_array(item, order, name=name))
            names.append(name)
    return frames, names, is_batch


def is_pil_image(obj: object) -> bool:
    """True for a PIL.Image.Image (or anything shaped like one), without importing PIL: the
    runtime must not depend on it."""
    return (
        not isinstance(obj, np.ndarray)
        and hasattr(obj, "mode")
        and hasattr(obj, "size")
        and callable(getattr(obj, "convert", None))
    )


def pil_to_frame(img: object, name: str = "image") -> tuple[np.ndarray, str]:
    """A PIL image as checked (pixels, fmt): RGB for colour modes (alpha dropped, palettes
    expanded, as OpenCV does for files), uint16 GRAY for 16-bit gray ("I;16", or "I" holding
    0..65535). The EXIF orientation is applied, as for JPEG files, so photos opened with
    ``Image.open`` are scored upright (``ImageOps.exif_transpose`` clears the tag: no double
    turn)."""
    mode = str(getattr(img, "mode", ""))
    if mode == "F":  # convert("RGB") would clip floats silently, whatever their scale
        raise InvalidImageError(
            f"{name}: PIL mode 'F' (32-bit float) is not supported; scale it to uint8 or uint16 "
            "and pass a numpy array, e.g. np.clip(np.asarray(img) * 255, 0, 255).astype(np.uint8)"
        )
    gray16 = mode.startswith("I;16") or mode == "I"
    try:
        # convert("RGB") would clip 16-bit gray at 255: those keep their full range instead.
        pixels = np.asarray(img if gray16 else img.convert("RGB"))  # type: ignore[attr-defined]
    except (OSError, ValueError) as exc:  # a lazily decoded file that is corrupt, odd modes
        raise InvalidImageError(
            f"{name}: cannot convert this PIL image (mode {mode!r}) to RGB ({exc}); "
            "pass img.convert('RGB') or a numpy array"
        ) from None
    if gray16:
        pixels = _as_uint16(pixels, name, mode)
    pixels = apply_orientation(pixels, _pil_orientation(img))
    return _check_pixels(pixels, name, "RGB", from_file=False)


def _as_uint16(values: np.ndarray, name: str, mode: str) -> np.ndarray:
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise InvalidImageError(
            f"{name}: PIL mode {mode!r} values span {values.min()}..{values.max()}, outside "
            "0..65535; scale them to uint8 or uint16 and pass a numpy array"
        )
    return values.astype(np.uint16)


def _pil_orientation(img: object) -> int:
    getexif = getattr(img, "getexif", None)
    if not callable(getexif):
        return 1
    try:
        value = int(getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a damaged EXIF block never stops the image from being scored
        return 1
    return value if 1 <= value <= 8 else 1


def expand_paths(paths: PathInput | Iterable[PathInput], recursive: bool = True) -> list[Path]:
    """Files as given (in order), folders replaced by the image files inside them, sorted.

    Image files are those with an extension in ``folder_extensions()`` (any case). Hidden files
    and folders (name starting with ".") are skipped: they are mostly OS metadata such as
    macOS "._x.jpg" files, which look like images but are not. Symlinked folders are not
    followed, so a link cycle cannot make the walk endless.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    result: list[Path] = []
    for given in paths:
        path = Path(os.fspath(given))
        if path.is_dir():
            found = sorted(_images_in(path, recursive))
            if not found:
                where = "or its subfolders" if recursive else "(subfolders not searched)"
                raise InvalidImageError(
                    f"{path}: no image files ({', '.join(sorted(folder_extensions()))}) in this "
                    f"folder {where}; pass a folder with images or the files themselves"
                )
            result.extend(found)
        elif path.exists():
            result.append(path)
        else:
            raise InvalidImageError(f"{path}: file or folder not found; check the path")
    return result


def _images_in(folder: Path, recursive: bool) -> Iterator[Path]:
    wanted = folder_extensions()
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
        for file in files:
            if not file.startswith(".") and os.path.splitext(file)[1].lower() in wanted:
                yield Path(root, file)


def _color_order(color: str) -> str:
    order = color.upper() if isinstance(color, str) else color
    if order not in COLOR_ORDERS:
        raise InvalidImageError(
            f"color must be 'BGR' (OpenCV arrays) or 'RGB' (PIL/matplotlib arrays), got {color!r}"
        )
    return order


def _check_pixels(
    arr: np.ndarray, name: str, order: str, from_file: bool
) -> tuple[np.ndarray, str]:
    """Shape, channel, dtype, value and size checks shared by files and arrays."""
    if arr.size == 0:
        raise InvalidImageError(f"{name}: empty array (shape {arr.shape}); pass {_SUPPORTED}")
    if arr.ndim not in (2, 3):
        hint = ""
        if arr.ndim == 4:
            hint = "; for a batch pass a list of HxWxC arrays (list(batch))"
        raise InvalidImageError(f"{name}: expected a 2-D or 3-D image, got shape {arr.shape}{hint}")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if channels not in (1, 3, 4):
        hint = f"; pass {_SUPPORTED}"
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and not from_file:
            hint = "; this looks channels-first (CxHxW): pass arr.transpose(1, 2, 0)"
        elif channels == 2:
            hint = "; 2 channels is gray+alpha: pass the gray plane arr[:, :, 0]"
        if from_file:
            hint += " (re-save the file as gray, RGB or RGBA)"
        raise InvalidImageError(
            f"{name}: unsupported channel count {channels} (shape {arr.shape}){hint}"
        )
    if arr.dtype not in (np.uint8, np.uint16):
        raise InvalidImageError(f"{name}: {_dtype_problem(arr, from_file)}")
    height, width = arr.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InvalidImageError(
            f"{name}: image is {width}x{height} pixels, too small to assess; saliq needs at "
            f"least {MIN_SIDE} pixels on each side"
        )
    if channels == 1:
        fmt = "GRAY"
    else:
        fmt = order + ("A" if channels == 4 else "")
    return np.ascontiguousarray(arr), fmt


def _dtype_problem(arr: np.ndarray, from_file: bool) -> str:
    """Say why this dtype is refused and give the conversion that fixes it."""
    if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating):
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(arr.size - np.count_nonzero(finite))
            return (
                f"{arr.dtype} pixels contain {bad} NaN/inf values; fix the producer or "
                "replace them (np.nan_to_num) before converting to uint8"
            )
        if from_file:
            return (
                f"{arr.dtype} (floating-point) image files are not supported; convert it to "
                "8- or 16-bit, e.g. np.clip(x * 255, 0, 255).astype(np.uint8) then cv2.imwrite"
            )
        return (
            f"{arr.dtype} pixels are not supported; pass uint8 or uint16 (for floats in [0, 1]: "
            "np.clip(x * 255, 0, 255).astype(np.uint8))"
        )
    if arr.dtype == np.bool_:
        return "bool pixels are not supported; pass mask.astype(np.uint8) * 255"
    return (
        f"{arr.dtype} pixels are not supported; pass uint8 or uint16 "
        "(for values in 0..255: np.clip(x, 0, 255).astype(np.uint8))"
    )


def _jpeg_complete(data: bytes) -> bool | None:
    """True if the JPEG reaches its EOI marker, False if cut short, None if unparseable.

    Walking the segments instead of only looking for FFD9 at the end keeps files with data
    appended after EOI (e.g. phone "motion photos") valid, and is not fooled by the FFD9 of
    an EXIF thumbnail near the start.
    """
    if _JPEG_EOI in data[-_TAIL_BYTES:]:
        return True
    size = len(data)
    pos = 2
    while True:
        if pos >= size:
            return False
        if data[pos] != 0xFF:
            return None  # not a marker where one must be: corrupt, let the decoder judge
        while pos < size and data[pos] == 0xFF:
            pos += 1  # fill bytes
        if pos >= size:
            return False
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            return True
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue  # standalone markers carry no length
        if pos + 2 > size:
            return False
        pos += int.from_bytes(data[pos : pos + 2], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next marker
            match = _JPEG_NEXT_MARKER.search(data, pos)
            if match is None:
                return False
            pos = match.start()


def _png_complete(data: bytes) -> bool | None:
    """True if the PNG's chunks reach IEND, False if cut short, None if unparseable."""
    if data[-8:-4] == b"IEND":
        return True
    size = len(data)
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= size:
        length = int.from_bytes(data[pos : pos + 4], "big")
        if length > 0x7FFFFFFF:
            return None
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos += 12 + length  # length, type, data, CRC
    return False


_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_level: int | None = None


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's logger during a decode and put the caller's level back afterwards.

    The level is process-global, so concurrent decodes share one silenced period and the
    last one out restores it. Messages libjpeg/libpng print themselves bypass this logger;
    the truncation checks run before decoding so those mostly never fire.
    """
    global _quiet_depth, _saved_level
    from .preprocess import _cv2

    logging = getattr(getattr(_cv2(), "utils", None), "logging", None)
    if logging is None:
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved_level = logging.getLogLevel()
            logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _saved_level is not None:
                logging.setLogLevel(_saved_level)
                _saved_level = None


def _decode(data: bytes) -> np.ndarray | None:
    from .preprocess import _cv2

    cv2 = _cv2()
    with _quiet_opencv():
        try:
            return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            return None  # some malformed headers raise instead of returning None
