"""A CPU-only build (SALIQ_CUDA=0) of saliq._preproc works and says why it has no GPU.

Builds the extension from the source tree into a temporary folder, loads that build in a fresh
interpreter (the module's init name must stay `_preproc`, so it is loaded as saliq._preproc
from its path without touching the installed one), and compares its CPU output with the
installed module's, bit for bit.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from .conftest import require

REPO = Path(__file__).resolve().parents[1]
P = require("saliq._preproc", reason="the native extension is not built")

pytestmark = pytest.mark.slow

PROBE = r"""
import importlib.machinery, importlib.util, json, sys
import numpy as np

path, frames_path, out_path = sys.argv[1:4]
loader = importlib.machinery.ExtensionFileLoader("saliq._preproc", path)
spec = importlib.util.spec_from_file_location("saliq._preproc", path, loader=loader)
mod = importlib.util.module_from_spec(spec)
loader.exec_module(mod)
frames = np.load(frames_path)
report = {
    "file": mod.__file__,
    "built_with_cuda": mod.built_with_cuda,
    "cuda_available": mod.cuda_available(),
    "reason": mod.cuda_unavailable_reason(),
}
try:
    mod.preprocess_cuda(frames["bgr"], "BGR", 32, 48)
    report["preprocess_cuda"] = "returned"
except RuntimeError as e:
    report["preprocess_cuda"] = "RuntimeError: " + str(e)
except Exception as e:
    report["preprocess_cuda"] = type(e).__name__ + ": " + str(e)
outs = {}
for fmt, dtype in (("bgr", "float32"), ("bgr", "float16"), ("nv12", "float32")):
    r = mod.preprocess(frames[fmt], fmt.upper(), 32, 48, dtype=dtype)
    outs.update({f"{fmt}_{dtype}_{k}": v for k, v in r.items()})
np.savez(out_path, **outs)
print(json.dumps(report))
"""


def _compiler() -> str | None:
    cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    return shutil.which(cxx.split()[0]) or shutil.which("c++") or shutil.which("g++")


def test_cpu_only_build(tmp_path):
    if not (REPO / "setup.py").is_file() or not (REPO / "csrc" / "bindings.cpp").is_file():
        pytest.skip("the source tree (setup.py, csrc/) is not beside the tests")
    if _compiler() is None:
        pytest.skip("no C++ compiler found")
    require("pybind11", reason="pybind11 is needed to build the extension")

    lib, temp = tmp_path / "lib", tmp_path / "temp"
    env = {**os.environ, "SALIQ_CUDA": "0"}
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(lib)]
        + ["--build-temp", str(temp)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    built = sorted(lib.rglob("_preproc*.so")) + sorted(lib.rglob("_preproc*.pyd"))
    assert len(built) == 1, f"expected one built module under {lib}, found {built}"
    assert not list(temp.rglob("preproc_cuda.o")), "SALIQ_CUDA=0 still compiled the CUDA part"

    rng = np.random.default_rng(7)
    frames = {
        "bgr": rng.integers(0, 256, (2, 37, 53, 3), dtype=np.uint8),
        "nv12": rng.integers(0, 256, (1, 60, 52), dtype=np.uint8),  # 40x52 frame
    }
    np.savez(tmp_path / "frames.npz", **frames)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(built[0]), str(tmp_path / "frames.npz")]
        + [str(tmp_path / "out.npz")],
        cwd=tmp_path,  # not the repo root: nothing there may shadow the build
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stdout[-3000:] + probe.stderr[-3000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).resolve() == built[0].resolve()
    assert report["built_with_cuda"] is False
    assert report["cuda_available"] is False
    assert "built without CUDA" in report["reason"]
    assert report["preprocess_cuda"].startswith("RuntimeError: "), report["preprocess_cuda"]
    assert "built without CUDA" in report["preprocess_cuda"]

    got = np.load(tmp_path / "out.npz")
    for fmt, dtype in (("bgr", "float32"), ("bgr", "float16"), ("nv12", "float32")):
        want = P.preprocess(frames[fmt], fmt.upper(), 32, 48, dtype=dtype)
        for key, value in want.items():
            other = got[f"{fmt}_{dtype}_{key}"]
            assert other.dtype == value.dtype and other.shape == value.shape, key
            assert np.array_equal(other, value), (
                f"{fmt} {dtype} {key}: the fresh CPU-only build differs from the installed "
                f"module ({P.__file__}); if csrc/ changed since it was built, rebuild it "
                "(pip install -e .)"
            )


FAKE_NVCC = """#!/bin/sh
# Records the arguments setup.py passes, then fails: nothing is compiled.
printf '%s\\n' "$@" > "$SALIQ_TEST_NVCC_ARGS"
exit 3
"""


def _nvcc_args(tmp_path: Path, archs: str | None) -> list[str]:
    """The arguments setup.py's build_ext passes to nvcc, seen by a fake CUDA toolkit."""
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    (home / "include").mkdir()
    (home / "lib64").mkdir()
    (home / "include" / "cuda_runtime.h").write_text("")
    (home / "lib64" / "libcudart_static.a").write_bytes(b"")
    nvcc = home / "bin" / "nvcc"
    nvcc.write_text(FAKE_NVCC)
    nvcc.chmod(0o755)
    record = tmp_path / "nvcc_args.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("SALIQ_CUDA", "SALIQ_CUDA_ARCHS")}
    env.update(CUDA_HOME=str(home), SALIQ_TEST_NVCC_ARGS=str(record))
    if archs is not None:
        env["SALIQ_CUDA_ARCHS"] = archs
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib")]
        + ["--build-temp", str(tmp_path / "temp")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert record.is_file(), "setup.py did not call nvcc:\n" + build.stdout[-2000:] + build.stderr
    assert build.returncode != 0  # the fake nvcc fails the build once it has recorded
    return record.read_text().splitlines()


def test_cuda_build_flags_cover_sm80_and_name_the_archs(tmp_path):
    """setup.py compiles sm_80 (A100, A30: no other cubin or the compute_90 PTX runs there) and
    hands the compiled list to the "no kernel for this GPU" message as a define; with
    SALIQ_CUDA_ARCHS (what benchmarks/gpu_suite.sh sets) only the named archs, both ways."""
    if not (REPO / "setup.py").is_file():
        pytest.skip("the source tree (setup.py) is not beside the tests")
    require("pybind11", reason="pybind11 is needed to run setup.py")
    args = _nvcc_args(tmp_path / "default", None)
    gencode = [a for a in args if a.startswith("-gencode=")]
    assert gencode == [
        f"-gencode=arch=compute_{a},code=sm_{a}" for a in ("75", "80", "86", "87", "89", "90")
    ] + ["-gencode=arch=compute_90,code=compute_90"]
    assert "-DSALIQ_CUDA_ARCHS=75_80_86_87_89_90" in args
    assert args[args.index("-c") + 1].endswith("preproc_cuda.cu")

    args = _nvcc_args(tmp_path / "env", "8.0, 8.7")
    assert [a for a in args if a.startswith("-gencode=")] == [
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_87,code=sm_87",
        "-gencode=arch=compute_87,code=compute_87",
    ]
    assert "-DSALIQ_CUDA_ARCHS=80_87" in args
