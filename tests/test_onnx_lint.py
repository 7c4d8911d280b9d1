"""The ONNX compatibility lint (export/onnx_lint.py): TensorRT 10.3 / 11.x ops, static shapes,
FP16 range. These check the lint's logic against the documented parser support; no
TensorRT is involved (none can be installed here)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from saliq.export.onnx_lint import (
    FP16_ACTIVATION_LIMIT,
    FP16_MAX,
    SUPPORTED_OPS,
    TABLE_SOURCES,
    TRANSFORMER_OPS,
    TRT_VERSIONS,
    lint_onnx,
)


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # what ONNX Runtime here reads
    return model


def _image_input(name="image", dims=("batch", 3, 32, 32)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def _scale_model(factor: float):
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [factor])
    node = helper.make_node("Mul", ["image", "scale"], ["scaled"], name="mul")
    out = helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["batch", 3, 32, 32])
    return _model([node], [_image_input()], [out], [scale])


def _feeds(seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)}


def test_table_is_data_with_a_source():
    assert set(TABLE_SOURCES) == set(TRT_VERSIONS)
    assert all("onnx-tensorrt" in src for src in TABLE_SOURCES.values())
    for op in ("Conv", "Clip", "Resize", "Gemm", "GlobalAveragePool", "ReduceMean", "Pad"):
        assert all(SUPPORTED_OPS[op][v] for v in TRT_VERSIONS), op
    assert SUPPORTED_OPS["HannWindow"]["10.3"] is None and SUPPORTED_OPS["HannWindow"]["11.x"]
    assert "half_pixel" in SUPPORTED_OPS["Resize"]["notes"]


def test_smoke_model_passes(smoke_run):
    lint = smoke_run["report"].lint
    assert lint is not None and lint.ok, lint.format()
    assert lint.op_counts["Conv"] > 0 and lint.frames == 8
    assert 0 < lint.max_activation < FP16_ACTIVATION_LIMIT
    # the file on disk, linted on its own with the default (real photo) frames
    again = lint_onnx(smoke_run["onnx"])
    assert again.ok, again.format()
    assert again.max_activation == pytest.approx(lint.max_activation, rel=1e-4)
    assert "ONNX lint for TensorRT 10.3/11.x: ok" in again.format()


def test_made_up_op_fails_naming_it_and_versions():
    node = helper.make_node("FancyBlur", ["image"], ["out"], name="blur")
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 32, 32])
    report = lint_onnx(_model([node], [_image_input()], [out]), check_range=False)
    assert not report.ok
    assert any("FancyBlur" in e and "10.3" in e and "11.x" in e for e in report.errors)


def test_op_missing_from_tensorrt_10_3_fails_for_10_3_only():
    size = helper.make_tensor("size", TensorProto.INT64, [], [16])
    node = helper.make_node("HannWindow", ["size"], ["window"], name="hann")
    out = helper.make_tensor_value_info("window", TensorProto.FLOAT, [16])
    model = _model([node], [], [out], [size])
    errors = lint_onnx(model, check_range=False).errors
    hann = [e for e in errors if "HannWindow" in e]
    assert hann and "10.3" in hann[0] and "11.x" not in hann[0]


def test_custom_domain_op_fails():
    node = helper.make_node("Gelu", ["image"], ["out"], domain="com.microsoft")
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 32, 32])
    model = _model([node], [_image_input()], [out])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert any("com.microsoft::Gelu" in e for e in lint_onnx(model, check_range=False).errors)


@pytest.mark.parametrize(
    ("attrs", "needle"),
    [
        ({"mode": "cubic"}, "mode 'cubic'"),
        ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, "tf_crop"),
        ({"mode": "linear", "antialias": 1}, "antialias"),
    ],
)
def test_resize_attributes_outside_the_parser_support_fail(attrs, needle):
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    node = helper.make_node("Resize", ["image", "", "scales"], ["up"], name="up", **attrs)
    out = helper.make_tensor_value_info("up", TensorProto.FLOAT, ["batch", 3, 64, 64])
    model = _model([node], [_image_input()], [out], [scales], opset=18)
    errors = lint_onnx(model, check_range=False).errors
    assert any(needle in e for e in errors), errors


def test_supported_resize_and_pad_pass():
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    pads = helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
    resize = helper.make_node(
        "Resize",
        ["image", "", "scales"],
        ["up"],
        mode="linear",
        coordinate_transformation_mode="half_pixel",
    )
    pad = helper.make_node("Pad", ["up", "pads"], ["padded"], mode="reflect")
    out = helper.make_tensor_value_info("padded", TensorProto.FLOAT, ["batch", 3, 66, 66])
    model = _model([resize, pad], [_image_input()], [out], [scales, pads])
    report = lint_onnx(model, frames=_feeds())
    assert report.ok, report.format()
    assert report.op_counts == {"Pad": 1, "Resize": 1}


def test_dynamic_spatial_dimension_fails():
    relu = helper.make_node("Relu", ["image"], ["out"])
    dims = ("batch", 3, "height", "width")
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, list(dims))
    report = lint_onnx(_model([relu], [_image_input(dims=dims)], [out]))
    assert not report.ok
    assert any("dynamic dimension 'height' at axis 2" in e for e in report.errors)


def test_batch_only_dynamic_passes():
    relu = helper.make_node("Relu", ["image"], ["out"])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 32, 32])
    report = lint_onnx(_model([relu], [_image_input()], [out]), frames=_feeds())
    assert report.ok, report.format()


def test_fp16_range_flags_huge_constant_multiplication():
    report = lint_onnx(_scale_model(1e6), frames=_feeds())
    assert not report.ok
    assert any("'scaled'" in e and "FP16" in e for e in report.errors), report.errors
    assert any("weight 'scale'" in e for e in report.errors)  # 1e6 is inf in float16
    assert report.max_activation_tensor == "scaled" and report.max_activation > 1e5


def test_fp16_range_limit_is_far_below_fp16_max():
    assert FP16_ACTIVATION_LIMIT == FP16_MAX / 16
    over = lint_onnx(_scale_model(1e4), frames=_feeds())  # activations ~1e4: FP16-finite
    assert not over.ok and not any("weight" in e for e in over.errors)
    under = lint_onnx(_scale_model(1e3), frames=_feeds())
    assert under.ok, under.format()
    assert 500 < under.max_activation <= 1000


def test_export_refuses_when_lint_fails_and_writes_nothing(smoke_run, tmp_path):
    """A real failing graph: the smoke model with its first convolution scaled by 1e4."""
    import torch

    from saliq.export.onnx import export_onnx
    from saliq.export.onnx_lint import OnnxLintError
    from saliq.train.checkpoint import load_checkpoint, save_checkpoint

    model, spec, config, metrics = load_checkpoint(smoke_run["checkpoint"])
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        first_conv.weight.mul_(1e4)
    hot = save_checkpoint(tmp_path / "hot.safetensors", model, spec, config, metrics)
    target = tmp_path / "hot.onnx"
    with pytest.raises(OnnxLintError, match="FP16"):
        export_onnx(hot, target)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["hot.safetensors"]


# -- transformer encoders (TReS, TranSLA) ---------------------------------------------------


def test_transformer_op_rows_are_supported_and_sourced():
    for op in ("MatMul", "Softmax", "LayerNormalization", "ReduceMean", "Erf", "Gelu"):
        assert op in TRANSFORMER_OPS, op
    for op, (role, definition, source) in TRANSFORMER_OPS.items():
        for version in TRT_VERSIONS:
            types = SUPPORTED_OPS[op][version]
            assert types and "FP32" in types and "FP16" in types, (op, version)
        assert role and definition.endswith("#" + op), op
        assert "onnx-tensorrt" in source, op
    assert "TensorRT/issues/2781" in TRANSFORMER_OPS["LayerNormalization"][2]


def _attention_block_onnx(tmp_path, opset=17):
    """A pre-norm encoder layer written out (Linear, MatMul, Softmax, LayerNorm, exact GELU),
    exported by torch.onnx as saliq's exporter does."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, dim=16, heads=4, tokens=9):
            super().__init__()
            self.heads, self.tokens, self.dim = heads, tokens, dim
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.ff = nn.Sequential(nn.Linear(dim, 32), nn.GELU(), nn.Linear(32, dim))

        def forward(self, image):  # [B, 1, tokens, dim]: a 4-D "image" keeps the lint's feeds
            x = image[:, 0]
            q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
            split = (-1, self.tokens, self.heads, self.dim // self.heads)
            q, k, v = (t.reshape(split).transpose(1, 2) for t in (q, k, v))
            weights = torch.softmax(q @ k.transpose(-2, -1) * (self.dim // self.heads) ** -0.5, -1)
            x = x + self.out((weights @ v).transpose(1, 2).reshape(-1, self.tokens, self.dim))
            return (x + self.ff(self.norm2(x)))[:, None]

    torch.manual_seed(0)
    path = tmp_path / "block.onnx"
    example = torch.rand(2, 1, 9, 16)
    with torch.no_grad():
        torch.onnx.export(
            Block().eval(),
            (example,),
            str(path),
            input_names=["image"],
            output_names=["out"],
            opset_version=opset,
            dynamic_axes={"image": {0: "batch"}, "out": {0: "batch"}},
            dynamo=False,
        )
    feeds = {"image": np.random.default_rng(0).normal(0, 1, (2, 1, 9, 16)).astype(np.float32)}
    return path, feeds


def test_exported_attention_block_lints_clean(tmp_path):
    path, feeds = _attention_block_onnx(tmp_path)
    report = lint_onnx(path, frames=feeds)
    assert report.ok, report.format()
    for op in ("MatMul", "Softmax", "LayerNormalization", "Erf", "Transpose", "Reshape"):
        assert report.op_counts.get(op, 0) > 0, (op, report.op_counts)
    plumbing = {"Constant", "Gather", "Shape", "Unsqueeze", "Identity"}  # shapes, the wrapper
    assert set(report.op_counts) <= set(TRANSFORMER_OPS) | plumbing, report.op_counts
    assert not any("LayerNorm written out" in w for w in report.warnings)


@pytest.mark.parametrize("square", ["Pow", "Mul"])
def test_written_out_layernorm_warns_with_tensorrt_message(square):
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    eps = helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-5])
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[-1], keepdims=1),
        helper.make_node("Sub", ["image", "mean"], ["centred"]),
        helper.make_node(
            square, ["centred", "two" if square == "Pow" else "centred"], ["sq"], name="square"
        ),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1], keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["var_eps"]),
        helper.make_node("Sqrt", ["var_eps"], ["std"]),
        helper.make_node("Div", ["centred", "std"], ["normed"]),
    ]
    out = helper.make_tensor_value_info("normed", TensorProto.FLOAT, ["batch", 3, 32, 32])
    report = lint_onnx(_model(nodes, [_image_input()], [out], [two, eps]), frames=_feeds())
    assert report.ok, report.format()  # a warning: TensorRT builds it, in FP16
    warned = [w for w in report.warnings if "LayerNorm written out" in w]
    assert len(warned) == 1 and "'square'" in warned[0], report.warnings
    assert "Running layernorm after self-attention in FP16" in warned[0]
    assert "opset >= 17" in warned[0]


def test_plain_variance_of_another_tensor_does_not_warn():
    """ReduceMean(x * x) without centring is a second moment, not a LayerNorm."""
    nodes = [
        helper.make_node("Mul", ["image", "image"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["m2"], axes=[-1], keepdims=1),
    ]
    out = helper.make_tensor_value_info("m2", TensorProto.FLOAT, ["batch", 3, 32, 1])
    report = lint_onnx(_model(nodes, [_image_input()], [out]), frames=_feeds())
    assert report.ok and not report.warnings, report.format()


@pytest.mark.parametrize(("factor", "ok"), [(100.0, False), (10.0, True)])
def test_reduce_l2_sum_of_squares_is_range_checked(factor, ok):
    """TensorRT builds ReduceL2 as a sum of squares: 3 channels of |x| <= 100 reach 3e4."""
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [factor])
    nodes = [
        helper.make_node("Mul", ["image", "scale"], ["scaled"]),
        helper.make_node("ReduceL2", ["scaled"], ["norm"], axes=[1], keepdims=1, name="norm"),
    ]
    out = helper.make_tensor_value_info("norm", TensorProto.FLOAT, ["batch", 1, 32, 32])
    report = lint_onnx(_model(nodes, [_image_input()], [out], [scale]), frames=_feeds())
    assert report.max_activation < FP16_ACTIVATION_LIMIT  # every tensor itself is in range
    hidden = [e for e in report.errors if "sum of squares" in e]
    assert report.ok == ok and bool(hidden) == (not ok), report.format()
    if hidden:
        assert "'norm'" in hidden[0] and "max |value|" in hidden[0]
