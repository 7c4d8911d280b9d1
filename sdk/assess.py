"""What apps use: ``saliq.load(...)`` -> Assessor; ``assess(image)`` -> Result(s)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends import Backend, load_backend
from .errors import (
    BackendClosedError,
    BackendUnavailableError,
    ConfigError,
    ModelFormatError,
)
from .imageio import frame_shape, load_inputs
from .preprocess import Preprocessor
from .spec import DEFECT_PROBS, GRAPH_OUTPUTS, SALIENCY, SCORE

DEFAULT_MODEL_DIR = Path(__file__).parent / "models" / "default"
DEFAULT_MODEL_STEM = "saliq_sgdnet_views_lite0"
DEFAULT_BATCH = 16
REGION_SCORES = "region_scores"  # [salient, background] output of crop-view models


def default_model_path(kind: str = "onnx") -> Path:
    path = DEFAULT_MODEL_DIR / f"{DEFAULT_MODEL_STEM}.{kind}"
    if not path.is_file():
        raise ModelFormatError(f"the shipped default model is missing ({path}); reinstall saliq")
    return path


@dataclass
class Result:
    """Quality of one image: ``score`` in [0, 1], higher is better.

    ``saliency`` is None for a model without a saliency output; ``outputs`` holds any further
    outputs the model's spec declares (per image, without the batch axis).
    """

    score: float
    saliency: np.ndarray | None  # [h, w] at the model's saliency grid, max-normalised to [0, 1]
    name: str = ""
    saliency_full: np.ndarray | None = field(default=None, repr=False)  # at input resolution
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    defect_classes: tuple[str, ...] = field(default=(), repr=False)  # names of defect_probs

    @property
    def defect(self) -> tuple[str, float] | None:
        """(likely defect type, its probability) from a model's defect-type head ("none":
        the head sees no defect); None for models without one."""
        probs = self.outputs.get(DEFECT_PROBS)
        if probs is None or not self.defect_classes:
            return None
        best = int(np.argmax(probs))
        return self.defect_classes[best], float(probs[best])

    @property
    def region_scores(self) -> tuple[float, float] | None:
        """(salient region, the rest of the frame) quality in [0, 1], from the crop views of a
        preprocessing-v2 model; None for models without them."""
        values = self.outputs.get(REGION_SCORES)
        if values is None:
            return None
        return float(values[0]), float(values[1])

    def __repr__(self) -> str:
        parts = [f"score={self.score:.4f}"]
        if self.name:
            parts.insert(0, f"name={self.name!r}")
        if self.region_scores is not None:
            parts.append("salient={:.4f}, background={:.4f}".format(*self.region_scores))
        if self.defect is not None:
            parts.append(f"defect={self.defect[0]!r} ({self.defect[1]:.2f})")
        if self.saliency is not None:
            parts.append("saliency={}x{}".format(*self.saliency.shape))
        return f"Result({', '.join(parts)})"

    def to_dict(self) -> dict:
        out = {"name": self.name, "score": round(self.score, 6)}
        if self.region_scores is not None:
            out["salient_score"], out["background_score"] = (
                round(v, 6) for v in self.region_scores
            )
        if self.defect is not None:
            out["defect"], confidence = self.defect
            out["defect_confidence"] = round(confidence, 4)
        return out


PREPROCESSING_CHOICES = ("auto", "cuda", "host")


def check_preprocessing_choice(preprocessing: str) -> None:
    if preprocessing not in PREPROCESSING_CHOICES:
        raise ConfigError(
            f"preprocessing must be one of {', '.join(PREPROCESSING_CHOICES)}, "
            f"got {preprocessing!r}"
        )


class Assessor:
    """Preprocessing + backend for one model; reusable and thread-compatible per instance.

    ``preprocessing``: "auto" preprocesses on the GPU, straight into the engine's inputs,
    where that can run (a TensorRT engine and saliq._preproc built with CUDA; see
    :mod:`saliq.device_pipeline`), else on the host; "cuda" insists (an error says why it
    cannot); "host" never uses the GPU for it. ``preprocessing_used`` says which runs and
    ``preprocessing_note`` why the GPU does not.
    """

    def __init__(
        self, backend: Backend, batch_size: int = DEFAULT_BATCH, preprocessing: str = "auto"
    ) -> None:
        from .device_pipeline import DevicePipeline

        check_preprocessing_choice(preprocessing)
        self.backend = backend
        self.spec = backend.spec
        self.preprocessor = Preprocessor.from_spec(self.spec)
        self.batch_size = batch_size
        self.device_pipeline: DevicePipeline | None = None
        self.preprocessing_note = "preprocessing='host' was asked"
        if preprocessing != "host":
            self.device_pipeline, reason = DevicePipeline.open(backend, batch_size)
            self.preprocessing_note = reason
            if reason and preprocessing == "cuda":
                raise BackendUnavailableError(
                    f"GPU preprocessing unavailable: {reason}. It needs a TensorRT engine "
                    "(saliq export trt), a GPU and saliq._preproc built with CUDA (`saliq "
                    "doctor` shows what this machine has); preprocessing='auto' or 'host' runs "
                    "it on the host instead"
                )

    @property
    def preprocessing_used(self) -> str:
        """ "cuda" (GPU preprocessing into the engine's device inputs) or "host"."""
        return "cuda" if self.device_pipeline is not None else "host"

    def assess(self, image, color: str = "BGR", saliency_map: bool = False):
        """Score a path, an array (BGR by default; ``color="RGB"``), or a list of them.

        Returns one Result, or a list for a list input. ``saliency_map=True`` also gives
        the saliency at the input image's resolution.
        """
        if self.backend.closed:
            raise BackendClosedError("this Assessor was closed; open the model again: saliq.load()")
        refused = "" if self.device_pipeline is not None else self.preprocessing_note
        frames, names, is_batch = load_inputs(image, color=color, device_refused=refused)
        results: list[Result] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            results += self._run(chunk, names[start : start + self.batch_size], saliency_map)
        return results if is_batch else results[0]

    def preprocess(self, frames: list[tuple[np.ndarray, str]]) -> dict[str, np.ndarray]:
        """Model inputs for decoded frames: one batched preprocessing call per pixel format."""
        return preprocess_frames(self.preprocessor, self.spec.inputs, frames)

    def _run(self, frames, names, saliency_map: bool) -> list[Result]:
        if self.device_pipeline is not None:
            outputs = self.device_pipeline.infer(frames)
        else:
            outputs = self.backend.infer(self.preprocess(frames))
        extra = [name for name in self.spec.outputs if name not in GRAPH_OUTPUTS]
        results = []
        for i, name in enumerate(names):
            sal = full = None
            if self.spec.saliency:
                sal = outputs[SALIENCY][i, 0].astype(np.float32)
                peak = float(sal.max())
                sal = sal / peak if peak > 0 else sal
                if saliency_map:
                    full = _upsample(sal, frame_shape(frames[i][0]), frames[i][1])
            others = {key: outputs[key][i] for key in extra}
            results.append(
                Result(float(outputs[SCORE][i]), sal, name, full, others, self.spec.defect_classes)
            )
        return results

    def release_thread(self) -> None:
        """Free the calling thread's GPU state now (the preprocessing's stream and buffers,
        the engine's execution context): for pool threads done with this model. Threads that
        end are released without this; host backends hold none."""
        if self.device_pipeline is not None:
            self.device_pipeline.release_thread()
        release = getattr(self.backend, "release_thread", None)
        if callable(release):
            release()

    def close(self) -> None:
        """Release the backend; a later ``assess`` raises ``saliq.BackendClosedError``."""
        try:
            if self.device_pipeline is not None:
                self.device_pipeline.close()
        finally:
            self.backend.close()

    def __enter__(self) -> Assessor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def preprocess_frames(
    preprocessor: Preprocessor, names: Sequence[str], frames: Sequence[tuple[np.ndarray, str]]
) -> dict[str, np.ndarray]:
    """The float32 inputs ``names`` for decoded ``(pixels, format)`` frames, in order: one
    batched preprocessing call per pixel format."""
    by_format: dict[str, list[int]] = {}
    for index, (_, fmt) in enumerate(frames):
        by_format.setdefault(fmt, []).append(index)
    inputs: dict[str, np.ndarray] = {}
    for fmt, indices in by_format.items():
        out = preprocessor([frames[i][0] for i in indices], fmt=fmt)
        for name in names:
            if name not in inputs:
                inputs[name] = np.empty((len(frames), *out[name].shape[1:]), np.float32)
            inputs[name][indices] = out[name]
    return inputs


def _upsample(saliency: np.ndarray, shape: tuple[int, ...], fmt: str) -> np.ndarray:
    import cv2

    height, width = shape[0], shape[1]
    if fmt == "NV12":
        height = height * 2 // 3
    return cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)


def load(
    model: str | Path = "default",
    backend: str = "auto",
    threads: int = 0,
    device: int = 0,
    cuda_graph: bool = False,
    allow_engine_host_code: bool = False,
    max_contexts: int | None = None,
    preprocessing: str = "auto",
) -> Assessor:
    """Open a model: "default" (shipped), .onnx, .safetensors checkpoint or TensorRT .engine.

    ``device``, ``cuda_graph``, ``allow_engine_host_code`` and ``max_contexts``: TensorRT
    engines only (see :class:`saliq.backends.tensorrt.TensorRTBackend`). ``preprocessing``:
    "auto", "cuda" or "host" (see :class:`Assessor`).
    """
    check_preprocessing_choice(preprocessing)  # before a model is opened
    if str(model) == "default":
        model = default_model_path("safetensors" if backend == "torch" else "onnx")
    opened = load_backend(
        model,
        backend=backend,
        threads=threads,
        device=device,
        cuda_graph=cuda_graph,
        allow_engine_host_code=allow_engine_host_code,
        max_contexts=max_contexts,
    )
    try:
        return Assessor(opened, preprocessing=preprocessing)
    except BaseException:
        opened.close()
        raise
