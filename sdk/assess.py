"""What apps use: ``saliq.load(...)`` -> Assessor; ``assess(image)`` -> Result(s)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends import Backend, load_backend
from .errors import ModelFormatError
from .imageio import load_inputs
from .preprocess import Preprocessor

DEFAULT_MODEL_DIR = Path(__file__).parent / "models" / "default"
DEFAULT_MODEL_STEM = "saliq_sgdnet_lite0"
DEFAULT_BATCH = 16


def default_model_path(kind: str = "onnx") -> Path:
    path = DEFAULT_MODEL_DIR / f"{DEFAULT_MODEL_STEM}.{kind}"
    if not path.is_file():
        raise ModelFormatError(f"the shipped default model is missing ({path}); reinstall saliq")
    return path


@dataclass
class Result:
    """Quality of one image: ``score`` in [0, 1], higher is better."""

    score: float
    saliency: np.ndarray  # [h, w] at the model's saliency resolution, max-normalised to [0, 1]
    name: str = ""
    saliency_full: np.ndarray | None = field(default=None, repr=False)  # at input resolution

    def to_dict(self) -> dict:
        return {"name": self.name, "score": round(self.score, 6)}


class Assessor:
    """Preprocessing + backend for one model; reusable and thread-compatible per instance."""

    def __init__(self, backend: Backend, batch_size: int = DEFAULT_BATCH) -> None:
        self.backend = backend
        self.spec = backend.spec
        self.preprocessor = Preprocessor.from_spec(self.spec)
        self.batch_size = batch_size

    def assess(self, image, color: str = "BGR", saliency_map: bool = False):
        """Score a path, an array (BGR by default; ``color="RGB"``), or a list of them.

        Returns one Result, or a list for a list input. ``saliency_map=True`` also gives
        the saliency at the input image's resolution.
        """
        frames, names, is_batch = load_inputs(image, color=color)
        results: list[Result] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            results += self._run(chunk, names[start : start + self.batch_size], saliency_map)
        return results if is_batch else results[0]

    def _run(self, frames, names, saliency_map: bool) -> list[Result]:
        per_frame = [self.preprocessor.one(pixels, fmt) for pixels, fmt in frames]
        inputs = {k: np.stack([p[k] for p in per_frame]) for k in self.spec.inputs}
        outputs = self.backend.infer(inputs)
        results = []
        for i, name in enumerate(names):
            sal = outputs["saliency"][i, 0].astype(np.float32)
            peak = float(sal.max())
            sal = sal / peak if peak > 0 else sal
            full = _upsample(sal, frames[i][0].shape, frames[i][1]) if saliency_map else None
            results.append(Result(float(outputs["score"][i]), sal, name, full))
        return results

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Assessor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
) -> Assessor:
    """Open a model: "default" (shipped), .onnx, .safetensors checkpoint or TensorRT .engine.

    ``device``, ``cuda_graph`` and ``allow_engine_host_code``: TensorRT engines only (see
    :class:`saliq.backends.tensorrt.TensorRTBackend`).
    """
    if str(model) == "default":
        model = default_model_path("safetensors" if backend == "torch" else "onnx")
    return Assessor(
        load_backend(
            model,
            backend=backend,
            threads=threads,
            device=device,
            cuda_graph=cuda_graph,
            allow_engine_host_code=allow_engine_host_code,
        )
    )
