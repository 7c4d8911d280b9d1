"""Failures a new user hit (issue 8): each is now one clear line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import saliq
from saliq.assess import default_model_path
from saliq.spec import METADATA_KEY

onnx = pytest.importorskip("onnx")
ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "saliq.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line_error(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert line.startswith("saliq: error:") and "\n" not in line, done.stderr
    for needle in needles:
        assert needle in line, line


def test_bad_override_type_is_one_line():
    done = _cli("train", "--config", "configs/smoke.yaml", "--set", "optim.epochs=abc")
    _one_line_error(done, "optim.epochs", "integer")


def test_evaluate_without_scene_data_is_an_error_unless_asked(tmp_path):
    done = _cli("evaluate", "default", "--scene-dir", str(tmp_path / "absent"), "--no-saliency")
    _one_line_error(done, "--allow-partial", "--scene-dir")


def _default_proto():
    return onnx.load(str(default_model_path("onnx")))


def _spec_json(proto) -> str:
    return next(p.value for p in proto.metadata_props if p.key == METADATA_KEY)


def test_foreign_onnx_with_a_copied_spec_is_refused(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 224, 224])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 224, 224])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "foreign", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, _spec_json(_default_proto())
    path = tmp_path / "foreign.onnx"
    onnx.save(model, str(path))
    with pytest.raises(saliq.ModelFormatError, match="graph inputs"):
        saliq.load(path)
    done = _cli("score", "--model", str(path), str(tmp_path / "none.png"))
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_spec_that_lies_about_the_input_size_is_refused(tmp_path):
    proto = _default_proto()
    spec = json.loads(_spec_json(proto))
    spec["input_height"] = 256
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = json.dumps(spec)
    path = tmp_path / "edited.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(saliq.ModelFormatError, match="per-sample shape"):
        saliq.load(path)


def test_assess_after_close_says_so():
    assessor = saliq.load("default")
    frame = np.full((32, 32, 3), 128, np.uint8)
    assert 0 <= assessor.assess(frame).score <= 1
    assessor.close()
    assessor.close()  # idempotent
    with pytest.raises(saliq.BackendClosedError, match="closed"):
        assessor.assess(frame)
    with pytest.raises(saliq.BackendClosedError):
        assessor.backend.infer({})


def test_train_without_scene_data_is_an_error_unless_asked(tmp_path):
    done = _cli(
        "train",
        "--config",
        "configs/sgdnet_lite0_default.yaml",
        "--set",
        f"data.scene_dir={tmp_path / 'absent'}",
        "--set",
        f"output_dir={tmp_path / 'run'}",
    )
    _one_line_error(done, "allow_sample_fallback", "absent")
    assert not (tmp_path / "run" / "best.safetensors").exists()


@pytest.mark.slow
def test_sigterm_during_export_onnx_leaves_no_temporary_file(smoke_run, tmp_path):
    import signal
    import time

    target = tmp_path / "model.onnx"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "saliq.cli",
            "export",
            "onnx",
            str(smoke_run["checkpoint"]),
            "-o",
            str(target),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".model.onnx.*.tmp")):  # atomic_path's hidden file
        assert proc.poll() is None, "export finished before it could be interrupted"
        assert time.monotonic() < deadline, "the temporary file never appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert list(tmp_path.iterdir()) == [], "an interrupted export left files behind"
