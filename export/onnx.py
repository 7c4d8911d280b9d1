"""Checkpoint -> ONNX, verified against PyTorch before it is written.

The exporter refuses (raises, leaves nothing behind) when ONNX Runtime's outputs do not
reproduce PyTorch's on the verification frames (:func:`saliq.frames.parity_frames`): the one
comparator (:mod:`saliq.bench.compare`) with a score tolerance of ``SCORE_TOLERANCE``, on
runners of both (:mod:`saliq.bench.runners`).
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
from saliq.spec import METADATA_KEY, SALIENCY, SCORE, ModelSpec

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


def verification_frames(
    count: int = 8, seed: int = 0, size: tuple[int, int] = (224, 224)
) -> list[np.ndarray]:
    """Procedural scenes at distortion levels 0-5 (uint8 RGB; :mod:`saliq.frames`)."""
    from saliq.frames import parity_frames

    return parity_frames(count, size, seed)


def spec_of_onnx(proto, source: str = "onnx") -> ModelSpec:
    """The ModelSpec embedded in an ONNX ``ModelProto`` (its ``metadata_props``)."""
    return ModelSpec.from_metadata({p.key: p.value for p in proto.metadata_props}, source)


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
    from saliq.train.models import GraphModule

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
    graph = GraphModule(model, spec.inputs, spec.outputs).eval()

    with atomic_path(output) as tmp:
        # The legacy exporter warns that it cannot constant-fold Slice steps != 1: harmless.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                graph,
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
        report = _verify(tmp, graph, batch, spec, tolerance)
    return ExportReport(output, opset, report[0], report[1], report[2], lint=lint)


def _fix_static_dims(proto, spec: ModelSpec) -> None:
    """Write every output's static per-sample shape into the graph (the exporter may leave
    them symbolic); the batch axis stays dynamic."""
    for value in proto.graph.output:
        if value.name in spec.outputs:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims[1:], spec.tensor_shape(value.name)):
                dim.Clear()
                dim.dim_value = size


def _verify(path: Path, graph, batch: dict, spec: ModelSpec, tolerance: float):
    """ONNX Runtime (the file as written, its embedded spec included) against PyTorch, on every
    exported output; returns (frames, max |score diff|, max |saliency diff|)."""
    from saliq.bench.compare import compare_runners
    from saliq.bench.runners import OnnxRuntimeRunner, TorchRunner

    feeds = {name: batch[name] for name in spec.inputs}
    report = compare_runners(
        TorchRunner(graph.model, spec, name="pytorch"),
        OnnxRuntimeRunner(path),
        feeds,
        tolerance=tolerance,
        spec=spec,
    )
    if not report.passed:
        raise ExportVerificationError(
            f"ONNX Runtime does not reproduce PyTorch on the verification frames "
            f"({'; '.join(report.reasons)}); the ONNX file was not written"
        )
    saliency_diff = report.max_abs_diff.get(SALIENCY, float("nan"))
    return report.images, report.max_abs_diff[SCORE], saliency_diff
