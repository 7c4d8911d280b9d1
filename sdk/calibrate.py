"""Pick a gate threshold from labelled frames: ``saliq gate --calibrate``.

Labelled set, either layout:

* a folder with ``good/`` and ``bad/`` subfolders of images (searched recursively);
* a CSV file with a header ``path,label``: label ``good``/``bad`` (or ``1``/``0``,
  ``accept``/``reject``); relative paths are relative to the CSV's folder.

Or a *synthetic severity grid* of the user's own frames (``--synthetic``): every frame in the
folder is taken as good and distorted with :func:`saliq.frames.distort` (blur, noise, JPEG,
dark, bright) at levels 1-5; levels ``<= good_max_level`` (default 1) count as good, levels
``>= bad_min_level`` (default 3) as bad, levels between are left out (it is not clear what
the user wants there).

The gate accepts ``score >= threshold``. For a target false-reject rate ``r`` over ``n`` good
frames, at most ``m = floor(r * n)`` good frames may be rejected, so the threshold is the
``(m+1)``-th lowest good score: the highest threshold meeting the target (it rejects the
most bad frames). The curve lists, per candidate threshold, the false-reject rate (good
frames rejected) and the false-accept rate (bad frames accepted).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InvalidImageError

GOOD_LABELS = frozenset({"good", "1", "accept", "ok", "pass", "true"})
BAD_LABELS = frozenset({"bad", "0", "reject", "fail", "false"})
CURVE_STEP = 0.05  # the printed curve's threshold grid, plus the chosen threshold


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    false_reject: float  # fraction of good frames with score < threshold
    false_accept: float  # fraction of bad frames with score >= threshold


FEW_GOOD_FRAMES = 20  # below this, a target false-reject rate is one or two frames


@dataclass
class Calibration:
    """The chosen threshold, the rates it gives and the curve around it."""

    threshold: float
    target_false_reject: float
    false_reject: float
    false_accept: float
    good: int
    bad: int
    curve: list[CurvePoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "threshold": round(self.threshold, 6),
            "target_false_reject": self.target_false_reject,
            "false_reject": round(self.false_reject, 6),
            "false_accept": round(self.false_accept, 6),
            "good": self.good,
            "bad": self.bad,
            "curve": [
                {
                    "threshold": round(p.threshold, 6),
                    "false_reject": round(p.false_reject, 6),
                    "false_accept": round(p.false_accept, 6),
                }
                for p in self.curve
            ],
        }
        if self.warning():
            out["warning"] = self.warning()
        return out

    def table(self) -> str:
        lines = [
            f"calibrated on {self.good} good and {self.bad} bad frames; target false-reject "
            f"rate {self.target_false_reject:.1%}",
            "threshold  false-reject  false-accept",
        ]
        for p in self.curve:
            mark = "  <- chosen" if p.threshold == self.threshold else ""
            lines.append(
                f"{p.threshold:9.4f}  {p.false_reject:12.1%}  {p.false_accept:12.1%}{mark}"
            )
        lines.append(
            f"threshold {self.threshold:.4f}: false-reject {self.false_reject:.1%}, "
            f"false-accept {self.false_accept:.1%} (use: saliq gate --threshold "
            f"{math.floor(self.threshold * 1e4) / 1e4:.4f})"
        )
        warning = self.warning()
        if warning:
            lines.append(f"note: {warning}")
        return "\n".join(lines)

    def warning(self) -> str:
        """A caution when the good set is too small to pin the threshold down ("" if not)."""
        if self.good >= FEW_GOOD_FRAMES:
            return ""
        return (
            f"only {self.good} good frames: the threshold sits on the lowest good scores, so "
            f"the next slightly softer good frame may be rejected; label {FEW_GOOD_FRAMES}+ good "
            "frames, or gate a little below it"
        )


def rates(good: np.ndarray, bad: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-reject, false-accept) of ``score >= threshold`` on the two sets."""
    frr = float(np.mean(good < threshold)) if len(good) else 0.0
    far = float(np.mean(bad >= threshold)) if len(bad) else 0.0
    return frr, far


def pick_threshold(
    good_scores: Sequence[float], bad_scores: Sequence[float], target_false_reject: float = 0.05
) -> Calibration:
    """The highest threshold whose false-reject rate on ``good_scores`` is <= the target."""
    if not 0.0 <= target_false_reject < 1.0:
        raise ConfigError(
            f"target false-reject rate must be in [0, 1), got {target_false_reject}; "
            "e.g. 0.05 for 5%"
        )
    good = np.sort(np.asarray(good_scores, dtype=np.float64))
    bad = np.asarray(bad_scores, dtype=np.float64)
    if len(good) == 0:
        raise ConfigError("calibration needs good frames; add images under good/ (or label some)")
    # The small epsilon keeps 0.1 * 10 from flooring to 0 through rounding.
    allowed = math.floor(target_false_reject * len(good) + 1e-9)
    threshold = float(good[allowed])
    frr, far = rates(good, bad, threshold)
    grid = np.round(np.arange(0.0, 1.0 + 1e-9, CURVE_STEP), 4)
    points = sorted({*map(float, grid), threshold})
    curve = [CurvePoint(t, *rates(good, bad, t)) for t in points]
    return Calibration(threshold, target_false_reject, frr, far, len(good), len(bad), curve)


def labelled_set(source: str | os.PathLike[str]) -> list[tuple[Path, bool]]:
    """(path, is_good) pairs from a good/ + bad/ folder or a ``path,label`` CSV."""
    from .imageio import expand_paths

    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        items = []
        with source.open(newline="", encoding="utf-8") as handle:
            for row_no, row in enumerate(csv.DictReader(handle), start=2):
                path, label = (row.get("path") or "").strip(), (row.get("label") or "").lower()
                if not path or label.strip() not in GOOD_LABELS | BAD_LABELS:
                    raise ConfigError(
                        f"{source}:{row_no}: expected columns path,label with label good or "
                        f"bad, got {row!r}"
                    )
                items.append((source.parent / path, label.strip() in GOOD_LABELS))
        return items
    good_dir, bad_dir = source / "good", source / "bad"
    if not (source.is_dir() and good_dir.is_dir()):
        raise ConfigError(
            f"{source}: expected a folder with good/ and bad/ subfolders, or a CSV with "
            "columns path,label (see docs/gate.md)"
        )
    items = [(p, True) for p in expand_paths(good_dir)]
    if bad_dir.is_dir():
        items += [(p, False) for p in expand_paths(bad_dir)]
    return items


def synthetic_grid(
    folder: str | os.PathLike[str], good_max_level: int = 1, bad_min_level: int = 3
) -> list[tuple[np.ndarray, bool, str]]:
    """(BGR frame, is_good, name) for every distortion and level of each frame in ``folder``."""
    from .frames import DISTORTIONS, MAX_LEVEL, distort
    from .imageio import expand_paths, read_image

    if not 0 <= good_max_level < bad_min_level <= MAX_LEVEL:
        raise ConfigError(
            f"need 0 <= good_max_level < bad_min_level <= {MAX_LEVEL}, got "
            f"{good_max_level}, {bad_min_level}"
        )
    out = []
    rng = np.random.default_rng(0)
    for path in expand_paths(folder):
        pixels, fmt = read_image(path)
        if fmt != "BGR" or pixels.dtype != np.uint8:
            raise InvalidImageError(f"{path}: the synthetic grid needs 8-bit colour images")
        rgb = np.ascontiguousarray(pixels[:, :, ::-1])
        out.append((pixels, True, f"{path.name}:pristine"))
        for kind in DISTORTIONS:
            for level in range(1, MAX_LEVEL + 1):
                if good_max_level < level < bad_min_level:
                    continue
                frame = distort(rgb, kind, level, rng)[:, :, ::-1]
                out.append(
                    (
                        np.ascontiguousarray(frame),
                        level <= good_max_level,
                        f"{path.name}:{kind}{level}",
                    )
                )
    return out


def calibrate(
    assessor: Any,
    source: str | os.PathLike[str],
    target_false_reject: float = 0.05,
    region: str = "frame",
    synthetic: bool = False,
) -> Calibration:
    """Score a labelled set (or a synthetic grid of ``source``'s frames) and pick the
    threshold; ``region="salient"`` calibrates the salient-region score."""
    if synthetic:
        items = [(frame, good) for frame, good, _ in synthetic_grid(source)]
    else:
        items = [(str(path), good) for path, good in labelled_set(source)]
    good, bad = [], []
    for start in range(0, len(items), 16):
        chunk = items[start : start + 16]
        results = assessor.assess([item for item, _ in chunk])
        for (_, is_good), result in zip(chunk, results):
            regions = getattr(result, "region_scores", None)
            value = regions[0] if region == "salient" and regions else result.score
            (good if is_good else bad).append(float(value))
    return pick_threshold(good, bad, target_false_reject)


__all__ = [
    "Calibration",
    "CurvePoint",
    "calibrate",
    "labelled_set",
    "pick_threshold",
    "synthetic_grid",
]
