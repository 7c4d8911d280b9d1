"""Synthetic distortions: contract, determinism and severity ordering on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from saliq.preprocess import resize_stretch
from saliq.train.data.content import sample_photo_arrays
from saliq.train.data.distortions import (
    DISTORTIONS,
    MAX_LEVEL,
    TYPE_NAMES,
    apply_distortion,
    quality_label,
)


def _frame(name: str, size: int = 128) -> np.ndarray:
    rgb = sample_photo_arrays([name])[name].astype(np.float32)
    return np.clip(np.rint(resize_stretch(rgb, size, size)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    return {name: _frame(name) for name in ("astronaut", "coffee")}


def test_registry_has_the_required_types() -> None:
    required = {
        "defocus_blur",
        "motion_blur",
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "jpeg",
        "underexposure",
        "overexposure",
        "haze",
        "colour_cast",
        "pixelate",
    }
    assert required <= set(DISTORTIONS)
    assert list(TYPE_NAMES) == sorted(DISTORTIONS)
    assert all(len(d.levels) == MAX_LEVEL for d in DISTORTIONS.values())


def test_quality_label() -> None:
    assert quality_label(0) == 1.0
    assert quality_label(5) == pytest.approx(0.10)
    assert [quality_label(lv) for lv in range(6)] == sorted(
        (quality_label(lv) for lv in range(6)), reverse=True
    )
    with pytest.raises(ValueError):
        quality_label(6)


@pytest.mark.parametrize("name", TYPE_NAMES)
def test_contract_identity_and_determinism(name: str, frames: dict[str, np.ndarray]) -> None:
    frame = frames["astronaut"][:96, :128]  # non-square catches H/W mix-ups
    assert apply_distortion(frame, name, 0, np.random.default_rng(0)) is frame
    a = apply_distortion(frame, name, 3, np.random.default_rng(7))
    b = apply_distortion(frame, name, 3, np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == frame.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, frame)


@pytest.mark.parametrize("name", TYPE_NAMES)
def test_psnr_falls_with_level(name: str, frames: dict[str, np.ndarray]) -> None:
    for photo, frame in frames.items():
        psnr = [
            peak_signal_noise_ratio(
                frame, apply_distortion(frame, name, lv, np.random.default_rng(3)), data_range=255
            )
            for lv in range(1, MAX_LEVEL + 1)
        ]
        assert all(a > b for a, b in zip(psnr[:-1], psnr[1:], strict=True)), (name, photo, psnr)


def test_bad_arguments(frames: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(KeyError, match="unknown distortion"):
        apply_distortion(frames["coffee"], "sepia", 1, rng)
    with pytest.raises(ValueError, match="level"):
        apply_distortion(frames["coffee"], "jpeg", 6, rng)
    with pytest.raises(ValueError, match="uint8"):
        apply_distortion(frames["coffee"].astype(np.float32), "jpeg", 1, rng)
