"""Native-resolution training data for crop-view models (train/data/native.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from saliq.preprocess import Preprocessor  # noqa: E402
from saliq.train.data.content import ContentItem  # noqa: E402
from saliq.train.data.native import (  # noqa: E402
    REGION_SEVERITY,
    NativeGridSet,
    NativeTrainSet,
    crop_coverage,
    region_mask,
)
from saliq.views import ViewConfig  # noqa: E402

INPUTS = ("image", "crops", "crop_weights")


def _photos(tmp_path, n=3):
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        small = rng.integers(0, 255, (24, 32, 3)).astype(np.uint8)
        photo = cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC)
        path = tmp_path / f"p{i}.png"
        cv2.imwrite(str(path), photo)
        items.append(ContentItem(str(path), "test", None, 640, 480))
    return items


def _pre():
    views = ViewConfig(detail_crops=3, crop_size=32, salient_crops=2)
    return Preprocessor(64, 64, version=2, views=views)


def test_items_carry_inputs_score_and_crop_targets(tmp_path):
    data = NativeTrainSet(_photos(tmp_path), _pre(), INPUTS, copies_per_photo=4, seed=1)
    labels = data.labels()
    assert len(labels) == len(data) == 12
    for index in range(len(data)):
        item = data[index]
        assert tuple(item["crops"].shape) == (3, 3, 32, 32)
        assert tuple(item["crop_targets"].shape) == (3,)
        assert float(item["score"]) == pytest.approx(labels[index], abs=1e-6)
        targets = item["crop_targets"].numpy()
        assert ((targets >= float(item["score"]) - 1e-6) | (targets <= 1.0)).all()
        assert (targets >= 0).all() and (targets <= 1).all()
        if int(item["level"]) == 0:
            assert float(item["score"]) == 1.0 and np.allclose(targets, 1.0)
    again = NativeTrainSet(_photos(tmp_path), _pre(), INPUTS, copies_per_photo=4, seed=1)
    assert torch.equal(again[5]["crops"], data[5]["crops"])  # deterministic per seed+epoch
    data.set_epoch(1)
    assert not np.array_equal(data.labels(), labels)


def test_region_masks_and_crop_coverage():
    ys, xs = np.mgrid[0:8, 0:8]
    prior = np.exp(-(xs**2 + ys**2) / 8.0).astype(np.float32)  # salient top-left, smooth
    salient = region_mask(prior, (80, 80), "salient")
    background = region_mask(prior, (80, 80), "background")
    assert salient[:10, :10].mean() > 0.9 and salient[60:, 60:].mean() < 0.05
    assert background[60:, 60:].mean() > 0.9 and background[:10, :10].mean() < 0.05
    boxes = np.array([[0.0, 0.0, 0.2, 0.2], [0.7, 0.7, 1.0, 1.0]])
    cover = crop_coverage(salient, boxes)
    assert cover[0] > 0.8 and cover[1] < 0.05
    assert REGION_SEVERITY["salient"] > REGION_SEVERITY["background"] > 0


def test_validation_grid_is_a_severity_series(tmp_path):
    grid = NativeGridSet(_photos(tmp_path, 1), _pre(), INPUTS, types=["gaussian_noise"])
    assert [r[2] for r in grid.records] == [0, 1, 2, 3, 4, 5]
    assert np.allclose(grid.labels(), 1 - 0.18 * np.arange(6))
    crops = [grid[i]["crops"] for i in range(6)]
    spread = [float(c.std()) for c in crops]
    assert spread[5] > spread[0]  # noise shows in the native crops


# ---------------------------------------------------------------- saliency targets, rotation

DOT_XY = (300.0, 90.0)  # in the photo's own pixels (384 x 288)


def _dot_photo(tmp_path, name="dot.png", fixations=True):
    """A dark 384 x 288 photo with one bright disc where every fixation is.

    The long side (384) is at most WINDOW_LONG_SIDE's minimum, so every training window is the
    whole canonical frame: only the flip (and the rotation) varies between items.
    """
    photo = np.full((288, 384, 3), 20, np.uint8)
    cv2.circle(photo, (int(DOT_XY[0]), int(DOT_XY[1])), 14, (255, 255, 255), -1)
    path = tmp_path / name
    cv2.imwrite(str(path), photo)
    fix = np.tile(np.array([DOT_XY], np.float32), (5, 1)) if fixations else None
    return ContentItem(str(path), "test", fix, 384, 288)


def _small_canonical_pre():
    # canonical long side 192: the photo is halved, so the fixations must be scaled too
    views = ViewConfig(detail_crops=2, crop_size=32, salient_crops=1, canonical_long_side=192)
    return Preprocessor(64, 64, version=2, views=views)


def _peak(map2d):
    return np.unravel_index(int(np.argmax(map2d)), map2d.shape)


def _dot_in_image(item):
    """(row, col) of the bright disc in the model's 64 x 64 image, in 16 x 16 target cells."""
    brightness = item["image"].numpy().mean(axis=0)
    rows, cols = np.nonzero(brightness > brightness.min() + 0.7 * np.ptp(brightness))
    return rows.mean() / 4.0, cols.mean() / 4.0


def test_native_saliency_target_peaks_on_the_fixated_dot_and_flips_with_the_window(tmp_path):
    data = NativeTrainSet(
        [_dot_photo(tmp_path)],
        _small_canonical_pre(),
        ("image",),
        copies_per_photo=12,
        pristine_prob=1.0,
        seed=3,
        targets=("score", "crop_targets", "saliency"),
        saliency_hw=(16, 16),
    )
    from saliq.train.data.saliency_targets import fixation_density

    scaled = np.array([[(DOT_XY[0] + 0.5) / 2 - 0.5, (DOT_XY[1] + 0.5) / 2 - 0.5]], np.float32)
    expected = {
        flip: fixation_density(np.repeat(scaled, 5, 0), (144, 192), (16, 16), flip=flip)
        for flip in (False, True)
    }
    cols = []
    for index in range(len(data)):
        item = data[index]
        saliency = item["saliency"].numpy()[0]
        assert saliency.shape == (16, 16) and float(saliency.sum()) == pytest.approx(1.0, abs=1e-5)
        row, col = _peak(saliency)
        dot_row, dot_col = _dot_in_image(item)
        assert abs(row + 0.5 - dot_row) <= 1.0 and abs(col + 0.5 - dot_col) <= 1.0
        cols.append(col)
        # exactly the density of the fixations scaled to the 192 x 144 canonical frame
        # (not the prior fallback, which also likes the bright dot), mirrored or not
        assert any(np.allclose(saliency, density, atol=1e-6) for density in expected.values())
    # The dot is at x = 300 of 384 (cell 12.5 of 16): unflipped items peak right, flipped
    # items (mirrored window and target) peak at the mirrored cell 3.
    assert set(cols) == {3, 12}


def test_native_split_targets_and_prior_fallback(tmp_path):
    targets = ("score", "crop_targets", "score_dist", "saliency_high", "saliency_low")
    grid = NativeGridSet(
        [_dot_photo(tmp_path), _dot_photo(tmp_path, "plain.png", fixations=False)],
        _small_canonical_pre(),
        ("image", "prior"),
        types=["gaussian_noise"],
        targets=targets,
        saliency_hw=(16, 16),
    )
    item = grid[0]
    assert {"saliency_high", "saliency_low", "score_dist"} <= set(item) and "saliency" not in item
    high, low = item["saliency_high"].numpy()[0], item["saliency_low"].numpy()[0]
    assert high.shape == low.shape == (16, 16)
    assert float(high.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(low.sum()) == pytest.approx(1.0, abs=1e-5)
    assert _peak(high) in {(5, 12), (5, 13), (6, 12), (6, 13)}  # the dot: (90, 300) / 18 px
    assert float(item["score_dist"].sum()) == pytest.approx(1.0, abs=1e-5)
    # no fixations: the window's own preprocessing prior, resized and sum-normalised
    plain = grid[len(grid) // 2]
    assert int(plain["photo_index"]) == 1 and int(plain["level"]) == 0
    from saliq.train.data.saliency_split import split_saliency
    from saliq.train.data.saliency_targets import fixation_density

    expected = fixation_density(None, (144, 192), (16, 16), prior=plain["prior"].numpy()[0])
    np.testing.assert_allclose(plain["saliency_high"].numpy()[0], split_saliency(expected)[0])


def test_native_rejects_targets_it_cannot_make(tmp_path):
    from saliq.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot make the targets"):
        NativeGridSet([_dot_photo(tmp_path)], _small_canonical_pre(), ("image",), targets=("x",))
    with pytest.raises(ConfigError, match="saliency_hw"):
        NativeGridSet(
            [_dot_photo(tmp_path)], _small_canonical_pre(), ("image",), targets=("saliency",)
        )


def test_native_rotation_keeps_the_target_on_the_dot_and_is_seeded(tmp_path):
    def make(seed=3):
        return NativeTrainSet(
            [_dot_photo(tmp_path)],
            _small_canonical_pre(),
            ("image",),
            copies_per_photo=6,
            pristine_prob=1.0,
            seed=seed,
            targets=("score", "crop_targets", "saliency"),
            saliency_hw=(16, 16),
            rotate_deg=40.0,
        )

    data = make()
    unrotated = NativeTrainSet(
        [_dot_photo(tmp_path)],
        _small_canonical_pre(),
        ("image",),
        copies_per_photo=6,
        pristine_prob=1.0,
        seed=3,
        targets=("score", "crop_targets", "saliency"),
        saliency_hw=(16, 16),
    )
    moved = 0
    for index in range(len(data)):
        item = data[index]
        row, col = _peak(item["saliency"].numpy()[0])
        dot_row, dot_col = _dot_in_image(item)
        assert abs(row + 0.5 - dot_row) <= 1.0 and abs(col + 0.5 - dot_col) <= 1.0
        moved += not torch.equal(item["saliency"], unrotated[index]["saliency"])
    assert moved == len(data)  # every item rotated (angles of 0 have probability 0)
    again = make()
    assert torch.equal(again[2]["image"], data[2]["image"])  # same (seed, epoch, index)
    assert torch.equal(again[2]["saliency"], data[2]["saliency"])
    again.set_epoch(1)
    assert not torch.equal(again[2]["image"], data[2]["image"])  # a new angle per epoch


def test_native_grid_window_shifts_the_fixations_by_its_origin(tmp_path):
    from saliq.train.data.saliency_targets import fixation_density

    # 1024 x 512: the validation window is the centre 768 x 384, origin (x0, y0) = (128, 64)
    photo = np.full((512, 1024, 3), 20, np.uint8)
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), photo)
    fix = np.array([[600.0, 300.0], [610.0, 290.0]], np.float32)
    views = ViewConfig(detail_crops=2, crop_size=32, salient_crops=1)
    grid = NativeGridSet(
        [ContentItem(str(path), "test", fix, 1024, 512)],
        Preprocessor(64, 64, version=2, views=views),
        ("image",),
        types=["gaussian_noise"],
        targets=("score", "crop_targets", "saliency"),
        saliency_hw=(16, 16),
    )
    expected = fixation_density(fix - np.array([128.0, 64.0], np.float32), (384, 768), (16, 16))
    np.testing.assert_allclose(grid[0]["saliency"].numpy()[0], expected, atol=1e-6)
