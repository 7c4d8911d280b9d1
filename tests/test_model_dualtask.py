"""Dual-task models of Kirillov et al. (train/models/dualtask.py): the three Table II variants,
the closed-form GradCAM against autograd, ONNX export + SDK scoring, the configs/dualtask rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

import saliq  # noqa: E402
from saliq.errors import ConfigError  # noqa: E402
from saliq.train.checkpoint import save_checkpoint  # noqa: E402
from saliq.train.config import load_config  # noqa: E402
from saliq.train.losses import LossContext, build_loss  # noqa: E402
from saliq.train.models.dualtask import (  # noqa: E402  (importing registers "dualtask")
    DualTask,
    gradcam_autograd,
    gradcam_map,
    mlp_logit_and_gradient,
)
from tests.tiny_specs import tiny_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZE = 64  # 2x2 cells at stride 32, 4x4 at stride 16
TINY = {"backbone": "efficientnet_lite0", "feature_dim": 16, "hidden": [8]}
MODES = ("none", "decoder", "gradcam")
LOSS = [
    {"name": "l1", "weight": 0.8},
    {"name": "tv", "on": "saliency", "weight": 0.2},
]  # the configs'


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster than two on a shared 2-core machine (the
    second thread only adds synchronisation); restored for the rest of the session."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(**overrides) -> DualTask:
    """A tiny model whose backbone features are O(1): a random-init EfficientNet-Lite's
    activations shrink ~10x per stage (its last stage is ~1e-8), which would make every map
    trivially zero; Kaiming-initialised convs keep the GradCAM comparisons meaningful."""
    torch.manual_seed(0)
    model = DualTask(**{**TINY, **overrides})
    for module in model.backbone.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model


def _image(batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _targets(batch: int, cells: int) -> dict[str, torch.Tensor]:
    sal = torch.rand(batch, 1, cells, cells, generator=torch.Generator().manual_seed(1))
    return {"score": torch.linspace(0.2, 0.9, batch), "saliency": sal / sal.sum((2, 3), True)}


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 96 * 80, dtype=np.float32).reshape(80, 96)
    return [
        np.clip(base[..., None] + rng.normal(0, 10 + 20 * i, (80, 96, 3)), 0, 255).astype(np.uint8)
        for i in range(n)
    ]


# -- the three variants ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_forward_backward_and_shapes(mode):
    early = ("stem.", "stages.0.", "stages.1.", "stages.2.")  # a shorter backward (CPU time)
    model = _model(saliency=mode, frozen_prefixes=early).train()
    out = model({"image": _image(4)})
    assert model.outputs == (("score",) if mode == "none" else ("score", "saliency"))
    assert set(out) == {*model.outputs, "features"}
    assert out["score"].shape == (4,) and ((out["score"] > 0) & (out["score"] < 1)).all()
    assert out["features"].shape == (4, 16)
    if mode != "none":
        assert out["saliency"].shape == (4, 1, 2, 2) and (out["saliency"] >= 0).all()
        assert out["saliency"].amax() > 0  # a live map, not a degenerate zero
    terms = LOSS if mode != "none" else LOSS[:1]
    values = build_loss(terms)(LossContext(model, {}, out, _targets(4, 2)))
    assert torch.isfinite(values["loss"])
    values["loss"].backward()
    for prefix in ("backbone.stages.6", "neck.", "head."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), prefix
    if mode == "decoder":
        assert model.decoder.weight.grad.abs().sum() > 0


def test_toggles_change_the_module_tree_as_documented():
    keys = {mode: set(_model(saliency=mode).state_dict()) for mode in MODES}
    # GradCAM-Loss adds no parameters: the same tree as the score-only baseline
    assert keys["gradcam"] == keys["none"]
    assert keys["decoder"] - keys["none"] == {"decoder.weight", "decoder.bias"}
    assert not keys["none"] - keys["decoder"]
    assert _model(saliency="decoder").decoder.weight.shape == (1, 16, 1, 1)  # a 1x1 conv
    # feature_dim: null reads the last stage as it is (no neck); 320 channels for Lite0
    bare = _model(feature_dim=None)
    assert bare.neck is None and not any(k.startswith("neck.") for k in bare.state_dict())
    assert bare.head.net[0].in_features == 320
    # several stages: fused at the finer stride, so the map is 4x4 at 64 px
    fused = _model(feature_strides=[16, 32], saliency="decoder")
    assert fused.saliency_stride == 16
    assert fused({"image": _image(2)})["saliency"].shape == (2, 1, 4, 4)


def test_gradcam_loss_reaches_features_not_the_detached_weights():
    """a_k is detached: a saliency-only loss trains the feature map, never the MLP head."""
    model = _model(saliency="gradcam").train()
    out = model({"image": _image(4)})
    build_loss([{"name": "tv"}])(LossContext(model, {}, out, _targets(4, 2)))["loss"].backward()
    assert all(p.grad is None for p in model.head.parameters())
    assert model.neck.proj.weight.grad.abs().sum() > 0


def test_bad_configuration_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="saliency='salmap' is unknown"):
        DualTask(**TINY, saliency="salmap")
    with pytest.raises(ConfigError, match="needs feature_dim"):
        DualTask(backbone="efficientnet_lite0", feature_dim=None, feature_strides=[16, 32])
    with pytest.raises(ConfigError, match="subset of the backbone's strides"):
        DualTask(**TINY, feature_strides=[64])


# -- GradCAM: closed form == autograd ----------------------------------------------------------


def _autograd_weights(head, a_map: torch.Tensor) -> torch.Tensor:
    """a_k = (1/Z) sum_ij dz/dA^k_ij with Z = h w, by autograd (z the pre-sigmoid logit)."""
    probe = a_map.detach().requires_grad_(True)
    logit = head.net(probe.mean((2, 3))).squeeze(1)
    (grad,) = torch.autograd.grad(logit.sum(), probe)
    return grad.mean((2, 3))


@pytest.mark.parametrize("hidden", [[], [8], [12, 6]])
@pytest.mark.parametrize("training", [False, True])
def test_closed_form_gradcam_matches_autograd(hidden, training):
    """On signed random maps (feature_dim: null reads Lite's linear last stage, which has
    negative values), in eval and in training (dropout masks drawn from the same seed)."""
    model = _model(hidden=hidden, dropout=0.5).train(training)
    a_map = torch.randn(5, 16, 3, 4, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)
    logit, grad = mlp_logit_and_gradient(model.head.net, a_map.mean((2, 3)))
    closed = gradcam_map(a_map, grad)
    torch.manual_seed(3)
    weights = _autograd_weights(model.head, a_map)
    torch.manual_seed(3)
    reference = gradcam_autograd(model.head, a_map)
    torch.manual_seed(3)
    logit_ref = model.head.net(a_map.mean((2, 3))).squeeze(1)
    torch.testing.assert_close(logit, logit_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close((grad / 12).expand_as(weights), weights, atol=1e-7, rtol=1e-5)
    assert (closed - reference).abs().max() <= 1e-5
    assert reference.amax() > 1e-3 and (reference == 0).any()  # both ReLU sides exercised
    if training and hidden:  # dropout really applied: another mask gives another gradient
        torch.manual_seed(4)
        _, other = mlp_logit_and_gradient(model.head.net, a_map.mean((2, 3)))
        assert not torch.allclose(other, grad)


def test_model_saliency_is_the_autograd_gradcam_and_needs_no_autograd():
    model = _model(saliency="gradcam").eval()
    image = _image(3)
    with torch.no_grad():  # the closed form runs where autograd is off (evaluation, export)
        out = model({"image": image})
        a_map = model.feature_map(image)
    assert not out["saliency"].requires_grad
    reference = gradcam_autograd(model.head, a_map)
    assert reference.amax() > 1e-3
    assert (out["saliency"] - reference).abs().max() <= 1e-5
    # and the same through a grad-enabled pass (training), map values unchanged
    torch.testing.assert_close(model({"image": image})["saliency"], reference, atol=1e-5, rtol=0)


# -- export and SDK ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_onnx_export_parity_lint_and_sdk(mode, tmp_path):
    from saliq.export.onnx import export_onnx

    config = {**TINY, "saliency": mode}
    model = _model(saliency=mode).eval()
    spec = tiny_spec(model, "dualtask", config, SIZE, name=f"test-dualtask-{mode}")
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, spec, {"test": mode})
    report = export_onnx(ckpt, tmp_path / "m.onnx", verify_images=2)
    assert report.max_score_diff <= 1e-4
    assert report.lint is not None and report.lint.ok, report.lint.format()
    # the exported graph holds no gradient machinery: plain inference ops only
    assert not {op for op in report.lint.op_counts if "Grad" in op}
    frames = [f[..., ::-1].copy() for f in _frames(3)]  # BGR, the SDK's default
    with saliq.load(ckpt, backend="torch") as by_torch, saliq.load(tmp_path / "m.onnx") as by_ort:
        assert by_ort.spec.outputs == model.outputs
        a, b = by_torch.assess(frames), by_ort.assess(frames)
        image = torch.from_numpy(by_ort.preprocessor(frames, fmt="BGR")["image"])
    for x, y in zip(a, b):
        assert abs(x.score - y.score) <= 1e-4 and 0.0 <= y.score <= 1.0
        if mode == "none":
            assert x.saliency is None and y.saliency is None
        else:
            assert y.saliency.shape == (2, 2)
            np.testing.assert_allclose(x.saliency, y.saliency, atol=1e-4)
    if mode == "gradcam":  # what ONNX Runtime serves is the paper's autograd definition
        with torch.no_grad():
            reference = gradcam_autograd(model.head, model.feature_map(image))[:, 0].numpy()
        assert reference.max() > 1e-3
        peaks = reference.max((1, 2), keepdims=True)  # Result.saliency is max-normalised
        got = np.stack([r.saliency for r in b])
        np.testing.assert_allclose(got, reference / np.where(peaks > 0, peaks, 1), atol=1e-4)


# -- configs/dualtask --------------------------------------------------------------------------

ROWS = {"baseline": ("gradcam", False), "sal_loss": ("decoder", True)}
ROWS |= {"gradcam_loss": ("gradcam", True), "default": ("gradcam", True)}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_config_rows_build_the_model_they_claim(row):
    from saliq.train.trainer import _check_loss_reads_model, build_model

    config = load_config(REPO / "configs" / "dualtask" / f"{row}.yaml", {"model.pretrained": False})
    mode, saliency_loss = ROWS[row]
    assert config.model.architecture == "dualtask"
    assert config.model.kwargs["saliency"] == mode
    model = build_model(config)
    assert isinstance(model, DualTask) and model.saliency == mode
    assert model.outputs == ("score", "saliency") and model.saliency_stride == 32
    assert ("decoder" in dict(model.named_children())) == (mode == "decoder")
    criterion = build_loss(config.loss)
    _check_loss_reads_model(criterion, model)
    assert ("saliency" in criterion.required_targets) == saliency_loss
    # the rows of the table differ only in the model's saliency switch and the loss
    if saliency_loss:  # Sal-Loss and GradCAM-Loss: one loss, only the saliency source differs
        other = load_config(REPO / "configs" / "dualtask" / "gradcam_loss.yaml")
        assert config.loss == other.loss
    base = load_config(REPO / "configs" / "dualtask" / "baseline.yaml").to_dict()
    mine = config.to_dict()
    assert mine["data"] == base["data"] and mine["optim"] == base["optim"]
    assert mine["seed"] == base["seed"]
    assert {k: v for k, v in mine["model"]["kwargs"].items() if k != "saliency"} == {
        k: v for k, v in base["model"]["kwargs"].items() if k != "saliency"
    }
    # (the configured loss, one step: test_forward_backward_and_shapes uses the same terms)
    assert [t["name"] for t in criterion.config()["terms"]] == (
        ["l1", "tv"] if saliency_loss else ["l1"]
    )
