"""The model contract, end to end, for every registered architecture and two test models.

build -> forward -> loss -> backward -> checkpoint -> reload -> ONNX -> ONNX Runtime parity
-> ``saliq.load(...).assess(...)`` on both the torch and ONNX Runtime backends. The test
models prove that nothing downstream assumes SGDNet's (image) -> (score, saliency): one is
score-only, one reads ``gradient`` and exports an extra output with a declared shape.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

import saliq  # noqa: E402
from saliq.preprocess import Preprocessor  # noqa: E402
from saliq.train.checkpoint import save_checkpoint  # noqa: E402
from saliq.train.losses import LossContext, build_loss  # noqa: E402
from saliq.train.models import (  # noqa: E402
    IQAModel,
    list_models,
    model_spec,
    register_model,
)
from saliq.train.models.registry import create_model  # noqa: E402
from tests.tiny_specs import tiny_spec  # noqa: E402

SIZE = 64


class ScoreOnly(IQAModel):
    """The smallest model the contract allows: image -> score."""

    inputs = ("image",)
    outputs = ("score",)
    aux_outputs = ("features",)

    def __init__(self, **_: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.fc = nn.Linear(8, 1)

    def forward(self, inputs):
        pooled = torch.relu(self.conv(inputs["image"])).mean((2, 3))
        return {"score": torch.sigmoid(self.fc(pooled)).squeeze(1), "features": pooled}


class GradientReader(IQAModel):
    """Reads image + gradient; exports score, saliency and a per-image 4-vector ``sharpness``."""

    inputs = ("image", "gradient")
    outputs = ("score", "saliency", "sharpness")
    saliency_stride = 8

    def __init__(self, **_: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=8, padding=1)
        self.sal = nn.Conv2d(8, 1, 1)
        self.fc = nn.Linear(8, 1)
        self.sharp = nn.Linear(8, 4)

    def extra_output_shapes(self, height, width):
        return {"sharpness": (4,)}

    def forward(self, inputs):
        x = torch.cat([inputs["image"], inputs["gradient"]], dim=1)
        f = torch.relu(self.conv(x))
        saliency = torch.relu(self.sal(f))
        pooled = (f * saliency).mean((2, 3))
        return {
            "score": torch.sigmoid(self.fc(pooled)).squeeze(1),
            "saliency": saliency,
            "sharpness": self.sharp(pooled),
        }


@register_model
def contract_score_only(**cfg) -> ScoreOnly:
    return ScoreOnly(**cfg)


@register_model
def contract_gradient_reader(**cfg) -> GradientReader:
    return GradientReader(**cfg)


# Tiny configurations of every registered architecture (random init: no weights needed).
TINY = {
    "sgdnet": {"backbone": "efficientnet_lite0", "feature_dim": 32, "hidden": [16]},
    "sgdnet_direct": {
        "backbone": "efficientnet_lite0",
        "feature_dim": 32,
        "hidden": [16],
        "direct_saliency": True,
    },
    # preprocessing version 2: whole view + native-scale crops (docs/preprocessing.md)
    "sgdnet_views": {
        "backbone": "efficientnet_lite0",
        "feature_dim": 32,
        "hidden": [16],
        "crop_dim": 16,
        "crop_hidden": 8,
        "views": {"detail_crops": 2, "crop_size": 32, "salient_crops": 1},
    },
    # the same with a defect-type head: a second exported output, classes named in the spec
    "sgdnet_views_defects": {
        "backbone": "efficientnet_lite0",
        "feature_dim": 32,
        "hidden": [16],
        "crop_dim": 16,
        "crop_hidden": 8,
        "views": {"detail_crops": 2, "crop_size": 32, "salient_crops": 1},
        "defect_classes": ["none", "blur", "noise"],
    },
    # another backbone family through the same builder (torchvision layout, ImageNet mean/std)
    "sgdnet_resnet18": {"backbone": "resnet18", "feature_dim": 32, "hidden": [16]},
    "tres": {
        "backbone": "efficientnet_lite0",
        "d_model": 32,
        "views": {"grid_crops": 2, "grid_size": 64},
    },
    "transla": {"backbone": "efficientnet_lite0", "feature_dim": 32, "feature_strides": [32]},
    "transla_none": {
        "backbone": "efficientnet_lite0",
        "feature_dim": 32,
        "feature_strides": [32],
        "bim": False,
        "sat": False,
        "lfe": False,
    },
}
ARCHITECTURE = {
    "sgdnet_direct": "sgdnet",
    "sgdnet_views_defects": "sgdnet_views",
    "sgdnet_resnet18": "sgdnet",
    "sgdnet_no_saliency": "sgdnet",
    "transla_none": "transla",
    "biosiqnet_separate_grid": "biosiqnet",
    "dualtask_sal_loss": "dualtask",
    "dualtask_baseline": "dualtask",
}
CASES = sorted({*TINY, *list_models()})


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        base = np.linspace(0, 255, 96 * 80, dtype=np.float32).reshape(80, 96)
        noise = rng.normal(0, 10 + 20 * i, (80, 96, 3))
        frames.append(np.clip(base[..., None] + noise, 0, 255).astype(np.uint8))
    return frames


@pytest.mark.parametrize("case", CASES)
def test_contract_end_to_end(case, tmp_path):
    architecture = ARCHITECTURE.get(case, case)
    config = dict(TINY.get(case, {}))
    torch.manual_seed(0)
    model = create_model(architecture, pretrained=False, **config)
    backbone = str(config.get("backbone", "none"))
    spec = tiny_spec(model, architecture, config, SIZE, name=f"test-{case}", backbone=backbone)
    assert spec.inputs == model.inputs and spec.outputs == model.outputs

    # forward -> loss -> backward: every exported output has its declared per-sample shape
    batch = Preprocessor.from_spec(spec)(_frames(4), fmt="RGB")
    inputs = {name: torch.from_numpy(batch[name]) for name in spec.inputs}
    model.train()
    outputs = model(inputs)
    for name in spec.outputs:
        assert tuple(outputs[name].shape) == (4, *spec.tensor_shape(name)), name
    terms = [{"name": "l1"}]
    targets = {"score": torch.tensor([0.9, 0.7, 0.5, 0.3])}
    if spec.saliency:
        terms.append({"name": "tv", "on": "saliency", "weight": 0.25})
        targets["saliency"] = torch.full(
            (4, 1, *spec.saliency_size), 1.0 / np.prod(spec.saliency_size)
        )
    losses = build_loss(terms)(LossContext(model, inputs, outputs, targets))
    losses["loss"].backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)

    # checkpoint -> reload through the runtime's torch backend -> same outputs
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model.eval(), spec, {"test": case})
    frames_bgr = [f[..., ::-1].copy() for f in _frames(3)]
    with torch.no_grad():
        ref = model({k: v[:3] for k, v in inputs.items()})
    with saliq.load(ckpt, backend="torch") as torch_assessor:
        from_torch = torch_assessor.assess(frames_bgr)
    np.testing.assert_allclose([r.score for r in from_torch], ref["score"].numpy(), atol=1e-6)

    # ONNX export (verified against PyTorch before it is written) -> ONNX Runtime parity
    from saliq.export.onnx import export_onnx

    report = export_onnx(ckpt, tmp_path / "m.onnx", verify_images=4)
    assert report.max_score_diff <= 1e-4
    with saliq.load(tmp_path / "m.onnx") as onnx_assessor:
        assert onnx_assessor.spec.outputs == spec.outputs
        from_onnx = onnx_assessor.assess(frames_bgr)
    for a, b in zip(from_torch, from_onnx):
        assert abs(a.score - b.score) <= 1e-4
        assert 0.0 <= b.score <= 1.0
        if spec.saliency:
            assert b.saliency.shape == spec.saliency_size
            np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-4)
        else:
            assert b.saliency is None and a.saliency is None
        extra = [o for o in spec.outputs if o not in ("score", "saliency")]
        assert sorted(b.outputs) == sorted(extra)
        for name in extra:
            assert b.outputs[name].shape == spec.tensor_shape(name)
            np.testing.assert_allclose(a.outputs[name], b.outputs[name], atol=1e-4)


def test_checkpoint_reloads_without_the_backbone_file_it_started_from(tmp_path):
    """A checkpoint names the backbone weights it started from; rebuilding ignores that file."""
    from safetensors.torch import save_file

    from saliq.train.models import build_backbone, model_from_spec

    start = tmp_path / "resnet18.safetensors"
    save_file(
        {k: v.contiguous() for k, v in build_backbone("resnet18").state_dict().items()}, str(start)
    )
    config = {
        "backbone": "resnet18",
        "backbone_weights": str(start),
        "feature_dim": 16,
        "hidden": [8],
    }
    model = create_model("sgdnet", **config).eval()
    spec = model_spec(
        model,
        name="r18",
        architecture="sgdnet",
        backbone="resnet18",
        input_height=SIZE,
        input_width=SIZE,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        model_config=config,
    )
    ckpt = save_checkpoint(tmp_path / "r18_sgdnet.safetensors", model, spec)
    start.unlink()
    rebuilt = model_from_spec(spec, weights_path=ckpt)
    image = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(rebuilt({"image": image})["score"], model({"image": image})["score"])
