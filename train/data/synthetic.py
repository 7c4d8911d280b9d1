"""Torch datasets of synthetically distorted pristine photos.

Both datasets build a *working frame* per photo (stretch-resized to the preprocessor's H x W
with the SDK's own ``resize_stretch``, rounded to uint8, cached in memory since each photo
is reused many times), distort it, and hand it to the one item builder (data/items.py),
which runs the SDK ``Preprocessor`` so training sees exactly the tensors inference will.
Each item holds the requested inputs and targets (default: image [3,H,W] and prior
[1,H/4,W/4] float32; score = quality_label(level) and saliency [1,h,w] summing to 1, from
the photo's fixations where it has them, else the prior) plus level int64, type_index int64
(index in TYPE_NAMES, -1 when pristine) and photo_index int64.
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
from .crops import check_rotation, draw_rotation, rotate_frame
from .distortions import (
    COLOUR_TYPES,
    DISTORTIONS,
    MAX_LEVEL,
    TYPE_NAMES,
    apply_distortion,
    quality_label,
)
from .items import DEFAULT_INPUTS, DEFAULT_TARGETS, EpochCopies, ItemBuilder
from .labels import DIST_SIGMA

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
        inputs: Sequence[str] = DEFAULT_INPUTS,
        targets: Sequence[str] = DEFAULT_TARGETS,
        dist_sigma: float = DIST_SIGMA,
    ) -> None:
        if not items:
            raise ValueError("no content items: pass at least one photo")
        self.items = list(items)
        self.builder = ItemBuilder(
            preprocessor, saliency_hw, tuple(inputs), tuple(targets), dist_sigma
        )
        self.preprocessor = preprocessor
        self.saliency_hw = self.builder.saliency_hw
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
        rotation: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        fmt = "RGB"
        if gray:
            luma = frame.astype(np.float32) @ np.asarray(LUMA_WEIGHTS, np.float32)
            frame, fmt = np.clip(np.rint(luma), 0, 255).astype(np.uint8), "GRAY"
        item = self.items[photo_index]
        # Fixations are in the photo's own pixels; the working frame is that photo stretched.
        return self.builder(
            frame,
            fmt,
            score=quality_label(level),
            fixations=item.fixations,
            fixation_hw=(item.height, item.width),
            flipped=flip,
            rotation=rotation,
            level=level,
            type_index=-1 if type_name is None else TYPE_NAMES.index(type_name),
            photo_index=photo_index,
        )


class SyntheticTrainSet(EpochCopies, _WorkingFrames):
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
        inputs: Sequence[str] = DEFAULT_INPUTS,
        targets: Sequence[str] = DEFAULT_TARGETS,
        dist_sigma: float = DIST_SIGMA,
        rotate_deg: float = 0.0,
    ) -> None:
        super().__init__(items, preprocessor, saliency_hw, inputs, targets, dist_sigma)
        self.rotate_deg = check_rotation(rotate_deg)
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

    def _draw(self, index: int):
        """This epoch's random choices for item ``index`` and the generator to continue with."""
        rng = self.item_rng(index)
        # Fixed draw order (flip, pristine, type, level, distortion, gray): keeps items
        # reproducible when any one option changes its probability.
        flip = self.flip and bool(rng.random() < 0.5)
        # data.rotate_deg: drawn only when on, so with it off every later draw is unchanged
        angle = draw_rotation(rng, self.rotate_deg)
        pristine = bool(rng.random() < self.pristine_prob)
        type_name = self.types[int(rng.integers(len(self.types)))]
        level = 0 if pristine else int(rng.integers(1, self.max_level + 1))
        return flip, pristine, type_name, level, rng, angle

    def labels(self) -> np.ndarray:
        """Every item's quality label this epoch (drawn without building any frame)."""
        return np.array(
            [quality_label(self._draw(i)[3]) for i in range(len(self))], dtype=np.float64
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        flip, pristine, type_name, level, rng, angle = self._draw(index)
        photo_index = index // self.copies_per_photo
        frame = self.working_frame(photo_index)
        if flip:
            frame = np.ascontiguousarray(frame[:, ::-1])
        if angle:  # the clean frame: distortions are never interpolated
            frame = rotate_frame(frame, angle)
        dist_rng = np.random.default_rng(rng.integers(2**63))
        frame = apply_distortion(frame, type_name, level, dist_rng)
        gray = bool(rng.random() < self.gray_prob) and (pristine or type_name not in COLOUR_TYPES)
        return self._item(
            photo_index, frame, level, None if pristine else type_name, gray, flip, angle
        )


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
        inputs: Sequence[str] = DEFAULT_INPUTS,
        targets: Sequence[str] = DEFAULT_TARGETS,
        dist_sigma: float = DIST_SIGMA,
    ) -> None:
        super().__init__(items, preprocessor, saliency_hw, inputs, targets, dist_sigma)
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

    def labels(self) -> np.ndarray:
        """float64 score labels in item order (quality_label of each item's level)."""
        return np.array([quality_label(level) for _, _, level in self._index], dtype=np.float64)

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
