"""TensorRT runtime: its logic and error paths everywhere; real engines only where TensorRT is.

TensorRT is never mocked to claim it works: without it, these tests check the errors a user
gets; the ``gpu`` tests at the end build and run a real engine where TensorRT is installed.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import types
import warnings

import numpy as np
import pytest

import saliq
from saliq.backends import backend_for, load_backend
from saliq.backends import tensorrt as trt_backend
from saliq.backends.onnxruntime import OnnxRuntimeBackend
from saliq.backends.tensorrt import (
    IOSpec,
    PerThread,
    TensorRTBackend,
    batch_chunks,
    check_io_against_spec,
    plan_buffers,
    profile_batch_range,
)
from saliq.engine_sidecar import (
    EngineSidecar,
    Profile,
    check_compatible,
    sha256_file,
    write_sidecar,
)
from saliq.errors import (
    BackendUnavailableError,
    IncompatibleModelError,
    InvalidImageError,
    ModelFormatError,
    UntrustedModelError,
)
from saliq.spec import ModelSpec

from .dlpack_fakes import CaiAndDLPack, FakeDLPack
from .fake_runtimes import PLAN, HostGraphCudaImpl, fake_tensorrt, tiny_model, tiny_onnx

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
SPEC = ModelSpec(name="tiny", architecture="test", backbone="none", input_height=32, input_width=32)


def _io(name, is_input, shape, dtype=np.float32, batch=(1, 4, 8)):
    profile = None
    if is_input:
        rest = tuple(shape[1:])
        profile = tuple((b, *rest) for b in batch)
    return IOSpec(name, is_input, tuple(shape), np.dtype(dtype), profile)


ENGINE_IO = [
    _io("image", True, (-1, 3, 32, 32)),
    _io("score", False, (-1,)),
    _io("saliency", False, (-1, 1, 2, 2), np.float16),
]


# ------------------------------------------------------------------------------------------
# Buffer plans, profiles, chunking
# ------------------------------------------------------------------------------------------


def test_plan_buffers_sizes_for_the_profile_max():
    plan = plan_buffers(ENGINE_IO, max_batch=8)
    assert plan["image"] == ((8, 3, 32, 32), np.float32, 8 * 3 * 32 * 32 * 4)
    assert plan["score"] == ((8,), np.float32, 32)
    shape, dtype, nbytes = plan["saliency"]  # a plain (shape, dtype, nbytes) tuple too
    assert (shape, dtype, nbytes) == ((8, 1, 2, 2), np.float16, 8 * 4 * 2)
    # A static-batch engine: its batch is the maximum.
    static = [_io("image", True, (4, 3, 32, 32), batch=(4, 4, 4)), _io("score", False, (4,))]
    assert plan_buffers(static, 4)["score"].nbytes == 16


def test_plan_buffers_refusals():
    with pytest.raises(ModelFormatError, match="dynamic non-batch axes"):
        plan_buffers([_io("image", True, (-1, 3, -1, 32))], 8)
    with pytest.raises(ModelFormatError, match="scalar"):
        plan_buffers([IOSpec("score", False, (), np.dtype(np.float32))], 8)
    with pytest.raises(ModelFormatError, match="fixed batch 4 < 8"):
        plan_buffers([_io("score", False, (4,))], 8)
    with pytest.raises(ValueError, match="max_batch"):
        plan_buffers(ENGINE_IO, 0)


def test_profile_batch_range():
    assert profile_batch_range(ENGINE_IO) == (1, 8)
    two = [_io("image", True, (-1, 3, 32, 32), batch=(2, 4, 16)), _io("prior", True, (-1, 1, 8, 8))]
    assert profile_batch_range(two) == (2, 8)
    disjoint = [
        _io("image", True, (-1, 3, 32, 32), batch=(1, 1, 2)),
        _io("prior", True, (-1, 1, 8, 8), batch=(4, 4, 8)),
    ]
    with pytest.raises(ModelFormatError, match="no common batch"):
        profile_batch_range(disjoint)
    with pytest.raises(ModelFormatError, match="no inputs"):
        profile_batch_range(ENGINE_IO[1:])


def test_batch_chunks_split_and_pad():
    assert batch_chunks(20, 1, 8) == [(0, 8, 8), (8, 8, 8), (16, 4, 4)]
    assert batch_chunks(8, 1, 8) == [(0, 8, 8)]
    assert batch_chunks(2, 4, 8) == [(0, 2, 4)]  # below the profile minimum: padded
    assert batch_chunks(9, 4, 8) == [(0, 8, 8), (8, 1, 4)]
    with pytest.raises(ValueError):
        batch_chunks(0, 1, 8)


def test_io_checked_against_the_model_spec():
    expected = {"image": (3, 32, 32)}
    check_io_against_spec(ENGINE_IO, ("image",), ("score", "saliency"), expected)
    with pytest.raises(ModelFormatError, match="inputs.*differ.*saliq export trt"):
        check_io_against_spec(ENGINE_IO, ("image", "prior"), ("score",), expected)
    with pytest.raises(ModelFormatError, match="lacks outputs"):
        check_io_against_spec(ENGINE_IO[:2], ("image",), ("score", "saliency"), expected)
    with pytest.raises(ModelFormatError, match=r"expects \[N, 3, 64, 64\]"):
        check_io_against_spec(ENGINE_IO, ("image",), ("score",), {"image": (3, 64, 64)})
    ints = [*ENGINE_IO[:2], _io("saliency", False, (-1, 1, 2, 2), np.int32)]
    with pytest.raises(ModelFormatError, match="float32 or float16"):
        check_io_against_spec(ints, ("image",), ("score",), expected)


def test_per_thread_state_is_one_per_thread_and_all_closed():
    made, closed = [], []

    def factory():
        made.append(threading.get_ident())
        return {"thread": threading.get_ident()}

    states = PerThread(factory, closed.append)
    first = states.get()
    assert states.get() is first  # reused within a thread
    seen = []
    workers = [threading.Thread(target=lambda: seen.append(states.get())) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(made) == 4 and len({id(s) for s in [first, *seen]}) == 4
    # Ended threads' states are released by the next get() (or reap/close_all).
    assert len(states) + len(closed) == 4
    states.close_all()
    assert len(closed) == 4 and len(states) == 0
    with pytest.raises(RuntimeError, match="closed"):
        states.get()


def test_per_thread_close_all_releases_everything_despite_a_failure():
    closed = []

    def closer(item):
        closed.append(item)
        if item == 0:
            raise RuntimeError("boom")

    counter = iter(range(10))
    states = PerThread(lambda: next(counter), closer)
    states.get()
    threading.Thread(target=states.get).start()
    with pytest.raises(RuntimeError, match="boom"):
        states.close_all()
    assert sorted(closed) == [0, 1]


def _short_lived_threads(target, rounds: int, per_round: int) -> None:
    for _ in range(rounds):
        workers = [threading.Thread(target=target) for _ in range(per_round)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


def test_per_thread_state_is_released_when_its_thread_ends():
    live_at_creation, closed = [], []
    states = PerThread(lambda: live_at_creation.append(len(states)) or object(), closed.append)
    _short_lived_threads(states.get, rounds=10, per_round=5)  # 50 threads, 5 at a time
    # Each new thread first releases the states of threads that have ended.
    assert len(live_at_creation) == 50 and max(live_at_creation) <= 5
    assert states.reap() <= 5 and len(closed) == 50 and len(states) == 0
    main = states.get()  # the main thread's own state is unaffected by the reaping
    assert states.get() is main and len(states) == 1
    states.release_thread()  # an explicit release, for long-lived pool threads
    assert closed[-1] is main and len(states) == 0
    assert states.get() is not main
    states.release_thread()
    states.release_thread()  # nothing left to release: a no-op


def test_per_thread_cap_makes_threads_wait_for_a_free_state():
    made, closed = [], []

    def factory():
        made.append(len(made) - len(closed))  # states alive when this one is made
        return object()

    states = PerThread(factory, closed.append, max_items=2, wait_s=10.0)

    def work():
        states.get()
        time.sleep(0.01)

    _short_lived_threads(work, rounds=2, per_round=6)
    assert len(made) == 12 and max(made) <= 1  # never a third state alive
    states.close_all()

    held = PerThread(object, closed.append, max_items=1, wait_s=0.05)
    held.get()  # the main thread keeps the only state
    errors = []

    def blocked():
        try:
            held.get()
        except TimeoutError as exc:
            errors.append(str(exc))

    _short_lived_threads(blocked, rounds=1, per_round=1)
    assert errors and "max_contexts=1" in errors[0] and "release_thread()" in errors[0]
    with pytest.raises(ValueError, match="max_contexts"):
        PerThread(object, closed.append, max_items=0)


# ------------------------------------------------------------------------------------------
# Sidecar checks (engine_sidecar.check_compatible) with a fake engine file
# ------------------------------------------------------------------------------------------


def _fake_engine(tmp_path, **overrides):
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(b"not a real TensorRT plan")
    fields = dict(
        spec=SPEC,
        tensorrt_version="10.3.0",
        compute_capability="8.7",
        precision="fp16",
        profiles=(Profile(1, 4, 8),),
        plan_sha256=sha256_file(engine),
        build_command="saliq export trt tiny.onnx --precision fp16",
    )
    fields.update(overrides)
    write_sidecar(engine, EngineSidecar(**fields))
    return engine


def test_sidecar_mismatches_say_how_to_rebuild(tmp_path):
    engine = _fake_engine(tmp_path)
    from saliq.engine_sidecar import read_sidecar

    sidecar = read_sidecar(engine)
    check_compatible(sidecar, engine, "10.3.1", "8.7")  # patch releases are compatible
    with pytest.raises(IncompatibleModelError, match=r"TensorRT 10\.3\.0.*runs 10\.13\.0.*"):
        check_compatible(sidecar, engine, "10.13.0", "8.7")
    with pytest.raises(IncompatibleModelError, match=r"capability 8\.7.*GPU is 9\.0"):
        check_compatible(sidecar, engine, "10.3.0", "9.0")
    with pytest.raises(IncompatibleModelError, match="saliq export trt tiny.onnx"):
        check_compatible(sidecar, engine, "10.3.0", "9.0")
    engine.write_bytes(b"truncated")
    with pytest.raises(ModelFormatError, match="sha256.*rebuild"):
        check_compatible(sidecar, engine, "10.3.0", "8.7")


def test_portable_engines_pass_the_checks(tmp_path):
    from saliq.engine_sidecar import read_sidecar

    engine = _fake_engine(tmp_path, version_compatible=True, hardware_compatible=True)
    check_compatible(read_sidecar(engine), engine, "10.13.0", "9.0")


def test_version_compatible_engines_need_consent_to_run_their_host_code(tmp_path):
    from saliq.engine_sidecar import check_host_code_allowed, read_sidecar

    portable = _fake_engine(tmp_path, version_compatible=True)
    sidecar = read_sidecar(portable)
    with pytest.raises(UntrustedModelError, match="host code.*allow_engine_host_code=True"):
        check_host_code_allowed(sidecar, portable, allowed=False)
    check_host_code_allowed(sidecar, portable, allowed=True)
    plain = _fake_engine(tmp_path)  # no lean runtime inside: nothing to consent to
    check_host_code_allowed(read_sidecar(plain), plain, allowed=False)


# ------------------------------------------------------------------------------------------
# Backend selection and the no-TensorRT error path
# ------------------------------------------------------------------------------------------


def test_backend_selection_by_suffix(tmp_path):
    assert backend_for("m.engine") == "tensorrt"
    assert backend_for("m.PLAN") == "tensorrt"
    assert backend_for("m.onnx") == "onnxruntime"
    assert backend_for("m.safetensors") == "torch"
    assert backend_for("m.engine", "tensorrt") == "tensorrt"
    with pytest.raises(ModelFormatError, match="onnxruntime backend needs an .onnx"):
        backend_for("m.engine", "onnxruntime")
    with pytest.raises(ModelFormatError, match="tensorrt backend needs a TensorRT .engine"):
        backend_for("m.onnx", "tensorrt")
    with pytest.raises(ModelFormatError, match="unknown model file type"):
        backend_for("m.bin")
    with pytest.raises(ValueError, match="tensorrt"):
        backend_for("m.engine", "tflite")
    with pytest.raises(ModelFormatError, match="not found"):
        load_backend(tmp_path / "missing.engine")


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the error a machine without TensorRT gives")
def test_engine_without_tensorrt_names_the_fix(tmp_path):
    engine = _fake_engine(tmp_path)
    for attempt in (
        lambda: saliq.load(engine),
        lambda: load_backend(engine, backend="tensorrt"),
        lambda: TensorRTBackend(engine),
        lambda: saliq.load(engine, device=0, cuda_graph=True, allow_engine_host_code=True),
    ):
        with pytest.raises(BackendUnavailableError) as info:
            attempt()
        message = str(info.value)
        assert 'pip install "tensorrt-cu12<11"' in message and "JetPack" in message


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the error a machine without TensorRT gives")
def test_cli_passes_host_code_consent_and_reports_missing_tensorrt(tmp_path, capsys):
    from saliq.cli import main

    engine = _fake_engine(tmp_path, version_compatible=True)
    image = tmp_path / "frame.png"
    image.write_bytes(b"unused: the model fails to load first")
    code = main(["score", str(image), "--model", str(engine), "--allow-engine-host-code"])
    assert code == 2
    assert "tensorrt" in capsys.readouterr().err.lower()


# ------------------------------------------------------------------------------------------
# ONNX Runtime: the IOBinding path (used on GPU providers) gives the plain run's results
# ------------------------------------------------------------------------------------------


def test_onnxruntime_iobinding_path_matches_plain_run(tmp_path):
    backend = OnnxRuntimeBackend(tiny_onnx(tmp_path / "tiny.onnx", SPEC))
    assert backend.provider == "CPUExecutionProvider" and backend.binding_device is None
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    plain = backend.infer({"image": x})
    np.testing.assert_allclose(plain["score"], 1 / (1 + np.exp(-x.mean(axis=(1, 2, 3)))), 1e-5)
    # The GPU path's code, run against CPU memory (what this machine has).
    backend.binding_device = "cpu"
    bound = backend.infer({"image": x})
    for name in ("score", "saliency"):
        np.testing.assert_array_equal(bound[name], plain[name])


# ------------------------------------------------------------------------------------------
# Real TensorRT (machines with a GPU and TensorRT; skipped elsewhere)
# ------------------------------------------------------------------------------------------


def _check_threads(backend, x, want_scores, rows: int, atol: float, threads: int = 3) -> None:
    """Several threads infer at once (each gets its own context/stream/buffers) correctly."""
    results = {}

    def worker(i):
        results[i] = backend.infer({"image": x[i : i + rows]})["score"]

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for i in range(threads):
        np.testing.assert_allclose(results[i], want_scores[i : i + rows], atol=atol)


def _build_engine(tmp_path, version_compatible: bool = False):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    from saliq.cuda_memory import cuda_api

    onnx_path = tiny_onnx(tmp_path / "tiny.onnx", SPEC)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), parser.get_error(0)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, 3, 32, 32), (4, 3, 32, 32), (8, 3, 32, 32))
    config.add_optimization_profile(profile)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    plan = builder.build_serialized_network(network, config)
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(bytes(plan))
    write_sidecar(
        engine,
        EngineSidecar(
            spec=SPEC,
            tensorrt_version=trt.__version__,
            compute_capability=cuda_api().compute_capability(0),
            precision="fp32",
            profiles=(Profile(1, 4, 8),),
            plan_sha256=sha256_file(engine),
            version_compatible=version_compatible,
        ),
    )
    return engine, onnx_path


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_tensorrt_engine_matches_onnxruntime(tmp_path, cuda_graph):
    engine, onnx_path = _build_engine(tmp_path)
    reference = OnnxRuntimeBackend(onnx_path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((20, 3, 32, 32)).astype(np.float32)
    expected = reference.infer({"image": x})
    with TensorRTBackend(engine, cuda_graph=cuda_graph) as backend:
        assert (backend.min_batch, backend.max_batch) == (1, 8)
        for _ in range(3):  # warm-up, capture, replay when cuda_graph is on
            got = backend.infer({"image": x})  # 20 > 8: runs as chunks 8, 8, 4
            for name in ("score", "saliency"):
                np.testing.assert_allclose(got[name], expected[name], atol=1e-5)
        _check_threads(backend, x, expected["score"], rows=2, atol=1e-5)
        torch = pytest.importorskip("torch")
        on_device = torch.from_numpy(x).cuda()
        got = backend.infer_device({"image": on_device})
        np.testing.assert_allclose(got["score"], expected["score"], atol=1e-5)


@pytest.mark.gpu
def test_version_compatible_engine_loads_only_with_consent(tmp_path):
    engine, onnx_path = _build_engine(tmp_path, version_compatible=True)
    with pytest.raises(UntrustedModelError, match="version-compatible"):
        TensorRTBackend(engine)
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    expected = OnnxRuntimeBackend(onnx_path, providers=["CPUExecutionProvider"]).infer({"image": x})
    with TensorRTBackend(engine, allow_engine_host_code=True) as backend:
        got = backend.infer({"image": x})
        np.testing.assert_allclose(got["score"], expected["score"], atol=1e-5)


@pytest.mark.gpu
def test_corrupt_plan_with_valid_sidecar_is_refused(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    import tensorrt as trt

    from saliq.cuda_memory import cuda_api

    engine = _fake_engine(
        tmp_path,
        tensorrt_version=trt.__version__,
        compute_capability=cuda_api().compute_capability(0),
    )
    with pytest.raises(ModelFormatError, match="could not deserialize.*saliq export trt"):
        TensorRTBackend(engine)


# ------------------------------------------------------------------------------------------
# The backend end to end on stand-ins (tests/fake_runtimes.py): a numpy "engine" behind a fake
# tensorrt module, host memory behind the CUDA memory layer. saliq's logic, not TensorRT's.
# ------------------------------------------------------------------------------------------


class _HostCAI:
    """Host memory announced as device memory, which the host stand-in CUDA layer reads."""

    def __init__(self, array, **stream):
        self.array = array
        self.__cuda_array_interface__ = {
            "shape": array.shape,
            "typestr": array.dtype.str,
            "data": (array.ctypes.data, False),
            "version": 3,
            "strides": None,
            **stream,  # no key: the legacy default stream is waited on
        }


def _stand_in(tmp_path, monkeypatch, batch=(2, 4, 8)):
    from saliq import cuda_memory

    impl = HostGraphCudaImpl()
    trt = fake_tensorrt(batch=batch, cuda=impl)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    # The backend keeps one TensorRT logger per process: keep the stand-in's out of later tests.
    monkeypatch.setattr(trt_backend, "_LOGGER", None)
    api = cuda_memory.CudaApi(impl)
    monkeypatch.setattr(cuda_memory, "cuda_api", lambda impl=None: api)
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(PLAN)

    def sidecar(**overrides):
        fields = dict(
            spec=SPEC,
            tensorrt_version="10.3.0",
            compute_capability="8.7",  # what HostCudaImpl reports
            precision="fp32",
            profiles=(Profile(*batch),),
            plan_sha256=sha256_file(engine),
        )
        write_sidecar(engine, EngineSidecar(**{**fields, **overrides}))

    sidecar()
    return types.SimpleNamespace(trt=trt, api=api, engine=engine, sidecar=sidecar)


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    return _stand_in(tmp_path, monkeypatch)


def test_stand_in_engine_is_the_tiny_onnx_model(tmp_path):
    x = np.random.default_rng(3).standard_normal((5, 3, 32, 32)).astype(np.float32)
    reference = OnnxRuntimeBackend(tiny_onnx(tmp_path / "tiny.onnx", SPEC)).infer({"image": x})
    for name, value in tiny_model(x).items():
        np.testing.assert_allclose(value, reference[name], atol=1e-6)


def test_backend_end_to_end_on_stand_ins(stand_in):
    x = np.random.default_rng(4).standard_normal((11, 3, 32, 32)).astype(np.float32)
    want = tiny_model(x)
    backend = TensorRTBackend(stand_in.engine)
    assert (backend.min_batch, backend.max_batch) == (2, 8)
    got = backend.infer({"image": x})  # chunks of 8 and 3
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6)
    one = backend.infer({"image": x[:1]})  # padded up to the profile's minimum, 2
    np.testing.assert_allclose(one["score"], want["score"][:1], atol=1e-6)
    executed = [entry[1] for entry in stand_in.trt.log if entry[0] == "execute"]
    assert executed == [8, 3, 2]

    _check_threads(backend, x, want["score"], rows=3, atol=1e-6)
    assert stand_in.trt.log.count(("context",)) == 4  # one per thread that ran inference

    # Inputs already in "device" memory: __cuda_array_interface__, and DLPack (whose
    # exporter is told the stream the backend's thread runs on: the stand-in's 7).
    on_device = backend.infer_device({"image": _HostCAI(x)})
    np.testing.assert_allclose(on_device["saliency"], want["saliency"], atol=1e-6)
    capsule = FakeDLPack(x.ctypes.data, x.shape, dtype=(2, 32, 1))
    np.testing.assert_allclose(
        backend.infer_device({"image": capsule})["score"], want["score"], atol=1e-6
    )
    assert capsule.streams_asked == [7]
    with pytest.raises(InvalidImageError, match="float16.*convert it on the device"):
        backend.infer_device({"image": _HostCAI(x.astype(np.float16))})
    with pytest.raises(InvalidImageError):
        bad = x.copy()
        bad[0, 0, 0, 0] = np.nan
        backend.infer({"image": bad})
    backend.close()
    assert stand_in.api.impl.live == {}  # every pinned and device buffer was freed


def test_backend_on_stand_ins_checks_before_deserializing(stand_in):
    stand_in.sidecar(tensorrt_version="10.13.0")
    with pytest.raises(IncompatibleModelError, match="rebuild"):
        TensorRTBackend(stand_in.engine)
    stand_in.sidecar(version_compatible=True)
    with pytest.raises(UntrustedModelError):
        TensorRTBackend(stand_in.engine)
    assert not any(entry[0] == "deserialize" for entry in stand_in.trt.log)
    TensorRTBackend(stand_in.engine, allow_engine_host_code=True).close()
    assert stand_in.trt.log[-1] == ("deserialize", PLAN, True)
    stand_in.engine.write_bytes(b"another plan")  # a plan TensorRT cannot read
    stand_in.sidecar()
    with pytest.raises(ModelFormatError, match="could not deserialize"):
        TensorRTBackend(stand_in.engine)
    assert stand_in.trt.log[-1] == ("deserialize", b"another plan", False)


def test_backend_cuda_graphs_on_stand_ins(stand_in):
    x = np.random.default_rng(5).standard_normal((4, 3, 32, 32)).astype(np.float32)
    want = tiny_model(x)["score"]
    calls = stand_in.api.impl.calls
    backend = TensorRTBackend(stand_in.engine, cuda_graph=True)
    for _ in range(3):  # plain run (warm-up), capture + launch, launch
        np.testing.assert_allclose(backend.infer({"image": x})["score"], want, atol=1e-6)
    assert calls.count(("graph", 1)) == 1  # one graph for batch 4, holding the one inference
    assert calls.count(("graph_launch",)) == 2
    assert [e[1] for e in stand_in.trt.log if e[0] == "execute"] == [4, 4, 4]
    np.testing.assert_allclose(backend.infer({"image": x[:2]})["score"], want[:2], atol=1e-6)
    assert calls.count(("graph", 1)) == 1  # batch 2 is only warming up: no graph yet
    backend.close()
    assert calls.count(("graph_destroy",)) == 1

    stand_in.api.impl.fail_capture = True  # e.g. a driver without capture support
    backend = TensorRTBackend(stand_in.engine, cuda_graph=True)
    backend.infer({"image": x})
    with pytest.warns(RuntimeWarning, match="capture failed for batch 4"):
        np.testing.assert_allclose(backend.infer({"image": x})["score"], want, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # batch 4 now runs without a graph, silently
        np.testing.assert_allclose(backend.infer({"image": x})["score"], want, atol=1e-6)
    backend.close()


class _TorchStream:
    """What matters of a torch.cuda.Stream here: its handle."""

    def __init__(self, handle):
        self.cuda_stream = handle


def _before_first_copy(calls):
    """The waits and DLPack handshakes queued before the first copy."""
    first = next(i for i, call in enumerate(calls) if call[0] == "memcpy")
    return [call for call in calls[:first] if call[0] in ("wait", "dlpack")]


def test_infer_device_waits_for_the_producer_before_the_first_copy(stand_in):
    x = np.random.default_rng(6).standard_normal((3, 3, 32, 32)).astype(np.float32)
    want = tiny_model(x)["score"]
    backend = TensorRTBackend(stand_in.engine)
    calls = stand_in.api.impl.calls
    wait_on = lambda handle: ("wait", "stream-token", handle)  # noqa: E731

    # A producer on a named stream (a torch side stream), its tensor seen through an
    # interface with no stream key (PyTorch's version 2): both waits precede the first copy.
    calls.clear()
    got = backend.infer_device({"image": _HostCAI(x)}, stream=_TorchStream(0x5A))
    np.testing.assert_allclose(got["score"], want, atol=1e-6)
    early = _before_first_copy(calls)
    assert wait_on(0x5A) in early and wait_on(1) in early
    # An int handle; 0 (torch's default stream) is the legacy default stream.
    for given, handle in ((0x5B, 0x5B), (0, 1)):
        calls.clear()
        backend.infer_device({"image": _HostCAI(x, stream=None)}, stream=given)
        assert _before_first_copy(calls) == [wait_on(handle)]
    # An interface naming its stream (version 3): waited on, and nothing else.
    calls.clear()
    backend.infer_device({"image": _HostCAI(x, stream=0x5C)})
    assert _before_first_copy(calls) == [wait_on(0x5C)]

    # An object offering both protocols (a PyTorch tensor) is read through DLPack: the
    # exporter is told the backend's stream before anything is copied, and no extra wait.
    calls.clear()
    both = CaiAndDLPack(x.ctypes.data, x.shape, log=calls)
    np.testing.assert_allclose(backend.infer_device({"image": both})["score"], want, atol=1e-6)
    assert _before_first_copy(calls) == [("dlpack", 7)]
    with pytest.raises(TypeError, match="stream must be None, an int cudaStream_t"):
        backend.infer_device({"image": _HostCAI(x)}, stream="side")
    backend.close()


def _graph_log(trt):
    kinds = ("set_input_shape", "enqueue", "capture", "replay")
    return [
        (entry[0], entry[-1] if entry[0] == "set_input_shape" else entry[1])
        for entry in trt.log
        if entry[0] in kinds
    ]


def test_cuda_graphs_follow_the_contexts_last_shape(tmp_path, monkeypatch):
    # The stand-in raises when a capture follows a shape change without a plain enqueue, or a
    # graph is replayed at another shape than the context's last plain enqueue.
    si = _stand_in(tmp_path, monkeypatch, batch=(1, 4, 8))
    x = np.random.default_rng(7).standard_normal((20, 3, 32, 32)).astype(np.float32)
    want = tiny_model(x)
    backend = TensorRTBackend(si.engine, cuda_graph=True)
    for _ in range(3):  # chunks 8, 8, 4 each time
        got = backend.infer({"image": x})
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-6)
    first = [
        ("set_input_shape", 8),
        ("enqueue", 8),
        ("capture", 8),
        ("replay", 8),
        ("set_input_shape", 4),
        ("enqueue", 4),
    ]
    again = [
        ("set_input_shape", 8),
        ("enqueue", 8),
        ("replay", 8),
        ("set_input_shape", 4),
        ("enqueue", 4),
    ]
    assert _graph_log(si.trt) == first + again + again

    # Alternating batch sizes: each follows a shape change, so each runs plainly, and the
    # results are bit-equal to a run without graphs.
    plain = TensorRTBackend(si.engine, cuda_graph=False)
    for n in (1, 8, 3, 8, 1, 1, 1, 8, 8):
        graphed, reference = backend.infer({"image": x[:n]}), plain.infer({"image": x[:n]})
        for name in want:
            np.testing.assert_array_equal(graphed[name], reference[name])
            np.testing.assert_allclose(graphed[name], want[name][:n], atol=1e-6)
    assert si.api.impl.calls.count(("graph", 1)) == 2  # batch 8 (above), then batch 1
    backend.close()
    plain.close()


def test_set_input_shape_only_on_a_change(stand_in):
    x = np.random.default_rng(8).standard_normal((4, 3, 32, 32)).astype(np.float32)
    backend = TensorRTBackend(stand_in.engine)
    for n in (4, 4, 3, 3, 4):
        backend.infer({"image": x[:n]})
    sets = [entry[2] for entry in stand_in.trt.log if entry[0] == "set_input_shape"]
    assert sets == [4, 3, 4]
    backend.close()


def test_hardware_compatible_engine_needs_ampere_at_load(stand_in, monkeypatch):
    stand_in.sidecar(compute_capability="any", hardware_compatible=True)
    monkeypatch.setattr(stand_in.api.impl, "compute_capability", lambda device: (7, 5))
    with pytest.raises(IncompatibleModelError, match=r"hardware-compatible.*8\.0.*is 7\.5"):
        TensorRTBackend(stand_in.engine)
    assert not any(entry[0] == "deserialize" for entry in stand_in.trt.log)
    monkeypatch.setattr(stand_in.api.impl, "compute_capability", lambda device: (8, 0))
    TensorRTBackend(stand_in.engine).close()
    assert stand_in.trt.log[-1][0] == "deserialize"


def test_hardware_compatible_engine_is_refused_on_jetson(stand_in, monkeypatch):
    import saliq.backends.tensorrt as trt_backend

    stand_in.sidecar(compute_capability="any", hardware_compatible=True)
    monkeypatch.setattr(trt_backend, "is_tegra", lambda: True)
    with pytest.raises(IncompatibleModelError, match="does not run on Jetson"):
        TensorRTBackend(stand_in.engine)
    assert not any(entry[0] == "deserialize" for entry in stand_in.trt.log)
    stand_in.sidecar()  # an engine built for this device loads on a Jetson too
    TensorRTBackend(stand_in.engine).close()


def test_backend_releases_contexts_of_ended_threads(stand_in):
    x = np.random.default_rng(9).standard_normal((2, 3, 32, 32)).astype(np.float32)
    want = tiny_model(x)["score"]
    backend = TensorRTBackend(stand_in.engine, max_contexts=3)
    live_blocks, results = [], []

    def request():  # a server's thread per request
        results.append(backend.infer({"image": x})["score"])
        live_blocks.append(len(stand_in.api.impl.live))

    _short_lived_threads(request, rounds=10, per_round=5)
    assert len(results) == 50 and all(np.allclose(r, want, atol=1e-6) for r in results)
    per_state = 2 * len(backend.buffer_plan)  # a pinned and a device buffer per tensor
    assert max(live_blocks) <= 3 * per_state
    assert stand_in.trt.log.count(("context",)) == 50
    backend.infer({"image": x})  # the main thread releases what the last threads left
    assert len(stand_in.api.impl.live) == per_state
    backend.release_thread()
    assert stand_in.api.impl.live == {}
    backend.close()
