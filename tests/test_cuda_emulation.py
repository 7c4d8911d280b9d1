"""The CUDA path of saliq._preproc, run on the host (tests/cuda_emulation/), against the oracle.

On a machine without a GPU this is the only execution of csrc/preproc_cuda.cu: its launcher
and kernels, compiled by g++ against a host stand-in of the CUDA runtime, run the real
bindings' ``preprocess_cuda`` in a fresh interpreter, under AddressSanitizer where g++ has it
(an out-of-bounds access aborts the probe with a report: a memcheck for the index math). The
outputs must meet the CPU tests' tolerances against the float64 oracle, for host and "device"
inputs and outputs (``__cuda_array_interface__`` and DLPack over host memory), padded rows,
mixed frame sizes, and an allocation failure must surface as an exception.
The stand-in also records every stream-ordered call in order (tests/cuda_emulation/
emulation_log.cpp), so the waits on the interface's producer streams, the memory-pool fallback,
the pool's release threshold and the "no kernel for this GPU" message are checked here too.
GPU behaviour itself (memory model, streams, timing) is the `gpu` tests' job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from . import preprocess_oracle as oracle
from .conftest import require
from .cuda_emulation import build as emulation
from .test_native_preprocess import MEAN, STD, _assert_close, _check_views

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
OUT_HW = (32, 48)
FORMATS = {"BGR": 3, "RGB": 3, "BGRA": 4, "RGBA": 4, "GRAY": 1, "NV12": 0}
# Version 2's crop views, small for the emulator: on 37 x 53 Q = P = 16 (copy), on 1 x 1 a
# magnified pixel, on 90 x 130 Q = 33 (area; s = 64 / 130); grid windows 24, 1, 49.
VIEWS = dict(
    detail_crops=3, crop_size=16, salient_crops=2, grid_crops=2, grid_size=24,
    canonical_long_side=64,
)  # fmt: skip

PROBE = r"""
import importlib.machinery, importlib.util, json, os, sys
import numpy as np

path, repo, inputs, outputs = sys.argv[1:5]
sys.path.insert(0, repo)
from tests.dlpack_fakes import FakeDLPack

loader = importlib.machinery.ExtensionFileLoader("saliq._preproc", path)
spec = importlib.util.spec_from_file_location("saliq._preproc", path, loader=loader)
P = importlib.util.module_from_spec(spec)
loader.exec_module(P)
ARGS = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
H, W = 32, 48
VIEWS = json.loads(sys.argv[5])


class Dev:
    # "Device" memory in the emulation is host memory: a CAI over a numpy array.
    def __init__(self, a):
        self.a = a
        self.__cuda_array_interface__ = {
            "shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, False),
            "version": 3, "strides": None if a.flags.c_contiguous else a.strides,
        }


def empty_out(n, dtype, views=False):
    shapes = {"image": (n, 3, H, W), "gradient": (n, 1, H, W), "prior": (n, 1, H // 4, W // 4)}
    out = {k: np.full(s, np.nan, dtype) for k, s in shapes.items()}
    if views:
        k, p, g, pg = (VIEWS[key] for key in ("detail_crops", "crop_size", "grid_crops",
                                              "grid_size"))
        out.update(crops=np.full((n, k, 3, p, p), np.nan, dtype),
                   crop_gradient=np.full((n, k, 1, p, p), np.nan, dtype),
                   crop_boxes=np.full((n, k, 4), np.nan, np.float32),
                   crop_weights=np.full((n, k), np.nan, np.float32),
                   grid=np.full((n, g, 3, pg, pg), np.nan, dtype),
                   grid_boxes=np.full((n, g, 4), np.nan, np.float32))
    return out


frames = dict(np.load(inputs))
report, results = {"built_with_cuda": P.built_with_cuda, "available": P.cuda_available()}, {}
if os.environ.get("SALIQ_EMU_FAIL_ALLOC"):
    try:
        P.preprocess_cuda([frames["BGR_uint8_0"]], "BGR", H, W, **ARGS)
        report["failure"] = "returned"
    except RuntimeError as e:
        report["failure"] = str(e)
    out = P.preprocess_cuda([frames["BGR_uint8_0"]], "BGR", H, W, **ARGS)  # and again, fine
    results["after_failure_image"] = out["image"]
    # Version 2: the 39th allocation of the process falls on the crop scratch (3 + 14 above,
    # then 21 before it: outputs, scratch, priors, view outputs, tables, rows, staging, windows,
    # crop table); the crops of the next call are fine.
    try:
        P.preprocess_cuda([frames["BGR_uint8_0"]], "BGR", H, W, views=VIEWS, **ARGS)
        report["views_failure"] = "returned"
    except RuntimeError as e:
        report["views_failure"] = str(e)
    out = P.preprocess_cuda([frames["BGR_uint8_0"]], "BGR", H, W, views=VIEWS, **ARGS)
    results["after_failure_crops"] = out["crops"]
else:
    for fmt in ("BGR", "RGB", "BGRA", "RGBA", "GRAY", "NV12"):
        for depth in ("uint8", "uint16"):
            pair = [frames[f"{fmt}_{depth}_0"], frames[f"{fmt}_{depth}_1"]]
            for dtype in ("float32", "float16"):
                out = P.preprocess_cuda(pair, fmt, H, W, dtype=dtype, **ARGS)  # host I/O
                results.update({f"host/{fmt}/{depth}/{dtype}/{k}": v for k, v in out.items()})
    batch = frames["batch_bgr"]
    for dtype in ("float32", "float16"):
        out = empty_out(len(batch), dtype)
        P.preprocess_cuda(Dev(batch), "BGR", H, W, dtype=dtype, stream=7,
                          out={k: Dev(v) for k, v in out.items()}, **ARGS)
        results.update({f"device/{dtype}/{k}": v for k, v in out.items()})
    padded = frames["padded_rgb"]
    view = padded[:, :61]  # rows padded.strides[0] bytes apart, 61 * 3 used
    out = P.preprocess_cuda([Dev(view)], "RGB", H, W, pitch=padded.strides[0], **ARGS)
    results.update({f"pitch/{k}": v for k, v in out.items()})
    nv12 = frames["NV12_uint16_0"]
    capsule_in = FakeDLPack(nv12.ctypes.data - 16, nv12.shape, dtype=(1, 16, 1), byte_offset=16)
    out = empty_out(1, "float16")
    fake_out = {k: FakeDLPack(v.ctypes.data, v.shape, dtype=(2, 16, 1)) for k, v in out.items()}
    P.preprocess_cuda([capsule_in], "NV12", H, W, dtype="float16", out=fake_out, **ARGS)
    report["dlpack_streams"] = [capsule_in.streams_asked] + [
        f.streams_asked for f in fake_out.values()]
    results.update({f"dlpack/{k}": v for k, v in out.items()})
    big = frames["big_bgr"]
    out = P.preprocess_cuda([big], "BGR", 384, 512, **ARGS)
    results.update({f"big/{k}": v for k, v in out.items()})
    # Version 2: host frames (one wait per frame, staging reused), three sizes per call.
    for fmt in ("BGR", "RGB", "BGRA", "RGBA", "GRAY", "NV12"):
        for depth in ("uint8", "uint16"):
            trio = [frames[f"{fmt}_{depth}_{i}"] for i in range(3)]
            for dtype in ("float32", "float16"):
                out = P.preprocess_cuda(trio, fmt, H, W, dtype=dtype, views=VIEWS, **ARGS)
                results.update({f"v2/{fmt}/{depth}/{dtype}/{k}": v for k, v in out.items()})
            # The CPU twin's crop code under ASan too (windows at the frame's edges).
            out = P.preprocess(trio, fmt, H, W, views=VIEWS, **ARGS)
            results.update({f"cpu_v2/{fmt}/{depth}/{k}": v for k, v in out.items()})
    # Device frames and out= device buffers for every output (one wait for the batch).
    for dtype in ("float32", "float16"):
        out = empty_out(len(batch), dtype, views=True)
        P.preprocess_cuda(Dev(batch), "BGR", H, W, dtype=dtype, stream=7, views=VIEWS,
                          out={k: Dev(v) for k, v in out.items()}, **ARGS)
        results.update({f"v2device/{dtype}/{k}": v for k, v in out.items()})
    out = empty_out(len(batch), "float32", views=True)
    del out["crop_weights"]
    try:
        P.preprocess_cuda(Dev(batch), "BGR", H, W, views=VIEWS,
                          out={k: Dev(v) for k, v in out.items()}, **ARGS)
        report["missing_out"] = "returned"
    except ValueError as e:
        report["missing_out"] = str(e)
np.savez(outputs, **results)
print(json.dumps(report))
"""


def _frame(fmt: str, depth: str, hw: tuple[int, int], rng) -> np.ndarray:
    h, w = hw
    hi = 65536 if depth == "uint16" else 256
    if fmt == "NV12":
        shape = (h * 3 // 2, w)
    elif fmt == "GRAY":
        shape = (h, w)
    else:
        shape = (h, w, FORMATS[fmt])
    return rng.integers(0, hi, shape).astype(depth)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed to build the emulated CUDA path")
    require("pybind11", reason="pybind11 is needed to build the extension")
    out = tmp_path_factory.mktemp("cuda_emulation")
    asan = emulation.asan_preload()
    module = emulation.build(out / "build", asan=asan is not None)
    rng = np.random.default_rng(11)
    frames = {}
    for fmt in FORMATS:
        for depth in ("uint8", "uint16"):
            # The third size is for version 2 only: crops of Q = 33 -> 16 (area) there.
            sizes = [(2, 2), (38, 54)] if fmt == "NV12" else [(1, 1), (37, 53)]
            sizes.append((90, 130))
            for i, hw in enumerate(sizes):
                frames[f"{fmt}_{depth}_{i}"] = _frame(fmt, depth, hw, rng)
    frames["batch_bgr"] = rng.integers(0, 256, (3, 45, 70, 3), dtype=np.uint8)
    frames["padded_rgb"] = rng.integers(0, 256, (29, 64, 3), dtype=np.uint8)
    frames["big_bgr"] = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    np.savez(out / "inputs.npz", **frames)
    env = {**os.environ}
    if asan:
        env.update(LD_PRELOAD=asan, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")

    cache: dict = {}

    def probe(**extra_env: str):
        """Runs the probe once per environment (several tests read the same results)."""
        key = tuple(sorted(extra_env.items()))
        if key in cache:
            return cache[key]
        run = subprocess.run(
            [sys.executable, "-c", PROBE, str(module), str(REPO), str(out / "inputs.npz")]
            + [str(out / "outputs.npz"), json.dumps(VIEWS)],
            cwd=out,
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
        report = json.loads(run.stdout.strip().splitlines()[-1])
        cache[key] = report, dict(np.load(out / "outputs.npz"))
        return cache[key]

    def run_script(script: str, *args: str, **extra_env: str) -> tuple[dict, dict]:
        """Runs a probe script on the emulated module: (its JSON report, its saved arrays)."""
        key = (script, args, tuple(sorted(extra_env.items())))
        if key in cache:
            return cache[key]
        saved = out / f"script_{len(cache)}.npz"
        run = subprocess.run(
            [sys.executable, "-c", script, str(module), str(REPO), str(saved), *args],
            cwd=out,
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
        cache[key] = json.loads(run.stdout.strip().splitlines()[-1]), dict(np.load(saved))
        return cache[key]

    return {"frames": frames, "probe": probe, "run_script": run_script, "asan": asan}


def _check(
    results: dict,
    prefix: str,
    frame: np.ndarray,
    fmt: str,
    dtype: str,
    index: int,
    out_hw=OUT_HW,
    **decode,
):
    want = oracle.preprocess_frame(frame, fmt, *out_hw, MEAN, STD, **decode)
    got = {key: results[f"{prefix}/{key}"] for key in want}
    return _assert_close(got, want, dtype, index)


def test_emulated_cuda_path_matches_the_oracle(emulated):
    report, results = emulated["probe"]()
    assert report["built_with_cuda"] and report["available"]
    frames = emulated["frames"]
    for fmt in FORMATS:
        for depth in ("uint8", "uint16"):
            for dtype in ("float32", "float16"):
                for i in range(2):  # two frame sizes in one call: tables rebuilt, staging grows
                    frame = frames[f"{fmt}_{depth}_{i}"]
                    _check(results, f"host/{fmt}/{depth}/{dtype}", frame, fmt, dtype, i)
    for dtype in ("float32", "float16"):  # device inputs and out= (written in place)
        for i, frame in enumerate(frames["batch_bgr"]):
            _check(results, f"device/{dtype}", frame, "BGR", dtype, i)
    padded = frames["padded_rgb"]
    _check(results, "pitch", np.ascontiguousarray(padded[:, :61]), "RGB", "float32", 0)
    _check(results, "dlpack", frames["NV12_uint16_0"], "NV12", "float16", 0)
    # DLPack handshake: every tensor was asked for the legacy default stream (1): stream=None.
    assert report["dlpack_streams"] == [[1]] * 4
    _check(results, "big", frames["big_bgr"], "BGR", "float32", 0, out_hw=(384, 512))


def test_emulated_cuda_crop_views_match_the_oracle(emulated):
    """Version 2 on the CUDA path: version 1's outputs the same bits as without views, boxes
    and weights as saliq.views places them on the float32 prior, crops within the oracle's
    tolerances, for every format, depth and dtype, host and device frames, out= buffers (and
    the CPU twin's crop views, run under ASan here)."""
    report, results = emulated["probe"]()
    frames = emulated["frames"]
    for fmt in FORMATS:
        for depth in ("uint8", "uint16"):
            trio = [frames[f"{fmt}_{depth}_{i}"] for i in range(3)]
            f32 = _prefixed(results, f"v2/{fmt}/{depth}/float32")
            for dtype in ("float32", "float16"):
                got = _prefixed(results, f"v2/{fmt}/{depth}/{dtype}")
                v1 = _prefixed(results, f"host/{fmt}/{depth}/{dtype}")
                for key in v1:
                    np.testing.assert_array_equal(got[key][:2], v1[key], err_msg=key)
                _check(results, f"v2/{fmt}/{depth}/{dtype}", trio[2], fmt, dtype, 2)
                _check_views(got, trio, fmt, VIEWS, dtype, f32["prior"])
            cpu = _prefixed(results, f"cpu_v2/{fmt}/{depth}")
            _check_views(cpu, trio, fmt, VIEWS, "float32", cpu["prior"])
    batch = list(frames["batch_bgr"])
    f32 = _prefixed(results, "v2device/float32")
    for dtype in ("float32", "float16"):
        got = _prefixed(results, f"v2device/{dtype}")
        _check_views(got, batch, "BGR", VIEWS, dtype, f32["prior"])
        for i, frame in enumerate(batch):
            _check(results, f"v2device/{dtype}", frame, "BGR", dtype, i)
    assert "out is missing 'crop_weights'" in report["missing_out"]


def _prefixed(results: dict, prefix: str) -> dict:
    return {k[len(prefix) + 1 :]: v for k, v in results.items() if k.startswith(prefix + "/")}


def test_emulated_allocation_failure_is_an_exception(emulated):
    report, results = emulated["probe"](SALIQ_EMU_FAIL_ALLOC="3,39")
    assert report["failure"].startswith("CUDA preprocessing failed: "), report["failure"]
    assert "cudaMallocAsync" in report["failure"] or "alloc" in report["failure"]
    assert np.isfinite(results["after_failure_image"]).all()  # the next call works
    assert report["views_failure"].startswith("CUDA preprocessing failed: rows.ensure"), report
    assert np.isfinite(results["after_failure_crops"]).all()


def test_launch_rewrite_covers_every_kernel():
    source = (REPO / "csrc" / "preproc_cuda.cu").read_text()
    rewritten = emulation.emulated_source(source)
    assert "<<<" not in rewritten
    assert rewritten.count("saliq_emu::launch<") == source.count("<<<")
    assert "saliq_emu::launch<true>(k_prior" in rewritten  # the kernel with __syncthreads
    for kernel in ("k_crop_h", "k_crop_v", "k_crop_grad"):  # version 2's, no __syncthreads
        assert f"saliq_emu::launch<false>({kernel}" in rewritten


# Streams, events and memory pools, read from the stand-in's ordered log. One small process per
# mode: the allocator is chosen once per device and process.
STREAM_PROBE = r"""
import importlib.machinery, importlib.util, json, sys
import numpy as np

path, repo, saved, mode = sys.argv[1:5]
sys.path.insert(0, repo)
from tests.cuda_emulation.build import EmulatorLog
from tests.dlpack_fakes import FakeDLPack

loader = importlib.machinery.ExtensionFileLoader("saliq._preproc", path)
spec = importlib.util.spec_from_file_location("saliq._preproc", path, loader=loader)
P = importlib.util.module_from_spec(spec)
loader.exec_module(P)
emu = EmulatorLog(path)
if mode == "nopools":
    emu.set_pools_supported(False)
H, W = 16, 24
batch = np.random.default_rng(5).integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
NO_KEY = object()


class Dev:
    # "Device" memory is host memory here; `stream` is the interface's key (absent: NO_KEY).
    def __init__(self, a, stream=NO_KEY):
        self.a = a
        self.__cuda_array_interface__ = {
            "shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, False),
            "version": 3, "strides": None}
        if stream is not NO_KEY:
            self.__cuda_array_interface__["stream"] = stream


class TorchLike(FakeDLPack):
    # What a PyTorch CUDA tensor offers: DLPack and a version-2 interface with no stream key.
    def __init__(self, a):
        super().__init__(a.ctypes.data, a.shape)
        self.a = a
        self.__cuda_array_interface__ = {
            "shape": a.shape, "typestr": "|u1", "data": (a.ctypes.data, False), "version": 2,
            "strides": None}


def device_out(stream):
    shapes = {"image": (3, 3, H, W), "gradient": (3, 1, H, W), "prior": (3, 1, H // 4, W // 4)}
    return {k: Dev(np.full(s, np.nan, np.float32), stream) for k, s in shapes.items()}


report, results = {}, {}


def call(name, frames, stream, out=None):
    emu.clear()
    try:
        got = P.preprocess_cuda(frames, "BGR", H, W, stream=stream, out=out)
    except (TypeError, ValueError) as e:
        report[name] = {"error": f"{type(e).__name__}: {e}", "log": emu.lines()}
        return
    report[name] = {"log": emu.lines()}
    got = got if out is None else {k: v.a for k, v in out.items()}
    results.update({f"{name}/{k}": np.asarray(v) for k, v in got.items()})


call("host", batch, None)  # the first call: the allocator is set up here
call("outputs", Dev(batch, None), 7, out=device_out(11))
if mode == "streams":
    results.update({f"cpu/{k}": v for k, v in P.preprocess(batch, "BGR", H, W).items()})
    call("key", Dev(batch, 5), 7)
    call("no_key", Dev(batch), 7)
    call("none", Dev(batch, None), 7)
    call("own_stream", Dev(batch, 7), 7)
    call("legacy_work", Dev(batch), None)  # no key = legacy default = the work stream
    call("dedupe", [Dev(batch[0], 5), Dev(batch[1], 5), Dev(batch[2], 9)], 7)
    torch_like = TorchLike(batch)
    call("torch_like", torch_like, 7)
    report["torch_like_asked"] = torch_like.streams_asked
    call("zero", Dev(batch, 0), 7)
    call("bool", Dev(batch, True), 7)
    emu.set_kernels_missing(True, 7, 0)
    report["no_kernel"] = P.cuda_unavailable_reason()
    emu.set_kernels_missing(False)
    report["after_no_kernel"] = P.cuda_unavailable_reason()
np.savez(saved, **results)
print(json.dumps(report))
"""
WORK = ("memcpy", "launch ")  # a copy or a kernel: what must come after the waits


def _first_work(log: list[str]) -> int:
    return next(i for i, line in enumerate(log) if line.startswith(WORK))


def _waits(log: list[str], work_stream: int) -> dict[int, tuple[int, int]]:
    """{producer stream: (index of its event record, index of the work stream's wait)}."""
    recorded = {}
    for i, line in enumerate(log):
        if line.startswith("event_record "):
            fields = dict(f.split("=") for f in line.split()[1:])
            recorded[fields["e"]] = (int(fields["s"]), i)
    waits = {}
    for i, line in enumerate(log):
        if line.startswith("wait "):
            fields = dict(f.split("=") for f in line.split()[1:])
            assert int(fields["s"]) == work_stream, line
            stream, at = recorded.pop(fields["e"])
            assert stream not in waits, f"stream {stream} waited for twice: {log}"
            waits[stream] = (at, i)
    assert not recorded, f"events recorded but never waited for: {recorded}"
    return waits


def test_emulated_waits_on_the_interface_streams_before_the_first_copy_or_kernel(emulated):
    """__cuda_array_interface__ v3 `stream` (issue 13, bug 2): an event on each distinct
    producer stream (no key = the legacy default stream, 1), waited on by the work stream
    before its first copy or kernel, for frames and out= arrays; None and the work stream itself
    need no wait; 0 is refused; an object that also offers DLPack and whose interface names no
    stream (PyTorch) is read through the DLPack handshake."""
    report, results = emulated["run_script"](STREAM_PROBE, "streams")
    expected = {
        "key": {5},
        "no_key": {1},
        "none": set(),
        "own_stream": set(),
        "dedupe": {5, 9},
        "outputs": {11},  # out= arrays still read on stream 11: written only after it
        "torch_like": set(),  # read through DLPack instead, see below
    }
    for name, streams in expected.items():
        log = report[name]["log"]
        waits = _waits(log, work_stream=7)
        assert set(waits) == streams, f"{name}: waited for {sorted(waits)}: {log}"
        first = _first_work(log)
        for stream, (recorded, waited) in waits.items():
            assert recorded < waited < first, f"{name}: stream {stream} waited too late: {log}"
    assert _waits(report["legacy_work"]["log"], work_stream=0) == {}
    # An interface without a stream key beside DLPack (a PyTorch tensor): the DLPack handshake
    # tells the exporter our stream, so it orders its own current stream first.
    assert report["torch_like_asked"] == [7]
    assert report["zero"]["error"].startswith("ValueError: __cuda_array_interface__ 'stream' is 0")
    assert report["zero"]["log"] == []  # refused before any work was queued
    assert report["bool"]["error"].startswith("TypeError: __cuda_array_interface__ 'stream'")
    for name in ("host", "outputs", "key", "no_key", "none", "dedupe", "torch_like"):  # pixels
        for key in ("image", "gradient", "prior"):
            np.testing.assert_allclose(
                results[f"{name}/{key}"], results[f"cpu/{key}"], atol=1e-5, err_msg=f"{name} {key}"
            )


def test_emulated_memory_pool_is_checked_once_and_keeps_memory(emulated):
    """Stream-ordered allocation (issue 13, bug 5): cudaDevAttrMemoryPoolsSupported is asked
    once per device, scratch comes from a pool whose release threshold is raised from 0 (every
    host-output call handed its memory back to the OS), SALIQ_CUDA_POOL_KEEP_MB overrides it."""
    report, _ = emulated["run_script"](STREAM_PROBE, "streams")
    log = report["host"]["log"]
    assert log.count("device_attribute 115 dev=0") == 1, log
    (created,) = [line for line in log if line.startswith("pool_create ")]
    pool = created.split()[1]
    assert f"pool_set {pool} attr=4 release_threshold={256 << 20}" in log
    allocs = [line.split()[0] for line in log if line.startswith(("malloc", "free"))]
    assert set(allocs) == {"malloc_pool", "free_async"}, log
    for name in ("outputs", "key", "dedupe"):  # later calls: no new query, pool or threshold
        assert not [x for x in report[name]["log"] if x.startswith(("device_attr", "pool_"))]
        assert any(x.startswith(f"malloc_pool {pool} ") for x in report[name]["log"])
    report, _ = emulated["run_script"](STREAM_PROBE, "env", SALIQ_CUDA_POOL_KEEP_MB="64")
    assert any(x.endswith(f"release_threshold={64 << 20}") for x in report["host"]["log"])


@pytest.mark.parametrize("mode", ["nopools", "SALIQ_CUDA_MEMPOOL=0"])
def test_emulated_without_memory_pools_falls_back_to_cudamalloc(emulated, mode):
    """A device without memory-pool support (Jetson and Windows setups, older drivers) or
    SALIQ_CUDA_MEMPOOL=0: cudaMalloc, and cudaFree only after the stream is synchronised
    (queued kernels still use the memory); the outputs are the same bits as with the pool."""
    env = {"SALIQ_CUDA_MEMPOOL": "0"} if mode != "nopools" else {}
    report, results = emulated["run_script"](STREAM_PROBE, "nopools" if not env else "env", **env)
    _, pooled = emulated["run_script"](STREAM_PROBE, "streams")
    for name, stream in (("host", 0), ("outputs", 7)):
        log = report[name]["log"]
        kinds = {line.split()[0] for line in log if line.startswith(("malloc", "free", "pool_"))}
        assert kinds == {"malloc", "free"}, log
        assert log.index(f"sync s={stream}") < log.index("free"), log
        for key in ("image", "gradient", "prior"):
            np.testing.assert_array_equal(results[f"{name}/{key}"], pooled[f"{name}/{key}"])


def test_emulated_no_kernel_message_names_the_compiled_archs(emulated):
    """The "no kernel for this GPU" message lists what setup.py's define says was compiled
    (issue 13, bug 4); the emulated build's list (build.ARCHS) is not setup.py's."""
    report, _ = emulated["run_script"](STREAM_PROBE, "streams")
    assert emulation.ARCHS == ("75", "80", "90a")
    assert report["no_kernel"] == (
        "this build has no kernel for the GPU's compute capability 7.0 (built for 7.5, 8.0, "
        "9.0a + PTX 9.0a); reinstall saliq with SALIQ_CUDA_ARCHS=7.0 and a CUDA toolkit that "
        "supports it"
    )
    assert report["after_no_kernel"] == ""


# The Assessor's GPU path (saliq.device_pipeline): the emulated CUDA preprocessing writes the
# engine's device inputs, a stand-in TensorRT engine (tests/fake_runtimes.py) on the stand-in
# CUDA memory layer reads them; both "device" memories are host memory, so one process runs
# the whole path. The engine computes smooth functions of every input, so the GPU path must
# give the host path's results (CPU twin + backend.infer) for every input the model reads.
ASSESSOR_PROBE = r"""
import importlib.machinery, importlib.util, json, sys, types
import numpy as np

path, repo, saved = sys.argv[1:4]
sys.path.insert(0, repo)
loader = importlib.machinery.ExtensionFileLoader("saliq._preproc", path)
spec = importlib.util.spec_from_file_location("saliq._preproc", path, loader=loader)
P = importlib.util.module_from_spec(spec)
loader.exec_module(P)
sys.modules["saliq._preproc"] = P  # what `from . import _preproc` in saliq finds

from saliq import cuda_memory
from saliq.assess import Assessor
from saliq.backends import tensorrt as trt_backend
from saliq.device_pipeline import unavailable_reason
from saliq.engine_sidecar import EngineSidecar, Profile, sha256_file, write_sidecar
from saliq.spec import ModelSpec
from tests.cuda_emulation.build import EmulatorLog
from tests.fake_runtimes import PLAN, HostCudaImpl, _host_array, fake_tensorrt

emu = EmulatorLog(path)
VIEWS = dict(detail_crops=3, crop_size=16, salient_crops=2, grid_crops=2, grid_size=16,
             canonical_long_side=64)


class Streams(HostCudaImpl):
    # Distinct stream handles (the plain stand-in gives every stream 7): the pipeline's stream
    # is made first (7), the engine context's next (8).
    def __init__(self):
        super().__init__()
        self.next_stream = 7

    def stream_create(self):
        self.next_stream += 1
        return self.next_stream - 1, f"stream-{self.next_stream - 1}"


def engine_for(model, tmp, half=()):
    shapes = {name: (-1, *model.tensor_shape(name)) for name in model.inputs}
    shapes.update(score=(-1,), saliency=(-1, 1, 2, 2))
    weights = {name: 0.1 * (k + 1) for k, name in enumerate(model.inputs)}
    dtypes = {name: np.float16 if name in half else np.float32 for name in model.inputs}

    def compute(addresses, input_shape, stream):
        n = input_shape[0]
        total = 0.0
        for name in model.inputs:
            value = _host_array(addresses[name], (n, *shapes[name][1:]), dtypes[name])
            total = total + weights[name] * value.astype(np.float32).reshape(n, -1).mean(axis=1)
        image = _host_array(addresses["image"], (n, *shapes["image"][1:]), dtypes["image"])
        image = image.astype(np.float32)
        _host_array(addresses["score"], (n,))[...] = 1.0 / (1.0 + np.exp(-total))
        grey = image.mean(axis=1, keepdims=True)
        pooled = grey.reshape(n, 1, 2, 16, 2, 16).mean(axis=(3, 5))
        _host_array(addresses["saliency"], (n, 1, 2, 2))[...] = pooled

    impl = Streams()
    trt = fake_tensorrt(
        batch=(1, 4, 8), compute=compute, io_shapes=shapes, inputs=model.inputs, half=half
    )
    sys.modules["tensorrt"] = trt
    trt_backend._LOGGER = None
    api = cuda_memory.CudaApi(impl)
    cuda_memory.cuda_api = lambda impl=None: api
    engine = tmp + "/" + model.name + ("_fp16" if half else "") + ".engine"
    open(engine, "wb").write(PLAN)
    write_sidecar(engine, EngineSidecar(
        spec=model, tensorrt_version="10.3.0", compute_capability="8.7", precision="fp32",
        profiles=(Profile(1, 4, 8),), plan_sha256=sha256_file(engine)))
    return trt_backend.TensorRTBackend(engine), impl


class Dev:
    # A frame in "device" memory: a v3 interface over host memory, no wait needed.
    def __init__(self, a):
        self.a = a
        self.__cuda_array_interface__ = {
            "shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, False),
            "version": 3, "strides": None, "stream": None}


rng = np.random.default_rng(21)
frames = [rng.integers(0, 256, (40 + 7 * i, 60 + 5 * i, 3), dtype=np.uint8) for i in range(10)]
gray = rng.integers(0, 256, (45, 50), dtype=np.uint8)
nv12 = rng.integers(0, 256, (60, 64), dtype=np.uint8)  # a 40x64 frame
report, results = {}, {}
tmp = sys.argv[4]
v1 = ModelSpec(name="v1", architecture="test", backbone="none", input_height=32, input_width=32,
               inputs=("image", "gradient", "prior"))
v2 = ModelSpec(name="v2", architecture="test", backbone="none", input_height=32, input_width=32,
               inputs=("image", "gradient", "prior", "crops", "crop_gradient", "crop_boxes",
                       "crop_weights", "grid", "grid_boxes"),
               preprocessing_version=2, view_config=VIEWS)
for model in (v1, v2):
    backend, impl = engine_for(model, tmp)
    gpu = Assessor(backend, preprocessing="auto")
    host = Assessor(backend, preprocessing="host")
    rep = report[model.name] = {"used": [gpu.preprocessing_used, host.preprocessing_used],
                                "note": gpu.preprocessing_note}
    impl.calls.clear()
    emu.clear()
    got = gpu.assess(frames, saliency_map=True)  # 10 frames: engine chunks of 8 and 2
    rep["calls"] = [list(map(str, c)) for c in impl.calls]
    rep["emu"] = emu.lines()
    want = host.assess(frames, saliency_map=True)
    for tag, a, b in (
        ("list", got, want),
        ("rgb", [gpu.assess(frames[3], color="RGB")], [host.assess(frames[3], color="RGB")]),
        ("gray", [gpu.assess(gray)], [host.assess(gray)]),
        ("nv12", *(a._run([(nv12, "NV12")], ["n"], False) for a in (gpu, host))),
        ("device", gpu.assess([Dev(frames[0]), frames[1], Dev(frames[2])], saliency_map=True),
         [want[0], want[1], want[2]]),
    ):
        results[f"{model.name}/{tag}/gpu"] = np.array([r.score for r in a])
        results[f"{model.name}/{tag}/host"] = np.array([r.score for r in b])
        for i, (x, y) in enumerate(zip(a, b)):
            results[f"{model.name}/{tag}/{i}/sal_gpu"] = x.saliency
            results[f"{model.name}/{tag}/{i}/sal_host"] = y.saliency
            if x.saliency_full is not None:
                results[f"{model.name}/{tag}/{i}/full_gpu"] = x.saliency_full
                results[f"{model.name}/{tag}/{i}/full_host"] = y.saliency_full
    try:
        host.assess(Dev(frames[0]))
    except Exception as exc:
        rep["host_device_frame"] = f"{type(exc).__name__}: {exc}"
    try:
        gpu.assess(Dev(np.ascontiguousarray(frames[0][:4, :4])))
    except Exception as exc:
        rep["tiny_device_frame"] = f"{type(exc).__name__}: {exc}"
    try:
        gpu.assess(Dev(frames[0].astype(np.float32)))
    except Exception as exc:
        rep["float_device_frame"] = f"{type(exc).__name__}: {exc}"
    half = types.SimpleNamespace(
        name="tensorrt", spec=model, infer_device=lambda *a, **k: None,
        input_dtypes={name: np.dtype("float16") for name in model.inputs})
    rep["half_reason"] = unavailable_reason(half)
    before = len(impl.live)
    gpu.release_thread()  # this thread's preprocessing buffers and stream, and its context
    rep["released"] = before - len(impl.live)
    rep["capacity"] = gpu.device_pipeline.capacity
    gpu.assess(frames[0])  # a released thread gets new state on its next call
    gpu.close()
    rep["live_after_close"] = len(impl.live)
# An engine with float16 inputs (a strongly typed FP16 plan): the kernels write float16.
backend, impl = engine_for(v1, tmp, half=v1.inputs)
gpu, host = Assessor(backend), Assessor(backend, preprocessing="host")
report["fp16"] = {"used": gpu.preprocessing_used, "dtype": gpu.device_pipeline.preprocessor.dtype}
results["fp16/gpu"] = np.array([r.score for r in gpu.assess(frames[:5])])
results["fp16/host"] = np.array([r.score for r in host.assess(frames[:5])])
gpu.close()

# Several threads on one Assessor: each its own stream and buffers, results as alone.
import threading

backend, impl = engine_for(v2, tmp)
gpu = Assessor(backend)
alone = [gpu.assess(f).score for f in frames]
got = [None] * len(frames)

def work(i):
    for _ in range(3):
        got[i] = gpu.assess(frames[i]).score

threads = [threading.Thread(target=work, args=(i,)) for i in range(len(frames))]
for t in threads:
    t.start()
for t in threads:
    t.join()
results["threads/alone"], results["threads/got"] = np.array(alone), np.array(got)
report["threads"] = {"held": len(gpu.device_pipeline._threads), "live": len(impl.live)}
gpu.close()
report["threads"]["live_after_close"] = len(impl.live)
np.savez(saved, **results)
print(json.dumps(report))
"""


def test_emulated_assessor_gpu_path_matches_the_host_path(emulated, tmp_path):
    """Assessor(preprocessing="auto") on a TensorRT engine with CUDA preprocessing present:
    the kernels write the engine's inputs in device buffers, the engine reads them without a
    host copy (no host-to-device copy but the frames' pixels), after waiting on the
    preprocessing stream; scores and saliency equal the host path's (CPU twin + infer) for
    versions 1 and 2, batches over the engine's profile, RGB, GRAY, NV12 and frames already
    in device memory; buffers are freed on close."""
    report, results = emulated["run_script"](ASSESSOR_PROBE, str(tmp_path))
    for model in ("v1", "v2"):
        rep = report[model]
        assert rep["used"] == ["cuda", "host"] and rep["note"] == "", rep["note"]
        for tag in ("list", "rgb", "gray", "nv12", "device"):
            np.testing.assert_allclose(
                results[f"{model}/{tag}/gpu"], results[f"{model}/{tag}/host"], atol=2e-5,
                err_msg=f"{model} {tag}",
            )  # fmt: skip
            sal = [k for k in results if k.startswith(f"{model}/{tag}/") and "_gpu" in k]
            assert sal
            for key in sal:
                other = key.replace("_gpu", "_host")
                np.testing.assert_allclose(results[key], results[other], atol=2e-5, err_msg=key)
        calls = rep["calls"]
        # The engine's inputs arrive device-to-device; outputs come back; nothing else.
        kinds = {c[1] for c in calls if c[0] == "memcpy"}
        assert kinds == {"dtod", "dtoh"}, calls
        executes = [c for c in calls if c[0] == "memcpy" and c[1] == "dtod"]
        inputs = 3 if model == "v1" else 9
        assert len(executes) == 2 * inputs  # chunks of 8 and 2, no padding (min batch 1)
        # The engine's stream (8) waits on the preprocessing stream (7) before its first copy.
        first_copy = next(i for i, c in enumerate(calls) if c[0] == "memcpy")
        waits = [i for i, c in enumerate(calls) if c[0] == "wait" and c[2] == "7"]
        assert waits and waits[0] < first_copy, calls
        launches = [line for line in rep["emu"] if line.startswith("launch ")]
        assert launches and all(" s=7" in line for line in launches), launches[:5]
        assert (
            "GPU memory" in rep["host_device_frame"]
            and "preprocessing='host'" in (rep["host_device_frame"])
        )
        assert rep["tiny_device_frame"].startswith("InvalidImageError: array[0]: image is 4x4")
        assert rep["float_device_frame"].startswith("InvalidImageError"), rep
        # An all-float16 engine: version 1's inputs are all written in float16; version 2's
        # boxes and weights stay float32, which such an engine cannot take.
        if model == "v1":
            assert rep["half_reason"] == ""
        else:
            assert rep["half_reason"] == (
                "the engine takes 'crop_boxes' as float16; the CUDA preprocessing writes float32"
            )
        # Buffers for the engine's largest batch (8), not the Assessor's (16); released per
        # thread: one buffer per written output + the engine's pinned and device buffers.
        assert rep["capacity"] == 8
        written = 3 if model == "v1" else 9
        assert rep["released"] == written + 2 * (inputs + 2), rep["released"]
        assert rep["live_after_close"] == 0
    # float16 engine inputs: the pipeline writes float16 (close to the float32 host path).
    assert report["fp16"] == {"used": "cuda", "dtype": "float16"}
    np.testing.assert_allclose(results["fp16/gpu"], results["fp16/host"], atol=2e-3)
    # Ten threads on one Assessor: each thread's results are what it gets alone.
    np.testing.assert_allclose(results["threads/got"], results["threads/alone"], atol=1e-6)
    assert report["threads"]["live_after_close"] == 0
