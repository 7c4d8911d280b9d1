"""`saliq export triton`: the model repository's files.

Triton itself is not run here (it cannot be installed on these machines). The configs are
checked by a small protobuf-text parser (structure, required fields, names) and, where the
`tritonclient` wheel is importable, against Triton's own ModelConfig message definitions.
The preprocessing model's `execute` is called with a fake `triton_python_backend_utils`:
this tests OUR preprocessing step, not Triton's Python backend.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import py_compile
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from saliq.export.triton import (
    ENSEMBLE_SUFFIX,
    PREPROCESS_SUFFIX,
    TritonExportError,
    export_triton,
    pbtxt_string,
)
from saliq.preprocess import Preprocessor
from saliq.spec import METADATA_KEY, ModelSpec

# -- a minimal protobuf text-format parser: enough to read back what we write -------------

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([^\s{}\[\]:,"]+))')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            if text[pos:].strip():
                raise ValueError(f"cannot tokenise at {text[pos : pos + 20]!r}")
            break
        pos = match.end()
        if match.group(1):
            continue
        out.append(match.group(2) or match.group(3) or match.group(4))
    return out


def _scalar(token: str):
    if token.startswith('"'):
        return json.loads(token)  # our escapes (\\ \" \n) are JSON-compatible
    try:
        return int(token)
    except ValueError:
        return token  # enum


def _parse_message(tokens: list[str], pos: int, end: str | None) -> tuple[dict, int]:
    fields: dict[str, list] = {}
    while pos < len(tokens) and tokens[pos] != end:
        key = tokens[pos]
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"bad field name {key!r}"
        pos += 1
        if tokens[pos] == ":":
            pos += 1
        values, pos = _parse_value(tokens, pos)
        fields.setdefault(key, []).extend(values)
    if end is not None:
        assert pos < len(tokens), "unbalanced braces"
        pos += 1
    return fields, pos


def _parse_value(tokens: list[str], pos: int) -> tuple[list, int]:
    token = tokens[pos]
    if token == "{":
        message, pos = _parse_message(tokens, pos + 1, "}")
        return [message], pos
    if token == "[":
        values: list = []
        pos += 1
        while tokens[pos] != "]":
            if tokens[pos] == ",":
                pos += 1
                continue
            more, pos = _parse_value(tokens, pos)
            values.extend(more)
        return [values], pos + 1
    return [_scalar(token)], pos + 1


def parse_pbtxt(text: str) -> dict:
    message, pos = _parse_message(_tokens(text), 0, None)
    return message


def one(message: dict, key: str):
    values = message.get(key, [])
    assert len(values) == 1, f"{key}: expected one value, got {values}"
    return values[0]


def tensors(message: dict, key: str) -> dict[str, dict]:
    return {one(t, "name"): t for t in one(message, key)} if key in message else {}


def params(message: dict) -> dict[str, str]:
    return {one(p, "key"): one(one(p, "value"), "string_value") for p in message["parameters"]}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(smoke_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("triton") / "models"
    folder = export_triton(smoke_run["onnx"], root, max_batch=8, instance_count=2)
    return {"root": root, "folder": folder, "name": folder.name}


def _config(repo, suffix: str = "") -> dict:
    return parse_pbtxt((repo["root"] / (repo["name"] + suffix) / "config.pbtxt").read_text())


def test_layout(repo):
    name, root = repo["name"], repo["root"]
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [name, name + PREPROCESS_SUFFIX, name + ENSEMBLE_SUFFIX]
    )
    assert (root / name / "1" / "model.onnx").is_file()
    assert (root / (name + PREPROCESS_SUFFIX) / "1" / "model.py").is_file()
    assert (root / (name + ENSEMBLE_SUFFIX) / "1").is_dir()


def test_network_config(repo, smoke_run):
    config = _config(repo)
    spec = ModelSpec.from_json(params(config)[METADATA_KEY])
    assert spec.name == repo["name"]
    assert one(config, "name") == repo["name"]
    assert one(config, "platform") == "onnxruntime_onnx"
    assert one(config, "max_batch_size") == 8
    inputs, outputs = tensors(config, "input"), tensors(config, "output")
    assert set(inputs) == set(spec.inputs) and set(outputs) == set(spec.outputs)
    assert one(inputs["image"], "dims") == [3, *spec.input_size]  # no batch axis
    assert one(inputs["image"], "data_type") == "TYPE_FP32"
    assert one(outputs["score"], "dims") == [1]
    assert one(one(outputs["score"], "reshape"), "shape") == []
    assert one(outputs["saliency"], "dims") == [1, *spec.saliency_size]
    batching = one(config, "dynamic_batching")
    assert one(batching, "preferred_batch_size") == [4, 8]
    assert one(batching, "max_queue_delay_microseconds") == 100
    group = one(config, "instance_group")[0]
    assert one(group, "count") == 2 and one(group, "kind") == "KIND_GPU"


def test_network_dims_match_the_onnx_graph(repo):
    import onnxruntime as ort

    config = _config(repo)
    session = ort.InferenceSession(str(repo["folder"] / "1" / "model.onnx"))
    feeds = {i.name: np.zeros([2, *i.shape[1:]], np.float32) for i in session.get_inputs()}
    outs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    for name, tensor in tensors(config, "output").items():
        expected = one(tensor.get("reshape", [{"shape": [one(tensor, "dims")]}])[0], "shape")
        assert list(outs[name].shape[1:]) == expected, name


def test_preprocess_config(repo):
    config = _config(repo, PREPROCESS_SUFFIX)
    assert one(config, "backend") == "python"
    assert one(config, "max_batch_size") == 8
    frame = tensors(config, "input")["FRAME"]
    assert one(frame, "data_type") == "TYPE_UINT8" and one(frame, "dims") == [-1, -1, 3]
    network = tensors(_config(repo), "input")
    for name, tensor in tensors(config, "output").items():  # what the network takes
        assert one(tensor, "dims") == one(network[name], "dims")
        assert one(tensor, "data_type") == one(network[name], "data_type")
    assert params(config)["saliq_frame_format"] == "BGR"
    assert "dynamic_batching" not in config  # different frame sizes are never merged


def test_ensemble_maps_names_consistently(repo):
    ensemble = _config(repo, ENSEMBLE_SUFFIX)
    assert one(ensemble, "platform") == "ensemble"
    assert one(ensemble, "name") == repo["name"] + ENSEMBLE_SUFFIX
    steps = one(one(ensemble, "ensemble_scheduling"), "step")
    available = set(tensors(ensemble, "input"))
    for step in steps:
        model = _config(repo, one(step, "model_name")[len(repo["name"]) :])
        assert one(step, "model_version") == -1
        model_inputs, model_outputs = tensors(model, "input"), tensors(model, "output")
        mapped_in = {one(m, "key"): one(m, "value") for m in step["input_map"]}
        assert set(mapped_in) == set(model_inputs)  # every input of the step is fed
        assert set(mapped_in.values()) <= available  # from the request or an earlier step
        for m in step["output_map"]:
            assert one(m, "key") in model_outputs
            available.add(one(m, "value"))
    ens_outputs = tensors(ensemble, "output")
    assert set(ens_outputs) <= available and set(ens_outputs) == {"score", "saliency"}
    network_outputs = tensors(_config(repo), "output")
    for name, tensor in ens_outputs.items():
        assert one(tensor, "dims") == one(network_outputs[name], "dims")
    assert params(ensemble)[METADATA_KEY] == params(_config(repo))[METADATA_KEY]


def _model_config_message():
    """Triton's ModelConfig protobuf class from the tritonclient wheel, if installed."""
    found = importlib.util.find_spec("tritonclient")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # protobuf only: no grpc import
    return module.ModelConfig


def test_configs_parse_as_triton_model_config(repo):
    message = _model_config_message()
    if message is None:
        pytest.skip(
            "tritonclient is not installed (pip install tritonclient): strict check skipped"
        )
    from google.protobuf import text_format

    for suffix in ("", PREPROCESS_SUFFIX, ENSEMBLE_SUFFIX):
        text = (repo["root"] / (repo["name"] + suffix) / "config.pbtxt").read_text()
        config = text_format.Parse(text, message())
        assert config.name == repo["name"] + suffix
        ModelSpec.from_json(config.parameters[METADATA_KEY].string_value)


def test_pbtxt_string_escapes_round_trip():
    text = 'a "quoted" \\ back\nslash'
    assert parse_pbtxt(f"x: {pbtxt_string(text)}")["x"] == [text]


# -- the Python-backend model, with a fake pb_utils ---------------------------------------


class _Tensor:
    def __init__(self, name: str, array: np.ndarray):
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class _Response:
    def __init__(self, output_tensors, error=None):
        self.output_tensors, self.error = output_tensors, error


class _Request:
    def __init__(self, **inputs):
        self.inputs = {k: _Tensor(k, v) for k, v in inputs.items()}


def _fake_pb_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _Tensor
    module.InferenceResponse = _Response
    module.TritonError = str
    module.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
    return module


@pytest.fixture()
def python_model(repo, monkeypatch):
    path = repo["root"] / (repo["name"] + PREPROCESS_SUFFIX) / "1" / "model.py"
    py_compile.compile(str(path), cfile=str(path.parent / "model.pyc"), doraise=True)
    (path.parent / "model.pyc").unlink()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    spec = importlib.util.spec_from_file_location("_saliq_triton_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = _config(repo, PREPROCESS_SUFFIX)
    # Triton hands the Python model its config as JSON; parameters as {key: {string_value}}
    as_json = {
        "name": one(config, "name"),
        "parameters": {k: {"string_value": v} for k, v in params(config).items()},
    }
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(as_json), "model_instance_kind": "CPU"})
    yield model
    model.finalize()


def _photos_bgr(count: int, size=(120, 90)) -> np.ndarray:
    from saliq.frames import parity_frames

    frames = [f[:, :, ::-1] for f in parity_frames(count, size)]
    return np.ascontiguousarray(np.stack(frames))


def test_python_model_execute_preprocesses_frames(python_model, repo):
    frames = _photos_bgr(3)
    other = _photos_bgr(1, size=(64, 200))  # a second request of another size
    responses = python_model.execute([_Request(FRAME=frames), _Request(FRAME=other)])
    assert len(responses) == 2 and all(r.error is None for r in responses)
    spec = python_model.spec
    expected = Preprocessor.from_spec(spec)(list(frames), fmt="BGR")
    got = {t.name(): t.as_numpy() for t in responses[0].output_tensors}
    assert set(got) == set(spec.inputs)
    np.testing.assert_array_equal(got["image"], expected["image"])
    assert got["image"].shape == (3, 3, *spec.input_size) and got["image"].dtype == np.float32
    assert responses[1].output_tensors[0].as_numpy().shape == (1, 3, *spec.input_size)
    # and the network takes it: the ensemble's second step, run here with ONNX Runtime
    import onnxruntime as ort

    session = ort.InferenceSession(str(repo["folder"] / "1" / "model.onnx"))
    score, saliency = session.run(["score", "saliency"], got)
    assert score.shape == (3,) and np.all((score >= 0) & (score <= 1))


def test_python_model_rejects_a_bad_request_without_failing_others(python_model):
    good = _photos_bgr(1)
    responses = python_model.execute(
        [_Request(FRAME=good.astype(np.float32)), _Request(FRAME=good)]
    )
    assert responses[0].error and "uint8" in responses[0].error
    assert responses[1].error is None


# -- atomic writes, no overwrite, TensorRT plans, CLI -------------------------------------


def test_refuses_to_overwrite_and_overwrite_replaces(smoke_run, tmp_path):
    root = tmp_path / "models"
    export_triton(smoke_run["onnx"], root, name="m", preprocessing=False)
    marker = root / "m" / "marker"
    marker.write_text("old")
    with pytest.raises(TritonExportError, match="already exist"):
        export_triton(smoke_run["onnx"], root, name="m")
    assert marker.exists()  # untouched
    export_triton(smoke_run["onnx"], root, name="m", overwrite=True)
    assert not marker.exists()
    assert sorted(p.name for p in root.iterdir()) == ["m", "m_ensemble", "m_preprocess"]


def test_failure_leaves_the_repository_untouched(smoke_run, tmp_path, monkeypatch):
    import saliq.export.triton as triton

    root = tmp_path / "models"
    export_triton(smoke_run["onnx"], root, name="m", preprocessing=False)
    before = (root / "m" / "config.pbtxt").read_text()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(triton, "ensemble_config", broken)
    with pytest.raises(OSError, match="disk full"):
        export_triton(smoke_run["onnx"], root, name="m", overwrite=True, max_batch=4)
    assert sorted(p.name for p in root.iterdir()) == ["m"]  # no temp folder left
    assert (root / "m" / "config.pbtxt").read_text() == before


def test_tensorrt_plan_with_sidecar(smoke_run, tmp_path):
    import onnx

    from saliq.engine_sidecar import EngineSidecar, Profile, sha256_file, write_sidecar
    from saliq.export.onnx import spec_of_onnx

    spec = spec_of_onnx(onnx.load(str(smoke_run["onnx"])))
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not a real plan: no TensorRT here")
    write_sidecar(
        plan,
        EngineSidecar(spec, "10.3.0", "8.7", "fp16", (Profile(1, 4, 8),), sha256_file(plan)),
    )
    with pytest.raises(TritonExportError, match="batch <= 8"):
        export_triton(plan, tmp_path / "models", max_batch=16)
    folder = export_triton(plan, tmp_path / "models", max_batch=8, preprocessing=False)
    config = parse_pbtxt((folder / "config.pbtxt").read_text())
    assert one(config, "platform") == "tensorrt_plan"
    assert (folder / "1" / "model.plan").read_bytes() == plan.read_bytes()
    sidecar = json.loads((folder / "1" / "model.plan.json").read_text())
    assert sidecar["plan_sha256"] == sha256_file(folder / "1" / "model.plan")


def test_unknown_suffix_and_missing_spec(tmp_path):
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"x")
    with pytest.raises(TritonExportError, match="kind"):
        export_triton(odd, tmp_path / "models")


def test_cli_register(smoke_run, tmp_path, capsys):
    from saliq.export.cli_triton import register

    parser = argparse.ArgumentParser(prog="saliq")
    export_sub = (
        parser.add_subparsers(dest="command").add_parser("export").add_subparsers(dest="format")
    )
    register(export_sub)
    args = parser.parse_args(
        [
            "export",
            "triton",
            str(smoke_run["onnx"]),
            str(tmp_path / "models"),
            "--name",
            "cli",
            "--max-batch",
            "4",
            "--cpu",
        ]
    )
    assert args.func(args) == 0
    config = parse_pbtxt((tmp_path / "models" / "cli" / "config.pbtxt").read_text())
    assert one(one(config, "instance_group")[0], "kind") == "KIND_CPU"
    assert "tritonserver --model-repository" in capsys.readouterr().out


# -- a preprocessing-v2 model (the shipped default: whole frame + native crop views) --------


def test_views_model_repository_serves_crop_views(tmp_path, monkeypatch):
    """The ensemble carries the v2 inputs (crops, crop_weights) from the preprocessing step to
    the network, with the dims the spec declares, and the network scores what it gets."""
    import onnxruntime as ort

    import saliq

    default = saliq.load("default")
    assert default.spec.preprocessing_version == 2  # else this test tests nothing new
    from saliq.assess import default_model_path

    folder = export_triton(default_model_path("onnx"), tmp_path / "models", max_batch=4)
    repo = {"root": tmp_path / "models", "folder": folder, "name": folder.name}
    spec = ModelSpec.from_json(params(_config(repo))[METADATA_KEY])
    crops, size = spec.view_config["detail_crops"], spec.view_config["crop_size"]
    network = tensors(_config(repo), "input")
    assert one(network["crops"], "dims") == [crops, 3, size, size]
    assert one(network["crop_weights"], "dims") == [crops]
    pre_outputs = tensors(_config(repo, PREPROCESS_SUFFIX), "output")
    assert set(pre_outputs) == set(spec.inputs) == set(network)
    for name, tensor in pre_outputs.items():
        assert one(tensor, "dims") == one(network[name], "dims"), name
    ens_outputs = tensors(_config(repo, ENSEMBLE_SUFFIX), "output")
    assert set(ens_outputs) == set(spec.outputs) and "region_scores" in ens_outputs

    path = folder.parent / (folder.name + PREPROCESS_SUFFIX) / "1" / "model.py"
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    module_spec = importlib.util.spec_from_file_location("_saliq_triton_views", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = _config(repo, PREPROCESS_SUFFIX)
    model = module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(
                {
                    "name": one(config, "name"),
                    "parameters": {k: {"string_value": v} for k, v in params(config).items()},
                }
            ),
            "model_instance_kind": "CPU",
        }
    )
    frames = _photos_bgr(2, size=(640, 360))  # larger than a crop: crops at native scale
    (response,) = model.execute([_Request(FRAME=frames)])
    model.finalize()
    assert response.error is None
    got = {t.name(): t.as_numpy() for t in response.output_tensors}
    expected = Preprocessor.from_spec(spec)(list(frames), fmt="BGR")
    for name in spec.inputs:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"))
    outs = dict(zip(spec.outputs, session.run(list(spec.outputs), got)))
    direct = default.backend.infer({n: expected[n] for n in spec.inputs})
    np.testing.assert_allclose(outs["score"], direct["score"], atol=1e-6)
