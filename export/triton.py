"""ONNX model or TensorRT engine -> a Triton Inference Server model repository.

Layout written (atomically: built in a temp folder beside the repository, then renamed):

    <repo>/<name>/config.pbtxt            platform onnxruntime_onnx | tensorrt_plan
    <repo>/<name>/1/model.onnx            (or model.plan + model.plan.json, the saliq sidecar)
    <repo>/<name>_preprocess/config.pbtxt backend "python"      (preprocessing=True)
    <repo>/<name>_preprocess/1/model.py   raw uint8 FRAME -> image (+ gradient, prior)
    <repo>/<name>_ensemble/config.pbtxt   platform "ensemble": FRAME -> score, saliency

Every config carries the ModelSpec JSON under ``parameters { key: "saliq_spec" }``, so the
repository describes itself. Batching: the ensemble and both steps share ``max_batch_size``;
a request carries N frames of one size, ``FRAME`` [N, h, w, 3]; the preprocessing model has
no dynamic batcher (requests of different sizes are never merged), the network's dynamic
batcher merges the preprocessed, fixed-size requests. See docs/triton.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from saliq.errors import SaliqError
from saliq.spec import METADATA_KEY, ModelSpec

KINDS = ("auto", "onnx", "tensorrt")
PLATFORMS = {"onnx": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
MODEL_FILES = {"onnx": "model.onnx", "tensorrt": "model.plan"}
ENGINE_SUFFIXES = (".engine", ".plan")
FRAME_INPUT = "FRAME"
FRAME_FORMATS = ("BGR", "RGB")
TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8"}
DEFAULT_QUEUE_DELAY_US = 100
PREPROCESS_SUFFIX = "_preprocess"
ENSEMBLE_SUFFIX = "_ensemble"


class TritonExportError(SaliqError):
    """The model repository could not be written as asked."""


def export_triton(
    model: str | Path,
    repo_dir: str | Path,
    name: str | None = None,
    max_batch: int = 16,
    preprocessing: bool = True,
    instance_count: int = 1,
    kind: str = "auto",
    overwrite: bool = False,
    instance_kind: str = "KIND_GPU",
    frame_format: str = "BGR",
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
) -> Path:
    """Write a Triton model repository for ``model``; return the network's model folder."""
    model = Path(model)
    kind = _resolve_kind(model, kind)
    if not model.is_file():
        raise TritonExportError(f"{model}: no such file")
    if max_batch < 1 or instance_count < 1:
        raise ValueError("max_batch and instance_count must be >= 1")
    if instance_kind not in ("KIND_GPU", "KIND_CPU"):
        raise ValueError("instance_kind must be KIND_GPU or KIND_CPU")
    if frame_format.upper() not in FRAME_FORMATS:
        raise ValueError(f"frame_format must be one of {FRAME_FORMATS}")
    spec, io_types, sidecar = _read_model(model, kind)
    if kind == "tensorrt" and sidecar is not None:
        limit = max(p.max_batch for p in sidecar.profiles)
        if max_batch > limit:
            raise TritonExportError(
                f"{model}: the engine's profiles allow batch <= {limit}, asked for "
                f"max_batch={max_batch}; rebuild the engine or pass --max-batch {limit}"
            )
    name = name or spec.name
    _check_name(name)
    repo = Path(repo_dir)
    folders = [name] + ([name + PREPROCESS_SUFFIX, name + ENSEMBLE_SUFFIX] if preprocessing else [])
    existing = [f for f in folders if (repo / f).exists()]
    if existing and not overwrite:
        raise TritonExportError(
            f"{repo}: model folder(s) {', '.join(existing)} already exist; pass overwrite=True "
            "(--overwrite) to replace them"
        )
    repo.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=repo))
    try:
        version = staging / name / "1"
        version.mkdir(parents=True)
        shutil.copyfile(model, version / MODEL_FILES[kind])
        if sidecar is not None:
            from saliq.engine_sidecar import sidecar_path

            shutil.copyfile(sidecar_path(model), sidecar_path(version / MODEL_FILES[kind]))
        (staging / name / "config.pbtxt").write_text(
            model_config(
                name,
                spec,
                io_types,
                kind,
                max_batch,
                instance_count,
                instance_kind,
                max_queue_delay_us,
            ),
            encoding="utf-8",
        )
        if preprocessing:
            pre = staging / (name + PREPROCESS_SUFFIX)
            (pre / "1").mkdir(parents=True)
            (pre / "1" / "model.py").write_text(PYTHON_MODEL, encoding="utf-8")
            (pre / "config.pbtxt").write_text(
                preprocess_config(
                    name + PREPROCESS_SUFFIX, spec, io_types, max_batch, frame_format.upper()
                ),
                encoding="utf-8",
            )
            ens = staging / (name + ENSEMBLE_SUFFIX)
            (ens / "1").mkdir(parents=True)  # Triton wants a version folder, even empty
            (ens / "config.pbtxt").write_text(
                ensemble_config(name, spec, io_types, max_batch), encoding="utf-8"
            )
        _swap_into_place(staging, repo, folders, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return repo / name


def _resolve_kind(model: Path, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind != "auto":
        return kind
    if model.suffix == ".onnx":
        return "onnx"
    if model.suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    raise TritonExportError(
        f"{model}: cannot tell the model kind from the suffix; pass kind='onnx'|'tensorrt'"
    )


def _check_name(name: str) -> None:
    if not name or name.startswith(".") or any(c in name for c in "/\\ \"'"):
        raise ValueError(f"model name {name!r} must be a plain folder name (no / \\ spaces)")


def _read_model(model: Path, kind: str):
    """-> (spec, {tensor: numpy dtype name}, sidecar or None)."""
    if kind == "tensorrt":
        from saliq.engine_sidecar import read_sidecar

        sidecar = read_sidecar(model)
        spec = sidecar.spec
        io = {n: spec.io_dtypes.get(n, "float32") for n in (*spec.inputs, *spec.outputs)}
        return spec, io, sidecar
    import onnx

    from .onnx import spec_of_onnx

    proto = onnx.load(str(model), load_external_data=False)
    spec = spec_of_onnx(proto, source=str(model))
    names = {1: "float32", 10: "float16"}
    io = {}
    for vi in [*proto.graph.input, *proto.graph.output]:
        elem = vi.type.tensor_type.elem_type
        if elem not in names:
            raise TritonExportError(f"{model}: tensor {vi.name!r} has unsupported type {elem}")
        io[vi.name] = names[elem]
    missing = [n for n in (*spec.inputs, *spec.outputs) if n not in io]
    if missing:
        raise TritonExportError(f"{model}: graph lacks the spec's tensors {missing}")
    return spec, io, None


def tensor_dims(spec: ModelSpec, tensor: str) -> list[int]:
    """Dims of a network tensor without the batch axis, from the spec's per-sample shapes.

    Triton has no rank-0 tensors in a batched model: a per-sample scalar (``score``) is
    declared [1] and reshaped to [] (see :func:`model_config`).
    """
    return list(spec.tensor_shape(tensor)) or [1]


def pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _tensor_block(name: str, dtype: str, dims: Sequence[int], reshape: bool = False) -> str:
    lines = [
        "  {",
        f"    name: {pbtxt_string(name)}",
        f"    data_type: {TRITON_DTYPES[dtype]}",
        f"    dims: [ {', '.join(str(d) for d in dims)} ]",
    ]
    if reshape:
        lines.append("    reshape: { shape: [ ] }")
    lines.append("  }")
    return "\n".join(lines)


def _tensors(section: str, blocks: list[str]) -> str:
    return f"{section} [\n" + ",\n".join(blocks) + "\n]\n"


def _parameters(spec: ModelSpec, extra: dict[str, str] | None = None) -> str:
    items = {METADATA_KEY: spec.to_json(), **(extra or {})}
    return "".join(
        f"parameters {{\n  key: {pbtxt_string(k)}\n"
        f"  value: {{ string_value: {pbtxt_string(v)} }}\n}}\n"
        for k, v in items.items()
    )


def _header(name: str, runner: str, max_batch: int, inputs: list[str], outputs: list[str]) -> str:
    """name, ``runner`` (a ``platform:`` or ``backend:`` line), batch size and the I/O tensors."""
    return (
        f"name: {pbtxt_string(name)}\n{runner}\nmax_batch_size: {max_batch}\n"
        + _tensors("input", inputs)
        + _tensors("output", outputs)
    )


def _instance_group(count: int, kind: str) -> str:
    return f"instance_group [\n  {{\n    count: {count}\n    kind: {kind}\n  }}\n]\n"


def _maps(section: str, pairs: list[tuple[str, str]]) -> str:
    """An ensemble step's ``input_map``/``output_map`` lines: (model tensor, ensemble tensor)."""
    return "".join(
        f"      {section} {{ key: {pbtxt_string(k)} value: {pbtxt_string(v)} }}\n" for k, v in pairs
    )


def _frame_input() -> list[str]:
    return [_tensor_block(FRAME_INPUT, "uint8", [-1, -1, 3])]


def _preferred_batches(max_batch: int) -> list[int]:
    sizes = [b for b in (4, 8, 16, 32, 64) if b <= max_batch]
    return sorted({*sizes[-2:], max_batch})


def model_config(
    name: str,
    spec: ModelSpec,
    io_types: dict[str, str],
    kind: str,
    max_batch: int,
    instance_count: int = 1,
    instance_kind: str = "KIND_GPU",
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
) -> str:
    inputs = [_tensor_block(t, io_types[t], tensor_dims(spec, t)) for t in spec.inputs]
    outputs = [
        _tensor_block(t, io_types[t], tensor_dims(spec, t), reshape=not spec.tensor_shape(t))
        for t in spec.outputs
    ]
    preferred = ", ".join(str(b) for b in _preferred_batches(max_batch))
    return (
        _header(name, f"platform: {pbtxt_string(PLATFORMS[kind])}", max_batch, inputs, outputs)
        + "dynamic_batching {\n"
        f"  preferred_batch_size: [ {preferred} ]\n"
        f"  max_queue_delay_microseconds: {max_queue_delay_us}\n"
        "}\n" + _instance_group(instance_count, instance_kind) + _parameters(spec)
    )


def preprocess_config(
    name: str, spec: ModelSpec, io_types: dict[str, str], max_batch: int, frame_format: str
) -> str:
    outputs = [_tensor_block(t, io_types[t], tensor_dims(spec, t)) for t in spec.inputs]
    return (
        _header(name, 'backend: "python"', max_batch, _frame_input(), outputs)
        + _instance_group(1, "KIND_CPU")
        + _parameters(spec, {"saliq_frame_format": frame_format})
    )


def ensemble_config(name: str, spec: ModelSpec, io_types: dict[str, str], max_batch: int) -> str:
    staged = [(t, "pre_" + t) for t in spec.inputs]  # preprocessing outputs = network inputs
    outputs = [_tensor_block(t, io_types[t], tensor_dims(spec, t)) for t in spec.outputs]
    return (
        _header(name + ENSEMBLE_SUFFIX, 'platform: "ensemble"', max_batch, _frame_input(), outputs)
        + "ensemble_scheduling {\n  step [\n"
        "    {\n"
        f"      model_name: {pbtxt_string(name + PREPROCESS_SUFFIX)}\n"
        "      model_version: -1\n"
        + _maps("input_map", [(FRAME_INPUT, FRAME_INPUT)])
        + _maps("output_map", staged)
        + "    },\n    {\n"
        f"      model_name: {pbtxt_string(name)}\n"
        "      model_version: -1\n"
        + _maps("input_map", staged)
        + _maps("output_map", [(t, t) for t in spec.outputs])
        + "    }\n  ]\n}\n"
        + _parameters(spec)
    )


def _swap_into_place(staging: Path, repo: Path, folders: list[str], overwrite: bool) -> None:
    """Rename each staged folder into the repository; replaced ones go aside first and are
    restored if any rename fails, so a failure leaves the old repository as it was."""
    aside: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for folder in folders:
            target = repo / folder
            if target.exists():
                if not overwrite:  # appeared since the check
                    raise TritonExportError(f"{target} already exists")
                old = Path(tempfile.mkdtemp(prefix=f".{folder}.old.", dir=repo))
                os.replace(target, old / folder)
                aside.append((old / folder, target))
            os.replace(staging / folder, target)
            placed.append(target)
    except BaseException:
        for target in placed:
            shutil.rmtree(target, ignore_errors=True)
        for old, target in aside:
            os.replace(old, target)
            shutil.rmtree(old.parent, ignore_errors=True)
        raise
    for old, _ in aside:
        shutil.rmtree(old.parent, ignore_errors=True)


# The Python-backend model written to <name>_preprocess/1/model.py. It runs inside Triton's
# Python backend stub, whose environment must have saliq installed (docs/triton.md).
PYTHON_MODEL = '''"""saliq preprocessing for Triton's Python backend (by `saliq export triton`).

FRAME: uint8 [N, h, w, 3] (N frames of one size; BGR unless the config's
saliq_frame_format says RGB) -> the network's inputs (image, and gradient / prior / crop
views if the ModelSpec lists them) through saliq.Preprocessor: the same preprocessing as
training and the SDK. Needs `pip install saliq` in the Python backend's environment.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from saliq.preprocess import Preprocessor
        from saliq.spec import ModelSpec

        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.spec = ModelSpec.from_metadata(params, "triton config")
        fmt = params.get("saliq_frame_format") or "BGR"
        self.frame_format = fmt
        dtype = self.spec.io_dtypes.get("image", "float32")
        self.preprocessor = Preprocessor.from_spec(self.spec, dtype=dtype)
        self.outputs = list(self.spec.inputs)
        self.dtypes = {n: self.spec.io_dtypes.get(n, "float32") for n in self.outputs}

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                frames = pb_utils.get_input_tensor_by_name(request, "FRAME").as_numpy()
                if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                    raise ValueError(
                        f"FRAME must be uint8 [N, h, w, 3], got {frames.dtype} {frames.shape}"
                    )
                batch = self.preprocessor(list(frames), fmt=self.frame_format)
                tensors = [
                    pb_utils.Tensor(n, np.ascontiguousarray(batch[n], dtype=self.dtypes[n]))
                    for n in self.outputs
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # one bad request must not fail the others
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(f"saliq: {exc}")
                    )
                )
        return responses

    def finalize(self):
        self.preprocessor = None
'''
