"""Checkpoint -> ONNX, verified against PyTorch on real photos before it is written.

The exporter refuses (raises, leaves nothing behind) when ONNX Runtime's scores differ from
PyTorch's by more than ``SCORE_TOLERANCE`` on any verification image.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saliq.atomic import atomic_path
from saliq.errors import SaliqError
from saliq.export.onnx_lint import LintReport, OnnxLintError, lint_onnx
from saliq.preprocess import Preprocessor
from saliq.spec import METADATA_KEY, ModelSpec

DEFAULT_OPSET = 17
SCORE_TOLERANCE = 1e-4
BATCH_AXIS_NAME = "batch"


class ExportVerificationError(SaliqError):
    """The exported graph does not reproduce the PyTorch model."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    opset: int
    images: int
    max_score_diff: float
    max_saliency_diff: float
    lint: LintReport | None = None  # the ONNX compatibility lint (TensorRT 10.3 / 11.x, FP16)


def verification_frames(count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Real photos shipped by scikit-image, with synthetic distortions of varied severity."""
    from skimage import data as skdata

    from saliq.train.data.distortions import DISTORTIONS, apply_distortion

    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]
    rng = np.random.default_rng(seed)
    names = sorted(DISTORTIONS)
    frames = []
    for i in range(count):
        rgb = photos[i % len(photos)]
        level = i % 6
        if level:
            rgb = apply_distortion(rgb, names[i % len(names)], level, rng)
        frames.append(np.ascontiguousarray(rgb))
    return frames


def _spec_from_onnx(model_proto) -> ModelSpec:
    for prop in model_proto.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelSpec.from_json(prop.value, source="onnx")
    raise ExportVerificationError("exported graph lost its ModelSpec metadata")


def export_onnx(
    checkpoint: str | Path,
    output: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    verify_images: int = 8,
    tolerance: float = SCORE_TOLERANCE,
) -> ExportReport:
    import onnx
    import torch

    from saliq.train.checkpoint import load_checkpoint

    if opset < DEFAULT_OPSET:
        raise ValueError(f"opset {opset} is too old; saliq exports opset >= {DEFAULT_OPSET}")
    checkpoint = Path(checkpoint)
    output = Path(output) if output else checkpoint.with_suffix(".onnx")
    model, spec, _, _ = load_checkpoint(checkpoint)
    pre = Preprocessor.from_spec(spec)
    batch = pre(verification_frames(verify_images), fmt="RGB")
    input_names = list(spec.inputs)
    example = tuple(torch.from_numpy(batch[name]) for name in input_names)
    dynamic = {name: {0: BATCH_AXIS_NAME} for name in [*input_names, *spec.outputs]}

    with atomic_path(output) as tmp:
        # The legacy exporter warns that it cannot constant-fold Slice steps != 1: harmless.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                model,
                example,
                str(tmp),
                input_names=input_names,
                output_names=list(spec.outputs),
                opset_version=opset,
                dynamic_axes=dynamic,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        _fix_static_dims(proto, spec)
        io_dtypes = {v.name: "float32" for v in [*proto.graph.input, *proto.graph.output]}
        spec_json = dataclasses.replace(spec, io_dtypes=io_dtypes).to_json()
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, spec_json
        proto.producer_name = "saliq"
        onnx.checker.check_model(proto, full_check=True)
        lint = lint_onnx(proto, frames={name: batch[name] for name in input_names})
        if not lint.ok:
            raise OnnxLintError(
                f"the exported graph fails the TensorRT/FP16 lint; {output} was not written:\n"
                + lint.format()
            )
        onnx.save(proto, str(tmp))
        report = _verify(tmp, model, batch, input_names, tolerance)
        _spec_from_onnx(proto)
    return ExportReport(output, opset, report[0], report[1], report[2], lint=lint)


def _fix_static_dims(proto, spec: ModelSpec) -> None:
    """Write the saliency map's static size into the graph (the exporter leaves it symbolic)."""
    static = {"saliency": (1, *spec.saliency_size)}
    for value in proto.graph.output:
        if value.name in static:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims[1:], static[value.name]):
                dim.Clear()
                dim.dim_value = size


def _verify(path: Path, model, batch: dict, input_names: list[str], tolerance: float):
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: batch[name] for name in input_names}
    ort_score, ort_sal = session.run(["score", "saliency"], feeds)
    with torch.no_grad():
        ref_score, ref_sal = model(*(torch.from_numpy(batch[n]) for n in input_names))
    score_diff = float(np.abs(ort_score - ref_score.numpy()).max())
    sal_diff = float(np.abs(ort_sal - ref_sal.numpy()).max())
    if not np.isfinite(score_diff) or score_diff > tolerance:
        raise ExportVerificationError(
            f"ONNX Runtime scores differ from PyTorch by {score_diff:.2e} (> {tolerance:.0e}) "
            "on the verification photos; the ONNX file was not written"
        )
    return len(ort_score), score_diff, sal_diff
