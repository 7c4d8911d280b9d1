"""Training data at native resolution, for preprocessing version 2 (crop views).

A photo is brought to its canonical scale once (area-downscaled so its long side is at most
the view config's ``canonical_long_side``, as docs/preprocessing.md defines "native"); each
item takes a random window of it (native pixels, long side in ``WINDOW_LONG_SIDE``, so photos
yield many different frames and 1080p-class work stays affordable), distorts it **at that
scale** with the training distortions (train/data/distortions.py: sizes in native pixels, so
a level means the same thing to every crop a camera would produce), and runs it through the
SDK Preprocessor (version 2): the whole view and the crops see exactly what inference sees.

Distortions cover the whole window, or only its salient or its background region (by the
preprocessing prior of the clean window: its top / bottom ``REGION_FRACTION`` of pixels,
feathered), teaching the fusion that a defect where people look costs more. Labels:

    score        = 1 - (1 - quality_label(level)) * REGION_SEVERITY[mode]
    crop_targets = 1 - (1 - quality_label(level)) * (share of the crop's window distorted)

(``mode`` whole: 1.0; salient 0.85; background 0.45: a background defect still costs.)

Other targets on request (``targets``; build_datasets passes the loss's): ``score_dist`` (the
Gaussian around ``score``) and the saliency maps ``saliency`` / ``saliency_high`` /
``saliency_low`` at ``saliency_hw`` (data/items.py): the photo's fixations moved to the
canonical frame (stretch, pixel-centre convention), shifted by the window origin, mirrored with
the window, rotated with it (``rotate_deg``, data/crops.py), then their density; a photo without
fixations (or none inside the window) falls back to the preprocessing prior of the window.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from saliq.errors import ConfigError
from saliq.preprocess import Preprocessor
from saliq.views import canonical_frame

from .content import ContentItem
from .crops import check_rotation, draw_rotation, rotate_frame, to_frame_points
from .distortions import (
    COLOUR_TYPES,
    DISTORTIONS,
    MAX_LEVEL,
    TYPE_NAMES,
    apply_distortion,
    apply_severity,
)
from .distortions import quality_label as level_label
from .items import EpochCopies, ItemBuilder
from .labels import DIST_SIGMA

WINDOW_LONG_SIDE = (384, 1024)  # native pixels; clipped to the photo
REGION_FRACTION = 0.3
REGION_FEATHER_FRACTION = 0.02  # of the window's long side: a soft edge is not a defect
REGION_SEVERITY = {"whole": 1.0, "salient": 0.85, "background": 0.45}
REGION_MODES = ("whole", "salient", "background")
VALIDATION_WINDOW = 768  # long side of the fixed centre window of validation items
# Always emitted (the crop-view loss); the rest only when asked for.
BASE_TARGETS = ("score", "crop_targets")
MIN_SEVERITY = 0.1  # fractional severities start here: fainter is indistinguishable from none
EXTRA_TARGETS = ("score_dist", "saliency", "saliency_high", "saliency_low")


def read_canonical(path: str, long_side: int) -> np.ndarray:
    """uint8 RGB photo at its canonical ("native") scale (saliq.views.canonical_frame)."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{path}: not a readable image")
    return np.ascontiguousarray(canonical_frame(bgr, long_side)[:, :, ::-1])


def region_mask(prior: np.ndarray, shape: tuple[int, int], mode: str) -> np.ndarray:
    """Float mask in [0, 1] at ``shape``: the salient / background share of the prior."""
    h, w = shape
    if mode == "whole":
        return np.ones((h, w), np.float32)
    up = cv2.resize(prior.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    # Exactly REGION_FRACTION of the pixels by rank (a threshold would take every tied pixel
    # of a flat prior); ties go to the first in row-major order.
    order = np.argsort(up.ravel(), kind="stable")
    count = max(1, round(REGION_FRACTION * up.size))
    chosen = order[-count:] if mode == "salient" else order[:count]
    hard = np.zeros(up.size, dtype=bool)
    hard[chosen] = True
    hard = hard.reshape(h, w)
    sigma = max(1.0, REGION_FEATHER_FRACTION * max(h, w))
    return np.clip(cv2.GaussianBlur(hard.astype(np.float32), (0, 0), sigma), 0.0, 1.0)


def crop_coverage(mask: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean mask value inside each normalised (x0, y0, x1, y1) box."""
    h, w = mask.shape
    out = np.empty(len(boxes), np.float32)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        c0, c1 = int(round(x0 * w)), max(int(round(x0 * w)) + 1, int(round(x1 * w)))
        r0, r1 = int(round(y0 * h)), max(int(round(y0 * h)) + 1, int(round(y1 * h)))
        out[k] = float(mask[r0:r1, c0:c1].mean())
    return out


class _NativeFrames(Dataset):
    def __init__(
        self,
        items: Sequence[ContentItem],
        preprocessor: Preprocessor,
        inputs: Sequence[str],
        types: Sequence[str] | None = None,
        seed: int = 0,
        targets: Sequence[str] = BASE_TARGETS,
        saliency_hw: tuple[int, int] | None = None,
        dist_sigma: float = DIST_SIGMA,
    ) -> None:
        if not items:
            raise ValueError("no content items: pass at least one photo")
        if preprocessor.views is None:
            raise ValueError("native training data needs a version-2 (crop views) preprocessor")
        self.items = list(items)
        self.preprocessor = preprocessor
        self.inputs = tuple(inputs)
        self.types = sorted(types) if types else list(TYPE_NAMES)
        unknown = set(self.types) - set(DISTORTIONS)
        if unknown:
            raise ValueError(f"unknown distortion types {sorted(unknown)}")
        self.seed = seed
        self.long_side = preprocessor.views.canonical_long_side
        # the whole-frame view alone: the prior that places region-confined distortions
        self._whole = dataclasses.replace(preprocessor, views=None, version=1)
        self._cache: dict[int, np.ndarray] = {}
        self.extra_targets = self._check_targets(targets, saliency_hw)
        # The shared item builder makes the extra targets exactly as the other sources do.
        self.builder = (
            ItemBuilder(
                preprocessor, saliency_hw or (1, 1), ("image",), self.extra_targets, dist_sigma
            )
            if self.extra_targets
            else None
        )

    @staticmethod
    def _check_targets(
        targets: Sequence[str], saliency_hw: tuple[int, int] | None
    ) -> tuple[str, ...]:
        unknown = sorted(set(targets) - set(BASE_TARGETS) - set(EXTRA_TARGETS))
        if unknown:
            raise ConfigError(
                f"data.source=native cannot make the targets {unknown} the loss asks for; it "
                f"makes {', '.join(BASE_TARGETS + EXTRA_TARGETS)}: change the loss or the source"
            )
        extra = tuple(t for t in EXTRA_TARGETS if t in set(targets))
        if any(t.startswith("saliency") for t in extra) and saliency_hw is None:
            raise ConfigError("native saliency targets need saliency_hw (the spec's saliency_size)")
        return extra

    def window_fixations(
        self, photo_index: int, photo_hw: tuple[int, int], y0: int, x0: int
    ) -> np.ndarray | None:
        """Photo ``photo_index``'s fixations in the pixel grid of the window at (y0, x0) of its
        canonical frame (``photo_hw``), before any flip or rotation; None without fixations."""
        item = self.items[photo_index]
        if item.fixations is None:
            return None
        pts = to_frame_points(item.fixations, (item.height, item.width), photo_hw)
        return pts - np.array([x0, y0], np.float32)

    def photo(self, index: int) -> np.ndarray:
        if index not in self._cache:
            self._cache[index] = read_canonical(self.items[index].path, self.long_side)
        return self._cache[index]

    def _item(
        self,
        frame: np.ndarray,
        mask: np.ndarray | None,
        level: float,
        mode: str,
        type_name: str | None,
        photo_index: int,
        fixations: np.ndarray | None = None,
        flipped: bool = False,
        rotation: float = 0.0,
        group: int | None = None,
    ) -> dict[str, torch.Tensor]:
        out = self.preprocessor([frame], fmt="RGB")
        deficit = 1.0 - level_label(level)
        coverage = (
            np.ones(out["crop_boxes"].shape[1], np.float32)
            if mask is None
            else crop_coverage(mask, out["crop_boxes"][0])
        )
        item = {name: torch.from_numpy(np.ascontiguousarray(out[name][0])) for name in self.inputs}
        item["score"] = torch.tensor(1.0 - deficit * REGION_SEVERITY[mode], dtype=torch.float32)
        item["crop_targets"] = torch.from_numpy(1.0 - deficit * coverage)
        if self.builder is not None:
            item.update(
                self.builder.targets_for(
                    out["prior"][0, 0],
                    frame.shape[:2],
                    score=float(item["score"]),
                    fixations=fixations,
                    flipped=flipped,
                    rotation=rotation,
                )
            )
        item["level"] = torch.tensor(math.ceil(level), dtype=torch.int64)
        item["severity"] = torch.tensor(level, dtype=torch.float32)
        # frames of one content (a training group; a validation photo) for ranking terms
        item["group_index"] = torch.tensor(
            photo_index if group is None else group, dtype=torch.int64
        )
        item["type_index"] = torch.tensor(
            -1 if type_name is None else TYPE_NAMES.index(type_name), dtype=torch.int64
        )
        item["photo_index"] = torch.tensor(photo_index, dtype=torch.int64)
        return item

    def _distort(
        self, clean: np.ndarray, type_name: str, level: float, mode: str, rng
    ) -> tuple[np.ndarray, np.ndarray | None]:
        distorted = apply_severity(clean, type_name, level, rng)
        if mode == "whole":
            return distorted, None
        prior = self._whole([clean], fmt="RGB")["prior"][0, 0]
        mask = region_mask(prior, clean.shape[:2], mode)
        blended = clean * (1.0 - mask[..., None]) + distorted * mask[..., None]
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8), mask


class NativeTrainSet(EpochCopies, _NativeFrames):
    """Random native windows, distorted whole or by region; ``copies_per_photo`` per epoch."""

    def __init__(
        self,
        items: Sequence[ContentItem],
        preprocessor: Preprocessor,
        inputs: Sequence[str],
        copies_per_photo: int = 8,
        types: Sequence[str] | None = None,
        pristine_prob: float = 0.1,
        region_prob: float = 0.3,
        seed: int = 0,
        targets: Sequence[str] = BASE_TARGETS,
        saliency_hw: tuple[int, int] | None = None,
        dist_sigma: float = DIST_SIGMA,
        rotate_deg: float = 0.0,
        group_size: int = 1,
        continuous_levels: bool = False,
    ) -> None:
        super().__init__(items, preprocessor, inputs, types, seed, targets, saliency_hw, dist_sigma)
        self.rotate_deg = check_rotation(rotate_deg)
        if group_size < 1 or copies_per_photo % group_size:
            raise ConfigError(
                f"data.group_size={group_size} must be >= 1 and divide data.copies_per_photo="
                f"{copies_per_photo} (a group is frames of one photo)"
            )
        self.group_size = group_size
        self.continuous_levels = continuous_levels
        self.copies_per_photo = copies_per_photo
        self.pristine_prob = pristine_prob
        self.region_prob = region_prob
        self.epoch = 0

    def _draw(self, index: int):
        """(pristine, type, severity, region mode, rng for the window and the distortion).

        In groups, every member draws from the group's first item's generator, so the
        members share the window, flip, rotation, type, region and distortion seed; member 0
        is pristine and member m > 0 takes a severity from the m-th of ``group_size - 1``
        equal bands of (0, MAX_LEVEL], so a group is one defect at rising strength (with
        integer levels, the bands' levels are rounded up and neighbours may tie).
        """
        size = self.group_size
        if size == 1:
            rng = self.item_rng(index)
            pristine = bool(rng.random() < self.pristine_prob)
            type_name = self.types[int(rng.integers(len(self.types)))]
            if pristine:
                level = 0.0
            elif self.continuous_levels:
                level = float(rng.uniform(MIN_SEVERITY, MAX_LEVEL))
            else:
                level = float(rng.integers(1, MAX_LEVEL + 1))
        else:
            rng = self.item_rng(index - index % size)
            type_name = self.types[int(rng.integers(len(self.types)))]
            bands = np.linspace(0.0, MAX_LEVEL, size)
            severities = [
                max(MIN_SEVERITY, float(rng.uniform(lo, hi)))
                for lo, hi in zip(bands[:-1], bands[1:], strict=True)
            ]
            if not self.continuous_levels:
                severities = [float(max(1, math.ceil(v))) for v in severities]
            # drawn whatever the member, so every member's generator stays in step
            regional = bool(rng.random() < self.region_prob) and type_name not in COLOUR_TYPES
            region = REGION_MODES[1 + int(rng.integers(2))]
            member = index % size
            pristine = member == 0
            level = 0.0 if pristine else severities[member - 1]
            mode = region if regional and not pristine else "whole"
            return pristine, type_name, level, mode, rng
        regional = bool(rng.random() < self.region_prob) and type_name not in COLOUR_TYPES
        mode = "whole" if pristine or not regional else REGION_MODES[1 + int(rng.integers(2))]
        return pristine, type_name, level, mode, rng

    def labels(self) -> np.ndarray:
        draws = (self._draw(i) for i in range(len(self)))
        return np.array(
            [1.0 - (1.0 - level_label(lv)) * REGION_SEVERITY[m] for _, _, lv, m, _ in draws]
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pristine, type_name, level, mode, rng = self._draw(index)
        photo_index = index // self.copies_per_photo
        photo = self.photo(photo_index)
        h, w = photo.shape[:2]
        lo, hi = WINDOW_LONG_SIDE
        long_side = min(max(h, w), int(rng.integers(lo, hi + 1)))
        scale = long_side / max(h, w)
        wh, ww = max(32, math.floor(h * scale)), max(32, math.floor(w * scale))
        wh, ww = min(wh, h), min(ww, w)
        y0, x0 = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
        clean = photo[y0 : y0 + wh, x0 : x0 + ww]
        flipped = bool(rng.random() < 0.5)
        if flipped:
            clean = clean[:, ::-1]
        clean = np.ascontiguousarray(clean)
        # Drawn right after the flip, only when on (rotate_deg 0: the draws and items as
        # before); applied to the clean window, so distortions are never interpolated.
        angle = draw_rotation(rng, self.rotate_deg)
        if angle:
            clean = rotate_frame(clean, angle)
        geometry = {
            "fixations": self.window_fixations(photo_index, (h, w), y0, x0)
            if self.builder is not None
            else None,
            "flipped": flipped,
            "rotation": angle,
        }
        group = index // self.group_size
        if pristine:
            return self._item(clean, None, 0, "whole", None, photo_index, **geometry, group=group)
        frame, mask = self._distort(
            clean, type_name, level, mode, np.random.default_rng(rng.integers(2**63))
        )
        return self._item(frame, mask, level, mode, type_name, photo_index, **geometry, group=group)


class NativeGridSet(_NativeFrames):
    """Validation: every (photo, type, level) on a fixed centre window; pristine once each."""

    def __init__(
        self,
        items: Sequence[ContentItem],
        preprocessor: Preprocessor,
        inputs: Sequence[str],
        types: Sequence[str] | None = None,
        seed: int = 0,
        targets: Sequence[str] = BASE_TARGETS,
        saliency_hw: tuple[int, int] | None = None,
        dist_sigma: float = DIST_SIGMA,
    ) -> None:
        super().__init__(items, preprocessor, inputs, types, seed, targets, saliency_hw, dist_sigma)
        self._index = []
        for p in range(len(self.items)):
            self._index.append((p, None, 0))
            self._index += [(p, t, lv) for t in self.types for lv in range(1, MAX_LEVEL + 1)]
        self.records = [(self.items[p].name, t or "pristine", lv) for p, t, lv in self._index]

    def __len__(self) -> int:
        return len(self._index)

    def labels(self) -> np.ndarray:
        return np.array([level_label(lv) for _, _, lv in self._index])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        photo_index, type_name, level = self._index[index]
        photo = self.photo(photo_index)
        h, w = photo.shape[:2]
        scale = min(1.0, VALIDATION_WINDOW / max(h, w))
        wh, ww = max(32, math.floor(h * scale)), max(32, math.floor(w * scale))
        y0, x0 = (h - min(wh, h)) // 2, (w - min(ww, w)) // 2
        clean = np.ascontiguousarray(photo[y0 : y0 + wh, x0 : x0 + ww])
        fixations = (
            self.window_fixations(photo_index, (h, w), y0, x0) if self.builder is not None else None
        )
        if type_name is None:
            return self._item(clean, None, 0, "whole", None, photo_index, fixations)
        rng = np.random.default_rng([self.seed, photo_index, TYPE_NAMES.index(type_name)])
        frame = apply_distortion(clean, type_name, level, rng)
        return self._item(frame, None, level, "whole", type_name, photo_index, fixations)
