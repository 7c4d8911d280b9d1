"""The one item builder every data source uses: a uint8 frame + labels -> a training item.

An item is a dict of tensors with exactly

- every model input the spec lists (``spec.inputs``, among image [3,H,W], gradient [1,H,W],
  prior [1,H/4,W/4]), float32, from the SDK ``Preprocessor`` (so training sees the pixels
  inference will);
- every target the loss declares (``required_targets``, among score [] float32,
  score_dist [5] float32 summing to 1, saliency [1,h,w] float32 summing to 1);
- the bookkeeping the evaluation needs: level, type_index, photo_index (int64 scalars,
  -1 where they do not apply).

Saliency target, first that applies: human fixations (their density, data/saliency_targets),
a saliency map shipped with the data, the preprocessing prior resized (a source without
human attention data still trains the saliency head towards the prior, as v1 did).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from saliq.errors import ConfigError
from saliq.preprocess import Preprocessor
from saliq.spec import PREPROCESSING_OUTPUTS

from .crops import rotate_frame, rotate_points, to_frame_points
from .labels import DIST_SIGMA, SCORE_BINS, counts_distribution, label_distribution
from .saliency_split import SPLIT_THRESHOLD, check_threshold, split_saliency
from .saliency_targets import fixation_density, resize_map

# Every tensor a preprocessing version produces, in the spec's order (sdk/spec.py's table).
INPUT_NAMES = tuple(dict.fromkeys(n for table in PREPROCESSING_OUTPUTS.values() for n in table))
TARGET_NAMES = ("score", "score_dist", "saliency", "saliency_high", "saliency_low")
# BioSIQNet: the saliency target split at a threshold of its maximum (data/saliency_split.py)
SPLIT_TARGETS = ("saliency_high", "saliency_low")
BOOKKEEPING_KEYS = ("level", "type_index", "photo_index")
# What the v1 trainer consumed; the default of datasets built without a spec.
DEFAULT_INPUTS = ("image", "prior")
DEFAULT_TARGETS = ("score", "saliency")


def _ordered(names: Iterable[str], allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    wanted = set(names)
    unknown = sorted(wanted - set(allowed))
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; known: {', '.join(allowed)}")
    return tuple(n for n in allowed if n in wanted)


@dataclass(frozen=True)
class ItemBuilder:
    """Builds items for one model (its inputs, saliency size) and one loss (its targets)."""

    preprocessor: Preprocessor
    saliency_hw: tuple[int, int]
    inputs: tuple[str, ...] = DEFAULT_INPUTS
    targets: tuple[str, ...] = DEFAULT_TARGETS
    dist_sigma: float = DIST_SIGMA
    saliency_threshold: float = SPLIT_THRESHOLD

    def __post_init__(self) -> None:
        # Canonical order and validated names, so every source emits identical key sets.
        object.__setattr__(self, "inputs", _ordered(self.inputs, INPUT_NAMES, "model inputs"))
        object.__setattr__(self, "targets", _ordered(self.targets, TARGET_NAMES, "targets"))
        h, w = (int(v) for v in self.saliency_hw)
        if h <= 0 or w <= 0:
            raise ConfigError(f"saliency size must be positive, got {self.saliency_hw}")
        object.__setattr__(self, "saliency_hw", (h, w))
        label_distribution(0.5, self.dist_sigma)  # validates sigma once, up front
        try:
            check_threshold(self.saliency_threshold)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def for_model(
        cls,
        spec,
        preprocessor: Preprocessor,
        required_targets: Iterable[str],
        dist_sigma: float = DIST_SIGMA,
    ) -> ItemBuilder:
        """The builder for ``spec`` (a saliq.spec.ModelSpec) and a loss's targets."""
        return cls(
            preprocessor,
            spec.saliency_size,
            tuple(spec.inputs),
            tuple(required_targets),
            dist_sigma,
        )

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key an item carries."""
        return (*self.inputs, *self.targets, *BOOKKEEPING_KEYS)

    def __call__(
        self,
        frame: np.ndarray,
        fmt: str = "RGB",
        *,
        score: float,
        score_counts: Iterable[float] | None = None,
        fixations: np.ndarray | None = None,
        fixation_hw: tuple[int, int] | None = None,
        saliency_map: np.ndarray | None = None,
        flipped: bool = False,
        rotation: float = 0.0,
        level: int = -1,
        type_index: int = -1,
        photo_index: int = -1,
    ) -> dict[str, torch.Tensor]:
        """One item from a uint8 ``frame`` in pixel format ``fmt`` (any SDK format).

        ``score`` is the [0, 1] label; ``score_counts`` the data set's own per-bin rating
        counts or probabilities (worst first), else score_dist is the Gaussian around the
        label. ``fixations`` are [K, 2] (x, y) in the pixel grid of an image ``fixation_hw``
        (default: the frame's size) that maps onto the frame by stretching; ``saliency_map``
        is a 2-D map over the same image. ``flipped``: the frame was mirrored left-right
        relative to those annotations (which are mirrored to match). ``rotation``: the frame
        was then rotated by this many degrees (data/crops.py rotate_frame: counter-clockwise
        about its centre), and the annotations are rotated to match.
        """
        out = self.preprocessor.one(frame, fmt=fmt)
        item = {name: torch.from_numpy(np.ascontiguousarray(out[name])) for name in self.inputs}
        item.update(
            self.targets_for(
                out["prior"][0],
                frame.shape[:2],
                score=score,
                score_counts=score_counts,
                fixations=fixations,
                fixation_hw=fixation_hw,
                saliency_map=saliency_map,
                flipped=flipped,
                rotation=rotation,
            )
        )
        for key, value in zip(BOOKKEEPING_KEYS, (level, type_index, photo_index)):
            item[key] = torch.tensor(int(value), dtype=torch.int64)
        return item

    def targets_for(
        self,
        prior: np.ndarray,
        frame_hw: tuple[int, int],
        *,
        score: float,
        score_counts: Iterable[float] | None = None,
        fixations: np.ndarray | None = None,
        fixation_hw: tuple[int, int] | None = None,
        saliency_map: np.ndarray | None = None,
        flipped: bool = False,
        rotation: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """This builder's targets for a frame of size ``frame_hw`` whose preprocessing prior
        is ``prior`` (2-D); the other arguments as in ``__call__``. Sources that run the
        preprocessing themselves (data/native.py) call this directly."""
        item: dict[str, torch.Tensor] = {}
        if "score" in self.targets:
            item["score"] = torch.tensor(float(score), dtype=torch.float32)
        if "score_dist" in self.targets:
            dist = (
                label_distribution(float(score), self.dist_sigma)
                if score_counts is None
                else counts_distribution(list(score_counts), "score_counts")
            )
            item["score_dist"] = torch.from_numpy(dist.reshape(SCORE_BINS))
        maps = [t for t in self.targets if t == "saliency" or t in SPLIT_TARGETS]
        if maps:
            density = self._saliency(
                prior, tuple(frame_hw), fixations, fixation_hw, saliency_map, flipped, rotation
            )
            found = {"saliency": density}
            if set(maps) & set(SPLIT_TARGETS):
                found.update(zip(SPLIT_TARGETS, split_saliency(density, self.saliency_threshold)))
            for name in maps:
                item[name] = torch.from_numpy(found[name][None])
        return item

    def _saliency(
        self,
        prior: np.ndarray,
        frame_hw: tuple[int, int],
        fixations: np.ndarray | None,
        fixation_hw: tuple[int, int] | None,
        saliency_map: np.ndarray | None,
        flipped: bool,
        rotation: float = 0.0,
    ) -> np.ndarray:
        fallback = prior  # already computed on the (flipped, rotated) frame itself
        if saliency_map is not None:
            shipped = np.asarray(saliency_map, np.float32)
            if shipped.ndim != 2:
                raise ConfigError(f"saliency_map must be 2-D, got shape {shipped.shape}")
            fallback = shipped[:, ::-1] if flipped else shipped
        src_hw = fixation_hw if fixation_hw is not None else frame_hw
        if rotation:
            # Into the frame's pixel grid first (flip, then stretch), then the frame's rotation.
            # Fixations rotated out of the frame are dropped by fixation_density.
            fixations = rotate_points(
                to_frame_points(fixations, src_hw, frame_hw, flipped), frame_hw, rotation
            )
            if saliency_map is not None:
                fallback = rotate_frame(resize_map(fallback, frame_hw), rotation)
            src_hw, flipped = frame_hw, False
        # fixation_density falls back to ``prior`` (resized, sum-normalised) when no fixation
        # lies inside the image: the v1 rule for sources without human attention data.
        return fixation_density(fixations, src_hw, self.saliency_hw, prior=fallback, flip=flipped)


class EpochCopies:
    """Mixin: ``copies_per_photo`` items per photo, redrawn each epoch.

    Item i is photo i // copies_per_photo with a generator seeded from (seed, epoch, i), so a
    run is reproducible, the worker count does not matter, and ``set_epoch`` gives new copies.
    The class using it sets ``items``, ``copies_per_photo``, ``seed`` and ``epoch``.
    """

    items: list
    copies_per_photo: int
    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items) * self.copies_per_photo

    def item_rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return np.random.default_rng([self.seed, self.epoch, index])
