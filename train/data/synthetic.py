"""Torch datasets of synthetically distorted pristine photos.

Both datasets build a *working frame* per photo (stretch-resized to the preprocessor's H x W
with the SDK's own ``resize_stretch``, rounded to uint8, cached in memory since each photo
is reused many times), distort it, and run it through the SDK ``Preprocessor`` so training
sees exactly the tensors inference will. Each item is a dict of tensors:

    image [3,H,W] float32, prior [1,H/4,W/4], saliency [1,h,w] (sums to 1),
    score (quality_label(level)), level int64, type_index int64 (index in TYPE_NAMES,
    -1 when pristine), photo_index int64.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from saliq.errors import InvalidImageError
from saliq.preprocess import LUMA_WEIGHTS, Preprocessor, resize_stretch

from .content import ContentItem
from .distortions import (
    COLOUR_TYPES,
    DISTORTIONS,
    MAX_LEVEL,
    TYPE_NAMES,
    apply_distortion,
    quality_label,
)
from .saliency_targets import fixation_density

PRISTINE = "pristine"


def _check_types(types: Sequence[str] | None) -> list[str]:
    if types is None:
        return list(TYPE_NAMES)
    unknown = [t for t in types if t not in DISTORTIONS]
    if unknown or not types:
        raise ValueError(f"unknown or empty distortion types {unknown}; known: {TYPE_NAMES}")
    return sorted(set(types))


class _WorkingFrames(Dataset):
    """Shared part: per-photo working-frame cache and frame -> item dict."""

    def __init__(
        self,
        items: Sequence[ContentItem],
        preprocessor: Preprocessor,
        saliency_hw: tuple[int, int],
    ) -> None:
        if not items:
            raise ValueError("no content items: pass at least one photo")
        self.items = list(items)
        self.preprocessor = preprocessor
        self.saliency_hw = (int(saliency_hw[0]), int(saliency_hw[1]))
        self._frames: dict[int, np.ndarray] = {}

    def working_frame(self, photo_index: int) -> np.ndarray:
        """uint8 HxWx3 RGB of photo ``photo_index`` at the preprocessor's input size."""
        frame = self._frames.get(photo_index)
        if frame is None:
            path = self.items[photo_index].path
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise InvalidImageError(f"cannot read image {path}: missing or not an image")
            pre = self.preprocessor
            rgb = resize_stretch(bgr[:, :, ::-1].astype(np.float32), pre.height, pre.width)
            frame = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
            self._frames[photo_index] = frame
        return frame

    def _item(
        self,
        photo_index: int,
        frame: np.ndarray,
        level: int,
        type_name: str | None,
        gray: bool,
        flip: bool,
    ) -> dict[str, torch.Tensor]:
        if gray:
            luma = frame.astype(np.float32) @ np.asarray(LUMA_WEIGHTS, np.float32)
            out = self.preprocessor.one(np.clip(np.rint(luma), 0, 255).astype(np.uint8), "GRAY")
        else:
            out = self.preprocessor.one(frame, fmt="RGB")
        item = self.items[photo_index]
        saliency = fixation_density(
            item.fixations,
            (item.height, item.width),
            self.saliency_hw,
            prior=out["prior"][0],
            flip=flip,
        )
        return {
            "image": torch.from_numpy(out["image"]),
            "prior": torch.from_numpy(out["prior"]),
            "saliency": torch.from_numpy(saliency[None]),
            "score": torch.tensor(quality_label(level), dtype=torch.float32),
            "level": torch.tensor(level, dtype=torch.int64),
            "type_index": torch.tensor(
                -1 if type_name is None else TYPE_NAMES.index(type_name), dtype=torch.int64
            ),
            "photo_index": torch.tensor(photo_index, dtype=torch.int64),
        }


class SyntheticTrainSet(_WorkingFrames):
    """Random distorted copies: ``copies_per_photo`` items per photo, redrawn each epoch.

    Item i is photo i // copies_per_photo with an RNG seeded from (seed, epoch, i), so a
    run is reproducible, worker count does not matter, and ``set_epoch`` gives new copies.
    """

    def __init__(
        self,
        items: Sequence[ContentItem],
        preprocessor: Preprocessor,
        saliency_hw: tuple[int, int],
        copies_per_photo: int = 4,
        types: Sequence[str] | None = None,
        max_level: int = MAX_LEVEL,
        pristine_prob: float = 0.1,
        gray_prob: float = 0.1,
        flip: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(items, preprocessor, saliency_hw)
        if copies_per_photo < 1 or not 1 <= max_level <= MAX_LEVEL:
            raise ValueError(
                f"need copies_per_photo >= 1 and 1 <= max_level <= {MAX_LEVEL}, "
                f"got {copies_per_photo}, {max_level}"
            )
        self.copies_per_photo = copies_per_photo
        self.types = _check_types(types)
        self.max_level = max_level
        self.pristine_prob = pristine_prob
        self.gray_prob = gray_prob
        self.flip = flip
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items) * self.copies_per_photo

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        photo_index = index // self.copies_per_photo
        # Fixed draw order (flip, pristine, type, level, distortion, gray): keeps items
        # reproducible when any one option changes its probability.
        flip = self.flip and bool(rng.random() < 0.5)
        pristine = bool(rng.random() < self.pristine_prob)
        type_name = self.types[int(rng.integers(len(self.types)))]
        level = 0 if pristine else int(rng.integers(1, self.max_level + 1))
        frame = self.working_frame(photo_index)
        if flip:
            frame = np.ascontiguousarray(frame[:, ::-1])
        dist_rng = np.random.default_rng(rng.integers(2**63))
        frame = apply_distortion(frame, type_name, level, dist_rng)
        gray = bool(rng.random() < self.gray_prob) and (pristine or type_name not in COLOUR_TYPES)
        return self._item(photo_index, frame, level, None if pristine else type_name, gray, flip)


class SyntheticGridSet(_WorkingFrames):
    """Deterministic evaluation grid: every (photo, type, level), pristine once per photo.

    ``records[i]`` is (photo_name, type, level) of item i, with type "pristine" at level 0.
    """

    def __init__(
        self,
        items: Sequence[ContentItem],
        preprocessor: Preprocessor,
        saliency_hw: tuple[int, int],
        types: Sequence[str] | None = None,
        levels: Sequence[int] = (0, 1, 2, 3, 4, 5),
        seed: int = 0,
    ) -> None:
        super().__init__(items, preprocessor, saliency_hw)
        if any(not 0 <= lv <= MAX_LEVEL for lv in levels):
            raise ValueError(f"levels must be in 0..{MAX_LEVEL}, got {tuple(levels)}")
        self.types = _check_types(types)
        self.levels = tuple(sorted(set(levels)))
        self.seed = seed
        self._index: list[tuple[int, str | None, int]] = []
        for p in range(len(self.items)):
            if 0 in self.levels:
                self._index.append((p, None, 0))
            self._index += [(p, t, lv) for t in self.types for lv in self.levels if lv > 0]
        self.records: list[tuple[str, str, int]] = [
            (self.items[p].name, t or PRISTINE, lv) for p, t, lv in self._index
        ]

    def __len__(self) -> int:
        return len(self._index)

    def frame(self, index: int) -> np.ndarray:
        """The distorted uint8 HxWx3 RGB working frame of item ``index`` (peers, SDK runs)."""
        photo_index, type_name, level = self._index[index]
        frame = self.working_frame(photo_index)
        if type_name is not None:
            type_id = TYPE_NAMES.index(type_name)
            # Seeded per (photo, type), not per level: the five levels of a group are one
            # distortion (same cast direction, blur angle, noise pattern) at rising strength.
            rng = np.random.default_rng([self.seed, photo_index, type_id])
            frame = apply_distortion(frame, type_name, level, rng)
        return frame

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        photo_index, type_name, level = self._index[index]
        return self._item(photo_index, self.frame(index), level, type_name, gray=False, flip=False)
