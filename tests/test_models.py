import pytest
import torch

from saliq.errors import ConfigError
from saliq.train.losses import SGDNetLoss, tv_distance
from saliq.train.models import create_model, list_backbones, list_models


def test_registry():
    assert "sgdnet" in list_models()
    assert {"efficientnet_lite0", "resnet18", "resnet50"} <= set(list_backbones())
    with pytest.raises(ConfigError, match="available"):
        create_model("nope")


@pytest.mark.parametrize("direct", [False, True])
def test_sgdnet_shapes_and_range(direct):
    model = create_model("sgdnet", direct_saliency=direct).eval()
    image = torch.randn(2, 3, 64, 96)
    prior = torch.rand(2, 1, 16, 24)
    inputs = {"image": image, "prior": prior} if direct else {"image": image}
    assert model.inputs == tuple(inputs)
    out = model(inputs)
    score, saliency = out["score"], out["saliency"]
    assert score.shape == (2,) and ((score >= 0) & (score <= 1)).all()
    assert saliency.shape == (2, 1, 4, 6) and (saliency >= 0).all()
    # the ImageNet classifier is stripped: the file carries only what SGDNet uses
    assert not any(
        k.startswith(("backbone.classifier", "backbone.head")) for k in model.state_dict()
    )


def test_frozen_prefixes_and_batchnorm_stay_frozen():
    model = create_model("sgdnet", frozen_prefixes=("stem.", "stages.0."))
    model.train()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(n.startswith("backbone.stem.") for n in frozen)
    assert all(
        not m.training for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    assert any(p.requires_grad for n, p in model.named_parameters() if n.startswith("head."))


def test_tv_distance_properties():
    a = torch.rand(3, 1, 5, 5)
    assert tv_distance(a, a * 7).item() == pytest.approx(0.0, abs=1e-6)
    left = torch.zeros(1, 1, 2, 2)
    left[..., 0] = 1
    right = torch.zeros(1, 1, 2, 2)
    right[..., 1] = 1
    assert tv_distance(left, right).item() == pytest.approx(1.0, abs=1e-6)


def test_sgdnet_loss_weights():
    loss = SGDNetLoss(alpha=0.25)
    score = torch.tensor([0.5, 0.5])
    out = loss(score, torch.ones(2, 1, 2, 2), torch.tensor([0.0, 1.0]), torch.ones(2, 1, 2, 2))
    assert out["quality"].item() == pytest.approx(0.5)
    assert out["saliency"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["loss"].item() == pytest.approx(0.5 / 1.25)
