"""saliq's TensorRT calls type-check against the TensorRT 10.13 API (tensorrt-stubs + mypy).

TensorRT cannot be installed here, so this is the check that a call saliq makes exists
with that signature. The planted module proves the check has teeth.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "trt_stubs.py"
EXIT_NO_STUBS = 3

pytest.importorskip("mypy", reason="mypy is not installed (pip install mypy)")

PLANTED = """
def build(onnx_path: str) -> bytes:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    config = builder.create_builder_config()
    config.set_flag("FP16")
    plan = builder.build_serialized_network(network)
    return bytes(memoryview(plan))
"""


def _run(*files: str | Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode == EXIT_NO_STUBS:
        pytest.skip(f"tensorrt-stubs could not be downloaded from PyPI: {result.stderr.strip()}")
    return result


def test_saliq_tensorrt_code_typechecks():
    result = _run("export/tensorrt.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_planted_wrong_calls_are_rejected(tmp_path):
    planted = tmp_path / "planted_trt.py"
    planted.write_text(PLANTED)
    result = _run(planted)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'incompatible type "str"; expected "BuilderFlag"' in result.stdout
    assert 'Missing positional argument "config"' in result.stdout
