"""Keep good frames, drop bad ones, say why: :class:`QualityGate` turns scores into decisions.

A gate wraps an :class:`~saliq.Assessor` (or anything with its ``assess``) and a
:class:`GatePolicy`. Per frame it returns a :class:`Decision`: accept or reject, the frame
score, the salient-region and background scores (where the model gives them: the shipped
default does, through ``Result.region_scores``), the value the policy compared, and the
:class:`Reason` list a person can act on.

The policy is a small state machine over one value per frame (docs/gate.md has the table):

1. the *gated value* is the frame score, or the salient-region score (``region="salient"``;
   a model without region scores falls back to the frame score and the decision says so);
2. optional EMA smoothing: ``s_t = alpha * v_t + (1 - alpha) * s_{t-1}``, ``s_0 = v_0``;
3. hysteresis: while accepting, the gate stays open while ``s >= leave_threshold``; while
   rejecting, it opens when ``s >= threshold`` (``leave_threshold`` defaults to
   ``threshold``: a plain fixed threshold);
4. a state change needs ``min_run`` consecutive frames that ask for it. The gate starts
   closed (rejecting): with ``min_run=3`` the first two good frames are still rejected,
   which is the safe side for a camera that keeps frames.

Per-frame vetoes come after the state machine and do not change its state: an exposure
problem (from the luma histogram, exact and cheap) rejects the frame when
``exposure_rejects`` is set. A latency budget never drops or skips a frame: a decision that
missed it has ``late=True`` and a ``latency`` reason.

Reasons are open-ended records (``kind``, ``detail``, ``region``, ``value``, ``confidence``).
A model with a defect-type head (``Result.defect``: blur, motion, noise, compression,
exposure, colour cast, haze, or none) adds ``Reason("defect", "blur", region=...,
confidence=0.9)`` to a frame rejected for quality, where the head names a defect with at
least ``GatePolicy.defect_min_confidence``; the region is the weaker of the two regions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from .errors import ConfigError, InvalidImageError
from .spec import NO_DEFECT

REGIONS = ("frame", "salient")
# What a Reason can be about ("defect": from a model's defect-type head).
REASON_KINDS = ("quality", "pending", "exposure", "latency", "defect")
# Luma levels counted as clipped: 8-bit sensor black/white within a few codes.
SHADOW_CLIP = 5
HIGHLIGHT_CLIP = 250


class _Assesses(Protocol):
    def assess(self, image: Any, color: str = ..., saliency_map: bool = ...) -> Any: ...


@dataclass(frozen=True)
class Reason:
    """Why a frame was rejected or flagged. ``region`` is "frame", "salient" or "background".

    ``value`` is the measurement behind the reason (a score, a median luma, milliseconds) and
    ``limit`` what it was compared with; ``confidence`` is for model-predicted reasons (the
    defect-type head), None for measured ones.
    """

    kind: str
    detail: str
    message: str
    region: str = "frame"
    value: float | None = None
    limit: float | None = None
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ExposurePolicy:
    """Under/over exposure from the luma histogram (BT.601 luma, 8-bit).

    Under-exposed: median luma below ``dark_median`` or more than ``clip_fraction`` of the
    pixels at or below luma 5. Over-exposed: median above ``bright_median`` or more than
    ``clip_fraction`` at or above 250.
    """

    dark_median: float = 40.0
    bright_median: float = 215.0
    clip_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not 0 <= self.dark_median < self.bright_median <= 255:
            raise ConfigError(
                f"exposure needs 0 <= dark_median < bright_median <= 255, got "
                f"{self.dark_median}, {self.bright_median}; pass levels in 8-bit luma"
            )
        if not 0 < self.clip_fraction <= 1:
            raise ConfigError(f"clip_fraction must be in (0, 1], got {self.clip_fraction}")


@dataclass(frozen=True)
class Exposure:
    """The luma measurement of one frame (fractions of the pixel count)."""

    median: float
    shadows: float  # fraction of pixels with luma <= SHADOW_CLIP
    highlights: float  # fraction with luma >= HIGHLIGHT_CLIP

    def reasons(self, policy: ExposurePolicy) -> list[Reason]:
        if self.median < policy.dark_median or self.shadows > policy.clip_fraction:
            by_clip = self.shadows > policy.clip_fraction
            return [
                Reason(
                    "exposure",
                    "under",
                    f"under-exposed: {self.shadows:.0%} of pixels black, median luma "
                    f"{self.median:.0f}; raise exposure or gain, or add light",
                    value=self.shadows if by_clip else self.median,
                    limit=policy.clip_fraction if by_clip else policy.dark_median,
                )
            ]
        if self.median > policy.bright_median or self.highlights > policy.clip_fraction:
            by_clip = self.highlights > policy.clip_fraction
            return [
                Reason(
                    "exposure",
                    "over",
                    f"over-exposed: {self.highlights:.0%} of pixels clipped white, median "
                    f"luma {self.median:.0f}; lower exposure or gain",
                    value=self.highlights if by_clip else self.median,
                    limit=policy.clip_fraction if by_clip else policy.bright_median,
                )
            ]
        return []


def measure_exposure(pixels: np.ndarray, fmt: str = "BGR") -> Exposure:
    """Luma histogram statistics of a frame: exact (every pixel counts), one pass.

    NV12 frames use their Y plane as is (it is the luma); uint16 frames are scaled to 8 bits.
    """
    from .imageio import is_device_frame

    if is_device_frame(pixels):
        raise InvalidImageError(
            "the exposure check reads the frame's histogram on the host, and this frame is in "
            "GPU memory: pass its host copy, or gate without it: GatePolicy(exposure=None) "
            "(saliq gate --no-exposure)"
        )
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint16:
        pixels = (pixels // 257).astype(np.uint8)
    if fmt == "NV12":
        luma = pixels[: pixels.shape[0] * 2 // 3]
    elif pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 1):
        luma = pixels.reshape(pixels.shape[0], pixels.shape[1])
    else:
        import cv2

        code = cv2.COLOR_RGB2GRAY if fmt.startswith("RGB") else cv2.COLOR_BGR2GRAY
        luma = cv2.cvtColor(np.ascontiguousarray(pixels[:, :, :3]), code)
    hist = np.bincount(np.ascontiguousarray(luma).ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    cumulative = np.cumsum(hist)
    median = float(np.searchsorted(cumulative, total / 2.0))
    return Exposure(
        median=median,
        shadows=float(hist[: SHADOW_CLIP + 1].sum() / total),
        highlights=float(hist[HIGHLIGHT_CLIP:].sum() / total),
    )


@dataclass(frozen=True)
class GatePolicy:
    """How scores become decisions (see the module docstring for the exact rules).

    ``threshold``: accept at or above it (the *enter* threshold under hysteresis);
    ``leave_threshold``: once accepting, reject only below it (None = ``threshold``);
    ``region``: "frame" or "salient" (threshold the salient-region score only);
    ``ema_alpha``: EMA weight of the newest frame in (0, 1] (None = no smoothing);
    ``min_run``: consecutive frames needed for a state change (1 = immediate);
    ``latency_budget_ms``: per-frame budget; a decision that missed it is flagged, never
    dropped; ``exposure``: the histogram rule (None = not measured); ``exposure_rejects``:
    an exposure problem rejects the frame (otherwise it is only reported).
    """

    threshold: float = 0.5
    leave_threshold: float | None = None
    region: str = "frame"
    ema_alpha: float | None = None
    min_run: int = 1
    latency_budget_ms: float | None = None
    exposure: ExposurePolicy | None = field(default_factory=ExposurePolicy)
    exposure_rejects: bool = True
    # a defect-head reason only when the head is at least this sure (0: always the top class)
    defect_min_confidence: float = 0.4

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1] (scores are), got {self.threshold}")
        if self.leave_threshold is not None and not 0.0 <= self.leave_threshold <= self.threshold:
            raise ConfigError(
                f"leave_threshold must be in [0, threshold={self.threshold}], got "
                f"{self.leave_threshold}; hysteresis leaves below where it enters"
            )
        if self.region not in REGIONS:
            raise ConfigError(f"region must be one of {', '.join(REGIONS)}, got {self.region!r}")
        if self.ema_alpha is not None and not 0.0 < self.ema_alpha <= 1.0:
            raise ConfigError(
                f"ema_alpha must be in (0, 1] (weight of the newest frame), got {self.ema_alpha}"
            )
        if int(self.min_run) != self.min_run or self.min_run < 1:
            raise ConfigError(f"min_run must be an integer >= 1, got {self.min_run}")
        if not 0.0 <= self.defect_min_confidence <= 1.0:
            raise ConfigError(
                f"defect_min_confidence must be in [0, 1], got {self.defect_min_confidence}"
            )
        if self.latency_budget_ms is not None and self.latency_budget_ms <= 0:
            raise ConfigError(f"latency_budget_ms must be > 0, got {self.latency_budget_ms}")

    @property
    def leave(self) -> float:
        return self.threshold if self.leave_threshold is None else self.leave_threshold


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one frame.

    ``gated`` is the value the thresholds were compared with (after region choice and EMA);
    ``region`` says which score it came from ("frame" when the policy asked for "salient" but
    the model has no region scores: ``region_fallback`` is then True).
    """

    index: int
    timestamp: float | None
    accept: bool
    score: float
    gated: float
    region: str
    salient_score: float | None = None
    background_score: float | None = None
    region_fallback: bool = False
    reasons: tuple[Reason, ...] = ()
    latency_ms: float | None = None
    late: bool = False
    state_changed: bool = False
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON line of ``saliq gate`` (floats rounded to 4 decimals)."""

        def r(v: float | None) -> float | None:
            return None if v is None else round(float(v), 4)

        out: dict[str, Any] = {
            "type": "frame",
            "index": self.index,
            "timestamp": r(self.timestamp),
            "accept": self.accept,
            "decision": "accept" if self.accept else "reject",
            "score": r(self.score),
            "gated": r(self.gated),
            "region": self.region,
        }
        if self.salient_score is not None:
            out["salient_score"] = r(self.salient_score)
            out["background_score"] = r(self.background_score)
        if self.region_fallback:
            out["region_fallback"] = True
        out["reasons"] = [reason.to_dict() for reason in self.reasons]
        out["latency_ms"] = r(self.latency_ms)
        out["late"] = self.late
        if self.name:
            out["name"] = self.name
        return out


class QualityGate:
    """Frames in, :class:`Decision` out. Stateful (EMA, hysteresis, runs): one gate per stream.

    >>> gate = QualityGate(saliq.load("default"), GatePolicy(threshold=0.45, min_run=3))
    >>> decision = gate(frame_bgr)            # or gate.decide(score) for a score you have
    """

    def __init__(
        self,
        assessor: _Assesses | None = None,
        policy: GatePolicy | None = None,
        clock: Callable[[], float] = time.perf_counter,
        **overrides: Any,
    ) -> None:
        self.assessor = assessor
        self.policy = replace(policy or GatePolicy(), **overrides)
        self._clock = clock
        self.last_result: Any = None  # the assessor's Result of the latest frame (saliency)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: EMA, state (closed), pending run, frame counter."""
        self._smoothed: float | None = None
        self._accepting = False
        self._pending = 0
        self._count = 0

    @property
    def accepting(self) -> bool:
        """The state machine's state (before per-frame vetoes)."""
        return self._accepting

    def decide(
        self,
        score: float,
        salient: float | None = None,
        background: float | None = None,
        *,
        index: int | None = None,
        timestamp: float | None = None,
        latency_ms: float | None = None,
        exposure: Exposure | None = None,
        name: str = "",
        defect: tuple[str, float] | None = None,
    ) -> Decision:
        """One step of the policy on a frame's scores (no model involved); ``defect`` is the
        model's (likely defect type, probability), where it has a defect-type head."""
        policy = self.policy
        fallback = policy.region == "salient" and salient is None
        region = "salient" if policy.region == "salient" and not fallback else "frame"
        value = float(salient if region == "salient" else score)
        if self._smoothed is None or policy.ema_alpha is None:
            self._smoothed = value
        else:
            self._smoothed = policy.ema_alpha * value + (1.0 - policy.ema_alpha) * self._smoothed
        gated = self._smoothed
        limit = policy.leave if self._accepting else policy.threshold
        wants = gated >= limit
        changed = False
        if wants != self._accepting:
            self._pending += 1
            if self._pending >= policy.min_run:
                self._accepting, self._pending, changed = wants, 0, True
        else:
            self._pending = 0

        reasons: list[Reason] = []
        # A closed gate on a frame that passes is waiting for min_run: "pending" says so below.
        if not self._accepting and not wants:
            quality = _quality_reason(gated, limit, region, score, salient, background)
            reasons.append(quality)
            if defect is not None and defect[0] != NO_DEFECT:
                if defect[1] >= policy.defect_min_confidence:
                    reasons.append(
                        Reason(
                            "defect",
                            defect[0],
                            f"likely {defect[0].replace('_', ' ')} "
                            f"(probability {defect[1]:.2f}), {quality.region}",
                            region=quality.region,
                            confidence=float(defect[1]),
                        )
                    )
        if self._pending:
            target = "accept" if wants else "reject"
            reasons.append(
                Reason(
                    "pending",
                    f"to_{target}",
                    f"{target} after {policy.min_run} consecutive frames "
                    f"({self._pending}/{policy.min_run} so far)",
                    value=float(self._pending),
                    limit=float(policy.min_run),
                )
            )
        accept = self._accepting
        if exposure is not None and policy.exposure is not None:
            found = exposure.reasons(policy.exposure)
            reasons += found
            if found and policy.exposure_rejects:
                accept = False
        late = (
            policy.latency_budget_ms is not None
            and latency_ms is not None
            and latency_ms > policy.latency_budget_ms
        )
        if late:
            reasons.append(
                Reason(
                    "latency",
                    "over_budget",
                    f"decided in {latency_ms:.1f} ms, over the {policy.latency_budget_ms:g} ms "
                    "budget (the frame was still assessed)",
                    value=latency_ms,
                    limit=policy.latency_budget_ms,
                )
            )
        frame_index = self._count if index is None else int(index)
        self._count = frame_index + 1
        return Decision(
            index=frame_index,
            timestamp=timestamp,
            accept=accept,
            score=float(score),
            gated=gated,
            region=region,
            salient_score=None if salient is None else float(salient),
            background_score=None if background is None else float(background),
            region_fallback=fallback,
            reasons=tuple(reasons),
            latency_ms=latency_ms,
            late=late,
            state_changed=changed,
            name=name,
        )

    def assess(
        self, pixels: Any, fmt: str = "BGR", saliency_map: bool = False, name: str = ""
    ) -> Any:
        """The assessor's Result for one frame (NV12 buffers included)."""
        if self.assessor is None:
            raise ConfigError(
                "this QualityGate has no assessor; pass one: QualityGate(saliq.load())"
            )
        if fmt == "NV12":
            # Assessor.assess takes packed arrays only; its batch runner takes any pixel format
            # the preprocessing does, so NV12 from a capture API is never converted twice.
            return self.assessor._run([(pixels, "NV12")], [name], saliency_map)[0]  # type: ignore[attr-defined]
        color = "RGB" if fmt.startswith("RGB") else "BGR"
        return self.assessor.assess(pixels, color=color, saliency_map=saliency_map)

    def __call__(
        self,
        pixels: Any,
        fmt: str = "BGR",
        *,
        index: int | None = None,
        timestamp: float | None = None,
        arrived: float | None = None,
        saliency_map: bool = False,
        name: str = "",
    ) -> Decision:
        """Assess one frame and decide. ``arrived`` (the gate's clock, default: now) starts the
        latency measurement; pass the capture time to include queueing."""
        start = self._clock() if arrived is None else arrived
        exposure = measure_exposure(pixels, fmt) if self.policy.exposure is not None else None
        result = self.assess(pixels, fmt, saliency_map=saliency_map, name=name)
        regions = getattr(result, "region_scores", None)
        latency = (self._clock() - start) * 1000.0
        decision = self.decide(
            result.score,
            *(regions or (None, None)),
            index=index,
            timestamp=timestamp,
            latency_ms=latency,
            exposure=exposure,
            name=name,
            defect=getattr(result, "defect", None),
        )
        self.last_result = result
        return decision

    def run(self, frames: Iterable[Any], saliency_map: bool = False) -> Iterator[Any]:
        """Decisions for a source's frames; source errors are passed through unchanged."""
        for item in frames:
            pixels = getattr(item, "pixels", None)
            if pixels is None:  # a SourceError or another event: report it, keep going
                yield item
                continue
            yield self(
                pixels,
                item.fmt,
                index=item.index,
                timestamp=item.timestamp,
                saliency_map=saliency_map,
                name=item.name,
            )


def _quality_reason(
    gated: float,
    limit: float,
    region: str,
    score: float,
    salient: float | None,
    background: float | None,
) -> Reason:
    # Where in the frame: with region scores, the weaker of the two regions.
    where = region
    if salient is not None and background is not None and region == "frame":
        where = "salient" if salient <= background else "background"
    what = "salient region" if region == "salient" else "frame"
    return Reason(
        "quality",
        "low_score",
        f"{what} quality {gated:.3f} below {limit:.3f}"
        + (f"; weakest: {where}" if where != region else ""),
        region=where,
        value=gated,
        limit=limit,
    )


@dataclass(frozen=True)
class Ranked:
    """One frame of a burst: its position in the input, its score and the full Result."""

    index: int
    score: float
    result: Any


def best_of(
    frames: Sequence[Any],
    k: int = 1,
    assessor: _Assesses | None = None,
    region: str = "frame",
    color: str = "BGR",
) -> list[Ranked]:
    """The ``k`` best frames of a burst, best first (ties: the earlier frame first).

    ``frames``: arrays or paths, scored as one batch; ``region="salient"`` ranks by the
    salient-region score where the model gives one (the frame score otherwise).
    """
    if region not in REGIONS:
        raise ConfigError(f"region must be one of {', '.join(REGIONS)}, got {region!r}")
    frames = list(frames)
    if not frames:
        raise ConfigError("best_of needs at least one frame; pass the burst as a list")
    if int(k) != k or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k}")
    if assessor is None:
        from .assess import load

        assessor = load("default")
    results = assessor.assess(frames, color=color)
    ranked = []
    for i, result in enumerate(results):
        regions = getattr(result, "region_scores", None)
        value = regions[0] if region == "salient" and regions else result.score
        ranked.append(Ranked(i, float(value), result))
    ranked.sort(key=lambda r: (-r.score if not math.isnan(r.score) else math.inf, r.index))
    return ranked[: int(k)]


__all__ = [
    "REASON_KINDS",
    "Decision",
    "Exposure",
    "ExposurePolicy",
    "GatePolicy",
    "QualityGate",
    "Ranked",
    "Reason",
    "best_of",
    "measure_exposure",
]
