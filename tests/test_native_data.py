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
