"""saliq._preproc (csrc/, the CPU twin) against the float64 oracle of DESIGN.md's version 1."""

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from . import preprocess_oracle as oracle
from .conftest import require

P = require("saliq._preproc", reason="the native extension is not built")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FLOAT32_TOL = 1e-5  # the bound for float32 outputs, absolute
FP16_ULP_FLOOR = 1e-3  # |value| from which float16 outputs are held to one float16 ulp
PACKED = {"BGR": 3, "RGB": 3, "BGRA": 4, "RGBA": 4, "GRAY": 1}
SCENE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scene" / "images"


def _photo_rgb(h: int, w: int) -> np.ndarray:
    """A real photo (Scene if present, else scikit-image's astronaut) resized to h x w."""
    import cv2

    paths = sorted(SCENE.glob("*.jpg")) if SCENE.is_dir() else []
    bgr = cv2.imread(str(paths[0])) if paths else None
    if bgr is None:
        from skimage import data

        bgr = data.astronaut()[:, :, ::-1]
    interp = cv2.INTER_AREA if h * w < bgr.shape[0] * bgr.shape[1] else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(bgr, (w, h), interpolation=interp)[:, :, ::-1])


def _frame(rgb8: np.ndarray, fmt: str, depth: str, rng) -> np.ndarray:
    """An RGB uint8 image as a `fmt` frame of `depth`; uint16 gets random low bits."""
    if fmt == "GRAY":
        px = rgb8[:, :, 1]
    elif fmt.startswith("BGR"):
        px = rgb8[:, :, ::-1]
    else:
        px = rgb8
    if fmt.endswith("A"):
        px = np.dstack([px, rng.integers(0, 256, px.shape[:2], dtype=np.uint8)])
    px = np.ascontiguousarray(px)
    if depth == "uint16":
        return px.astype(np.uint16) * 257 + rng.integers(0, 257, px.shape).astype(np.uint16)
    return px


def _assert_close(got: dict, want: dict, dtype: str = "float32", index: int = 0) -> dict:
    errors = {}
    for key, ref in want.items():
        out = got[key][index]
        assert out.shape == ref.shape, key
        assert out.dtype == np.dtype(dtype), key
        err = np.abs(out.astype(np.float64) - ref)
        tol = np.full(ref.shape, FLOAT32_TOL)
        if dtype == "float16":
            # One float16 ulp of the float64 value. Below FP16_ULP_FLOOR a float16 ulp (down to
            # 6e-8) is finer than float32 arithmetic resolves after cancellation (measured: up
            # to 8e-7 there), so the float32 bound applies instead.
            ulp = np.spacing(np.abs(ref).astype(np.float16)).astype(np.float64)
            tol = np.where(np.abs(ref) >= FP16_ULP_FLOOR, ulp, FLOAT32_TOL)
        assert np.all(err <= tol), f"{key}: max error {err.max():.3g}"
        errors[key] = float(err.max())
    return errors


@pytest.mark.parametrize("depth", ["uint8", "uint16"])
@pytest.mark.parametrize("fmt", list(PACKED))
@pytest.mark.parametrize(
    "src_hw, out_hw, real",
    [
        ((1, 1), (32, 32), False),
        ((2, 3), (64, 32), False),
        ((37, 53), (32, 96), False),  # shrink rows, grow columns
        ((480, 640), (224, 224), True),
        ((200, 300), (256, 224), True),  # grow rows, shrink columns
    ],
)
def test_packed_formats_match_oracle(fmt, depth, src_hw, out_hw, real):
    rng = np.random.default_rng(hash((fmt, depth, src_hw)) % 2**32)
    rgb = _photo_rgb(*src_hw) if real else rng.integers(0, 256, (*src_hw, 3), dtype=np.uint8)
    frame = _frame(rgb, fmt, depth, rng)
    got = P.preprocess([frame], fmt, *out_hw, mean=MEAN, std=STD)
    _assert_close(got, oracle.preprocess_frame(frame, fmt, *out_hw, MEAN, STD))


def test_1080p_batch_float16_and_float32():
    rng = np.random.default_rng(1)
    batch = np.stack([_photo_rgb(1080, 1920)[:, :, ::-1], rng.integers(0, 256, (1080, 1920, 3))])
    batch = batch.astype(np.uint8)
    f32 = P.preprocess(batch, "BGR", 384, 512, MEAN, STD)
    f16 = P.preprocess(batch, "BGR", 384, 512, MEAN, STD, dtype="float16")
    for i in range(2):
        want = oracle.preprocess_frame(batch[i], "BGR", 384, 512, MEAN, STD)
        _assert_close(f32, want, "float32", i)
        _assert_close(f16, want, "float16", i)
    for key in f32:  # DESIGN.md step 6: float16 is the float32 result rounded to nearest even
        np.testing.assert_array_equal(f16[key], f32[key].astype(np.float16))


def test_4000x3000_once():
    rng = np.random.default_rng(2)
    frame = _frame(_photo_rgb(3000, 4000), "RGB", "uint16", rng)
    got = P.preprocess([frame], "RGB", 384, 512, MEAN, STD)
    _assert_close(got, oracle.preprocess_frame(frame, "RGB", 384, 512, MEAN, STD))


@pytest.mark.parametrize("depth", ["uint8", "uint16"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("fmt", [*PACKED, "NV12"])
def test_float16_within_one_ulp(fmt, dtype, depth):
    rng = np.random.default_rng(3)
    if fmt == "NV12":
        frame = _nv12(120, 160, depth, rng, real=True)
    else:
        frame = _frame(_photo_rgb(120, 160), fmt, depth, rng)
    got = P.preprocess([frame], fmt, 96, 128, MEAN, STD, dtype=dtype)
    _assert_close(got, oracle.preprocess_frame(frame, fmt, 96, 128, MEAN, STD), dtype)


def _nv12(h: int, w: int, depth: str, rng, real: bool) -> np.ndarray:
    if real:
        import cv2

        yuv = cv2.cvtColor(_photo_rgb(h, w), cv2.COLOR_RGB2YUV_I420)
        y, u, v = yuv[:h], yuv[h : h + h // 4].reshape(h // 2, w // 2), yuv[h + h // 4 :]
        nv12 = np.vstack([y, np.stack([u, v.reshape(h // 2, w // 2)], 2).reshape(h // 2, w)])
    else:
        nv12 = rng.integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)
    if depth == "uint16":
        return nv12.astype(np.uint16) * 257 + rng.integers(0, 257, nv12.shape).astype(np.uint16)
    return nv12


@pytest.mark.parametrize("depth", ["uint8", "uint16"])
@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("yuv_range", ["limited", "full"])
@pytest.mark.parametrize(
    "src_hw, out_hw, real",
    [((2, 2), (32, 32), False), ((4, 6), (32, 64), False), ((240, 320), (128, 96), True)],
)
def test_nv12_matches_oracle(depth, matrix, yuv_range, src_hw, out_hw, real):
    rng = np.random.default_rng(4)
    frame = _nv12(*src_hw, depth, rng, real)
    got = P.preprocess([frame], "NV12", *out_hw, MEAN, STD, matrix=matrix, yuv_range=yuv_range)
    want = oracle.preprocess_frame(frame, "NV12", *out_hw, MEAN, STD, matrix, yuv_range)
    _assert_close(got, want)


def test_nv12_1080p_matches_oracle():
    frame = _nv12(1080, 1920, "uint8", np.random.default_rng(5), True)
    got = P.preprocess([frame], "NV12", 384, 512, MEAN, STD)
    _assert_close(got, oracle.preprocess_frame(frame, "NV12", 384, 512, MEAN, STD))


def _decoded_rgb(out: dict, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> np.ndarray:
    """Undo the normalisation: image -> resized RGB in [0, 255], HxWx3 float64."""
    img = out["image"][0].astype(np.float64).transpose(1, 2, 0)
    return (img * np.array(std) + np.array(mean)) * 255.0


def test_nv12_decode_matches_opencv():
    import cv2

    frame = _nv12(64, 96, "uint8", np.random.default_rng(6), True)
    ours = _decoded_rgb(P.preprocess([frame], "NV12", 64, 96))  # same size: identity resize
    theirs = cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_NV12).astype(np.float64)
    assert np.abs(ours - theirs).max() <= 2.0  # OpenCV rounds its fixed-point result


@pytest.mark.parametrize(
    "src_hw, out_hw", [((480, 640), (224, 320)), ((50, 70), (96, 128)), ((90, 300), (128, 64))]
)
def test_resize_matches_opencv(src_hw, out_hw):
    import cv2

    rgb = _photo_rgb(*src_hw)
    ours = _decoded_rgb(P.preprocess([rgb], "RGB", *out_hw))
    ref = rgb.astype(np.float32)  # per axis, as DESIGN.md: INTER_AREA shrinking, else LINEAR
    for axis, n in ((1, out_hw[1]), (0, out_hw[0])):
        size = (n, ref.shape[0]) if axis == 1 else (ref.shape[1], n)
        interp = cv2.INTER_AREA if n < ref.shape[axis] else cv2.INTER_LINEAR
        ref = cv2.resize(ref, size, interpolation=interp)
    assert np.abs(ours - ref).max() < 1e-3


def test_pitch_and_batches():
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (33, 47, 3), dtype=np.uint8) for _ in range(3)]
    ref = P.preprocess(frames, "BGR", 32, 64)
    padded = np.zeros((33, 64 * 3), np.uint8)
    padded[:, : 47 * 3] = frames[1].reshape(33, -1)
    view = padded[:, : 47 * 3].reshape(33, 47, 3)  # rows 192 bytes apart
    with pytest.raises(ValueError, match="pitch=192"):
        P.preprocess([view], "BGR", 32, 64)
    with pytest.raises(ValueError, match="rows are 192 bytes apart"):
        P.preprocess([view], "BGR", 32, 64, pitch=200)
    got = P.preprocess([view], "BGR", 32, 64, pitch=192)
    for key in ref:
        np.testing.assert_array_equal(got[key][0], ref[key][1])
        assert ref[key].shape[0] == 3
    batch = P.preprocess(np.stack(frames), "BGR", 32, 64)  # one [N, H, W, C] array
    mixed = P.preprocess([frames[0], frames[1][:20]], "BGR", 32, 64)  # sizes may differ
    for key in ref:
        np.testing.assert_array_equal(batch[key], ref[key])
        np.testing.assert_array_equal(mixed[key][0], ref[key][0])


def test_threads_are_settable_and_deterministic():
    frame = _photo_rgb(300, 400)
    P.set_num_threads(0)  # whatever an earlier test pinned (saliq.load(threads=...), bench)
    before = P.get_num_threads()
    try:
        P.set_num_threads(1)
        assert P.get_num_threads() == 1
        one = P.preprocess([frame], "RGB", 224, 224)
        P.set_num_threads(3)
        assert P.get_num_threads() == 3
        three = P.preprocess([frame], "RGB", 224, 224)
    finally:
        P.set_num_threads(0)
    assert P.get_num_threads() == before
    for key in one:
        np.testing.assert_array_equal(one[key], three[key])


def _child(_):
    from saliq import _preproc

    return float(
        _preproc.preprocess([np.full((64, 64, 3), 9, np.uint8)], "RGB", 32, 32)["image"].sum()
    )


def test_fork_after_threads_does_not_hang():
    P.preprocess([_photo_rgb(128, 128)], "RGB", 64, 64)  # threads ran in the parent
    with multiprocessing.get_context("fork").Pool(2) as pool:
        result = pool.map_async(_child, range(2))
        assert len(result.get(timeout=60)) == 2


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: P.preprocess([np.zeros((4, 4, 3), np.float32)], "RGB", 32, 32),
            TypeError,
            "uint8 or uint16",
        ),
        (lambda: P.preprocess([np.zeros((4, 4, 4), np.uint8)], "RGB", 32, 32), ValueError, "HxWx3"),
        (
            lambda: P.preprocess([np.zeros((4, 4, 3), np.uint8)], "RGBA", 32, 32),
            ValueError,
            "HxWx4",
        ),
        (
            lambda: P.preprocess([np.zeros((4, 8, 3), np.uint8)[:, ::2]], "RGB", 32, 32),
            ValueError,
            "not contiguous",
        ),
        (
            lambda: P.preprocess([np.zeros((4, 4, 3), np.uint8).transpose(1, 0, 2)], "RGB", 32, 32),
            ValueError,
            "not contiguous",
        ),
        (
            lambda: P.preprocess([np.zeros((0, 4, 3), np.uint8)], "RGB", 32, 32),
            ValueError,
            "zero-size",
        ),
        (
            lambda: P.preprocess(np.zeros((0, 4, 4, 3), np.uint8), "RGB", 32, 32),
            ValueError,
            "empty batch",
        ),
        (lambda: P.preprocess([], "RGB", 32, 32), ValueError, "empty batch"),
        (
            lambda: P.preprocess(
                [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint16)], "RGB", 32, 32
            ),
            ValueError,
            "mismatched batch",
        ),
        (
            lambda: P.preprocess([np.zeros((7, 4), np.uint8)], "NV12", 32, 32),
            ValueError,
            "even width and height",
        ),
        (
            lambda: P.preprocess([np.zeros((6, 5), np.uint8)], "NV12", 32, 32),
            ValueError,
            "even width and height",
        ),
        (
            lambda: P.preprocess([np.zeros((5, 4), np.uint8)], "NV12", 32, 32),
            ValueError,
            "even width and height",
        ),
        (
            lambda: P.preprocess([np.zeros((4, 4, 3), np.uint8)], "YUYV", 32, 32),
            ValueError,
            "unknown pixel format",
        ),
        (
            lambda: P.preprocess([np.zeros((4, 4, 3), np.uint8)], "RGB", 30, 32),
            ValueError,
            "multiples of 4",
        ),
        (
            lambda: P.preprocess([np.zeros((4, 4, 3), np.uint8)], "RGB", 32, 32, dtype="int8"),
            ValueError,
            "float16",
        ),
        (
            lambda: P.preprocess([np.zeros((4, 4), np.uint8)], "NV12", 32, 32, matrix="bt2020"),
            ValueError,
            "bt709",
        ),
        (lambda: P.preprocess(np.zeros((4, 4, 3), np.uint8), "RGB", 32, 32), ValueError, "batch"),
        (lambda: P.preprocess(["frame"], "RGB", 32, 32), TypeError, "numpy"),
    ],
)
def test_bad_input_raises_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_gpu_entry_point_without_a_gpu_raises():
    if P.cuda_available():
        pytest.skip("a GPU is usable here; tests/test_native_preprocess_gpu.py covers it")
    assert P.cuda_unavailable_reason()
    with pytest.raises(RuntimeError, match="CUDA preprocessing unavailable"):
        P.preprocess_cuda([np.zeros((4, 4, 3), np.uint8)], "RGB", 32, 32)
    from saliq import BackendUnavailableError, Preprocessor

    with pytest.raises(BackendUnavailableError, match="GPU preprocessing unavailable: .+"):
        Preprocessor(32, 32).cuda([np.zeros((4, 4, 3), np.uint8)])


# Version 2 (docs/preprocessing.md): crop views. Placement is checked exactly against
# saliq.views on the same float32 prior, the crop pixels against the float64 oracle.

# P = 32 from windows of Q = 50 (area, 1.5625:1) on the 152 x 200 frame (s = 128 / 200), a
# copy on 100 x 120 (s = 1, Q = P) and bilinear magnification on 20 x 28 (Q = 20 < P); the
# grid's windows (Qg = 75, 48, 20) sit at odd offsets on the first frame (x 13, 113; y 1, 77).
VIEWS = dict(
    detail_crops=4, crop_size=32, salient_crops=2, grid_crops=3, grid_size=48,
    canonical_long_side=128,
)  # fmt: skip
V2_SIZES = [(152, 200), (100, 120), (20, 28)]
V1_KEYS = ("image", "gradient", "prior")


def _views_cfg(views: dict):
    from saliq.views import ViewConfig

    return ViewConfig(**views)


def _check_views(got, frames, fmt, views, dtype, priors, **decode):
    """Boxes/weights exactly as saliq.views places them on `priors` (float32), crops and grid
    within the oracle tolerances. Returns the detail windows of every frame."""
    from saliq import views as V

    cfg = _views_cfg(views)
    placed = []
    for i, frame in enumerate(frames):
        height = frame.shape[0] * 2 // 3 if fmt == "NV12" else frame.shape[0]
        width = frame.shape[1]
        windows, side, weights = V.place_detail_crops(priors[i, 0], width, height, cfg)
        np.testing.assert_array_equal(got["crop_boxes"][i], V.boxes(windows, side, width, height))
        np.testing.assert_array_equal(got["crop_weights"][i], weights)
        want = oracle.crops(frame, fmt, windows, side, cfg.crop_size, MEAN, STD, **decode)
        _assert_close({k: got[k] for k in want}, want, dtype, i)
        grid, grid_side = V.grid_windows(width, height, cfg)
        np.testing.assert_array_equal(
            got["grid_boxes"][i], oracle.boxes(grid, grid_side, width, height).astype(np.float32)
        )
        want = oracle.crops(frame, fmt, grid, grid_side, cfg.grid_size, MEAN, STD, **decode)
        _assert_close({"grid": got["grid"]}, {"grid": want["crops"]}, dtype, i)
        placed.append(windows)
    return placed


def _v2_frames(fmt: str, depth: str, rng) -> list[np.ndarray]:
    if fmt == "NV12":
        return [_nv12(h, w, depth, rng, real=True) for h, w in V2_SIZES]
    return [_frame(_photo_rgb(h, w), fmt, depth, rng) for h, w in V2_SIZES]


@pytest.mark.parametrize("depth", ["uint8", "uint16"])
@pytest.mark.parametrize("fmt", [*PACKED, "NV12"])
def test_v2_crop_views_match_oracle(fmt, depth):
    rng = np.random.default_rng(hash((fmt, depth, 2)) % 2**32)
    frames = _v2_frames(fmt, depth, rng)
    v1 = P.preprocess(frames, fmt, 64, 96, MEAN, STD)
    f32 = P.preprocess(frames, fmt, 64, 96, MEAN, STD, views=VIEWS)
    f16 = P.preprocess(frames, fmt, 64, 96, MEAN, STD, dtype="float16", views=VIEWS)
    for key in V1_KEYS:  # version 1's outputs: the same bits with or without views
        np.testing.assert_array_equal(f32[key], v1[key])
    for key in V1_KEYS:
        np.testing.assert_array_equal(
            f16[key], P.preprocess(frames, fmt, 64, 96, MEAN, STD, dtype="float16")[key]
        )
    _check_views(f32, frames, fmt, VIEWS, "float32", f32["prior"])
    # float16: placed on the float32 prior (the same boxes), pixels rounded from float32.
    _check_views(f16, frames, fmt, VIEWS, "float16", f32["prior"])
    for key in ("crop_boxes", "crop_weights", "grid_boxes"):
        assert f16[key].dtype == np.float32
        np.testing.assert_array_equal(f16[key], f32[key])
    for key in ("crops", "crop_gradient", "grid"):
        np.testing.assert_array_equal(f16[key], f32[key].astype(np.float16))


def test_nv12_window_oracle_at_odd_offsets():
    """The oracle's window decode (whole chroma blocks, then cut) equals the full decode."""
    frame = _nv12(40, 60, "uint8", np.random.default_rng(8), real=False)
    full = oracle.decode(frame, "NV12")
    for x0, y0 in [(0, 0), (1, 0), (0, 1), (13, 7), (43, 23)]:
        np.testing.assert_array_equal(
            oracle.decode_window(frame, "NV12", x0, y0, 17), full[y0 : y0 + 17, x0 : x0 + 17]
        )


@pytest.mark.parametrize(
    "fmt, yuv", [("NV12", dict(matrix="bt709", yuv_range="full")), ("BGRA", {})]
)
def test_v2_4k_frames_use_2x_windows(fmt, yuv):
    """A 3840 x 2160 frame: s = 0.5, each 96 x 96 crop is a 192 x 192 window area-averaged."""
    rng = np.random.default_rng(9)
    if fmt == "NV12":
        frame = _nv12(2160, 3840, "uint8", rng, real=True)
    else:
        frame = _frame(_photo_rgb(2160, 3840), fmt, "uint8", rng)
    views = dict(detail_crops=4, crop_size=96, salient_crops=3, grid_crops=2, grid_size=64)
    got = P.preprocess([frame], fmt, 224, 224, MEAN, STD, views=views, **yuv)
    boxes = got["crop_boxes"][0].astype(np.float64)
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], 192 / 3840, rtol=1e-6)
    np.testing.assert_allclose(boxes[:, 3] - boxes[:, 1], 192 / 2160, rtol=1e-6)
    _check_views(got, [frame], fmt, views, "float32", got["prior"], **yuv)


@pytest.mark.parametrize("hw", [(40, 1000), (1000, 40), (8, 8)])
def test_v2_very_wide_tall_and_tiny_frames(hw):
    rng = np.random.default_rng(10)
    frame = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    got = P.preprocess([frame], "RGB", 32, 64, MEAN, STD, views=VIEWS)
    windows = _check_views(got, [frame], "RGB", VIEWS, "float32", got["prior"])[0]
    side = min(hw)  # the short side is below Q everywhere here: magnified (or area at 40)
    assert ((windows >= 0) & (windows + side <= [hw[1], hw[0]])).all()


def test_v2_batches_pitch_and_threads():
    rng = np.random.default_rng(12)
    frames = [_photo_rgb(90, 130) for _ in range(2)]
    frames[1] = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    listed = P.preprocess(frames, "RGB", 32, 64, views=VIEWS)
    batch = P.preprocess(np.stack(frames), "RGB", 32, 64, views=VIEWS)
    padded = np.zeros((90, 512), np.uint8)
    padded[:, : 130 * 3] = frames[1].reshape(90, -1)
    view = padded[:, : 130 * 3].reshape(90, 130, 3)
    pitched = P.preprocess([view], "RGB", 32, 64, pitch=512, views=VIEWS)
    before = P.get_num_threads()
    try:
        P.set_num_threads(1)
        one_thread = P.preprocess(frames, "RGB", 32, 64, views=VIEWS)
    finally:
        P.set_num_threads(0)
    assert P.get_num_threads() == before
    assert set(listed) == {*V1_KEYS, "crops", "crop_gradient", "crop_boxes", "crop_weights"} | {
        "grid",
        "grid_boxes",
    }
    for key in listed:
        np.testing.assert_array_equal(batch[key], listed[key])
        np.testing.assert_array_equal(one_thread[key], listed[key])
        np.testing.assert_array_equal(pitched[key][0], listed[key][1])


def test_v2_bad_views_raise_clear_errors():
    frame = [np.zeros((16, 16, 3), np.uint8)]
    with pytest.raises(ValueError, match="unknown key 'crops'"):
        P.preprocess(frame, "RGB", 32, 32, views={"crops": 4})
    with pytest.raises(TypeError, match="views must be None or a dict"):
        P.preprocess(frame, "RGB", 32, 32, views=[4])
    out = P.preprocess(frame, "RGB", 32, 32, views={})  # ViewConfig's defaults
    assert out["crops"].shape == (1, 4, 3, 96, 96) and out["grid"].shape == (1, 0, 3, 224, 224)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("fmt", ["BGR", "NV12"])
def test_preprocessor_v2_native_equals_python_reference(fmt, dtype):
    """saliq.Preprocessor dispatches version 2 to the native code; the Python reference agrees
    within the oracle tolerances on pixels and exactly on boxes (weights: the two priors differ
    by float32 rounding, so the weights by as much)."""
    from saliq import Preprocessor

    cfg = _views_cfg(VIEWS)
    rng = np.random.default_rng(13)
    if fmt == "NV12":
        frames = [_nv12(240, 320, "uint8", rng, real=True), _nv12(96, 128, "uint8", rng, True)]
    else:
        frames = [_photo_rgb(240, 320)[:, :, ::-1].copy(), _photo_rgb(96, 128)[:, :, ::-1].copy()]
    args = dict(mean=MEAN, std=STD, dtype=dtype, version=2, views=cfg)
    native = Preprocessor(64, 96, implementation="native", **args)(frames, fmt)
    python = Preprocessor(64, 96, implementation="python", **args)(frames, fmt)
    assert set(native) == set(python)
    for key in native:
        assert native[key].shape == python[key].shape and native[key].dtype == python[key].dtype
    np.testing.assert_array_equal(native["crop_boxes"], python["crop_boxes"])
    np.testing.assert_array_equal(native["grid_boxes"], python["grid_boxes"])
    np.testing.assert_allclose(native["crop_weights"], python["crop_weights"], atol=FLOAT32_TOL)
    for key in ("image", "gradient", "prior", "crops", "crop_gradient", "grid"):
        a, b = native[key].astype(np.float64), python[key].astype(np.float64)
        tol = FLOAT32_TOL
        if dtype == "float16":  # one float16 ulp each side of the float32 value
            tol = np.maximum(np.spacing(np.abs(python[key])).astype(np.float64), FLOAT32_TOL)
        assert np.all(np.abs(a - b) <= tol), f"{key}: {np.abs(a - b).max():.3g}"
    one = Preprocessor(64, 96, implementation="native", **args).one(frames[0], fmt)
    np.testing.assert_array_equal(one["crop_boxes"], native["crop_boxes"][0])
