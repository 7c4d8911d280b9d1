"""The CUDA path of saliq._preproc, run on the host (tests/cuda_emulation/), against the oracle.

On a machine without a GPU this is the only execution of csrc/preproc_cuda.cu: its launcher
and kernels, compiled by g++ against a host stand-in of the CUDA runtime, run the real
bindings' ``preprocess_cuda`` in a fresh interpreter, under AddressSanitizer where g++ has it
(an out-of-bounds access aborts the probe with a report: a memcheck for the index math). The
outputs must meet the CPU tests' tolerances against the float64 oracle, for host and "device"
inputs and outputs (``__cuda_array_interface__`` and DLPack over host memory), padded rows,
mixed frame sizes, and an allocation failure must surface as an exception.
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
from .test_native_preprocess import MEAN, STD, _assert_close

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
OUT_HW = (32, 48)
FORMATS = {"BGR": 3, "RGB": 3, "BGRA": 4, "RGBA": 4, "GRAY": 1, "NV12": 0}

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


class Dev:
    # "Device" memory in the emulation is host memory: a CAI over a numpy array.
    def __init__(self, a):
        self.a = a
        self.__cuda_array_interface__ = {
            "shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, False),
            "version": 3, "strides": None if a.flags.c_contiguous else a.strides,
        }


def empty_out(n, dtype):
    shapes = {"image": (n, 3, H, W), "gradient": (n, 1, H, W), "prior": (n, 1, H // 4, W // 4)}
    return {k: np.full(s, np.nan, dtype) for k, s in shapes.items()}


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
            sizes = [(2, 2), (38, 54)] if fmt == "NV12" else [(1, 1), (37, 53)]
            for i, hw in enumerate(sizes):
                frames[f"{fmt}_{depth}_{i}"] = _frame(fmt, depth, hw, rng)
    frames["batch_bgr"] = rng.integers(0, 256, (3, 45, 70, 3), dtype=np.uint8)
    frames["padded_rgb"] = rng.integers(0, 256, (29, 64, 3), dtype=np.uint8)
    frames["big_bgr"] = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    np.savez(out / "inputs.npz", **frames)
    env = {**os.environ}
    if asan:
        env.update(LD_PRELOAD=asan, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")

    def probe(**extra_env: str):
        run = subprocess.run(
            [sys.executable, "-c", PROBE, str(module), str(REPO), str(out / "inputs.npz")]
            + [str(out / "outputs.npz")],
            cwd=out,
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
        return json.loads(run.stdout.strip().splitlines()[-1]), dict(np.load(out / "outputs.npz"))

    return {"frames": frames, "probe": probe, "asan": asan}


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


def test_emulated_allocation_failure_is_an_exception(emulated):
    report, results = emulated["probe"](SALIQ_EMU_FAIL_ALLOC="3")
    assert report["failure"].startswith("CUDA preprocessing failed: "), report["failure"]
    assert "cudaMallocAsync" in report["failure"] or "alloc" in report["failure"]
    assert np.isfinite(results["after_failure_image"]).all()  # the next call works


def test_launch_rewrite_covers_every_kernel():
    source = (REPO / "csrc" / "preproc_cuda.cu").read_text()
    rewritten = emulation.emulated_source(source)
    assert "<<<" not in rewritten
    assert rewritten.count("saliq_emu::launch<") == source.count("<<<")
    assert "saliq_emu::launch<true>(k_prior" in rewritten  # the kernel with __syncthreads
