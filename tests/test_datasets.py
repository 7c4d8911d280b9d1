"""Content, photo-level splits, fixation targets and the synthetic torch datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from saliq.errors import ConfigError
from saliq.preprocess import Preprocessor
from saliq.train.data.content import (
    ContentItem,
    sample_photo_items,
    scene_items,
    split_by_photo,
)
from saliq.train.data.distortions import MAX_LEVEL, TYPE_NAMES, quality_label
from saliq.train.data.saliency_targets import fixation_density
from saliq.train.data.synthetic import SyntheticGridSet, SyntheticTrainSet

REPO = Path(__file__).resolve().parents[1]
SCENE_DIR = Path(os.environ.get("SALIQ_SCENE_DIR", REPO / ".." / "shared" / "data" / "scene"))
PRE = Preprocessor(64, 96)
SAL_HW = (8, 12)
KEYS = {"image", "prior", "saliency", "score", "level", "type_index", "photo_index"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[ContentItem]:
    return sample_photo_items(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def scene() -> list[ContentItem]:
    if not (SCENE_DIR / "fixations.csv").exists():
        pytest.skip(f"Scene data not found at {SCENE_DIR} (set SALIQ_SCENE_DIR to its folder)")
    return scene_items(SCENE_DIR)


def test_sample_photos_cached_once(photos: list[ContentItem]) -> None:
    assert len(photos) >= 8 and all(Path(p.path).is_file() for p in photos)
    assert all(p.fixations is None and p.width > 0 and p.height > 0 for p in photos)
    cache = Path(photos[0].path).parent
    mtimes = {p.path: os.stat(p.path).st_mtime_ns for p in photos}
    again = sample_photo_items(cache)
    assert {p.path: os.stat(p.path).st_mtime_ns for p in again} == mtimes
    assert len(list(cache.iterdir())) == len(photos)  # no temp files left behind


def test_scene_items_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="images"):
        scene_items(tmp_path)


def test_scene_items(scene: list[ContentItem]) -> None:
    assert len(scene) == 400 and scene[0].name == "001.jpg"
    fix = scene[0].fixations
    assert fix is not None and fix.ndim == 2 and fix.shape[1] == 2
    assert (fix[:, 0] < scene[0].width).all() and (fix[:, 1] < scene[0].height).all()


def test_split_by_photo(photos: list[ContentItem]) -> None:
    items = photos * 3  # duplicated copies of a photo must stay together
    a = split_by_photo(items, (0.5, 0.25, 0.25), seed=1)
    assert a == split_by_photo(items, (0.5, 0.25, 0.25), seed=1)
    names = [{it.path for it in a[s]} for s in ("train", "val", "test")]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert sum(len(v) for v in a.values()) == len(items)
    fixed = split_by_photo(photos, seed=0, test_names=["astronaut", "china.png"])
    assert {it.name for it in fixed["test"]} == {"astronaut.png", "china.png"}
    with pytest.raises(ConfigError, match="nope"):
        split_by_photo(photos, test_names=["nope"])


def test_fixation_density_peak_and_sum() -> None:
    dens = fixation_density(np.array([[150.0, 40.0]]), (100, 200), (25, 50))
    assert dens.dtype == np.float32 and dens.shape == (25, 50)
    assert dens.sum() == pytest.approx(1.0, abs=1e-5)
    row, col = np.unravel_index(dens.argmax(), dens.shape)
    assert abs(col - 37) <= 1 and abs(row - 10) <= 1
    flipped = fixation_density(np.array([[150.0, 40.0]]), (100, 200), (25, 50), flip=True)
    np.testing.assert_allclose(flipped, dens[:, ::-1], atol=1e-6)
    tiny = fixation_density(np.array([[10.0, 10.0]]), (20, 20), (4, 4))
    assert (tiny > 0).sum() > 1  # blurred at a finer grid, not one spike


def test_fixation_density_prior_fallback() -> None:
    prior = np.zeros((16, 16), np.float32)
    prior[4, 12] = 1.0
    dens = fixation_density(None, (100, 100), (16, 16), prior=prior)
    assert dens.sum() == pytest.approx(1.0) and dens[4, 12] == dens.max()
    uniform = fixation_density(np.zeros((0, 2)), (10, 10), (4, 4))
    np.testing.assert_allclose(uniform, 1 / 16)


def test_train_set_items(photos: list[ContentItem]) -> None:
    ds = SyntheticTrainSet(photos[:3], PRE, SAL_HW, copies_per_photo=2, seed=5)
    assert len(ds) == 6
    item = ds[3]
    assert set(item) == KEYS
    assert item["image"].shape == (3, 64, 96) and item["image"].dtype == torch.float32
    assert item["prior"].shape == (1, 16, 24) and item["saliency"].shape == (1, *SAL_HW)
    assert float(item["saliency"].sum()) == pytest.approx(1.0, abs=1e-5)
    assert int(item["photo_index"]) == 1
    level, type_index = int(item["level"]), int(item["type_index"])
    assert float(item["score"]) == pytest.approx(quality_label(level))
    assert 0 <= level <= MAX_LEVEL and (type_index == -1) == (level == 0)


def test_train_set_reproducible_per_epoch(photos: list[ContentItem]) -> None:
    ds = SyntheticTrainSet(photos[:2], PRE, SAL_HW, copies_per_photo=2, seed=5)
    first = ds[1]
    assert all(torch.equal(first[k], ds[1][k]) for k in KEYS)
    ds.set_epoch(1)
    assert not torch.equal(first["image"], ds[1]["image"])
    ds.set_epoch(0)
    assert torch.equal(first["image"], ds[1]["image"])


def test_train_set_options(photos: list[ContentItem]) -> None:
    gray = SyntheticTrainSet(
        photos[:1], PRE, SAL_HW, copies_per_photo=1, pristine_prob=1.0, gray_prob=1.0, flip=False
    )
    item = gray[0]
    assert int(item["level"]) == 0 and float(item["score"]) == 1.0
    torch.testing.assert_close(item["image"][0], item["image"][2])  # luma in all channels
    only = SyntheticTrainSet(photos[:2], PRE, SAL_HW, types=["jpeg"], pristine_prob=0.0)
    assert {int(only[i]["type_index"]) for i in range(len(only))} == {TYPE_NAMES.index("jpeg")}


def test_grid_set(photos: list[ContentItem]) -> None:
    grid = SyntheticGridSet(photos[:2], PRE, SAL_HW)
    assert len(grid) == 2 * (1 + len(TYPE_NAMES) * 5) == len(grid.records)
    assert grid.records[0] == (photos[0].name, "pristine", 0)
    assert grid.records[1] == (photos[0].name, TYPE_NAMES[0], 1)
    a, b = grid[7], grid[7]
    assert all(torch.equal(a[k], b[k]) for k in KEYS)
    assert int(a["level"]) == grid.records[7][2]
    assert int(a["type_index"]) == TYPE_NAMES.index(grid.records[7][1])


def test_scene_train_item_uses_fixations(scene: list[ContentItem]) -> None:
    ds = SyntheticTrainSet(scene[:1], PRE, SAL_HW, copies_per_photo=1, flip=False)
    item = ds[0]
    item0 = scene[0]
    expected = fixation_density(item0.fixations, (item0.height, item0.width), SAL_HW)
    np.testing.assert_allclose(item["saliency"][0].numpy(), expected, atol=1e-6)


def test_colour_types_are_never_trained_gray(photos: list[ContentItem]) -> None:
    """A gray frame cannot show a colour cast: training it with the cast's label is noise."""
    kw = {"pristine_prob": 0.0, "gray_prob": 1.0, "flip": False, "copies_per_photo": 2}
    cast = SyntheticTrainSet(photos[:2], PRE, SAL_HW, types=["colour_cast"], **kw)
    for i in range(len(cast)):
        image = cast[i]["image"]
        assert not torch.allclose(image[0], image[2]), "colour cast item was converted to gray"
    noise = SyntheticTrainSet(photos[:1], PRE, SAL_HW, types=["gaussian_noise"], **kw)
    torch.testing.assert_close(noise[0]["image"][0], noise[0]["image"][2])


def test_grid_levels_share_the_random_parameters(photos: list[ContentItem]) -> None:
    """A (photo, type) group is one distortion at rising strength: same cast direction."""
    grid = SyntheticGridSet(photos[:1], PRE, SAL_HW, types=["colour_cast"])
    pristine = grid.frame(0).astype(np.float64).mean(axis=(0, 1))
    shifts = [grid.frame(i).astype(np.float64).mean(axis=(0, 1)) - pristine for i in range(1, 6)]
    signs = {tuple(np.sign(s[[0, 2]] - s[1])) for s in shifts}  # R and B relative to G
    assert len(signs) == 1, signs
    magnitudes = [np.abs(s[[0, 2]] - s[1]).sum() for s in shifts]
    assert magnitudes == sorted(magnitudes)


def test_train_set_rotation_is_seeded_and_off_by_default(photos: list[ContentItem]) -> None:
    plain = SyntheticTrainSet(photos[:3], PRE, SAL_HW, copies_per_photo=2, seed=5)
    off = SyntheticTrainSet(photos[:3], PRE, SAL_HW, copies_per_photo=2, seed=5, rotate_deg=0.0)
    rotated = [
        SyntheticTrainSet(photos[:3], PRE, SAL_HW, copies_per_photo=2, seed=5, rotate_deg=20.0)
        for _ in range(2)
    ]
    for index in range(len(plain)):
        assert torch.equal(plain[index]["image"], off[index]["image"])
        a, b = rotated[0][index], rotated[1][index]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["saliency"], b["saliency"])
        assert float(a["saliency"].sum()) == pytest.approx(1.0, abs=1e-5)
    assert any(
        not torch.equal(plain[i]["image"], rotated[0][i]["image"]) for i in range(len(plain))
    )
