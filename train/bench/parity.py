"""The parity step of ``saliq bench``: every backend on the same real photos, gated against
the reference before anything is timed.

Photos: the user's folder (``--images``), else scikit-image's sample photos at distortion
levels 0-5 (so scores spread over the range), else saliq's procedural scenes. They are
preprocessed once; every backend runs the same inputs. The gate itself (tolerance per
precision, trained versus untrained models) is :func:`saliq.bench.report.evaluate_parity`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from saliq.bench.report import ERROR, FAILED, PASSED, evaluate_parity, one_line_error, tolerance_for
from saliq.bench.runners import run_batched
from saliq.errors import BackendUnavailableError, ConfigError
from saliq.spec import ModelSpec

from .plans import Plan, activate, close

PARITY_BATCH = 16  # parity runs in chunks of this many images
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")


def parity_frames(
    spec: ModelSpec, count: int, images: str | None = None
) -> tuple[list[tuple[np.ndarray, str]], str]:
    """``count`` real photos as (pixels, format) and where they came from: the user's folder,
    else scikit-image's sample photos at distortion levels 0-5 (:func:`saliq.frames.distort`),
    else saliq's procedural parity scenes."""
    if images:
        from saliq.imageio import expand_paths, read_image

        paths = expand_paths(images)[:count]
        if not paths:
            raise ConfigError(f"--images {images}: no images there")
        return [read_image(p) for p in paths], f"{len(paths)} photos from {images}"
    from saliq.frames import DISTORTIONS, LEVELS, distort

    try:
        import skimage.data as sample
    except ImportError:
        sample = None
    if sample is not None:
        photos = []
        for name in SKIMAGE_PHOTOS:
            pixels = getattr(sample, name)()
            photos.append(np.ascontiguousarray(pixels[0] if isinstance(pixels, tuple) else pixels))
        rng = np.random.default_rng(0)
        frames = []
        for i in range(count):
            level = i % LEVELS
            kind = DISTORTIONS[(i // LEVELS) % len(DISTORTIONS)]
            frames.append(
                (np.ascontiguousarray(distort(photos[i % len(photos)], kind, level, rng)), "RGB")
            )
        return frames, (
            f"scikit-image sample photos ({', '.join(SKIMAGE_PHOTOS)}) at distortion levels 0-5"
        )
    from saliq.frames import parity_frames as procedural

    size = (max(2 * spec.input_height, 480), max(2 * spec.input_width, 640))
    frames = [(f, "RGB") for f in procedural(count, size)]
    return frames, f"saliq.frames procedural scenes {size[0]}x{size[1]} (no scikit-image)"


def preprocess_frames(
    spec: ModelSpec, frames: Sequence[tuple[np.ndarray, str]], implementation: str = "auto"
) -> dict[str, np.ndarray]:
    """The model's float32 inputs for decoded frames, as ``Assessor.preprocess`` makes them,
    with the preprocessing ``implementation`` asked for."""
    from saliq.assess import preprocess_frames as batched
    from saliq.preprocess import Preprocessor

    pre = Preprocessor.from_spec(spec, implementation=implementation)
    return batched(pre, spec.inputs, frames)


def run_parity(
    plans: list[Plan],
    reference: Plan,
    feeds: dict[str, np.ndarray],
    trained: bool,
    spec: ModelSpec,
) -> None:
    """Gate every plan against the reference's outputs on ``feeds`` (statuses set in place;
    the runners of those that ran stay open for timing)."""
    activate(reference)
    if reference.runner is None:
        raise BackendUnavailableError(
            f"the reference {reference.result.name} could not run: {reference.result.reason}"
        )
    expected = run_batched(reference.runner, feeds, PARITY_BATCH)
    reference.result.parity = evaluate_parity(
        expected, expected, tolerance_for(reference.result.precision), trained, spec
    )
    for plan in plans:
        if plan is reference:
            continue
        activate(plan)
        if plan.runner is None:
            continue
        try:
            got = run_batched(plan.runner, feeds, min(PARITY_BATCH, plan.max_batch))
            tolerance = tolerance_for(plan.result.precision)
            plan.result.parity = evaluate_parity(expected, got, tolerance, trained, spec)
        except Exception as exc:
            plan.result.status, plan.result.reason = ERROR, one_line_error(exc)
            close(plan)
            continue
        if plan.result.parity["passed"]:
            plan.result.status = PASSED
        else:
            plan.result.status = FAILED
            plan.result.reason = "; ".join(plan.result.parity["reasons"])


__all__ = ["PARITY_BATCH", "SKIMAGE_PHOTOS", "parity_frames", "preprocess_frames", "run_parity"]
