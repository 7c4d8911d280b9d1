import json

import numpy as np
import onnx
import pytest
from safetensors.torch import load_file

from saliq.errors import ModelFormatError
from saliq.export.onnx import ExportVerificationError, export_onnx
from saliq.spec import METADATA_KEY, ModelSpec
from saliq.train.checkpoint import load_checkpoint, read_metadata
from saliq.train.config import load_config
from saliq.train.trainer import LOG_NAME, train


def test_checkpoint_carries_spec_config_metrics_and_split(smoke_run):
    model, spec, config, metrics = load_checkpoint(smoke_run["checkpoint"])
    assert spec.architecture == "sgdnet" and spec.input_size == (64, 64)
    assert set(config["split"]) == {"train", "val", "test"}
    names = [set(v) for v in config["split"].values()]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert "val_grouped_srcc" in metrics and "val_srcc" in metrics
    log = (smoke_run["checkpoint"].parent / LOG_NAME).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2]


def test_resume_continues_from_last_epoch(smoke_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run["checkpoint"].parent, run_dir)
    config = load_config(
        "configs/smoke.yaml",
        {
            "output_dir": str(run_dir),
            "optim.epochs": 3,
            "data.cache_dir": smoke_run["config"].data.cache_dir,
        },
    )
    train(config, resume=True, progress=False)
    epochs = [json.loads(line)["epoch"] for line in (run_dir / LOG_NAME).read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_training_is_deterministic(smoke_run, tmp_path):
    weights = []
    for name in ("a", "b"):
        config = load_config(
            "configs/smoke.yaml",
            {
                "output_dir": str(tmp_path / name),
                "optim.epochs": 1,
                "data.cache_dir": smoke_run["config"].data.cache_dir,
            },
        )
        weights.append(load_file(str(train(config, progress=False))))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert np.array_equal(weights[0][key].numpy(), weights[1][key].numpy()), key


def test_onnx_export_is_checked_and_carries_spec(smoke_run):
    proto = onnx.load(str(smoke_run["onnx"]))
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    spec = ModelSpec.from_json(meta[METADATA_KEY])
    assert spec.io_dtypes == {"image": "float32", "score": "float32", "saliency": "float32"}
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    saliency = next(o for o in proto.graph.output if o.name == "saliency")
    assert [d.dim_value for d in saliency.type.tensor_type.shape.dim[1:]] == [
        1,
        *spec.saliency_size,
    ]
    assert smoke_run["report"].max_score_diff <= 1e-4
    assert smoke_run["report"].images >= 8


def test_export_refuses_and_leaves_nothing(smoke_run, tmp_path):
    target = tmp_path / "refused.onnx"
    with pytest.raises(ExportVerificationError, match="not written"):
        # float32 ONNX Runtime and PyTorch differ by ~1e-7: a 1e-12 gate must refuse
        export_onnx(smoke_run["checkpoint"], target, tolerance=1e-12)
    assert not target.exists()
    assert not list(tmp_path.glob(".refused.onnx.*"))


def test_checkpoint_errors(tmp_path):
    import torch
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ModelFormatError, match="without a saliq spec"):
        read_metadata(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFormatError, match="not a safetensors"):
        read_metadata(junk)
