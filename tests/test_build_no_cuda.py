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
