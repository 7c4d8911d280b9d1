"""The model table: FLOPs against a hand count, parameters, I/O shapes, markdown, CLI."""

from __future__ import annotations

import pytest
import yaml

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from saliq.errors import ConfigError  # noqa: E402
from saliq.spec import ModelSpec  # noqa: E402
from saliq.train.model_table import (  # noqa: E402
    SHIPPED,
    ModelRow,
    count_flops,
    count_parameters,
    default_configs,
    format_markdown,
    main,
    measure,
    model_table,
    shipped_row,
)
from saliq.train.models import create_model  # noqa: E402


class TinyConv(nn.Module):
    """conv 3->4 (3x3, pad 1) -> global mean -> linear 4->1: the FLOPs are easy to count."""

    inputs = ("image",)
    outputs = ("score",)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 1)

    def forward(self, inputs: dict) -> dict:
        pooled = self.conv(inputs["image"]).mean(dim=(2, 3))
        return {"score": torch.sigmoid(self.head(pooled)).squeeze(1)}


def _tiny_spec(h: int = 32, w: int = 32) -> ModelSpec:
    return ModelSpec(
        name="tiny",
        architecture="tinyconv",
        backbone="none",
        input_height=h,
        input_width=w,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        inputs=("image",),
        outputs=("score",),
    )


def test_flops_of_a_tiny_conv_model_equal_the_hand_count():
    model = TinyConv()
    # 2 FLOPs per multiply-add: conv 3x3x3 taps x 4 channels x 8x8 outputs; linear 4 x 1
    conv = 2 * (3 * 3 * 3) * 4 * (8 * 8)
    linear = 2 * 4 * 1
    assert count_flops(model, {"image": torch.rand(1, 3, 8, 8)}) == conv + linear == 13832
    # at 16 x 32 the conv term scales with the output area, the head does not
    assert count_flops(model, {"image": torch.rand(1, 3, 16, 32)}) == conv * 8 + linear
    row = measure(model, _tiny_spec(), "tiny", "hand-made")  # a spec's sides are 32k
    assert row.gflops == pytest.approx((conv * 16 + linear) / 1e9)
    assert row.params == 3 * 3 * 3 * 4 + 4 + 4 + 1 == row.trainable_params
    assert row.inputs == {"image": [3, 32, 32]} and row.outputs == {"score": []}
    model.conv.weight.requires_grad_(False)
    assert count_parameters(model) == (117, 117 - 108)
    assert model.training  # counting FLOPs leaves the mode as it found it


def _configs(tmp_path, height: int = 64) -> object:
    root = tmp_path / "configs"
    (root / "sgdnet").mkdir(parents=True)
    kwargs = {"feature_dim": 32, "hidden": [16], "frozen_prefixes": ["stem."]}
    raw = {
        "model": {
            "architecture": "sgdnet",
            "backbone": "efficientnet_lite0",
            "input_height": height,
            "input_width": 96,
            "kwargs": kwargs,
        }
    }
    (root / "sgdnet" / "default.yaml").write_text(yaml.safe_dump(raw))
    # a top-level default naming the same architecture loses to the family folder's
    other = {**raw, "model": {**raw["model"], "input_height": 224}}
    (root / "sgdnet_other_default.yaml").write_text(yaml.safe_dump(other))
    return root, kwargs


def test_rows_are_measured_from_each_architectures_default_config(tmp_path):
    root, kwargs = _configs(tmp_path)
    assert default_configs(root)["sgdnet"] == root / "sgdnet" / "default.yaml"
    (row,) = model_table(root, architectures=["sgdnet"], include_shipped=False)
    reference = create_model("sgdnet", backbone="efficientnet_lite0", pretrained=False, **kwargs)
    total = sum(p.numel() for p in reference.parameters())
    trainable = sum(p.numel() for p in reference.parameters() if p.requires_grad)
    assert (row.params, row.trainable_params) == (total, trainable) and trainable < total
    assert row.input_hw == (64, 96) and row.inputs == {"image": [3, 64, 96]}
    assert row.outputs == {"score": [], "saliency": [1, 4, 6]}  # stride 16
    inputs = {"image": torch.rand(1, 3, 64, 96)}
    assert row.gflops == pytest.approx(count_flops(reference, inputs) / 1e9)
    assert row.source.endswith("sgdnet/default.yaml")
    with pytest.raises(ConfigError, match="unknown architectures"):
        model_table(root, architectures=["nope"], include_shipped=False)


def test_shipped_default_row_reads_its_spec():
    row = shipped_row()
    assert row.name == SHIPPED and row.architecture == "sgdnet_views"
    assert row.inputs["image"] == [3, 224, 224] and "crops" in row.inputs
    assert row.params > row.trainable_params > 0 and row.gflops > 0.5


def test_markdown_and_cli(tmp_path, capsys):
    row = ModelRow(
        name="m",
        architecture="m",
        backbone="efficientnet_lite0",
        source="configs/m/default.yaml",
        input_hw=(224, 224),
        params=4_790_000,
        trainable_params=4_740_000,
        gflops=0.8178,
        inputs={"image": [3, 224, 224], "gradient": [1, 224, 224]},
        outputs={"score": [], "saliency": [1, 14, 14]},
    )
    md = format_markdown([row])
    assert (
        "| m | efficientnet_lite0 | 224x224 | 4.79 | 4.74 | 0.82 | image [3,224,224], "
        "gradient [1,224,224] | score, saliency [1,14,14] | configs/m/default.yaml |"
    ) in md
    assert "flop_counter" in md
    root, _ = _configs(tmp_path)
    args = ["--configs-dir", str(root), "--architectures", "sgdnet", "--no-shipped"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("| model |") and "| sgdnet | efficientnet_lite0 | 64x96 |" in out
    assert main([*args, "--json"]) == 0
    assert '"gflops"' in capsys.readouterr().out
    assert main(["--architectures", "nope"]) == 2
