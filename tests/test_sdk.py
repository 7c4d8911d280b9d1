import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import saliq
from saliq.errors import IncompatibleModelError, InvalidImageError, ModelFormatError


def _photo(h=240, w=320):
    from skimage import data

    return cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_AREA)  # RGB


def test_onnx_and_torch_backends_agree(smoke_run):
    frames = [_photo(), cv2.GaussianBlur(_photo(), (0, 0), 3)]
    onnx_scores = [r.score for r in saliq.load(smoke_run["onnx"]).assess(frames, color="RGB")]
    torch_scores = [
        r.score for r in saliq.load(smoke_run["checkpoint"]).assess(frames, color="RGB")
    ]
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-4)


def test_assess_inputs(smoke_run, tmp_path):
    assessor = saliq.load(smoke_run["onnx"], backend="onnxruntime")
    rgb = _photo()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), bgr)
    from_path = assessor.assess(str(path))
    from_bgr = assessor.assess(bgr)
    from_rgb = assessor.assess(rgb, color="RGB")
    assert from_path.score == pytest.approx(from_bgr.score, abs=1e-6)
    assert from_rgb.score == pytest.approx(from_bgr.score, abs=1e-6)
    assert 0.0 <= from_bgr.score <= 1.0
    gray = assessor.assess(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    assert 0.0 <= gray.score <= 1.0
    batch = assessor.assess([bgr, str(path), rgb[:100, :80].copy()])
    assert isinstance(batch, list) and len(batch) == 3
    assert batch[0].score == pytest.approx(from_bgr.score, abs=1e-5)
    full = assessor.assess(bgr, saliency_map=True)
    assert full.saliency_full.shape == bgr.shape[:2]
    assert full.saliency.max() == pytest.approx(1.0) or full.saliency.max() == 0


def test_bad_images_raise_typed_errors(smoke_run, tmp_path):
    assessor = saliq.load(smoke_run["onnx"])
    with pytest.raises(InvalidImageError):
        assessor.assess(str(tmp_path / "missing.jpg"))
    with pytest.raises(InvalidImageError):
        assessor.assess(np.full((32, 32, 3), np.nan, np.float32))
    with pytest.raises(InvalidImageError):
        assessor.assess(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(InvalidImageError):
        assessor.assess([])
    with pytest.raises(InvalidImageError, match="float32"):
        assessor.backend.infer({"image": np.zeros((1, 3, 64, 64), np.float64)})
    with pytest.raises(InvalidImageError, match="shape"):
        assessor.backend.infer({"image": np.zeros((1, 3, 32, 64), np.float32)})


def test_model_file_errors(smoke_run, tmp_path):
    with pytest.raises(ModelFormatError, match="not found"):
        saliq.load(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelFormatError, match="not a loadable ONNX"):
        saliq.load(junk)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        str(foreign),
    )
    with pytest.raises(ModelFormatError, match="without a saliq spec"):
        saliq.load(foreign)
    proto = onnx.load(str(smoke_run["onnx"]))
    for prop in proto.metadata_props:
        prop.value = prop.value.replace('"preprocessing_version": 1', '"preprocessing_version": 7')
    future = tmp_path / "future.onnx"
    onnx.save(proto, str(future))
    with pytest.raises(IncompatibleModelError, match="preprocessing version 7"):
        saliq.load(future)
    with pytest.raises(ModelFormatError, match="unknown model file type"):
        saliq.load(tmp_path / "x.txt") if (tmp_path / "x.txt").write_text("x") else None


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "saliq.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_score_table_json_and_errors(smoke_run, tmp_path):
    good = tmp_path / "imgs"
    good.mkdir()
    for i in range(3):
        cv2.imwrite(str(good / f"{i}.jpg"), _photo()[:, :, ::-1])
    out = _cli("score", str(good), "--model", str(smoke_run["onnx"]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["image", "score"]
    assert len(out.stdout.splitlines()) == 4
    out = _cli("score", str(good / "0.jpg"), "--model", str(smoke_run["onnx"]), "--json")
    import json

    assert 0 <= json.loads(out.stdout)["results"][0]["score"] <= 1
    data = (good / "0.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("hello")
    for bad in ("cut.jpg", "text.jpg", "missing.jpg"):
        out = _cli("score", str(tmp_path / bad), "--model", str(smoke_run["onnx"]))
        assert out.returncode == 2
        assert out.stderr.startswith("saliq: error:") and len(out.stderr.splitlines()) == 1
        assert "Traceback" not in out.stderr
    out = _cli("score", str(good / "0.jpg"), "--model", str(tmp_path / "text.jpg"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
