"""TensorRT export logic that runs without TensorRT: parity gate, FP16 ONNX, build plumbing.

TensorRT itself cannot be installed here; ``build_engine``'s orchestration is exercised with
a recording fake ``tensorrt`` module and a fake runtime backend that runs ONNX Runtime.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from saliq.bench.runners import OnnxRuntimeRunner, run_batched
from saliq.errors import BackendUnavailableError, ConfigError
from saliq.export import tensorrt as trt_export
from saliq.export.parity import parity_report, saliency_correlations
from saliq.frames import parity_frames

RNG = np.random.default_rng(0)


def _outputs(n: int = 16):
    scores = np.linspace(0.1, 0.9, n).astype(np.float32)
    maps = RNG.random((n, 1, 4, 4)).astype(np.float32)
    return scores, maps


# --- parity gate ---------------------------------------------------------------------------


def test_parity_passes_on_small_noise():
    scores, maps = _outputs()
    report = parity_report(scores, maps, scores + 0.004, maps + 1e-3 * RNG.random(maps.shape))
    assert report.passed and report.reasons == []
    assert report.max_score_diff == pytest.approx(0.004, abs=1e-6)
    assert report.misranked_pairs == 0 and report.compared_pairs > 0
    assert report.min_saliency_cc > 0.99


def test_parity_refuses_score_drift():
    scores, maps = _outputs()
    drifted = scores.copy()
    drifted[3] += 0.02
    report = parity_report(scores, maps, drifted, maps)
    assert not report.passed
    assert any("score differs by 0.0200" in r and "image 3" in r for r in report.reasons)


def test_parity_refuses_misranked_pair_within_score_tolerance():
    scores = np.array([0.50, 0.515, 0.80], dtype=np.float32)
    test = np.array([0.509, 0.506, 0.80], dtype=np.float32)  # each within 0.01, order flipped
    report = parity_report(scores, None, test, None, tolerance=0.01)
    assert report.max_score_diff <= 0.01
    assert report.misranked_pairs == 1 and not report.passed
    assert "ranked the other way" in report.reasons[0]


def test_parity_ignores_swaps_of_pairs_closer_than_tolerance():
    scores = np.array([0.500, 0.505], dtype=np.float32)
    report = parity_report(scores, None, scores[::-1].copy(), None, tolerance=0.01)
    assert report.compared_pairs == 0 and report.passed


def test_parity_refuses_low_saliency_correlation():
    scores, maps = _outputs()
    bad = maps.copy()
    bad[5] = RNG.random(bad[5].shape)
    report = parity_report(scores, maps, scores, bad)
    assert not report.passed and report.min_saliency_cc < 0.99
    assert any("saliency correlation" in r and "image 5" in r for r in report.reasons)


@pytest.mark.parametrize("where", ["score", "saliency"])
def test_parity_refuses_nan(where):
    scores, maps = _outputs()
    test_scores, test_maps = scores.copy(), maps.copy()
    if where == "score":
        test_scores[2] = np.nan
    else:
        test_maps[2, 0, 1, 1] = np.nan
    report = parity_report(scores, maps, test_scores, test_maps)
    assert not report.passed and any("NaN" in r for r in report.reasons)


def test_flat_maps_correlate_only_with_flat_maps():
    flat, varied = np.zeros((1, 1, 4, 4)), RNG.random((1, 1, 4, 4))
    assert saliency_correlations(flat, flat)[0] == 1.0
    assert saliency_correlations(flat, varied)[0] == 0.0


def test_parity_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        parity_report(np.zeros(3), None, np.zeros(4), None)
    with pytest.raises(ValueError):
        parity_report(np.zeros(3), np.zeros((3, 1, 2, 2)), np.zeros(3), None)


# --- flags, timing cache, TensorRT discovery -----------------------------------------------


def test_profile_from_flags():
    profile = trt_export.profile_from_flags(1, 4, 8)
    assert (profile.min_batch, profile.opt_batch, profile.max_batch) == (1, 4, 8)
    for bad in [(0, 1, 1), (2, 1, 4), (1, 8, 4)]:
        with pytest.raises(ConfigError, match="min <= opt <= max"):
            trt_export.profile_from_flags(*bad)


def test_profile_shapes_follow_the_spec():
    from saliq.spec import ModelSpec

    spec = ModelSpec("m", "sgdnet", "b", 64, 96, inputs=("image", "prior"))
    profile = trt_export.profile_from_flags(1, 2, 4)
    assert trt_export.profile_shapes(spec, "image", profile) == (
        [1, 3, 64, 96],
        [2, 3, 64, 96],
        [4, 3, 64, 96],
    )
    assert trt_export.profile_shapes(spec, "prior", profile)[2] == [4, 1, 16, 24]


def test_timing_cache_paths(tmp_path):
    missing = tmp_path / "sub" / "trt.cache"
    assert trt_export.load_timing_cache(None) == b""
    assert trt_export.load_timing_cache(missing) == b""
    trt_export.save_timing_cache(missing, memoryview(b"\x01\x02"))
    assert trt_export.load_timing_cache(missing) == b"\x01\x02"
    assert sorted(p.name for p in missing.parent.iterdir()) == ["trt.cache"]  # no temp left
    with pytest.raises(ConfigError, match="folder"):
        trt_export.load_timing_cache(tmp_path)


def test_strongly_typed_only_for_fp16_on_tensorrt_11():
    assert not trt_export.uses_strongly_typed("fp16", "10.3.0")
    assert trt_export.uses_strongly_typed("fp16", "11.0.0")
    assert not trt_export.uses_strongly_typed("fp32", "11.0.0")


def test_build_engine_without_tensorrt_raises_hint_and_writes_nothing(
    tmp_path, monkeypatch, tiny_onnx
):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    before = sorted(tiny_onnx.parent.iterdir())
    with pytest.raises(BackendUnavailableError, match="tensorrt-cu12<11") as info:
        trt_export.build_engine(tiny_onnx, tmp_path / "out" / "m.engine")
    assert "JetPack" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    assert sorted(tiny_onnx.parent.iterdir()) == before


def test_build_engine_validates_flags_first(tmp_path, tiny_onnx):
    with pytest.raises(ConfigError, match="precision"):
        trt_export.build_engine(tiny_onnx, precision="int8")
    with pytest.raises(ConfigError, match="images"):
        trt_export.build_engine(tiny_onnx, images=8)
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        trt_export.build_engine(tiny_onnx, min_batch=4, opt_batch=2)


def test_device_compute_capability_without_cuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    try:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present: the error path is not reachable")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailableError, match="cuda-python"):
        trt_export.device_compute_capability()


# --- FP16 ONNX -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A randomly initialised small SGDNet, checkpointed and exported by saliq's exporter."""
    import torch

    from saliq.export.onnx import export_onnx
    from saliq.spec import ModelSpec
    from saliq.train.checkpoint import save_checkpoint
    from saliq.train.models import create_model

    torch.manual_seed(0)
    config = {"backbone": "efficientnet_lite0", "feature_dim": 32, "hidden": (32, 32)}
    model = create_model("sgdnet", pretrained=False, **config).eval()
    spec = ModelSpec(
        name="tiny",
        architecture="sgdnet",
        backbone="efficientnet_lite0",
        input_height=64,
        input_width=64,
        saliency_stride=model.saliency_stride,
        model_config=config,
    )
    folder = tmp_path_factory.mktemp("tiny")
    save_checkpoint(folder / "tiny.safetensors", model, spec)
    return export_onnx(folder / "tiny.safetensors", folder / "tiny.onnx").path


@pytest.fixture(scope="module")
def parity_batch(tiny_onnx):
    import onnx

    from saliq.preprocess import Preprocessor

    spec = trt_export.spec_of_onnx(onnx.load(str(tiny_onnx)))
    batch = Preprocessor.from_spec(spec)(parity_frames(64, spec.input_size), fmt="RGB")
    return {name: batch[name] for name in spec.inputs}


def test_fp16_onnx_matches_fp32_and_keeps_fp32_io(tmp_path, tiny_onnx, parity_batch):
    import onnx
    from onnx import TensorProto

    fp16 = trt_export.write_fp16_onnx(tiny_onnx, tmp_path / "tiny.fp16.onnx")
    model = onnx.load(str(fp16))
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT
    spec = trt_export.spec_of_onnx(model)
    assert set(spec.io_dtypes.values()) == {"float32"}
    weights = [t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16]
    assert len(weights) > 10  # the convolution weights really are FP16
    for node in model.graph.node:
        if node.op_type == "ReduceMean":  # in FP32_OPS: fed by a Cast to FLOAT
            assert node.input[0].endswith("__fp32")

    ref = run_batched(OnnxRuntimeRunner(tiny_onnx), parity_batch)
    test = run_batched(OnnxRuntimeRunner(fp16), parity_batch)
    assert np.abs(ref["score"] - test["score"]).max() < 1e-2
    assert trt_export.check_fp16_onnx(tiny_onnx, fp16, parity_batch, 0.01).passed


def test_fp16_conversion_keeps_fp32_ops_and_resize_scales():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(RNG.random((4, 4)).astype(np.float32), "w")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Softmax", ["h"], ["p"], axis=-1),
        helper.make_node("Relu", ["p"], ["r"]),
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.float32(0.5))),
        helper.make_node("Mul", ["r", "c"], ["m"]),
        helper.make_node("Unsqueeze", ["m", "axes"], ["u"]),
        helper.make_node("Resize", ["u", "", "scales"], ["y"], mode="nearest"),
    ]
    axes = numpy_helper.from_array(np.array([0, 1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 8])],
        [weight, scales, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    converted = trt_export.convert_to_fp16(model)

    by_op = {n.op_type: n for n in converted.graph.node}
    assert by_op["Softmax"].input[0] == "h__fp32"  # FP32 op fed in FP32
    inits = {t.name: t for t in converted.graph.initializer}
    assert inits["w__fp16"].data_type == TensorProto.FLOAT16
    assert inits["scales"].data_type == TensorProto.FLOAT  # ONNX requires float32 scales
    assert by_op["Resize"].input[2] == "scales"

    x = RNG.random((2, 4)).astype(np.float32)
    run = lambda m: ort.InferenceSession(  # noqa: E731
        m.SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(None, {"x": x})[0]
    out16, out32 = run(converted), run(model)
    assert out16.dtype == np.float32 and np.abs(out16 - out32).max() < 1e-2
    onnx.checker.check_model(converted)


def test_fp16_conversion_refuses_subgraphs():
    from onnx import TensorProto, helper

    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["o"])],
        "b",
        [],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])],
    )
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(trt_export.EngineBuildError, match="subgraph"):
        trt_export.convert_to_fp16(model)


# --- build_engine with a fake TensorRT -----------------------------------------------------


class _Recorder:
    """A stand-in for the ``tensorrt`` module: records the builder calls saliq makes."""

    def __init__(self, version: str) -> None:
        self.calls: list[tuple] = []
        rec = self

        class Enum:
            def __init__(self, **members):
                self.__dict__.update(members)

        self.__version__ = version
        self.NetworkDefinitionCreationFlag = Enum(STRONGLY_TYPED=1)
        self.BuilderFlag = Enum(FP16="FP16", VERSION_COMPATIBLE="VERSION_COMPATIBLE")
        self.MemoryPoolType = Enum(WORKSPACE="WORKSPACE")
        self.HardwareCompatibilityLevel = Enum(AMPERE_PLUS="AMPERE_PLUS")
        self.Dims = tuple

        class Logger:
            WARNING = 2

            def __init__(self, severity):
                pass

        class Cache:
            def __init__(self, data=b""):
                self.data = data

            def serialize(self):
                return b"timings"

        class Config:
            def set_memory_pool_limit(self, pool, size):
                rec.calls.append(("workspace", size))

            def set_flag(self, flag):
                rec.calls.append(("flag", flag))

            def __setattr__(self, name, value):
                rec.calls.append(("set", name, value))

            def add_optimization_profile(self, profile):
                rec.calls.append(("profile", profile.shapes))

            def create_timing_cache(self, data):
                # Like TensorRT: None for bytes it cannot parse, a cache otherwise.
                rec.calls.append(("cache_in", bytes(data)))
                return None if bytes(data).startswith(b"corrupt") else Cache(bytes(data))

            def set_timing_cache(self, cache, ignore_mismatch):
                if not isinstance(cache, Cache):
                    raise TypeError("set_timing_cache(): incompatible function arguments")
                rec.calls.append(("cache_set", cache.data))
                return not cache.data.startswith(b"foreign")  # another GPU's timings

            def get_timing_cache(self):
                return Cache()

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, low, opt, high):
                self.shapes[name] = (low, opt, high)

        class Network:
            num_inputs = 1

            def get_input(self, index):
                return types.SimpleNamespace(name="image")

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                rec.calls.append(("network_flags", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"PLAN"

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                rec.calls.append(("parsed", Path(path).name))
                return True

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, OnnxParser


def _fake_backend_module(onnx_path: Path, noise: float):
    """saliq.backends.tensorrt stand-in: ONNX Runtime on the FP32 ONNX, plus score noise."""
    module = types.ModuleType("saliq.backends.tensorrt")

    class TensorRTBackend:
        name = "tensorrt"

        def __init__(self, engine, allow_engine_host_code=False):
            from saliq.engine_sidecar import check_host_code_allowed, read_sidecar

            self.sidecar = read_sidecar(engine)  # the sidecar must sit beside the plan
            check_host_code_allowed(self.sidecar, engine, allow_engine_host_code)
            assert Path(engine).read_bytes() == b"PLAN"
            self.onnx = onnx_path
            self.closed = False

        def infer(self, inputs):
            assert not self.closed
            out = run_batched(OnnxRuntimeRunner(self.onnx), inputs)
            out["score"] = out["score"] + noise * np.arange(len(out["score"]))
            return out

        def close(self):
            self.closed = True

    module.TensorRTBackend = TensorRTBackend  # type: ignore[attr-defined]
    return module


def _install_fakes(monkeypatch, fake: _Recorder, onnx_path: Path) -> None:
    """A build on the fake TensorRT, on an Orin-class GPU, with a 2-run latency measurement."""
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setitem(sys.modules, "saliq.backends.tensorrt", _fake_backend_module(onnx_path, 0))
    monkeypatch.setattr(trt_export, "device_compute_capability", lambda: "8.7")
    monkeypatch.setattr(trt_export, "LATENCY_RUNS", 2)
    monkeypatch.setattr(trt_export, "LATENCY_WARMUP", 1)


@pytest.mark.parametrize("version", ["10.3.0", "11.0.0"])
def test_build_engine_writes_engine_and_sidecar(tmp_path, monkeypatch, tiny_onnx, version):
    from saliq.engine_sidecar import read_sidecar, sha256_file

    fake = _Recorder(version)
    _install_fakes(monkeypatch, fake, tiny_onnx)
    cache = tmp_path / "caches" / "trt.cache"
    engine = trt_export.build_engine(
        tiny_onnx, tmp_path / "m.engine", max_batch=4, opt_batch=2, timing_cache=cache
    )
    assert engine.read_bytes() == b"PLAN"
    assert cache.read_bytes() == b"timings"
    sidecar = read_sidecar(engine)
    assert sidecar.plan_sha256 == sha256_file(engine)
    assert sidecar.compute_capability == "8.7" and sidecar.tensorrt_version == version
    assert sidecar.extra["parity"]["passed"] and sidecar.extra["latency"]["batch"] == 2
    assert "--max-batch 4" in sidecar.build_command
    assert set(sidecar.spec.io_dtypes.values()) == {"float32"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["caches", "m.engine", "m.engine.json"]
    calls = fake.calls
    strongly_typed = version.startswith("11")
    assert sidecar.strongly_typed is strongly_typed
    assert ("network_flags", 2 if strongly_typed else 0) in calls
    assert (("flag", "FP16") in calls) is not strongly_typed  # no FP16 flag on TRT 11
    parsed = next(c[1] for c in calls if c[0] == "parsed")
    assert parsed.endswith(".fp16.onnx") is strongly_typed
    assert ("profile", {"image": ((1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))}) in calls
    assert ("workspace", 1024 << 20) in calls


def test_build_engine_refuses_failed_parity_and_leaves_nothing(tmp_path, monkeypatch, tiny_onnx):
    monkeypatch.setitem(sys.modules, "tensorrt", _Recorder("10.3.0"))
    monkeypatch.setitem(
        sys.modules, "saliq.backends.tensorrt", _fake_backend_module(tiny_onnx, 0.002)
    )
    monkeypatch.setattr(trt_export, "device_compute_capability", lambda: "8.6")
    out = tmp_path / "out"
    with pytest.raises(trt_export.ParityError, match="engine refused") as info:
        trt_export.build_engine(tiny_onnx, out / "m.engine", hardware_compatible=True)
    assert info.value.report.max_score_diff > 0.01
    assert list(out.iterdir()) == []  # no engine, no sidecar, no build folder


def test_version_compatible_build_is_flagged_and_checked_with_consent(
    tmp_path, monkeypatch, tiny_onnx
):
    from saliq.engine_sidecar import read_sidecar

    fake = _Recorder("10.3.0")
    _install_fakes(monkeypatch, fake, tiny_onnx)
    # The parity run loads the fresh plan: the fake backend refuses it without consent, so a
    # pass proves the exporter vouches for the plan it has just built.
    engine = trt_export.build_engine(tiny_onnx, tmp_path / "m.engine", version_compatible=True)
    assert ("flag", "VERSION_COMPATIBLE") in fake.calls
    sidecar = read_sidecar(engine)
    assert sidecar.version_compatible and "--version-compatible" in sidecar.build_command


@pytest.mark.parametrize(
    ("stored", "warning"),
    [(b"corrupt\x00", "is not a timing cache"), (b"foreign", "does not match this device")],
)
def test_unusable_timing_cache_is_rebuilt_with_a_warning(
    tmp_path, monkeypatch, capsys, tiny_onnx, stored, warning
):
    fake = _Recorder("10.3.0")
    _install_fakes(monkeypatch, fake, tiny_onnx)
    cache = tmp_path / "trt.cache"
    cache.write_bytes(stored)
    engine = trt_export.build_engine(tiny_onnx, tmp_path / "m.engine", timing_cache=cache)
    assert engine.read_bytes() == b"PLAN"
    assert warning in capsys.readouterr().err
    assert fake.calls.count(("cache_set", b"")) == 1  # the build ran with a fresh cache
    assert cache.read_bytes() == b"timings"  # and the unusable file was replaced


def test_hardware_compatible_is_refused_on_jetson(tmp_path, monkeypatch, tiny_onnx):
    jetson = tmp_path / "jetson"
    (jetson / "proc/device-tree").mkdir(parents=True)
    (jetson / "proc/device-tree/compatible").write_bytes(b"nvidia,p3768-0000\x00nvidia,tegra234")
    assert trt_export.is_tegra(jetson)
    (jetson / "proc/device-tree/compatible").write_bytes(b"raspberrypi,5-model-b\x00brcm,bcm2712")
    assert not trt_export.is_tegra(jetson)
    (jetson / "etc").mkdir()
    (jetson / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.0\n")
    assert trt_export.is_tegra(jetson)
    assert not trt_export.is_tegra(tmp_path / "empty")

    monkeypatch.setitem(sys.modules, "tensorrt", _Recorder("10.3.0"))
    monkeypatch.setattr(trt_export, "is_tegra", lambda: True)
    monkeypatch.setattr(trt_export, "device_compute_capability", lambda: "8.7")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="not supported by TensorRT on Jetson"):
        trt_export.build_engine(tiny_onnx, out / "m.engine", hardware_compatible=True)
    assert not out.exists()


def test_hardware_compatible_build_needs_an_ampere_or_newer_gpu(tmp_path, monkeypatch, tiny_onnx):
    monkeypatch.setitem(sys.modules, "tensorrt", _Recorder("10.3.0"))
    monkeypatch.setattr(trt_export, "device_compute_capability", lambda: "7.5")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"capability 7\.5.*without --hardware-compatible"):
        trt_export.build_engine(tiny_onnx, out / "m.engine", hardware_compatible=True)
    assert not out.exists() or list(out.iterdir()) == []
    trt_export.check_hardware_compatible_build("8.7")  # Ampere and newer pass
    trt_export.check_hardware_compatible_build("12.0")
