"""ONNX (or checkpoint) -> TensorRT engine + sidecar, refused unless it passes parity.

Two FP16 paths, chosen from the installed TensorRT's major version:

* TensorRT 10.x (JetPack 6 ships 10.3): parse the FP32 ONNX into a weakly typed network and
  set ``BuilderFlag.FP16``; TensorRT picks per layer and keeps the I/O in FP32.
* TensorRT >= 11 has no FP16 builder flag: we convert the ONNX to FP16 ourselves
  (:func:`convert_to_fp16`, ops in :data:`FP32_OPS` kept in FP32, I/O kept FP32), check it
  against the FP32 ONNX with ONNX Runtime, and build a strongly typed network from it.

After the build the engine and ONNX Runtime (CPU, FP32 ONNX) score the same frames
(:func:`saliq.frames.parity_frames`: procedural scenes at every distortion level) through
one runner interface (:mod:`saliq.bench.runners`); the one comparator
(:func:`saliq.bench.compare.compare_outputs`) decides, and :mod:`saliq.bench.timer` measures
the engine's latency. Nothing here needs torch, scikit-image or the training code (an ONNX
input needs no torch at all). The engine and its sidecar are written to a temporary folder
beside the target and renamed into place only when the gate passes, so a refused build
leaves nothing behind.

``import tensorrt as trt`` happens inside functions: the SDK must import without TensorRT,
and the plain module name keeps the calls type-checked against ``tensorrt-stubs``
(``scripts/trt_stubs.py``). Nothing in this file has been run on TensorRT here.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from saliq.atomic import atomic_path
from saliq.bench.compare import (
    DEFAULT_MIN_SALIENCY_CC,
    DEFAULT_TOLERANCE,
    ParityReport,
    compare_outputs,
    compare_runners,
)
from saliq.bench.runners import BackendRunner, OnnxRuntimeRunner, Runner, run_batched
from saliq.bench.timer import time_call
from saliq.device_info import is_tegra
from saliq.engine_sidecar import PRECISIONS, EngineSidecar, Profile, sha256_file, write_sidecar
from saliq.errors import BackendUnavailableError, ConfigError, SaliqError
from saliq.spec import METADATA_KEY, ModelSpec

from .onnx import spec_of_onnx

if TYPE_CHECKING:
    import onnx

MIN_PARITY_IMAGES = 64
LATENCY_WARMUP = 10
LATENCY_RUNS = 50
FP16_ONNX_TOLERANCE = 0.01  # the FP16 ONNX against the FP32 ONNX, both on ONNX Runtime

# Ops computed in FP32 inside an FP16 graph. Normalisation and softmax need the range
# (their sums of squares / exponentials overflow 65504) and the precision of their
# statistics; large reductions accumulate rounding error; Exp/Pow overflow. SGDNet has none
# of the first group; its global average pool (ReduceMean in the exported graph) and the
# SE squeeze run in FP32, which costs two small Casts each.
FP32_OPS = frozenset(
    {
        "LayerNormalization",
        "GroupNormalization",
        "InstanceNormalization",
        "Softmax",
        "LogSoftmax",
        "ReduceMean",
        "ReduceSum",
        "ReduceSumSquare",
        "ReduceL2",
        "ReduceLogSumExp",
        "Exp",
        "Pow",
    }
)
# Inputs that ONNX defines as float32 whatever the data type (Resize's roi/scales).
FP32_INPUT_POSITIONS: dict[str, frozenset[int]] = {
    "Resize": frozenset({1, 2}),
    "Upsample": frozenset({1}),
}

INSTALL_HINT = (
    "TensorRT is not installed: on Jetson it ships with JetPack (sudo apt install "
    'python3-libnvinfer); on x86 Linux/Windows run pip install "tensorrt-cu12<11" '
    '(CUDA 12) or "tensorrt-cu13" (CUDA 13)'
)


class EngineBuildError(SaliqError):
    """TensorRT could not parse or build the model."""


class ParityError(SaliqError):
    """The built engine (or FP16 ONNX) does not reproduce the FP32 ONNX; nothing was written."""

    def __init__(self, message: str, report: ParityReport) -> None:
        super().__init__(message)
        self.report = report


# --- TensorRT and device discovery ---------------------------------------------------------


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or a one-line install hint for this platform."""
    try:
        import tensorrt
    except ImportError:
        raise BackendUnavailableError(f"{INSTALL_HINT} ({platform.machine()})") from None
    return tensorrt


def tensorrt_major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise BackendUnavailableError(f"unrecognised TensorRT version {version!r}") from None


def uses_strongly_typed(precision: str, trt_version: str) -> bool:
    """TensorRT 11 removed the FP16 flag: FP16 there means a strongly typed FP16 graph."""
    return precision == "fp16" and tensorrt_major(trt_version) >= 11


def device_compute_capability(device: int = 0) -> str:
    """``"major.minor"`` of a CUDA GPU, through saliq's CUDA layer (cuda-python or pycuda),
    the same bindings the TensorRT backend runs on; a one-line error says what is missing."""
    from saliq import cuda_memory

    return cuda_memory.cuda_api().compute_capability(device)


AMPERE_MAJOR = 8  # HardwareCompatibilityLevel.AMPERE_PLUS: engines for compute capability 8.x+


def check_hardware_compatible_platform(tegra: bool) -> None:
    """TensorRT supports hardware-compatible engines on discrete GPUs only (not on JetPack)."""
    if tegra:
        raise ConfigError(
            "--hardware-compatible is not supported by TensorRT on Jetson (Tegra); build "
            "without it, on the Jetson model that will run the engine"
        )


def check_hardware_compatible_build(compute_capability: str) -> None:
    """An AMPERE_PLUS engine is built on an Ampere-or-newer GPU; refuse earlier ones up front."""
    major = int(compute_capability.split(".")[0])
    if major < AMPERE_MAJOR:
        raise ConfigError(
            f"--hardware-compatible builds Ampere-or-newer engines (TensorRT's AMPERE_PLUS) and "
            f"needs such a GPU to build on; this one is compute capability {compute_capability}. "
            "Build without --hardware-compatible, or on an Ampere+ GPU"
        )


# --- flags -> profile, timing cache --------------------------------------------------------


def profile_from_flags(min_batch: int, opt_batch: int, max_batch: int) -> Profile:
    try:
        return Profile(int(min_batch), int(opt_batch), int(max_batch))
    except ValueError as exc:
        raise ConfigError(f"--min-batch/--opt-batch/--max-batch: {exc}") from None


def profile_shapes(spec: ModelSpec, name: str, profile: Profile) -> tuple[list[int], ...]:
    """(min, opt, max) shapes of one graph input; batch is the only dynamic axis and the rest
    is the spec's per-sample shape."""
    per_sample = list(spec.tensor_shape(name))
    return tuple(
        [batch, *per_sample] for batch in (profile.min_batch, profile.opt_batch, profile.max_batch)
    )


def load_timing_cache(path: str | Path | None) -> bytes:
    """Bytes of an existing timing cache; empty (a fresh cache) when there is none yet."""
    if path is None:
        return b""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--timing-cache {path} is a folder; pass a file path")
    return path.read_bytes() if path.is_file() else b""


def save_timing_cache(path: str | Path, data: bytes | memoryview) -> Path:
    """Write atomically: builds running side by side never see half a cache."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(data))
    return path


def attach_timing_cache(config: Any, data: bytes, path: Path | None) -> None:
    """Give the builder config the cache in ``data``, or a fresh one with a warning.

    ``create_timing_cache`` returns None for bytes it cannot parse (a corrupt, truncated or
    foreign file) and ``set_timing_cache`` returns False for a cache from another GPU or
    TensorRT version: either way the build goes on with a new cache, which overwrites the file.
    """
    cache = config.create_timing_cache(data) if data else None
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return
    if data:
        problem = "is not a timing cache" if cache is None else "does not match this device"
        print(f"saliq: timing cache {path} {problem}; starting a new one", file=sys.stderr)
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, ignore_mismatch=False):
        raise EngineBuildError("TensorRT could not create an empty timing cache; reinstall it")


# --- FP16 ONNX -----------------------------------------------------------------------------


def convert_to_fp16(model: onnx.ModelProto, fp32_ops: frozenset[str] = FP32_OPS) -> onnx.ModelProto:
    """An FP16 copy of an FP32 graph with FP32 inputs/outputs and ``fp32_ops`` in FP32.

    Every float tensor between nodes is FP16. A node in ``fp32_ops``, and every node that
    writes a graph output (so scores and saliency leave the graph computed in FP32), reads
    FP32 copies of its inputs (Cast) and, where an FP16 node consumes its outputs, gets a
    Cast back. Initializers are converted once per precision needed. Graphs with
    subgraphs (If/Loop/Scan) are refused: none of saliq's models has one.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    model = shape_inference.infer_shapes(model, strict_mode=True)
    graph = model.graph
    for node in graph.node:
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            raise EngineBuildError(
                f"FP16 conversion: node {node.name or node.op_type} has a subgraph"
            )

    elem: dict[str, int] = {}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        elem[value.name] = value.type.tensor_type.elem_type
    initializers = {t.name: t for t in graph.initializer}
    for tensor in graph.initializer:
        elem[tensor.name] = tensor.data_type

    # Constants become initializers so that one rule converts every stored float.
    nodes = []
    for node in graph.node:
        if (
            node.op_type == "Constant"
            and len(node.attribute) == 1
            and node.attribute[0].name == "value"
        ):
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            initializers[tensor.name] = tensor
            elem[tensor.name] = tensor.data_type
        else:
            nodes.append(node)

    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    output_names = {o.name for o in graph.output}
    # versions[name][precision] = the tensor name holding ``name`` in that precision
    versions: dict[str, dict[int, str]] = {i.name: {FLOAT: i.name} for i in graph.input}
    new_inits: dict[str, onnx.TensorProto] = {}
    new_nodes: list[onnx.NodeProto] = []

    def get(name: str, want: int) -> str:
        if name in initializers:
            key = name if want == FLOAT else f"{name}__fp16"
            if key not in new_inits:
                array = numpy_helper.to_array(initializers[name])
                dtype = np.float32 if want == FLOAT else np.float16
                new_inits[key] = numpy_helper.from_array(array.astype(dtype), key)
            return key
        have = versions[name]
        if want not in have:
            source = next(iter(have.values()))
            target = f"{name}__{'fp32' if want == FLOAT else 'fp16'}"
            new_nodes.append(
                helper.make_node("Cast", [source], [target], to=want, name=f"cast_{target}")
            )
            have[want] = target
        return have[want]

    for node in nodes:
        in_fp32 = node.op_type in fp32_ops or any(o in output_names for o in node.output)
        fixed = FP32_INPUT_POSITIONS.get(node.op_type, frozenset())
        inputs = []
        for index, name in enumerate(node.input):
            if name and elem.get(name) == FLOAT:
                want = FLOAT if in_fp32 or index in fixed else HALF
                inputs.append(get(name, want))
            elif name and name in initializers:
                # A non-float constant (shape, axes): carried over unchanged.
                new_inits.setdefault(name, initializers[name])
                inputs.append(name)
            else:
                inputs.append(name)
        del node.input[:]
        node.input.extend(inputs)
        if not in_fp32:
            for attr in node.attribute:
                # Casts and fills that produce float32 produce float16 in the FP16 region.
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = HALF
                if (
                    node.op_type == "ConstantOfShape"
                    and attr.name == "value"
                    and attr.t.data_type == FLOAT
                ):
                    value = numpy_helper.to_array(attr.t).astype(np.float16)
                    attr.t.CopyFrom(numpy_helper.from_array(value, attr.t.name))
        new_nodes.append(node)
        for name in node.output:
            if elem.get(name) == FLOAT:
                versions[name] = {FLOAT if in_fp32 else HALF: name}
            elif name:
                versions[name] = {elem.get(name, 0): name}

    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(new_inits.values())
    # Stale FP32 annotations would contradict the new types; inference rebuilds them.
    del graph.value_info[:]
    converted = shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(converted, full_check=True)
    return converted


def onnx_io_dtypes(model: onnx.ModelProto) -> dict[str, str]:
    from onnx import helper

    return {
        v.name: str(helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))
        for v in [*model.graph.input, *model.graph.output]
    }


def write_fp16_onnx(fp32_path: str | Path, output: str | Path) -> Path:
    """Convert and save, with the spec's io_dtypes rewritten from the converted graph."""
    import onnx

    model = onnx.load(str(fp32_path))
    spec = spec_of_onnx(model, str(fp32_path))
    converted = convert_to_fp16(model)
    spec = dataclasses.replace(spec, io_dtypes=onnx_io_dtypes(converted))
    for prop in converted.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = spec.to_json()
    with atomic_path(output) as tmp:
        onnx.save(converted, str(tmp))
    return Path(output)


# --- parity against ONNX Runtime --------------------------------------------------------


def check_fp16_onnx(
    fp32_path: Path, fp16_path: Path, batch: dict[str, np.ndarray], tolerance: float
) -> ParityReport:
    """The FP16 ONNX against the FP32 one, both on ONNX Runtime's CPU provider."""
    report = compare_runners(
        OnnxRuntimeRunner(fp32_path, name="onnxruntime-fp32"),
        OnnxRuntimeRunner(fp16_path, name="onnxruntime-fp16"),
        batch,
        tolerance=tolerance,
    )
    if not report.passed:
        raise ParityError(f"FP16 ONNX refused before building: {report.summary()}", report)
    return report


def _tensorrt_backend(engine: Path):
    try:
        from saliq.backends.tensorrt import TensorRTBackend
    except ImportError as exc:
        raise BackendUnavailableError(
            f"saliq.backends.tensorrt is not available ({exc}); the engine cannot be checked "
            "against ONNX Runtime, so it is not written. Upgrade saliq."
        ) from None
    # The plan was built a moment ago by this process, so its embedded lean runtime (present
    # in version-compatible plans) is ours to trust.
    return TensorRTBackend(engine, allow_engine_host_code=True)


def latency(runner: Runner, batch: dict[str, np.ndarray], size: int) -> dict[str, Any]:
    """Latency of one ``infer`` of ``size`` frames (host copies included), by the one timer."""
    feeds = {k: np.ascontiguousarray(np.resize(v, (size, *v.shape[1:]))) for k, v in batch.items()}
    timing = time_call(lambda: runner.infer(feeds), runs=LATENCY_RUNS, warmup=LATENCY_WARMUP)
    return {"batch": size, **timing.to_dict(), "includes_host_copies": True}


# --- the build -----------------------------------------------------------------------------


def _build_plan(
    onnx_path: Path,
    spec: ModelSpec,
    profile: Profile,
    precision: str,
    strongly_typed: bool,
    workspace_mib: int,
    timing_cache: Path | None,
    version_compatible: bool,
    hardware_compatible: bool,
) -> bytes:
    """Parse and build; returns the serialized plan. Saves the timing cache when asked."""
    import_tensorrt()  # the install hint, should this be called on its own
    import tensorrt as trt  # plain name: mypy checks these calls against tensorrt-stubs

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10: explicit batch is the only mode (flag 0); strongly typed is opt-in.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external weight files next to the ONNX.
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path.name}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS

    opt_profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        name = network.get_input(index).name
        low, opt, high = profile_shapes(spec, name, profile)
        opt_profile.set_shape(name, trt.Dims(low), trt.Dims(opt), trt.Dims(high))
    config.add_optimization_profile(opt_profile)

    attach_timing_cache(config, load_timing_cache(timing_cache), timing_cache)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(
            f"TensorRT failed to build {onnx_path.name} (see its messages above); try a larger "
            "--workspace-mib or --precision fp32"
        )
    if timing_cache is not None:
        # Timings are facts about this GPU: worth keeping even if parity later refuses.
        save_timing_cache(timing_cache, memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(plan))


def _resolve_onnx(source: Path, workdir: Path) -> Path:
    if source.suffix == ".onnx":
        return source
    if source.suffix == ".safetensors":
        from .onnx import export_onnx

        return export_onnx(source, workdir / (source.stem + ".onnx")).path
    raise ConfigError(f"{source}: expected a .onnx model or a .safetensors checkpoint")


def build_command(
    source: Path,
    output: Path,
    precision: str,
    profile: Profile,
    workspace_mib: int,
    timing_cache: Path | None,
    version_compatible: bool,
    hardware_compatible: bool,
) -> str:
    """The CLI line that rebuilds this engine (quoted in load-time errors)."""
    argv = [
        "saliq", "export", "trt", str(source), "--output", str(output),
        "--precision", precision, "--min-batch", str(profile.min_batch),
        "--opt-batch", str(profile.opt_batch), "--max-batch", str(profile.max_batch),
        "--workspace-mib", str(workspace_mib),
    ]  # fmt: skip
    if timing_cache is not None:
        argv += ["--timing-cache", str(timing_cache)]
    if version_compatible:
        argv.append("--version-compatible")
    if hardware_compatible:
        argv.append("--hardware-compatible")
    return shlex.join(argv)


def build_engine(
    onnx_path: str | Path,
    output: str | Path | None = None,
    precision: str = "fp16",
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 8,
    workspace_mib: int = 1024,
    timing_cache: str | Path | None = None,
    version_compatible: bool = False,
    hardware_compatible: bool = False,
    images: int = MIN_PARITY_IMAGES,
    tolerance: float = DEFAULT_TOLERANCE,
    min_saliency_cc: float = DEFAULT_MIN_SALIENCY_CC,
) -> Path:
    """Build ``<name>.engine`` + ``<name>.engine.json``; refuse (write nothing) on failed parity.

    ``onnx_path`` may also be a ``.safetensors`` checkpoint (exported to ONNX first, in a
    temporary folder). Returns the engine's path; the sidecar's ``extra`` holds the parity
    report and the measured latency.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    profile = profile_from_flags(min_batch, opt_batch, max_batch)
    if workspace_mib <= 0:
        raise ConfigError(f"--workspace-mib must be positive, got {workspace_mib}")
    if images < MIN_PARITY_IMAGES:
        raise ConfigError(f"--images must be at least {MIN_PARITY_IMAGES}, got {images}")
    source = Path(onnx_path)
    if not source.is_file():
        raise ConfigError(f"{source}: no such model file")
    output = Path(output) if output else source.with_suffix(".engine")
    cache_path = Path(timing_cache) if timing_cache is not None else None
    if cache_path is not None and cache_path.is_dir():
        raise ConfigError(f"--timing-cache {cache_path} is a folder; pass a file path")
    if hardware_compatible:
        check_hardware_compatible_platform(is_tegra())

    trt_version = str(import_tensorrt().__version__)  # first: a missing TensorRT costs nothing
    strongly_typed = uses_strongly_typed(precision, trt_version)
    built_on = device_compute_capability()
    if hardware_compatible:
        check_hardware_compatible_build(built_on)
    compute_capability = "any" if hardware_compatible else built_on

    import onnx

    from saliq.frames import parity_frames
    from saliq.preprocess import Preprocessor

    output.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".build", dir=output.parent))
    try:
        fp32_onnx = _resolve_onnx(source, workdir)
        spec = spec_of_onnx(onnx.load(str(fp32_onnx), load_external_data=False), str(fp32_onnx))
        batch = Preprocessor.from_spec(spec)(parity_frames(images, spec.input_size), fmt="RGB")
        batch = {name: batch[name] for name in spec.inputs}
        extra: dict[str, Any] = {"builder": f"saliq export trt, TensorRT {trt_version}"}

        parsed_onnx = fp32_onnx
        if strongly_typed:
            parsed_onnx = write_fp16_onnx(fp32_onnx, workdir / (fp32_onnx.stem + ".fp16.onnx"))
            fp16_report = check_fp16_onnx(fp32_onnx, parsed_onnx, batch, tolerance)
            extra["fp16_onnx_parity"] = fp16_report.to_dict()
        io_dtypes = onnx_io_dtypes(onnx.load(str(parsed_onnx), load_external_data=False))

        plan = _build_plan(
            parsed_onnx, spec, profile, precision, strongly_typed, workspace_mib,
            cache_path, version_compatible, hardware_compatible,
        )  # fmt: skip
        staged = workdir / output.name
        staged.write_bytes(plan)
        sidecar = EngineSidecar(
            spec=dataclasses.replace(spec, io_dtypes=io_dtypes),
            tensorrt_version=trt_version,
            compute_capability=compute_capability,
            precision=precision,
            profiles=(profile,),
            plan_sha256=sha256_file(staged),
            strongly_typed=strongly_typed,
            version_compatible=version_compatible,
            hardware_compatible=hardware_compatible,
            build_command=build_command(
                source,
                output,
                precision,
                profile,
                workspace_mib,
                cache_path,
                version_compatible,
                hardware_compatible,
            ),  # fmt: skip
            extra=extra,
        )
        write_sidecar(staged, sidecar)  # the runtime backend reads it beside the plan

        reference = run_batched(OnnxRuntimeRunner(fp32_onnx), batch)
        with BackendRunner(_tensorrt_backend(staged), name="tensorrt") as engine:
            test = run_batched(engine, batch, profile.max_batch)
            report = compare_outputs(reference, test, tolerance, min_saliency_cc, spec=spec)
            if not report.passed:
                raise ParityError(
                    f"engine refused, nothing written: {report.summary()}; try --precision "
                    "fp32 or report the model",
                    report,
                )
            extra["parity"] = report.to_dict()
            extra["latency"] = latency(engine, batch, profile.opt_batch)

        write_sidecar(staged, dataclasses.replace(sidecar, extra=extra))
        # Plan first, then sidecar: a reader in between gets a clear sha256 mismatch error.
        os.replace(staged, output)
        os.replace(staged.with_name(staged.name + ".json"), output.with_name(output.name + ".json"))
        return output
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


__all__ = [
    "FP32_OPS",
    "EngineBuildError",
    "ParityError",
    "build_engine",
    "convert_to_fp16",
    "device_compute_capability",
    "import_tensorrt",
    "profile_from_flags",
    "profile_shapes",
    "spec_of_onnx",
]
