"""ONNX compatibility lint: run on every exported model before it is written.

Three checks, each for both TensorRT targets saliq supports (10.3 = JetPack 6, and 11.x):

(a) operators: every node is in the TensorRT ONNX parser's support table for both versions
    (``SUPPORTED_OPS``, data transcribed from onnx-tensorrt's ``docs/operators.md``; see
    ``TABLE_SOURCES`` and docs/onnx_lint.md), with the attribute values and constant inputs
    the parser's documented restrictions require (Resize modes, Pad mode and axes, pooling
    dilations, Reduce/Squeeze axes, Dropout, TopK, ...), and element types the parser takes;
(b) shapes: no dynamic dimension other than the batch axis, in the graph inputs, outputs
    and every intermediate tensor (``onnx.shape_inference.infer_shapes`` after folding the
    shape arithmetic with the batch fixed, as TensorRT's builder does);
(c) FP16 range: the model runs in ONNX Runtime on the export's verification frames
    (procedural scenes at every distortion level) with every intermediate tensor exposed as
    a graph output; any float tensor whose max |value| exceeds ``FP16_ACTIVATION_LIMIT``
    (or a weight beyond the FP16 maximum) is an error, because an FP16 TensorRT engine
    would overflow or lose it. A LayerNorm written out as separate nodes is a warning
    (TensorRT runs it as separate FP16 layers; ``TRANSFORMER_OPS`` lists what attention
    models export to, with sources).

The lint proves compatibility with the *documented* parser support; only building the
engine with TensorRT (``saliq export trt`` on the device) proves the build itself.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saliq.errors import SaliqError

TRT_VERSIONS = ("10.3", "11.x")

# Where the operator table comes from (read, transcribed as data; see docs/onnx_lint.md).
#   10.3: https://github.com/onnx/onnx-tensorrt/blob/96e781103cfc4adf4a6bb557e94bac8e693f6f4c/
#         docs/operators.md  (branch 10.1-GA, "ONNX-TensorRT 10.1 GA release", 2024-06-17),
#         plus docs/Changelog.md entries "TensorRT 10.2 GA" and "TensorRT 10.3 GA"
#         (2024-08-07): no operator added or removed; Slice accepts tensor `axes` from 10.3.
#         No 10.3 tag of onnx-tensorrt was reachable, hence the 10.1 table + changelog.
#   11.x: docs/operators.md of onnx-tensorrt main as of "TensorRT 10.15 GA" (2026-02-02,
#         opset 9-24; the stored copy carried no commit id), plus the TensorRT 11.0 release
#         notes (github.com/NVIDIA/TensorRT/releases/tag/v11.0: parser adds `Swish`).
#         No operators.md for an 11.x tag was reachable: 11.x = 10.15 table + Swish.
TABLE_SOURCES = {
    "10.3": (
        "https://github.com/onnx/onnx-tensorrt/blob/96e781103cfc4adf4a6bb557e94bac8e693f6f4c/"
        "docs/operators.md (10.1-GA) + docs/Changelog.md 10.2/10.3 GA entries"
    ),
    "11.x": (
        "https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md as of TensorRT "
        "10.15 GA (2026-02-02) + TensorRT 11.0 release notes (Swish)"
    ),
}
# Inclusive ONNX default-domain opset range the parser documents.
OPSET_RANGE = {"10.3": (9, 20), "11.x": (9, 24)}

# FP16 range. The largest finite float16 is 65504. Observed maxima come from 8 verification
# frames; field frames (over-exposed, noisy, unseen content) can push activations higher, and
# TensorRT's FP16 kernels hold partial sums (conv/GEMM accumulation, pooling and
# normalisation reductions) that can exceed the tensor's own max. A 16x margin (four binades)
# keeps every observed activation "far below" 65504: 65504 / 16 = 4094.
FP16_MAX = 65504.0
FP16_HEADROOM = 16.0
DEFAULT_FRAMES = 8  # frames of saliq.frames.parity_frames when the caller passes none
FP16_ACTIVATION_LIMIT = FP16_MAX / FP16_HEADROOM

_FLOAT = ("FP32", "FP16", "BF16")
_NUMERIC = _FLOAT + ("INT32", "INT64")
_ANY = _NUMERIC + ("BOOL",)
_BOOL = ("BOOL",)
_FP32_FP16 = ("FP32", "FP16")
_CAST = _NUMERIC + ("UINT8", "BOOL")
_CONST_11 = _ANY + ("FP8", "FP4", "INT4")

# op -> {TensorRT version: element types the parser takes for the op's data tensor, or None
# where the parser has no importer}; "notes": the documented restrictions this lint enforces.
SUPPORTED_OPS: dict[str, dict[str, Any]] = {
    "Abs": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Acos": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Acosh": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Add": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "AffineGrid": {"10.3": None, "11.x": None},
    "And": {"10.3": _BOOL, "11.x": _BOOL},
    "ArgMax": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ArgMin": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Asin": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Asinh": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Atan": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Atanh": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Attention": {"10.3": None, "11.x": ("FP32", "FP16", "BF16", "INT8", "FP8")},
    "AveragePool": {"10.3": _FLOAT, "11.x": _FLOAT},
    "BatchNormalization": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Bernoulli": {"10.3": None, "11.x": None},
    "BitShift": {"10.3": None, "11.x": None},
    "BitwiseAnd": {"10.3": None, "11.x": None},
    "BitwiseNot": {"10.3": None, "11.x": None},
    "BitwiseOr": {"10.3": None, "11.x": None},
    "BitwiseXor": {"10.3": None, "11.x": None},
    "BlackmanWindow": {"10.3": None, "11.x": _FP32_FP16},
    "Cast": {"10.3": _CAST, "11.x": _CAST},
    "CastLike": {"10.3": _CAST, "11.x": _CAST},
    "Ceil": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Celu": {"10.3": _FLOAT, "11.x": _FLOAT},
    "CenterCropPad": {"10.3": None, "11.x": None},
    "Clip": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Col2Im": {"10.3": None, "11.x": None},
    "Compress": {"10.3": None, "11.x": None},
    "Concat": {"10.3": _ANY, "11.x": _ANY},
    "ConcatFromSequence": {"10.3": None, "11.x": None},
    "Constant": {"10.3": _ANY, "11.x": _CONST_11},
    "ConstantOfShape": {"10.3": _ANY, "11.x": _CONST_11},
    "Conv": {"10.3": _FLOAT, "11.x": _FLOAT},
    "ConvInteger": {"10.3": None, "11.x": None},
    "ConvTranspose": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Cos": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Cosh": {"10.3": _FLOAT, "11.x": _FLOAT},
    "CumSum": {"10.3": _FLOAT, "11.x": _FLOAT},
    "DeformConv": {"10.3": _FP32_FP16, "11.x": _FP32_FP16},
    "DepthToSpace": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "DequantizeLinear": {"10.3": ("INT8", "FP8", "INT4"), "11.x": ("INT8", "FP8", "FP4", "INT4")},
    "Det": {"10.3": None, "11.x": None},
    "DFT": {"10.3": None, "11.x": None},
    "Div": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Dropout": {"10.3": _FLOAT, "11.x": _FLOAT},
    "DynamicQuantizeLinear": {"10.3": None, "11.x": None},
    "Einsum": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Elu": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Equal": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Erf": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Exp": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Expand": {"10.3": _ANY, "11.x": _ANY},
    "EyeLike": {"10.3": _ANY, "11.x": _ANY},
    "Flatten": {"10.3": _ANY, "11.x": _ANY},
    "Floor": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Gather": {"10.3": _ANY, "11.x": _ANY},
    "GatherElements": {"10.3": _ANY, "11.x": _ANY},
    "GatherND": {"10.3": _ANY, "11.x": _ANY},
    "Gelu": {"10.3": _NUMERIC + ("INT8",), "11.x": _NUMERIC + ("INT8",)},
    "Gemm": {"10.3": _FLOAT, "11.x": _FLOAT},
    "GlobalAveragePool": {"10.3": _FLOAT, "11.x": _FLOAT},
    "GlobalLpPool": {"10.3": _FLOAT, "11.x": _FLOAT},
    "GlobalMaxPool": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Greater": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "GreaterOrEqual": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "GridSample": {"10.3": _FP32_FP16, "11.x": _FP32_FP16},
    "GroupNormalization": {"10.3": _FLOAT, "11.x": _FLOAT},
    "GRU": {"10.3": _FLOAT, "11.x": _FLOAT},
    "HammingWindow": {"10.3": None, "11.x": _FP32_FP16},
    "HannWindow": {"10.3": None, "11.x": _FP32_FP16},
    "Hardmax": {"10.3": _FLOAT, "11.x": _FLOAT},
    "HardSigmoid": {"10.3": _FLOAT, "11.x": _FLOAT},
    "HardSwish": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Identity": {"10.3": _ANY, "11.x": _ANY},
    "If": {"10.3": _ANY, "11.x": _ANY},
    "ImageDecoder": {"10.3": None, "11.x": None},
    "ImageScaler": {"10.3": _FLOAT, "11.x": _FLOAT},
    "InstanceNormalization": {"10.3": _FLOAT, "11.x": _FLOAT},
    "IsInf": {"10.3": _FLOAT, "11.x": _FLOAT},
    "IsNaN": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "LayerNormalization": {"10.3": _FLOAT, "11.x": _FLOAT},
    "LeakyRelu": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Less": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "LessOrEqual": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Log": {"10.3": _FLOAT, "11.x": _FLOAT},
    "LogSoftmax": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Loop": {"10.3": _ANY, "11.x": _ANY},
    "LpNormalization": {"10.3": _FLOAT, "11.x": _FLOAT},
    "LpPool": {"10.3": _FLOAT, "11.x": _FLOAT},
    "LRN": {"10.3": _FLOAT, "11.x": _FLOAT},
    "LSTM": {"10.3": _FLOAT, "11.x": _FLOAT},
    "MatMul": {"10.3": _FLOAT, "11.x": _FLOAT},
    "MatMulInteger": {"10.3": None, "11.x": None},
    "Max": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "MaxPool": {"10.3": _FLOAT, "11.x": _FLOAT},
    "MaxRoiPool": {"10.3": None, "11.x": None},
    "MaxUnpool": {"10.3": None, "11.x": None},
    "Mean": {"10.3": _NUMERIC + ("FP8",), "11.x": _NUMERIC + ("FP8",)},
    "MeanVarianceNormalization": {"10.3": _FLOAT, "11.x": _FLOAT},
    "MelWeightMatrix": {"10.3": None, "11.x": None},
    "Min": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Mish": {"10.3": _FP32_FP16, "11.x": _FP32_FP16},
    "Mod": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Mul": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Multinomial": {"10.3": None, "11.x": None},
    "Neg": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "NegativeLogLikelihoodLoss": {"10.3": None, "11.x": None},
    "NonMaxSuppression": {"10.3": _FP32_FP16, "11.x": _FP32_FP16},
    "NonZero": {"10.3": _FP32_FP16, "11.x": _FP32_FP16},
    "Not": {"10.3": _BOOL, "11.x": _BOOL},
    "OneHot": {"10.3": _ANY, "11.x": _ANY},
    "Optional": {"10.3": None, "11.x": None},
    "OptionalGetElement": {"10.3": None, "11.x": None},
    "OptionalHasElement": {"10.3": None, "11.x": None},
    "Or": {"10.3": _BOOL, "11.x": _BOOL},
    "Pad": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ParametricSoftplus": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Pow": {"10.3": _FLOAT, "11.x": _NUMERIC},
    "PRelu": {"10.3": _FLOAT, "11.x": _FLOAT},
    "QLinearConv": {"10.3": None, "11.x": None},
    "QLinearMatMul": {"10.3": None, "11.x": None},
    "QuantizeLinear": {"10.3": _FLOAT, "11.x": _FLOAT},
    "RandomNormal": {"10.3": _FLOAT, "11.x": _FLOAT},
    "RandomNormalLike": {"10.3": _FLOAT, "11.x": _FLOAT},
    "RandomUniform": {"10.3": _FLOAT, "11.x": _FLOAT},
    "RandomUniformLike": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Range": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Reciprocal": {"10.3": _FLOAT, "11.x": _FLOAT},
    "ReduceL1": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ReduceL2": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ReduceLogSum": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ReduceLogSumExp": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ReduceMax": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ReduceMean": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ReduceMin": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ReduceProd": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ReduceSum": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ReduceSumSquare": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "RegexFullMatch": {"10.3": None, "11.x": None},
    "Relu": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Reshape": {"10.3": _ANY, "11.x": _ANY},
    "Resize": {"10.3": _FLOAT, "11.x": _FLOAT},
    "ReverseSequence": {"10.3": _ANY, "11.x": _ANY},
    "RMSNormalization": {"10.3": None, "11.x": _FLOAT},
    "RNN": {"10.3": _FLOAT, "11.x": _FLOAT},
    "RoiAlign": {"10.3": _FP32_FP16, "11.x": _FP32_FP16},
    "RotaryEmbedding": {"10.3": None, "11.x": _FLOAT},
    "Round": {"10.3": _FLOAT, "11.x": _FLOAT},
    "ScaledTanh": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Scan": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Scatter": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ScatterElements": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "ScatterND": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Selu": {"10.3": _FLOAT, "11.x": _FLOAT},
    "SequenceAt": {"10.3": None, "11.x": None},
    "SequenceConstruct": {"10.3": None, "11.x": None},
    "SequenceEmpty": {"10.3": None, "11.x": None},
    "SequenceErase": {"10.3": None, "11.x": None},
    "SequenceInsert": {"10.3": None, "11.x": None},
    "SequenceLength": {"10.3": None, "11.x": None},
    "SequenceMap": {"10.3": None, "11.x": None},
    "Shape": {"10.3": _ANY, "11.x": _ANY},
    "Shrink": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Sigmoid": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Sign": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Sin": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Sinh": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Size": {"10.3": _ANY, "11.x": _ANY},
    "Slice": {"10.3": _ANY, "11.x": _ANY},
    "Softmax": {"10.3": _FLOAT, "11.x": _FLOAT},
    "SoftmaxCrossEntropyLoss": {"10.3": None, "11.x": None},
    "Softplus": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Softsign": {"10.3": _FLOAT, "11.x": _FLOAT},
    "SpaceToDepth": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Split": {"10.3": _ANY, "11.x": _ANY},
    "SplitToSequence": {"10.3": None, "11.x": None},
    "Sqrt": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Squeeze": {"10.3": _ANY, "11.x": _ANY},
    "STFT": {"10.3": None, "11.x": ("FP32",)},
    "StringConcat": {"10.3": None, "11.x": None},
    "StringNormalizer": {"10.3": None, "11.x": None},
    "StringSplit": {"10.3": None, "11.x": None},
    "Sub": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Sum": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Swish": {"10.3": None, "11.x": _FLOAT},
    "Tan": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Tanh": {"10.3": _FLOAT, "11.x": _FLOAT},
    "TensorScatter": {"10.3": None, "11.x": ("FP32", "FP16", "BF16", "INT32")},
    "TfIdfVectorizer": {"10.3": None, "11.x": None},
    "ThresholdedRelu": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Tile": {"10.3": _ANY, "11.x": _ANY},
    "TopK": {"10.3": _NUMERIC, "11.x": _NUMERIC},
    "Transpose": {"10.3": _ANY, "11.x": _ANY},
    "Trilu": {"10.3": _ANY, "11.x": _ANY},
    "Unique": {"10.3": None, "11.x": None},
    "Unsqueeze": {"10.3": _ANY, "11.x": _ANY},
    "Upsample": {"10.3": _FLOAT, "11.x": _FLOAT},
    "Where": {"10.3": _ANY, "11.x": _ANY},
    "Xor": {"10.3": _BOOL, "11.x": _BOOL},
}

OP_NOTES = {
    "AveragePool": "2D or 3D pooling only; `dilations` empty or all ones",
    "MaxPool": "2D or 3D pooling only; no `Indices` output; `dilations` empty or all ones",
    "LpPool": "`dilations` empty or all ones",
    "Resize": (
        "mode nearest|linear; coordinate_transformation_mode half_pixel|pytorch_half_pixel|"
        "tf_half_pixel_for_nn|asymmetric|align_corners; nearest_mode floor|ceil|"
        "round_prefer_floor|round_prefer_ceil; no antialias; keep_aspect_ratio_policy stretch"
    ),
    "Pad": "mode constant|reflect|edge|wrap; 10.3: `axes` must be an initializer (10.4+: tensor)",
    "Clip": "min/max may be tensors (no documented restriction); constants are preferred",
    "Dropout": "`is_training` must be an initializer that is False",
    "CumSum": "`axis` must be an initializer",
    "TopK": "`sorted` must be 1",
    "ScatterND": "`reduction` must be none",
    "Squeeze": "`axes` must be an initializer (10.3); resolvable to a constant (11.x)",
    "Unsqueeze": "`axes` must be a constant tensor (10.3); resolvable to a constant (11.x)",
    "LayerNormalization": "only the first output `Y` is supported",
    "UINT8": "UINT8 only as a network input or output",
}
for _op in (
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
):
    OP_NOTES[_op] = "`axes` must be an initializer"
for _op, _note in OP_NOTES.items():
    if _op in SUPPORTED_OPS:
        SUPPORTED_OPS[_op]["notes"] = _note

_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORDS = {
    "half_pixel",
    "pytorch_half_pixel",
    "tf_half_pixel_for_nn",
    "asymmetric",
    "align_corners",
}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
_PAD_MODES = {"constant", "reflect", "edge", "wrap"}
_REDUCE_OPS = {op for op, note in OP_NOTES.items() if op.startswith("Reduce")}
# ONNX TensorProto element type -> the names used in the parser's table.
_ELEM_NAMES = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "STRING",
    9: "BOOL",
    10: "FP16",
    11: "DOUBLE",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
    17: "FP8",
    18: "FP8",
    19: "FP8",
    20: "FP8",
    21: "UINT4",
    22: "INT4",
    23: "FP4",
}
_FLOAT_ELEMS = {1, 10, 11, 16}
# Ops whose table types describe their output (they have no data input).
_TYPED_BY_OUTPUT = {
    "Constant",
    "ConstantOfShape",
    "RandomNormal",
    "RandomUniform",
    "Range",
    "EyeLike",
    "RandomNormalLike",
    "RandomUniformLike",
    "Shape",
    "Size",
}
# Ops whose first input is not the typed data tensor.
_UNTYPED = {"If", "Loop", "Scan", "QuantizeLinear", "Cast", "CastLike", "Where"}

# The ops a transformer encoder exports to (torch.onnx, opset 17+), for any saliq model with
# attention (TReS, TranSLA): op -> (what produces it, its ONNX definition, where the TensorRT
# parser's support comes from). Each must be supported by both targets (the support columns
# are SUPPORTED_OPS; tests/test_onnx_lint.py holds every row to them and lints an exported
# encoder). Attention must be written out (Linear, MatMul, Softmax): torch's fused eval-mode
# fast path of nn.MultiheadAttention / nn.TransformerEncoderLayer
# (aten::_native_multi_head_attention, aten::_transformer_encoder_layer_fwd) has no ONNX export.
_ONNX_OPS = "https://github.com/onnx/onnx/blob/main/docs/Operators.md#"
_PARSER = "onnx-tensorrt docs/operators.md (TABLE_SOURCES)"
TRANSFORMER_OPS: dict[str, tuple[str, str, str]] = {
    "MatMul": (
        "Q K^T and weights x V on [B, heads, L, d'] (batched); nn.Linear on [B, L, d] tokens",
        _ONNX_OPS + "MatMul",
        _PARSER,
    ),
    "Gemm": ("nn.Linear on 2-D input (pooled tokens, heads)", _ONNX_OPS + "Gemm", _PARSER),
    "Softmax": (
        "attention weights over the key axis (opset >= 13: one axis, no 2-D coercion)",
        _ONNX_OPS + "Softmax",
        _PARSER,
    ),
    "LayerNormalization": (
        "nn.LayerNorm at opset >= 17: one node, TensorRT's INormalizationLayer, whose precision "
        "the builder handles (TensorRT >= 8.6)",
        _ONNX_OPS + "LayerNormalization",
        _PARSER + "; https://github.com/NVIDIA/TensorRT/issues/2781",
    ),
    "ReduceMean": (
        "LayerNorm written out (opset < 17, or by hand): mean and variance over the last axis",
        _ONNX_OPS + "ReduceMean",
        _PARSER,
    ),
    "Sub": ("written-out LayerNorm: x - mean", _ONNX_OPS + "Sub", _PARSER),
    "Pow": ("written-out LayerNorm: (x - mean)^2", _ONNX_OPS + "Pow", _PARSER),
    "Sqrt": ("written-out LayerNorm: sqrt(var + eps)", _ONNX_OPS + "Sqrt", _PARSER),
    "Div": ("written-out LayerNorm; exact GELU's x / sqrt(2)", _ONNX_OPS + "Div", _PARSER),
    "Add": ("residuals, biases, positional encodings", _ONNX_OPS + "Add", _PARSER),
    "Mul": ("query scaling by d'^-1/2, LayerNorm scale, GELU", _ONNX_OPS + "Mul", _PARSER),
    "Erf": (
        "exact GELU below opset 20: x/2 (1 + erf(x / sqrt 2))",
        _ONNX_OPS + "Erf",
        _PARSER,
    ),
    "Gelu": ("GELU from opset 20 (approximate none | tanh)", _ONNX_OPS + "Gelu", _PARSER),
    "Tanh": ("tanh-approximated GELU below opset 20", _ONNX_OPS + "Tanh", _PARSER),
    "Relu": ("the feed-forward activation (DETR, TReS)", _ONNX_OPS + "Relu", _PARSER),
    "Transpose": (
        "heads split and merged; token sequence <-> feature map",
        _ONNX_OPS + "Transpose",
        _PARSER,
    ),
    "Reshape": ("heads split and merged; maps flattened to tokens", _ONNX_OPS + "Reshape", _PARSER),
    "Split": ("a fused projection chunked into Q, K (and V)", _ONNX_OPS + "Split", _PARSER),
    "Slice": ("the same chunking, as exported by some opsets", _ONNX_OPS + "Slice", _PARSER),
    "Concat": ("class tokens prepended; heads or scales joined", _ONNX_OPS + "Concat", _PARSER),
}
# A LayerNorm written out as separate nodes runs as separate FP16 layers in TensorRT; its
# builder then warns "Running layernorm after self-attention in FP16 may cause overflow"
# (text quoted in https://github.com/NVIDIA/TensorRT/issues/3692); exporting nn.LayerNorm at
# opset >= 17 (one LayerNormalization node) is the remedy NVIDIA gives in issue 2781.
DECOMPOSED_LAYERNORM_WARNING = (
    "LayerNorm written out as ReduceMean/Sub/{square}/ReduceMean nodes (at {node!r}): TensorRT "
    'runs them as separate FP16 layers and warns "Running layernorm after self-attention in '
    'FP16 may cause overflow"; export nn.LayerNorm at opset >= 17 (one LayerNormalization '
    "node) or keep these layers in FP32"
)


class OnnxLintError(SaliqError):
    """The exported graph would not parse, or not run in FP16, on TensorRT 10.3 / 11.x."""


@dataclass
class LintReport:
    """What the lint found. ``errors`` refuse an export; ``warnings`` are printed."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    op_counts: dict[str, int] = field(default_factory=dict)
    max_activation: float | None = None  # max |value| over all float tensors, all frames
    max_activation_tensor: str | None = None
    activations: dict[str, float] = field(default_factory=dict)  # per tensor max |value|
    activation_limit: float = FP16_ACTIVATION_LIMIT
    frames: int = 0
    opset: int | None = None
    targets: tuple[str, ...] = TRT_VERSIONS

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        verdict = "ok" if self.ok else f"{len(self.errors)} error(s)"
        nodes = sum(self.op_counts.values())
        rng = (
            f"max |activation| {self.max_activation:.4g} (limit {self.activation_limit:.4g}) "
            f"on {self.frames} frames"
            if self.max_activation is not None
            else "FP16 range not checked"
        )
        return (
            f"ONNX lint for TensorRT {'/'.join(self.targets)}: {verdict}, "
            f"{len(self.warnings)} warning(s); {nodes} nodes, {len(self.op_counts)} op types; "
            f"{rng}"
        )

    def top_activations(self, count: int = 5) -> list[tuple[str, float]]:
        return sorted(self.activations.items(), key=lambda kv: -kv[1])[:count]

    def format(self) -> str:
        lines = [self.summary()]
        lines += [f"  error: {e}" for e in self.errors]
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.op_counts:
            ops = ", ".join(f"{op} x{n}" for op, n in sorted(self.op_counts.items()))
            lines.append(f"  ops: {ops}")
        if self.activations:
            lines.append("  largest activations:")
            lines += [f"    {v:12.4g}  {name}" for name, v in self.top_activations()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "op_counts": dict(self.op_counts),
            "max_activation": self.max_activation,
            "max_activation_tensor": self.max_activation_tensor,
            "activation_limit": self.activation_limit,
            "frames": self.frames,
            "opset": self.opset,
            "targets": list(self.targets),
        }


def lint_onnx(
    path_or_proto: str | Path | Any,
    frames: Sequence[np.ndarray] | Mapping[str, np.ndarray] | None = None,
    activation_limit: float = FP16_ACTIVATION_LIMIT,
    check_range: bool = True,
) -> LintReport:
    """Lint an ONNX file or ``onnx.ModelProto`` for TensorRT 10.3 and 11.x.

    ``frames``: uint8 RGB photos (preprocessed with the model's ModelSpec) or a dict of
    ready input arrays (``{"image": [N,3,H,W], ...}``); ``None`` uses the export's
    verification frames (:func:`saliq.frames.parity_frames`, at every distortion level). The
    range check runs one frame at a time (memory stays bounded).
    """
    import onnx

    model = (
        onnx.load(str(path_or_proto)) if isinstance(path_or_proto, str | Path) else (path_or_proto)
    )
    report = LintReport(activation_limit=activation_limit)
    report.opset = _default_opset(model)
    _check_opset(model, report)
    constants = _constant_names(model.graph)
    types = _tensor_types(model)
    counts: Counter[str] = Counter()
    _check_graph(model.graph, constants, types, report, counts)
    report.op_counts = dict(sorted(counts.items()))
    _check_types_at_io(model, report)
    _check_decomposed_layernorm(model.graph, report)
    _check_static_shapes(model, report)
    if check_range:
        _check_weights(model, report)
        if not any("dynamic" in e or "unknown" in e for e in report.errors):
            feeds = _feeds(model, frames, report)
            if feeds is not None:
                _check_fp16_range(model, feeds, report)
    return report


# -- (a) operators -------------------------------------------------------------------------


def _default_opset(model) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def _check_opset(model, report: LintReport) -> None:
    opset = report.opset
    if opset is None:
        report.errors.append("the model imports no default-domain (ai.onnx) opset")
        return
    for version, (low, high) in OPSET_RANGE.items():
        if not low <= opset <= high:
            report.errors.append(
                f"opset {opset} is outside TensorRT {version}'s parser range {low}-{high}; "
                f"export with an opset in that range"
            )


def _constant_names(graph) -> set[str]:
    names = {init.name for init in graph.initializer}
    names |= {n.output[0] for n in graph.node if n.op_type == "Constant" and n.output}
    return names


def _tensor_types(model) -> dict[str, int]:
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a broken graph is reported by the checks below
        inferred = model
    graph = inferred.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def _attr(node, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _unsupported_in(op: str) -> list[str]:
    row = SUPPORTED_OPS.get(op)
    if row is None:
        return list(TRT_VERSIONS)
    return [v for v in TRT_VERSIONS if row.get(v) is None]


def _check_graph(graph, constants: set[str], types: dict[str, int], report, counts) -> None:
    from onnx import helper

    constants = constants | _constant_names(graph)
    for node in graph.node:
        label = f"{node.op_type} node {node.name or node.output[0]!r}"
        counts[node.op_type] += 1
        if node.domain not in ("", "ai.onnx"):
            report.errors.append(
                f"{label}: custom-domain op {node.domain}::{node.op_type} is not parsed by "
                f"TensorRT {' or '.join(TRT_VERSIONS)} without a plugin"
            )
            continue
        missing = _unsupported_in(node.op_type)
        if node.op_type not in SUPPORTED_OPS:
            report.errors.append(
                f"{label}: op {node.op_type!r} is not in the TensorRT ONNX parser's support "
                f"table for TensorRT {' or '.join(TRT_VERSIONS)} (see docs/onnx_lint.md)"
            )
            continue
        if missing:
            report.errors.append(
                f"{label}: op {node.op_type!r} is not supported by the TensorRT "
                f"{' and '.join(missing)} ONNX parser"
            )
            continue
        for problem, versions in _attribute_problems(node, constants):
            report.errors.append(f"{label}: {problem} (TensorRT {' and '.join(versions)})")
        for problem in _type_problems(node, types):
            report.errors.append(f"{label}: {problem}")
        if node.op_type == "Clip" and any(
            name and name not in constants for name in node.input[1:]
        ):
            report.warnings.append(f"{label}: min/max are computed tensors, not constants")
        for attr in node.attribute:  # If / Loop / Scan bodies
            if attr.type == attr.GRAPH:
                _check_graph(helper.get_attribute_value(attr), constants, types, report, counts)
            elif attr.type == attr.GRAPHS:
                for sub in helper.get_attribute_value(attr):
                    _check_graph(sub, constants, types, report, counts)


def _input(node, index: int) -> str:
    return node.input[index] if len(node.input) > index else ""


def _attribute_problems(node, constants: set[str]) -> Iterable[tuple[str, Sequence[str]]]:
    op, both = node.op_type, TRT_VERSIONS
    if op == "Resize":
        mode = _attr(node, "mode", "nearest")
        coord = _attr(node, "coordinate_transformation_mode", "half_pixel")
        nearest = _attr(node, "nearest_mode", "round_prefer_floor")
        if mode not in _RESIZE_MODES:
            yield f"Resize mode {mode!r} unsupported (nearest|linear only)", both
        if coord not in _RESIZE_COORDS:
            yield f"Resize coordinate_transformation_mode {coord!r} unsupported", both
        if mode == "nearest" and nearest not in _RESIZE_NEAREST:
            yield f"Resize nearest_mode {nearest!r} unsupported", both
        if _attr(node, "antialias", 0):
            yield "Resize antialias=1 unsupported", both
        if _attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
            yield "Resize keep_aspect_ratio_policy other than stretch unsupported", both
    elif op == "Pad":
        mode = _attr(node, "mode", "constant")
        if mode not in _PAD_MODES:
            yield f"Pad mode {mode!r} unsupported", both
        axes = _input(node, 3)
        if axes and axes not in constants:
            yield "Pad `axes` input must be an initializer", ("10.3",)
    elif op in ("AveragePool", "MaxPool", "LpPool"):
        dilations = _attr(node, "dilations", [])
        if dilations and any(d != 1 for d in dilations):
            yield f"{op} dilations {list(dilations)} unsupported (must be all ones)", both
        kernel = _attr(node, "kernel_shape", [])
        if op != "LpPool" and kernel and len(kernel) not in (2, 3):
            yield f"{op} is supported for 2D or 3D pooling only, got {len(kernel)}D", both
        if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            yield "MaxPool `Indices` output unsupported", both
    elif op in _REDUCE_OPS or op in ("Squeeze", "Unsqueeze"):
        axes = _input(node, 1)
        if axes and axes not in constants:
            versions = ("10.3",) if op in ("Squeeze", "Unsqueeze") else both
            yield f"{op} `axes` input must be an initializer", versions
    elif op == "Dropout":
        training = _input(node, 2)
        if training and training not in constants:
            yield "Dropout `is_training` must be an initializer (False)", both
    elif op == "CumSum":
        if _input(node, 1) not in constants:
            yield "CumSum `axis` must be an initializer", both
    elif op == "TopK":
        if _attr(node, "sorted", 1) != 1:
            yield "TopK sorted=0 unsupported", both
    elif op == "ScatterND":
        if _attr(node, "reduction", "none") != "none":
            yield "ScatterND reduction unsupported", both
    elif op == "LayerNormalization":
        if any(node.output[1:]):
            yield "LayerNormalization: only the first output Y is supported", both


def _type_problems(node, types: dict[str, int]) -> Iterable[str]:
    op = node.op_type
    if op in ("Cast", "CastLike"):
        target = _attr(node, "to") if op == "Cast" else types.get(_input(node, 1))
        source = types.get(_input(node, 0))
        for elem, role in ((source, "input"), (target, "target")):
            name = _ELEM_NAMES.get(elem or 0)
            if name and name not in _CAST and name != "DOUBLE":
                yield f"Cast {role} type {name} is not supported (TensorRT 10.3 and 11.x)"
        return
    if op in _UNTYPED:
        return
    tensor = (
        (node.output[0] if node.output else "") if op in _TYPED_BY_OUTPUT else (_input(node, 0))
    )
    elem = types.get(tensor)
    name = _ELEM_NAMES.get(elem or 0)
    if not name or name == "DOUBLE":  # DOUBLE is cast down to FP32 by the parser
        return
    row = SUPPORTED_OPS[op]
    bad = [v for v in TRT_VERSIONS if row.get(v) and name not in row[v]]
    if bad:
        yield (
            f"{op} on {name} tensors is not supported by TensorRT {' and '.join(bad)} "
            f"(supported: {', '.join(row[bad[0]])})"
        )


def _check_decomposed_layernorm(graph, report: LintReport) -> None:
    """Warn at each variance of a written-out LayerNorm: ReduceMean(d * d) or ReduceMean(d ^ 2)
    with d = x - ReduceMean(x) (see DECOMPOSED_LAYERNORM_WARNING)."""
    from onnx import numpy_helper

    producer = {out: node for node in graph.node for out in node.output if out}
    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = attr.t

    def is_two(name: str) -> bool:
        tensor = constants.get(name)
        if tensor is None:
            return False
        values = numpy_helper.to_array(tensor)
        return values.size == 1 and float(values.reshape(-1)[0]) == 2.0

    def centred(name: str) -> bool:  # name = x - ReduceMean(x)
        sub = producer.get(name)
        if sub is None or sub.op_type != "Sub" or len(sub.input) < 2:
            return False
        mean = producer.get(sub.input[1])
        return mean is not None and mean.op_type == "ReduceMean" and mean.input[0] == sub.input[0]

    for node in graph.node:
        if node.op_type != "ReduceMean" or not node.input:
            continue
        square = producer.get(node.input[0])
        if square is None:
            continue
        if square.op_type == "Pow" and len(square.input) == 2 and is_two(square.input[1]):
            kind = "Pow"
        elif square.op_type == "Mul" and len(square.input) == 2 and len(set(square.input)) == 1:
            kind = "Mul"
        else:
            continue
        if centred(square.input[0]):
            label = square.name or square.output[0]
            report.warnings.append(DECOMPOSED_LAYERNORM_WARNING.format(square=kind, node=label))


def _check_types_at_io(model, report: LintReport) -> None:
    io_names = {vi.name for vi in [*model.graph.input, *model.graph.output]}
    for vi in model.graph.input:
        if vi.type.tensor_type.elem_type == 11:
            report.warnings.append(f"input {vi.name!r} is DOUBLE; TensorRT casts it to FP32")
    types = _tensor_types(model)
    for name, elem in types.items():
        if elem == 2 and name not in io_names and name not in _constant_names(model.graph):
            report.errors.append(
                f"tensor {name!r} is UINT8 inside the graph; TensorRT 10.3/11.x take UINT8 only "
                "as a network input or output"
            )
        if elem in (8,):
            report.errors.append(f"tensor {name!r} is a STRING tensor; TensorRT has no strings")


# -- (b) static shapes ---------------------------------------------------------------------


def _dims(vi) -> list[int | str]:
    out: list[int | str] = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return out


def _check_static_shapes(model, report: LintReport) -> None:
    """Inputs: only axis 0 may be symbolic. Outputs and intermediates: static once the batch
    is fixed and shape arithmetic folded (TensorRT folds it at build time)."""
    for vi in model.graph.input:
        if not vi.type.HasField("tensor_type"):
            continue
        dims = _dims(vi)
        if not vi.type.tensor_type.HasField("shape"):
            report.errors.append(f"input {vi.name!r} has no shape; declare it (batch axis 0)")
            continue
        for axis, d in enumerate(dims):
            if axis > 0 and not (isinstance(d, int) and d > 0):
                report.errors.append(
                    f"input {vi.name!r} has a dynamic dimension {d!r} at axis {axis} "
                    f"(shape {dims}); only the batch axis 0 may be dynamic"
                )
    if any("dynamic dimension" in e for e in report.errors):
        return
    folded = _fold_with_batch(model, batch=1)
    resolved = {}
    for vi in [*folded.graph.value_info, *folded.graph.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            resolved[vi.name] = _dims(vi)
    for vi in model.graph.output:
        dims = resolved.get(vi.name)
        declared = _dims(vi) if vi.type.tensor_type.HasField("shape") else None
        if dims is None or any(not isinstance(d, int) for d in dims):
            report.errors.append(
                f"output {vi.name!r} has dynamic or unknown dimensions {dims or declared} "
                "beyond the batch axis"
            )
        elif declared and any(not isinstance(d, int) for d in declared[1:]):
            report.warnings.append(
                f"output {vi.name!r} declares symbolic dims {declared[1:]} that resolve to "
                f"{dims[1:]}; read output shapes from the ModelSpec, not the declaration"
            )
    outputs = {vi.name for vi in model.graph.output}
    unresolved = [
        (name, dims)
        for name, dims in resolved.items()
        if name not in outputs and any(not isinstance(d, int) for d in dims)
    ]
    typed = {vi.name for vi in folded.graph.value_info}
    produced = {o for n in folded.graph.node for o in n.output if o}
    missing = sorted(produced - typed - outputs)
    for name, dims in unresolved[:10]:
        report.errors.append(f"tensor {name!r} has dynamic dimensions {dims} beyond the batch axis")
    if len(unresolved) > 10:
        report.errors.append(f"... and {len(unresolved) - 10} more tensors with dynamic dims")
    if missing:
        report.errors.append(
            f"{len(missing)} tensors have unknown shapes after shape inference (e.g. "
            f"{missing[0]!r}); TensorRT needs them static beyond the batch axis"
        )


def _fold_with_batch(model, batch: int):
    """A copy with the batch fixed, shape arithmetic folded (ONNX Runtime basic level), then
    ``onnx.shape_inference.infer_shapes``; falls back to inference alone if ORT cannot load."""
    import onnx
    from onnx import shape_inference

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for vi in fixed.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    del fixed.graph.value_info[:]
    try:
        import tempfile

        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(Path(tmp) / "folded.onnx")
            ort.InferenceSession(
                fixed.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
            fixed = onnx.load(options.optimized_model_filepath)
    except Exception:  # noqa: BLE001 - inference alone still finds what it can
        pass
    try:
        return shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001
        return fixed


# -- (c) FP16 range ------------------------------------------------------------------------


def _check_weights(model, report: LintReport) -> None:
    from onnx import numpy_helper

    tensors = list(model.graph.initializer)
    tensors += [
        a.t
        for n in model.graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    ]
    for tensor in tensors:
        if tensor.data_type not in _FLOAT_ELEMS:
            continue
        values = numpy_helper.to_array(tensor)
        if values.size == 0:
            continue
        peak = float(np.max(np.abs(values)))
        if not math.isfinite(peak) or peak > FP16_MAX:
            report.errors.append(
                f"weight {tensor.name!r} has |value| {peak:.4g} > {FP16_MAX:g}, the float16 "
                "maximum: an FP16 engine would turn it into inf"
            )


def _feeds(model, frames, report: LintReport) -> list[dict[str, np.ndarray]] | None:
    """One feed per frame (batch 1), so memory stays bounded with all tensors exposed."""
    inputs = [
        vi.name
        for vi in model.graph.input
        if vi.name not in {i.name for i in model.graph.initializer}
    ]
    if isinstance(frames, Mapping):
        batch = {k: np.asarray(v) for k, v in frames.items()}
    else:
        spec = _spec_of(model)
        if spec is None:
            report.warnings.append(
                "FP16 range not checked: the model carries no saliq spec and no input "
                "arrays were given"
            )
            return None
        from saliq.preprocess import Preprocessor

        if frames is None:
            from saliq.frames import parity_frames

            frames = parity_frames(DEFAULT_FRAMES, spec.input_size)
        batch = Preprocessor.from_spec(spec)(list(frames), fmt="RGB")
    missing = [name for name in inputs if name not in batch]
    if missing:
        report.errors.append(f"FP16 range check: no data for graph inputs {missing}")
        return None
    count = len(batch[inputs[0]])
    return [{name: batch[name][i : i + 1] for name in inputs} for i in range(count)]


def _spec_of(model):
    """The embedded spec, or None for a graph that has none (the lint then only warns)."""
    from saliq.spec import METADATA_KEY

    from .onnx import spec_of_onnx

    if not any(prop.key == METADATA_KEY for prop in model.metadata_props):
        return None
    return spec_of_onnx(model)


def _check_fp16_range(model, feeds: list[dict[str, np.ndarray]], report: LintReport) -> None:
    import onnx
    import onnxruntime as ort

    types = _tensor_types(model)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    existing = {vi.name for vi in exposed.graph.output}
    names = [o.name for o in exposed.graph.output if types.get(o.name) in _FLOAT_ELEMS]
    for node in exposed.graph.node:
        for out in node.output:
            if out and out not in existing and types.get(out) in _FLOAT_ELEMS:
                exposed.graph.output.append(
                    onnx.helper.make_tensor_value_info(out, types[out], None)
                )
                existing.add(out)
                names.append(out)
    names += [vi.name for vi in model.graph.input if types.get(vi.name) in _FLOAT_ELEMS]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(
            exposed.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the lint collects
        report.errors.append(f"FP16 range check: ONNX Runtime cannot load the graph ({exc})")
        return
    fetch = [n for n in names if n not in feeds[0]]
    peaks: dict[str, float] = {}
    nonfinite: set[str] = set()
    for feed in feeds:
        values = dict(zip(fetch, session.run(fetch, feed)))
        values.update({k: v for k, v in feed.items() if k in names})
        for name, array in values.items():
            array = np.asarray(array)
            if array.size == 0:
                continue
            if not np.all(np.isfinite(array)):
                nonfinite.add(name)
            peak = float(np.max(np.abs(np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0))))
            peaks[name] = max(peaks.get(name, 0.0), peak)
    report.frames = len(feeds)
    report.activations = peaks
    if peaks:
        worst = max(peaks, key=peaks.__getitem__)
        report.max_activation, report.max_activation_tensor = peaks[worst], worst
    _check_hidden_sums_of_squares(model, peaks, report)
    for name in sorted(nonfinite):
        report.errors.append(
            f"tensor {name!r} is NaN/inf in FP32 already on the verification frames"
        )
    over = sorted(
        (n for n, v in peaks.items() if v > report.activation_limit), key=lambda n: -peaks[n]
    )
    for name in over[:10]:
        report.errors.append(
            f"tensor {name!r} reaches |{peaks[name]:.4g}| > {report.activation_limit:.4g} "
            f"(float16 max {FP16_MAX:g} / headroom {FP16_HEADROOM:g}) on the verification "
            "frames; an FP16 engine could overflow: rescale the layer or keep it in FP32"
        )
    if len(over) > 10:
        report.errors.append(f"... and {len(over) - 10} more tensors over the FP16 limit")


# TensorRT's parser builds ReduceL2 as ReduceSumSquare (an elementwise x * x layer and a SUM
# reduction) followed by Sqrt: onnx-tensorrt builtin_op_importers.cpp, ReduceL2 and
# ReduceSumSquare importers (read in the TensorRT 7/8 sources; no 10.x copy was reachable). In
# an FP16 engine that sum of squares is a tensor of its own, the square of ReduceL2's output.
HIDDEN_SQUARE_OPS = ("ReduceL2",)


def _check_hidden_sums_of_squares(model, peaks: dict[str, float], report: LintReport) -> None:
    for node in model.graph.node:
        if node.op_type not in HIDDEN_SQUARE_OPS or not node.output:
            continue
        peak = peaks.get(node.output[0])
        if peak is None or peak * peak <= report.activation_limit:
            continue
        report.errors.append(
            f"{node.op_type} node {node.name or node.output[0]!r}: TensorRT computes it as a sum "
            f"of squares (then Sqrt), which reaches {peak * peak:.4g} > "
            f"{report.activation_limit:.4g} on the verification frames; an FP16 engine could "
            "overflow: divide the input by its max |value| first (the norm direction is unchanged)"
        )
