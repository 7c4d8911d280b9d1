"""Input loading and validation: every bad input is an InvalidImageError that says why."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from saliq.errors import InvalidImageError
from saliq.imageio import MIN_SIDE, expand_paths, load_inputs, read_image, validate_array


def _photo(height: int = 96, width: int = 128, channels: int = 3) -> np.ndarray:
    """Smooth gradients plus noise: compresses like a photo, not like flat colour."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:height, 0:width]
    planes = [(xs * 2) % 256, (ys * 2) % 256, (xs + ys) % 256, np.full_like(xs, 200)]
    img = np.stack(planes[:channels], axis=2).astype(np.float64)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write(path: Path, img: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), img)
    return path


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# ---------------------------------------------------------------- read_image: good files


def test_reads_jpeg_as_bgr(tmp_path: Path) -> None:
    pixels, fmt = read_image(_write(tmp_path / "a.jpg", _photo()))
    assert fmt == "BGR" and pixels.shape == (96, 128, 3) and pixels.dtype == np.uint8


def test_16bit_png_round_trip_keeps_uint16_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 65536, (24, 40, 3), dtype=np.uint16)
    pixels, fmt = read_image(_write(tmp_path / "deep.png", img))
    assert fmt == "BGR" and pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, img)


def test_bgra_png(tmp_path: Path) -> None:
    img = _photo(channels=4)
    pixels, fmt = read_image(_write(tmp_path / "alpha.png", img))
    assert fmt == "BGRA"
    np.testing.assert_array_equal(pixels, img)


def test_gray_png(tmp_path: Path) -> None:
    img = _photo()[:, :, 0]
    pixels, fmt = read_image(_write(tmp_path / "gray.png", img))
    assert fmt == "GRAY" and pixels.shape == img.shape


def test_non_ascii_path(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.png", _photo())
    target = path.rename(tmp_path / "фото_写真.png")
    assert read_image(target)[0].shape == (96, 128, 3)


def test_jpeg_with_trailer_after_eoi_is_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path / "motion.jpg", _photo())
    path.write_bytes(path.read_bytes() + b"\x00" * 100 + b"appended video data" * 10)
    assert read_image(path)[1] == "BGR"


# ---------------------------------------------------------------- read_image: bad files


def _raises(path: object, *words: str) -> str:
    with pytest.raises(InvalidImageError) as info:
        read_image(path)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message.lower(), message
    return message


def test_missing_file(tmp_path: Path) -> None:
    message = _raises(tmp_path / "nope.jpg", "not found")
    assert "nope.jpg" in message


def test_directory(tmp_path: Path) -> None:
    _raises(tmp_path, "directory")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    _raises(path, "empty", "0 bytes", "empty.jpg")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n" * 20)
    _raises(path, "not a readable image", "notes.jpg")


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = _cut(_write(tmp_path / "cut.jpg", _photo(240, 320)), keep=0.7)
    _raises(path, "truncated jpeg", "cut.jpg", "re-download")


def test_truncated_png(tmp_path: Path) -> None:
    path = _cut(_write(tmp_path / "cut.png", _photo(240, 320)), keep=0.7)
    _raises(path, "truncated png", "iend")


def test_png_missing_only_iend(tmp_path: Path) -> None:
    path = _write(tmp_path / "noend.png", _photo())
    path.write_bytes(path.read_bytes()[:-12])
    _raises(path, "truncated png")


def test_tiny_image(tmp_path: Path) -> None:
    path = _write(tmp_path / "tiny.png", _photo(4, 4))
    _raises(path, "4x4", "too small", str(MIN_SIDE))


def test_float_tiff(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "float.tiff", np.random.default_rng(2).random((16, 16, 3)).astype(np.float32)
    )
    _raises(path, "float32", "8- or 16-bit")


def test_bytes_path_is_rejected() -> None:
    _raises(b"/tmp/x.jpg", "bytes", "str")


# ---------------------------------------------------------------- validate_array


def _invalid(arr: object, *words: str, color: str = "BGR") -> None:
    with pytest.raises(InvalidImageError) as info:
        validate_array(arr, color)
    for word in words:
        assert word in str(info.value).lower(), str(info.value)


@pytest.mark.parametrize(
    ("shape", "color", "fmt"),
    [
        ((16, 16, 3), "BGR", "BGR"),
        ((16, 16, 3), "RGB", "RGB"),
        ((16, 16, 3), "rgb", "RGB"),
        ((16, 16, 4), "BGR", "BGRA"),
        ((16, 16, 4), "RGB", "RGBA"),
        ((16, 16), "RGB", "GRAY"),
        ((16, 16, 1), "BGR", "GRAY"),
    ],
)
def test_color_and_channels_map_to_fmt(shape: tuple[int, ...], color: str, fmt: str) -> None:
    pixels, got = validate_array(np.zeros(shape, np.uint8), color)
    assert got == fmt and pixels.shape == shape


def test_non_contiguous_is_made_contiguous() -> None:
    view = _photo()[::2, ::-1]
    pixels, _ = validate_array(view)
    assert pixels.flags.c_contiguous
    np.testing.assert_array_equal(pixels, view)


def test_uint16_accepted() -> None:
    assert validate_array(np.zeros((16, 16, 3), np.uint16))[0].dtype == np.uint16


def test_float_with_nan() -> None:
    arr = np.zeros((16, 16, 3), np.float32)
    arr[3, 4, 1] = np.nan
    _invalid(arr, "nan", "1 nan/inf")


def test_float_with_inf() -> None:
    arr = np.zeros((16, 16), np.float64)
    arr[0, 0] = np.inf
    _invalid(arr, "nan/inf")


def test_float_without_nan_suggests_conversion() -> None:
    _invalid(np.zeros((16, 16, 3), np.float32), "float32", "np.clip(x * 255, 0, 255)", "uint8")


def test_other_integer_dtype() -> None:
    _invalid(np.zeros((16, 16, 3), np.int64), "int64", "astype(np.uint8)")


@pytest.mark.parametrize(
    ("value", "word"), [([1, 2, 3], "list"), (None, "nonetype"), (3.5, "float")]
)
def test_wrong_types_name_the_type(value: object, word: str) -> None:
    _invalid(value, word, "numpy array")


def test_two_channel_array() -> None:
    _invalid(np.zeros((16, 16, 2), np.uint8), "channel count 2", "gray+alpha")


def test_channels_first_hint() -> None:
    _invalid(np.zeros((3, 32, 32), np.uint8), "channels-first", "transpose(1, 2, 0)")


def test_empty_and_bad_rank() -> None:
    _invalid(np.zeros((0, 16, 3), np.uint8), "empty")
    _invalid(np.zeros((2, 16, 16, 3), np.uint8), "list(batch)")
    _invalid(np.zeros(16, np.uint8), "2-d or 3-d")


def test_small_array() -> None:
    _invalid(np.zeros((MIN_SIDE - 1, 64, 3), np.uint8), "64x7", "too small")
    validate_array(np.zeros((MIN_SIDE, MIN_SIDE), np.uint8))


def test_bad_color_value() -> None:
    _invalid(np.zeros((16, 16, 3), np.uint8), "color", color="YUV")


# ---------------------------------------------------------------- load_inputs


def test_single_array() -> None:
    frames, names, batch = load_inputs(np.zeros((16, 16, 3), np.uint8), color="RGB")
    assert not batch and names == ["array[0]"] and frames[0][1] == "RGB"


def test_mixed_list(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.png", _photo())
    frames, names, batch = load_inputs([str(path), np.zeros((16, 16), np.uint8), path])
    assert batch
    assert names == [str(path), "array[1]", str(path)]
    assert [fmt for _, fmt in frames] == ["BGR", "GRAY", "BGR"]


def test_tuple_of_one_is_batch() -> None:
    assert load_inputs((np.zeros((16, 16, 3), np.uint8),))[2] is True


def test_empty_list() -> None:
    with pytest.raises(InvalidImageError, match="empty list"):
        load_inputs([])


def test_list_of_ints_names_the_element() -> None:
    with pytest.raises(InvalidImageError, match=r"array\[0\].*int"):
        load_inputs([1, 2, 3])


def test_none_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="NoneType"):
        load_inputs(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidImageError, match="not found"):
        load_inputs(str(tmp_path / "missing.jpg"))


def test_bad_element_in_batch_is_named(tmp_path: Path) -> None:
    good = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(InvalidImageError, match=r"array\[1\].*channel count 2"):
        load_inputs([good, np.zeros((16, 16, 2), np.uint8)])


# ---------------------------------------------------------------- expand_paths


def test_expand_folder(tmp_path: Path) -> None:
    img = _photo(16, 16)
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("b.PNG", "a.jpg", "sub/c.jpeg", ".hidden/d.jpg"):
        _write(tmp_path / name, img)
    (tmp_path / "._e.jpg").write_bytes(b"macOS metadata, not an image")
    (tmp_path / "notes.txt").write_text("no")
    loose = _write(tmp_path.parent / f"{tmp_path.name}_loose.bmp", img)

    found = expand_paths([loose, tmp_path])
    assert found == [loose, tmp_path / "a.jpg", tmp_path / "b.PNG", tmp_path / "sub" / "c.jpeg"]
    assert expand_paths(tmp_path, recursive=False) == [tmp_path / "a.jpg", tmp_path / "b.PNG"]


def test_expand_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(InvalidImageError, match="no image files"):
        expand_paths([tmp_path])


def test_expand_missing(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="not found"):
        expand_paths([tmp_path / "gone"])


# ---------------------------------------------------------------- EXIF orientation (JPEG)


def exif_app1(orientation: int, byte_order: str = "MM", kind: int = 3) -> bytes:
    """A hand-made APP1 segment: "Exif\\0\\0", a TIFF header and IFD0 with one Orientation
    (0x0112) entry of TIFF type ``kind`` (3 = SHORT, the standard's)."""
    import struct

    e = ">" if byte_order == "MM" else "<"
    tiff = byte_order.encode() + struct.pack(f"{e}HI", 42, 8)  # magic 42, IFD0 at offset 8
    tiff += struct.pack(f"{e}H", 1)  # one entry
    tiff += struct.pack(f"{e}HHIH", 0x0112, kind, 1, orientation) + b"\0\0"  # value, padded
    tiff += struct.pack(f"{e}I", 0)  # no next IFD
    body = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def write_oriented_jpeg(path: Path, stored: np.ndarray, orientation: int, **kw) -> Path:
    """``stored`` as a JPEG (quality 100) whose EXIF says to show it with ``orientation``."""
    ok, encoded = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    data = encoded.tobytes()
    path.write_bytes(data[:2] + exif_app1(orientation, **kw) + data[2:])  # right after SOI
    return path


def _marked(height: int = 48, width: int = 80) -> np.ndarray:
    """Black, with a white 16x16 block at the stored top-left and a red one at the stored
    top-right corner (the start and the end of row 0)."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:16, :16] = 255
    img[:16, -16:] = (0, 0, 255)
    return img


def _corner_of(img: np.ndarray, colour: tuple[int, int, int]) -> str:
    """Which corner (TL, TR, BL, BR) holds the 8x8 patch closest to ``colour``."""
    h, w = img.shape[:2]
    patches = {
        "TL": img[:8, :8],
        "TR": img[:8, w - 8 :],
        "BL": img[h - 8 :, :8],
        "BR": img[h - 8 :, w - 8 :],
    }
    target = np.asarray(colour, np.float64)
    return min(patches, key=lambda k: np.abs(patches[k].mean(axis=(0, 1)) - target).sum())


# Where the stored row 0 ends up on screen, from the EXIF 2.3 table ("0th row / 0th column"):
# orientation -> (corner of stored top-left, corner of stored top-right, sides swapped).
EXIF_CORNERS = {
    1: ("TL", "TR", False),
    2: ("TR", "TL", False),
    3: ("BR", "BL", False),
    4: ("BL", "BR", False),
    5: ("TL", "BL", True),
    6: ("TR", "BR", True),
    7: ("BR", "TR", True),
    8: ("BL", "TL", True),
}


@pytest.mark.parametrize("byte_order", ["MM", "II"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, byte_order: str) -> None:
    from saliq.imageio import read_image_oriented

    stored = _marked()
    path = write_oriented_jpeg(tmp_path / "o.jpg", stored, orientation, byte_order=byte_order)
    pixels, fmt, applied = read_image_oriented(path)
    white_at, red_at, swapped = EXIF_CORNERS[orientation]
    assert applied == orientation and fmt == "BGR"
    assert pixels.shape == ((80, 48, 3) if swapped else (48, 80, 3))
    assert _corner_of(pixels, (255, 255, 255)) == white_at
    assert _corner_of(pixels, (0, 0, 255)) == red_at
    assert pixels.flags.c_contiguous
    # Exactly what OpenCV's imread shows (its default flags apply EXIF orientation).
    np.testing.assert_array_equal(pixels, cv2.imread(str(path)))
    np.testing.assert_array_equal(read_image(path)[0], pixels)


def test_exif_orientation_of_gray_jpeg(tmp_path: Path) -> None:
    from saliq.imageio import read_image_oriented

    stored = _marked()[:, :, 0].copy()
    stored[:16, -16:] = 0  # gray: only the white block marks the corner
    path = write_oriented_jpeg(tmp_path / "g.jpg", stored, 6)
    pixels, fmt, applied = read_image_oriented(path)
    assert (fmt, applied, pixels.shape) == ("GRAY", 6, (80, 48))
    assert pixels[:8, -8:].mean() > 200 and pixels[-8:, :8].mean() < 50


@pytest.mark.parametrize(
    "make",
    [
        lambda: exif_app1(9),  # out of range
        lambda: exif_app1(0),
        lambda: exif_app1(6, kind=4),  # LONG instead of SHORT
        lambda: exif_app1(6)[:-12],  # IFD cut short
        lambda: exif_app1(6).replace(b"MM\x00\x2a", b"XX\x00\x2a"),  # bad byte order
    ],
)
def test_damaged_exif_reads_as_stored(tmp_path: Path, make) -> None:
    from saliq.imageio import read_image_oriented

    segment = make()
    # Keep the segment length field consistent with a truncated body.
    segment = segment[:2] + len(segment[2:]).to_bytes(2, "big") + segment[4:]
    ok, encoded = cv2.imencode(".jpg", _marked(), [cv2.IMWRITE_JPEG_QUALITY, 100])
    data = encoded.tobytes()
    (tmp_path / "d.jpg").write_bytes(data[:2] + segment + data[2:])
    pixels, _, applied = read_image_oriented(tmp_path / "d.jpg")
    assert applied == 1 and pixels.shape == (48, 80, 3)


def test_orientation_is_one_without_exif(tmp_path: Path) -> None:
    from saliq.imageio import jpeg_orientation, read_image_oriented

    assert read_image_oriented(_write(tmp_path / "p.png", _marked()))[2] == 1
    assert read_image_oriented(_write(tmp_path / "j.jpg", _marked()))[2] == 1
    assert jpeg_orientation(b"\xff\xd8\xff\xd9") == 1


# ---------------------------------------------------------------- GIF


def gif_bytes(indices: np.ndarray) -> bytes:
    """A GIF89a of palette ``indices`` (HxW, values 0..127; palette entry i is gray 2*i),
    built by hand: OpenCV writes GIF only in some builds and the runtime has no PIL.

    With an LZW minimum code size of 7, codes are 8 bits wide (one byte each) until the
    table fills; a clear code every 100 pixels keeps it from filling, so every pixel is
    simply its own byte."""
    import struct

    height, width = indices.shape
    palette = bytes(v for i in range(128) for v in (2 * i, 2 * i, 2 * i))
    clear, end = 128, 129
    codes = bytearray()
    flat = indices.astype(np.uint8).ravel().tolist()
    for start in range(0, len(flat), 100):
        codes += bytes([clear, *flat[start : start + 100]])
    codes.append(end)
    blocks = b"".join(
        bytes([len(codes[i : i + 255])]) + codes[i : i + 255] for i in range(0, len(codes), 255)
    )
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", width, height, 0xF6, 0, 0)  # global table of 2**(6+1) colours
        + palette
        + b","
        + struct.pack("<HHHHB", 0, 0, width, height, 0)
        + bytes([7])
        + blocks
        + b"\x00;"
    )


def write_gif(path: Path, height: int = 24, width: int = 32) -> np.ndarray:
    """Write a gradient GIF; returns the gray values it shows. Skips when this OpenCV build
    cannot decode GIF (support arrived in 4.11)."""
    ys, xs = np.mgrid[0:height, 0:width]
    indices = (xs * 3 + ys) % 128
    path.write_bytes(gif_bytes(indices))
    if cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED) is None:
        pytest.skip(f"OpenCV {cv2.__version__} cannot decode GIF")
    return (indices * 2).astype(np.uint8)


def test_gif_file_reads_as_its_first_frame(tmp_path: Path) -> None:
    gray = write_gif(tmp_path / "g.gif")
    pixels, fmt = read_image(tmp_path / "g.gif")
    assert pixels.shape[:2] == gray.shape
    channels = pixels.reshape(*gray.shape, -1)
    for c in range(min(channels.shape[2], 3)):
        np.testing.assert_array_equal(channels[:, :, c], gray)
    assert fmt in ("BGR", "BGRA", "GRAY")


def test_gif_this_opencv_cannot_decode_says_so(tmp_path: Path, monkeypatch) -> None:
    import saliq.imageio

    (tmp_path / "g.gif").write_bytes(gif_bytes(np.zeros((16, 16), np.uint8)))
    monkeypatch.setattr(saliq.imageio, "_decode", lambda data: None)  # an OpenCV without GIF
    _raises(tmp_path / "g.gif", "is a gif this opencv build cannot decode", "convert the file")


def test_folder_listing_includes_gif(tmp_path: Path) -> None:
    (tmp_path / "anim.GIF").write_bytes(gif_bytes(np.zeros((16, 16), np.uint8)))
    _write(tmp_path / "b.png", _photo(16, 16))
    assert expand_paths(tmp_path) == [tmp_path / "anim.GIF", tmp_path / "b.png"]
    (tmp_path / "b.png").unlink()  # a folder of GIFs alone is not "without images" either
    assert expand_paths(tmp_path) == [tmp_path / "anim.GIF"]


# ---------------------------------------------------------------- PIL images


def test_pil_image_is_rgb_whatever_color_says() -> None:
    Image = pytest.importorskip("PIL.Image")
    rgb = _photo(24, 32)
    for color in ("BGR", "RGB"):
        frames, names, batch = load_inputs(Image.fromarray(rgb), color=color)
        assert not batch and names == ["image[0]"]
        (pixels, fmt) = frames[0]
        assert fmt == "RGB"
        np.testing.assert_array_equal(pixels, rgb)


def test_pil_modes_are_converted(tmp_path: Path) -> None:
    Image = pytest.importorskip("PIL.Image")
    base = Image.fromarray(_photo(24, 32))
    rgba, gray, pal = base.convert("RGBA"), base.convert("L"), base.convert("P")
    frames, names, batch = load_inputs([rgba, gray, pal, np.zeros((16, 16, 3), np.uint8)])
    assert batch and names == ["image[0]", "image[1]", "image[2]", "array[3]"]
    assert [fmt for _, fmt in frames] == ["RGB", "RGB", "RGB", "BGR"]
    np.testing.assert_array_equal(frames[0][0], np.asarray(base))  # alpha dropped
    np.testing.assert_array_equal(frames[1][0][:, :, 0], np.asarray(gray))
    np.testing.assert_array_equal(frames[2][0], np.asarray(pal.convert("RGB")))
    # 16-bit gray keeps its range (convert("RGB") would clip it at 255).
    deep = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80
    ((pixels, fmt),) = load_inputs(Image.fromarray(deep).convert("I;16"))[0]
    assert fmt == "GRAY" and pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, deep)
    # An opened file is named by its path.
    path = _write(tmp_path / "p.png", _photo(24, 32))
    with Image.open(path) as opened:
        assert load_inputs(opened)[1] == [str(path)]


def test_pil_image_exif_orientation_is_applied(tmp_path: Path) -> None:
    Image = pytest.importorskip("PIL.Image")
    path = write_oriented_jpeg(tmp_path / "o.jpg", _marked(), 6)  # shown turned 90 clockwise
    with Image.open(path) as opened:
        ((pixels, fmt),) = load_inputs(opened)[0]
    # Upright as read_image turns the file (PIL's JPEG decoder may differ by a level or two).
    assert fmt == "RGB" and pixels.shape == (80, 48, 3)
    assert _corner_of(pixels, (255, 255, 255)) == "TR"
    assert _corner_of(pixels, (255, 0, 0)) == "BR"  # red, in RGB order
    with Image.open(path) as opened:
        from PIL import ImageOps

        turned = ImageOps.exif_transpose(opened)  # clears the tag: not turned twice
        np.testing.assert_array_equal(load_inputs(turned)[0][0][0], pixels)


def test_pil_errors_are_one_line() -> None:
    Image = pytest.importorskip("PIL.Image")
    with pytest.raises(InvalidImageError, match=r"image\[0\].*too small"):
        load_inputs(Image.new("RGB", (4, 4)))
    with pytest.raises(InvalidImageError, match=r"mode 'F'.*numpy array"):
        load_inputs(Image.new("F", (16, 16)))


def test_assess_takes_pil_images(tmp_path: Path) -> None:
    from .conftest import require

    require("onnxruntime", "scoring runs the shipped model with onnxruntime")
    Image = pytest.importorskip("PIL.Image")
    import saliq

    rgb = _photo(48, 64)
    with saliq.load("default") as assessor:
        single = assessor.assess(Image.fromarray(rgb))
        batch = assessor.assess([Image.fromarray(rgb), Image.fromarray(rgb).convert("RGBA")])
        expected = assessor.assess(rgb, color="RGB").score
    assert single.score == pytest.approx(expected, abs=1e-6)
    assert [r.score for r in batch] == pytest.approx([expected, expected], abs=1e-6)


def test_folders_skip_gifs_where_opencv_cannot_decode_them(tmp_path, monkeypatch):
    from saliq import imageio

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "b.gif").write_bytes(imageio._PROBE_GIF)
    monkeypatch.setattr(imageio, "_GIF_DECODES", [False])  # an OpenCV older than 4.11
    assert [p.name for p in imageio.expand_paths(tmp_path)] == ["a.png"]
    monkeypatch.setattr(imageio, "_GIF_DECODES", [True])
    assert [p.name for p in imageio.expand_paths(tmp_path)] == ["a.png", "b.gif"]
