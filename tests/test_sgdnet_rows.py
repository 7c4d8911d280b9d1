"""SGDNet's Table 4 as configuration (configs/sgdnet/): each row builds the model it claims,
trains at tiny size, and the score-only Baseline exports and serves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch.nn.functional as F  # noqa: E402

import saliq  # noqa: E402
from saliq.errors import ConfigError  # noqa: E402
from saliq.train.checkpoint import save_checkpoint  # noqa: E402
from saliq.train.config import load_config  # noqa: E402
from saliq.train.losses import LossContext, build_loss  # noqa: E402
from saliq.train.models.blocks import SqueezeExcite  # noqa: E402
from saliq.train.models.sgdnet import SGDNet  # noqa: E402
from tests.tiny_specs import tiny_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "sgdnet"
SIZE = 64
TINY = {"feature_dim": 32, "hidden": [16]}
# row -> (channel attention, saliency: none | direct (prior input) | predicted, TV loss)
ROWS = {
    "table4_1_baseline": (False, "none", False),
    "table4_2_ca": (True, "none", False),
    "table4_3_direct": (False, "direct", False),
    "table4_4_direct_ca": (True, "direct", False),
    "table4_5_sgdnet": (False, "predicted", True),
    "table4_6_sgdnet_ca": (True, "predicted", True),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread beats two on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(row: str):
    return load_config(CONFIGS / f"{row}.yaml", {"model.pretrained": False})


def _inputs(model: SGDNet, batch: int = 4) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    inputs = {"image": torch.randn(batch, 3, SIZE, SIZE, generator=gen)}
    if "prior" in model.inputs:
        inputs["prior"] = torch.rand(batch, 1, SIZE // 4, SIZE // 4, generator=gen)
    return inputs


@pytest.mark.parametrize("row", sorted(ROWS))
def test_row_config_builds_the_model_it_claims(row):
    from saliq.train.trainer import _check_loss_reads_model, build_model

    use_se, saliency, tv = ROWS[row]
    config = _config(row)
    model = build_model(config)
    assert isinstance(model, SGDNet)
    assert isinstance(model.se, SqueezeExcite) == use_se
    assert hasattr(model, "saliency_head") == (saliency == "predicted")
    assert model.inputs == (("image", "prior") if saliency == "direct" else ("image",))
    assert model.outputs == (("score",) if saliency == "none" else ("score", "saliency"))
    criterion = build_loss(config.loss)
    _check_loss_reads_model(criterion, model)
    names = [term["name"] for term in criterion.config()["terms"]]
    # Direct trains on quality only: TV on a fixed input map is a constant
    assert names == (["l1", "tv"] if tv else ["l1"])
    assert ("saliency" in criterion.required_targets) == tv
    # every row: same data, seed, budget and trunk; only the Table 4 switches differ
    base, mine = _config("table4_6_sgdnet_ca").to_dict(), config.to_dict()
    for key in ("data", "optim", "seed", "threads", "num_workers"):
        assert mine[key] == base[key], key
    switches = {"use_se", "use_saliency", "direct_saliency"}
    trunk = {k: v for k, v in mine["model"]["kwargs"].items() if k not in switches}
    assert trunk == {k: v for k, v in base["model"]["kwargs"].items() if k not in switches}
    assert {k: v for k, v in mine["model"].items() if k != "kwargs"} == {
        k: v for k, v in base["model"].items() if k != "kwargs"
    }


def test_family_default_is_the_full_model_and_the_shipped_config():
    default = load_config(CONFIGS / "default.yaml").to_dict()
    for other in (
        REPO / "configs" / "sgdnet_lite0_default.yaml",
        CONFIGS / "table4_6_sgdnet_ca.yaml",
    ):
        reference = load_config(other).to_dict()
        for key in ("loss", "data", "optim", "seed"):
            assert default[key] == reference[key], (other.name, key)
        kwargs = {**reference["model"].pop("kwargs"), "use_se": True}
        assert {**default["model"], "kwargs": None} == {**reference["model"], "kwargs": None}
        assert default["model"]["kwargs"] == kwargs


@pytest.mark.parametrize("row", sorted(ROWS))
def test_row_trains_at_tiny_size(row):
    config = _config(row)
    _, saliency, _ = ROWS[row]
    torch.manual_seed(0)
    model = SGDNet(backbone="efficientnet_lite0", **{**config.model.kwargs, **TINY}).train()
    inputs = _inputs(model)
    out = model(inputs)
    assert out["score"].shape == (4,) and out["features"].shape == (4, 32)
    if saliency != "none":
        assert out["saliency"].shape == (4, 1, 4, 4) and (out["saliency"] >= 0).all()
    batch = {"score": torch.linspace(0.1, 0.9, 4), "saliency": torch.full((4, 1, 4, 4), 1 / 16)}
    values = build_loss(config.loss)(LossContext(model, inputs, out, batch))
    values["loss"].backward()
    head = [p.grad for p in model.head.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in head)
    fuse = model.fuse.proj.weight.grad
    assert fuse is not None and fuse.abs().sum() > 0


def test_no_saliency_is_a_score_only_sgdnet():
    torch.manual_seed(0)
    full = SGDNet(**TINY).eval()
    torch.manual_seed(0)
    bare = SGDNet(**TINY, use_saliency=False).eval()
    keys_full, keys_bare = set(full.state_dict()), set(bare.state_dict())
    assert keys_full - keys_bare == {"saliency_head.weight", "saliency_head.bias"}
    assert keys_bare < keys_full
    image = _inputs(bare)["image"]
    with torch.no_grad():
        out = bare({"image": image})
        feats = bare.backbone.forward_features(image)
        f_raw = F.relu(bare.fuse([feats[i] for i in bare.levels]))
        expected = bare.head(bare.se(f_raw).mean((2, 3)))  # no saliency weighting
    assert set(out) == {"score", "features"}
    torch.testing.assert_close(out["score"], expected)
    # the default keeps today's graph: predicted saliency, a saliency output
    assert full.outputs == ("score", "saliency") and full.use_saliency
    with pytest.raises(ConfigError, match="direct_saliency=true .* use_saliency=false"):
        SGDNet(**TINY, direct_saliency=True, use_saliency=False)


def test_direct_rows_read_the_prior():
    torch.manual_seed(0)
    model = SGDNet(**TINY, direct_saliency=True).eval()
    inputs = _inputs(model, batch=2)
    with torch.no_grad():
        out = model(inputs)
        flat = model({**inputs, "prior": torch.ones_like(inputs["prior"])})
    # the saliency output is the prior averaged onto the stride-16 grid
    torch.testing.assert_close(out["saliency"], F.avg_pool2d(inputs["prior"], 4))
    assert not torch.allclose(out["score"], flat["score"])  # the prior weighs the features


def test_score_only_baseline_exports_and_serves(tmp_path):
    from saliq.export.onnx import export_onnx

    config = {"backbone": "efficientnet_lite0", **TINY, "use_se": False, "use_saliency": False}
    torch.manual_seed(0)
    model = SGDNet(**config).eval()
    spec = tiny_spec(model, "sgdnet", config, SIZE, name="test-sgdnet-baseline")
    assert spec.outputs == ("score",) and not spec.saliency
    ckpt = save_checkpoint(tmp_path / "b.safetensors", model, spec)
    report = export_onnx(ckpt, tmp_path / "b.onnx", verify_images=2)
    assert report.max_score_diff <= 1e-4 and report.lint.ok
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (72, 88, 3), dtype=np.uint8) for _ in range(2)]
    with saliq.load(ckpt, backend="torch") as by_torch, saliq.load(tmp_path / "b.onnx") as by_ort:
        for a, b in zip(by_torch.assess(frames), by_ort.assess(frames)):
            assert abs(a.score - b.score) <= 1e-4 and b.saliency is None
