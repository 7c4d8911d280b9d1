"""TReS (train/models/tres.py): its blocks against hand computations, the Table 4 toggles,
the losses it feeds, ONNX export + SDK scoring on the grid view, and a short training run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import saliq  # noqa: E402
from saliq.errors import ConfigError  # noqa: E402
from saliq.preprocess import Preprocessor  # noqa: E402
from saliq.train.checkpoint import save_checkpoint  # noqa: E402
from saliq.train.losses import LossContext, build_loss  # noqa: E402
from saliq.train.models import model_spec  # noqa: E402
from saliq.train.models.tres import (  # noqa: E402
    TReS,
    hann_kernel,
    regrid_checkpoint,
    sine_positional_encoding,
)
from tests.tiny_specs import tiny_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZE = 64  # whole view and grid crops: two stride-32 cells per side
N_CROPS = 2
TINY = {
    "backbone": "efficientnet_lite0",
    "d_model": 32,  # a projection: the 496 concatenated channels are too slow for a unit test
    "views": {"grid_crops": N_CROPS, "grid_size": SIZE},
}
TRES_LOSS = [
    {"name": "l1"},
    {"name": "tres_ranking", "weight": 0.05},
    {"name": "flip_consistency", "on": ["features"], "optional_outputs": [], "lambda_1": 0.5},
]


def _model(**overrides) -> TReS:
    torch.manual_seed(0)
    return TReS(**{**TINY, **overrides})


def _inputs(batch: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(batch, 3, SIZE, SIZE, generator=gen),
        "grid": torch.randn(batch, N_CROPS, 3, SIZE, SIZE, generator=gen),
    }


def _spec(model: TReS, config: dict):
    return tiny_spec(model, "tres", config, SIZE)


def _frames(n: int) -> list[np.ndarray]:
    """RGB frames larger than a grid crop, noisier one after the other."""
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 160 * 120, dtype=np.float32).reshape(120, 160)
    return [
        np.clip(base[..., None] + rng.normal(0, 10 + 25 * i, (120, 160, 3)), 0, 255).astype(
            np.uint8
        )
        for i in range(n)
    ]


# -- blocks --------------------------------------------------------------------------------


def test_hann_l2_pooling_against_hand_computation():
    from saliq.train.models.tres import L2Pool

    g = hann_kernel().numpy()  # (0.5, 1, 0.5) outer itself, / 4
    np.testing.assert_allclose(g, np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0)
    pool = L2Pool(2)
    # an impulse of 2: P = sqrt(g * 4) mirrored around it (zero padding at the border)
    x = torch.zeros(1, 2, 3, 3)
    x[0, 0, 1, 1] = 2.0
    out = pool(x)[0, 0].numpy()
    expected = np.array([[0.5, math.sqrt(0.5), 0.5], [math.sqrt(0.5), 1.0, math.sqrt(0.5)]])
    np.testing.assert_allclose(out[:2], expected, atol=1e-6)
    np.testing.assert_allclose(pool(x)[0, 1].numpy(), 1e-6, atol=1e-9)  # sqrt(eps) on zeros
    # random input against a direct sum over the window
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(1, 2, 5, 6)).astype(np.float32)
    got = pool(torch.from_numpy(arr))[0].numpy()
    padded = np.pad(arr[0] ** 2, ((0, 0), (1, 1), (1, 1)))
    for c, i, j in [(0, 0, 0), (1, 2, 3), (0, 4, 5), (1, 4, 0)]:
        window = padded[c, i : i + 3, j : j + 3]
        assert got[c, i, j] == pytest.approx(math.sqrt((g * window).sum() + 1e-12), rel=1e-5)


def test_channel_normalisation_is_f_normalize_with_a_bounded_sum_of_squares():
    from saliq.train.models.tres import channel_l2_normalise

    x = torch.randn(2, 2048, 3, 3) * 20.0  # ResNet-50 stage 4: ||x||^2 ~ 8e5 > the FP16 max
    torch.testing.assert_close(channel_l2_normalise(x), torch.nn.functional.normalize(x, dim=1))
    assert torch.equal(channel_l2_normalise(torch.zeros(1, 4, 2, 2)), torch.zeros(1, 4, 2, 2))


def test_sine_encoding_is_detr_s():
    """The authors' PositionEmbeddingSine (normalised cumulative positions), restated."""
    d, h, w = 8, 3, 4
    pe = sine_positional_encoding(d, h, w).numpy().reshape(h, w, d)
    half = d // 2
    y = np.arange(1, h + 1)[:, None] * np.ones((1, w)) / (h + 1e-6) * 2 * np.pi
    x = np.ones((h, 1)) * np.arange(1, w + 1)[None, :] / (w + 1e-6) * 2 * np.pi
    dim_t = 10000.0 ** (2 * (np.arange(half) // 2) / half)
    for pos, offset in ((y, 0), (x, half)):
        for i in range(half):
            trig = np.sin if i % 2 == 0 else np.cos
            np.testing.assert_allclose(pe[..., offset + i], trig(pos / dim_t[i]), atol=1e-6)


# -- the model -----------------------------------------------------------------------------


def test_forward_backward_shapes_and_aux_outputs():
    model = _model().train()
    inputs = _inputs()
    out = model(inputs)
    c4 = model.backbone.feature_channels[-1]
    assert out["score"].shape == (4,) and out["crop_scores"].shape == (4, N_CROPS)
    torch.testing.assert_close(out["score"], out["crop_scores"].mean(1))
    assert ((out["crop_scores"] > 0) & (out["crop_scores"] < 1)).all()
    assert out["features"].shape == (4, N_CROPS * (c4 + 32))
    assert out["conv_map"].shape == (4, N_CROPS, c4, 2, 2)
    assert out["attention_map"].shape == (4, N_CROPS, 32, 2, 2)
    assert set(out) == {*model.outputs, *model.aux_outputs}
    out["score"].sum().backward()
    for name in ("encoder.layers.0.attention.qk.weight", "project.weight", "head.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_crops_are_scored_independently_of_each_other():
    model = _model().eval()
    inputs = _inputs(2)
    swapped = {**inputs, "grid": inputs["grid"].flip(1)}
    with torch.no_grad():
        a, b = model(inputs)["crop_scores"], model(swapped)["crop_scores"]
    torch.testing.assert_close(a, b.flip(1))


@pytest.mark.parametrize(
    ("kwargs", "modules", "aux"),
    [
        ({"transformer": False, "positional_encoding": False}, set(), {"features", "conv_map"}),
        (
            {"positional_encoding": False},
            {"multiscale", "project", "encoder", "fc_attention"},
            {"features", "conv_map", "attention_map"},
        ),
        ({}, {"multiscale", "project", "encoder", "fc_attention"}, None),
    ],
    ids=["backbone_only", "transformer", "transformer_pe"],
)
def test_toggles_change_the_module_tree(kwargs, modules, aux):
    model = _model(**kwargs)
    children = {name for name, _ in model.named_children()}
    assert children - {"backbone", "head"} == modules
    if aux is not None:
        assert set(model.aux_outputs) == aux
    head_in = model.head.in_features
    c4 = model.backbone.feature_channels[-1]
    assert head_in == (2 * c4 if modules else c4)  # fused with f_atten, or F4 alone
    has_pe = kwargs.get("positional_encoding", True)
    assert (getattr(model, "pos", None) is not None) == has_pe
    keys = set(model.state_dict())  # the Hann windows and the encoding are constants
    assert "pos" not in keys and not any(k.startswith("multiscale.") for k in keys)
    if has_pe:
        assert model.pos.shape == (1, 4, 32)
        model.eval()
        with torch.no_grad():
            with_pe = model(_inputs(2))["score"]
            model.pos = torch.zeros_like(model.pos)
            without = model(_inputs(2))["score"]
        assert not torch.allclose(with_pe, without)  # the encoding reaches the score


def test_encoder_width_defaults_to_the_concatenated_stages():
    model = TReS(views={"grid_crops": 1, "grid_size": SIZE})
    assert model.dim == sum(model.backbone.feature_channels) == 496  # Lite0: 24+40+112+320
    assert isinstance(model.project, torch.nn.Identity)
    assert model.encoder.layers[0].attention.heads == 16
    assert model.encoder.layers[0].ff[0].out_features == 64
    assert len(model.encoder.layers) == 2


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"transformer": False}, "positional_encoding needs the transformer"),
        ({"d_model": 40}, "multiple of nhead=16"),
        ({"d_model": 48, "nhead": 16, "positional_encoding": True, "views": {}}, None),
        ({"views": {"grid_crops": 0, "grid_size": SIZE}}, "grid_crops >= 1"),
        ({"views": {"grid_crops": 2, "grid_size": 48}}, "multiple of 32"),
        ({"views": {"grid": 2}}, "unknown keys"),
        ({"feature_dropout": 1.0}, "feature_dropout"),
    ],
)
def test_bad_configuration_is_one_clear_error(kwargs, needle):
    if needle is None:
        TReS(**kwargs)  # a valid counterpart builds
        return
    with pytest.raises(ConfigError, match=needle):
        TReS(**{"views": TINY["views"], **kwargs})


def test_wrong_grid_shape_is_refused():
    inputs = _inputs(2)
    inputs["grid"] = inputs["grid"][:, :1]
    with pytest.raises(ValueError, match=r"grid must be \[N, 2, 3, 64, 64\]"):
        _model()(inputs)


def test_tres_losses_read_what_the_model_exposes():
    model = _model().train()
    inputs = _inputs(6)
    out = model(inputs)
    batch = {"score": torch.tensor([0.9, 0.1, 0.5, 0.7, 0.3, 0.6])}
    criterion = build_loss(TRES_LOSS)
    assert criterion.required_outputs <= {*model.outputs, *model.aux_outputs}
    values = criterion(LossContext(model, inputs, out, batch))
    assert all(torch.isfinite(v) for v in values.values())
    assert values["flip_consistency"] > 0  # flipped crops give other features
    values["loss"].backward()
    assert model.get_parameter("encoder.layers.1.attention.v.weight").grad.abs().sum() > 0
    # the authors' variant: the unflipped conv and attention maps
    authors = build_loss(
        [{"name": "flip_consistency", "on": ["conv_map", "attention_map"], "flip_back": False}]
    )
    assert torch.isfinite(authors(LossContext(model, inputs, model(inputs), batch))["loss"])


# -- export, SDK, checkpoint tools ----------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"transformer": False, "positional_encoding": False}])
def test_onnx_export_parity_lint_and_sdk_scoring(kwargs, tmp_path):
    from saliq.export.onnx import export_onnx

    config = {**TINY, **kwargs}
    model = _model(**kwargs).eval()
    spec = _spec(model, config)
    assert spec.inputs == ("image", "grid") and spec.outputs == ("score", "crop_scores")
    assert spec.view_config["grid_crops"] == N_CROPS and spec.preprocessing_version == 2
    ckpt = save_checkpoint(tmp_path / "tres.safetensors", model, spec, {"test": "tres"})
    report = export_onnx(ckpt, tmp_path / "tres.onnx", verify_images=4)
    assert report.max_score_diff <= 1e-4
    assert report.lint.ok, report.lint.format()
    ops = report.lint.op_counts
    has_encoder = "positional_encoding" not in kwargs
    for op in ("MatMul", "Softmax", "LayerNormalization"):
        assert (op in ops) == has_encoder, (op, ops)
    assert not any("LayerNorm written out" in w for w in report.lint.warnings)

    frames = [f[..., ::-1].copy() for f in _frames(3)]  # BGR, as a camera hands them over
    with saliq.load(ckpt, backend="torch") as torch_assessor:
        from_torch = torch_assessor.assess(frames)
    with saliq.load(tmp_path / "tres.onnx") as onnx_assessor:
        from_onnx = onnx_assessor.assess(frames)
    batch = Preprocessor.from_spec(spec)([f[..., ::-1] for f in frames], fmt="RGB")
    with torch.no_grad():
        ref = model({k: torch.from_numpy(batch[k]) for k in spec.inputs})
    for i, (a, b) in enumerate(zip(from_torch, from_onnx)):
        assert b.saliency is None
        assert a.score == pytest.approx(float(ref["score"][i]), abs=1e-5)
        assert abs(a.score - b.score) <= 1e-4 and 0.0 <= b.score <= 1.0
        assert b.outputs["crop_scores"].shape == (N_CROPS,)
        np.testing.assert_allclose(a.outputs["crop_scores"], b.outputs["crop_scores"], atol=1e-4)
        assert b.score == pytest.approx(float(np.mean(b.outputs["crop_scores"])), abs=1e-5)


def test_regrid_checkpoint_keeps_weights_and_changes_the_crop_count(tmp_path):
    from saliq.checkpoint import load_spec
    from saliq.train.checkpoint import load_checkpoint

    model = _model().eval()
    ckpt = save_checkpoint(tmp_path / "two.safetensors", model, _spec(model, TINY))
    three = regrid_checkpoint(ckpt, tmp_path / "three.safetensors", 3)
    spec = load_spec(three)
    assert spec.view_config["grid_crops"] == 3 and spec.tensor_shape("crop_scores") == (3,)
    assert spec.tensor_shape("grid") == (3, 3, SIZE, SIZE)
    rebuilt = load_checkpoint(three)[0]
    inputs = _inputs(2)
    extra = torch.randn(2, 1, 3, SIZE, SIZE)
    with torch.no_grad():
        two_scores = model(inputs)["crop_scores"]
        three_scores = rebuilt({**inputs, "grid": torch.cat([inputs["grid"], extra], 1)})
    torch.testing.assert_close(three_scores["crop_scores"][:, :2], two_scores)
    with pytest.raises(ConfigError, match="not tres"):
        from saliq.train.models import create_model

        other = create_model("sgdnet", feature_dim=16, hidden=[8]).eval()
        sg_spec = model_spec(
            other,
            name="s",
            architecture="sgdnet",
            backbone="efficientnet_lite0",
            input_height=SIZE,
            input_width=SIZE,
            mean=(0.5,) * 3,
            std=(0.5,) * 3,
            model_config={"feature_dim": 16, "hidden": [8]},
        )
        regrid_checkpoint(save_checkpoint(tmp_path / "s.safetensors", other, sg_spec), "x", 3)


# -- configurations and training -----------------------------------------------------------

TABLE4 = {  # file stem -> (transformer, positional encoding, ranking, consistency)
    "table4_1_baseline": (False, False, False, False),
    "table4_2_ranking_consistency": (False, False, True, True),
    "table4_3_transformer": (True, False, False, False),
    "table4_4_transformer_pe": (True, True, False, False),
    "table4_5_transformer_pe_ranking": (True, True, True, False),
    "table4_6_all": (True, True, True, True),
}


@pytest.mark.parametrize("folder", ["tres", "tres/resnet50"])
def test_every_table4_row_is_a_config(folder):
    from saliq.train.config import load_config

    root = REPO / "configs" / folder
    assert {p.stem for p in root.glob("table4_*.yaml")} == set(TABLE4)
    for stem, (transformer, pe, ranking, consistency) in TABLE4.items():
        config = load_config(root / f"{stem}.yaml")
        kwargs = config.model.kwargs
        assert config.model.architecture == "tres"
        assert (kwargs["transformer"], kwargs["positional_encoding"]) == (transformer, pe), stem
        names = {t["name"]: t for t in config.loss}
        assert ("tres_ranking" in names) == ranking and ("flip_consistency" in names) == consistency
        if ranking:
            assert names["tres_ranking"]["weight"] == 0.05
        if consistency:
            assert names["flip_consistency"]["lambda_1"] == 0.5
            assert names["flip_consistency"]["on"] == ["features"]
        expected = "resnet50" if folder.endswith("resnet50") else "efficientnet_lite0"
        assert config.model.backbone == expected
        assert config.data.source == "native" and kwargs["views"]["grid_size"] == 224
    default = load_config(REPO / "configs" / "tres" / "default.yaml")
    full = load_config(REPO / "configs" / "tres" / "table4_6_all.yaml")
    assert (default.loss, default.model, default.optim) == (full.loss, full.model, full.optim)


def test_lite0_rows_build_at_their_configured_size():
    from saliq.train.config import load_config

    for stem in ("table4_1_baseline", "table4_6_all"):
        config = load_config(REPO / "configs" / "tres" / f"{stem}.yaml")
        model = TReS(backbone=config.model.backbone, **config.model.kwargs)
        assert model.grid_crops == 4 and model.grid_size == 224
        assert (model.dim == 496) == (stem == "table4_6_all")


@pytest.mark.slow
def test_three_training_steps_through_the_trainer(tmp_path):
    """The real trainer on native-resolution items: grid crops in, TReS's three losses."""
    import json

    from saliq.train.config import TrainConfig
    from saliq.train.data.distortions import DISTORTIONS
    from saliq.train.trainer import LOG_NAME, train

    config = TrainConfig.from_dict(
        {
            "name": "test-tres",
            "output_dir": str(tmp_path / "run"),
            "threads": 1,
            "num_workers": 0,
            "device": "cpu",
            "max_steps_per_epoch": 3,
            "loss": TRES_LOSS,
            "model": {
                "architecture": "tres",
                "pretrained": False,
                "input_height": SIZE,
                "input_width": SIZE,
                "kwargs": {
                    "d_model": 32,
                    "frozen_prefixes": ["stem.", "stages.0."],
                    "views": TINY["views"],
                },
            },
            "data": {
                "source": "native",
                "scene_dir": None,
                "sample_photos": True,
                "cache_dir": str(REPO / "work_data" / "samples"),
                "val_fraction": 0.125,
                "test_fraction": 0.125,
                "copies_per_photo": 4,
                "val_photos": 1,
                "exclude_types": sorted(set(DISTORTIONS) - {"gaussian_noise"}),
            },
            "optim": {"epochs": 1, "batch_size": 4, "optimizer": "adam", "warmup_steps": 1},
        }
    )
    best = train(config, progress=False)
    record = json.loads((best.parent / LOG_NAME).read_text().splitlines()[-1])
    for key in ("train_l1", "train_tres_ranking", "train_flip_consistency", "val_srcc"):
        assert key in record and np.isfinite(record[key]), (key, record)
    with saliq.load(best, backend="torch") as assessor:
        spec = assessor.spec
    assert spec.inputs == ("image", "grid") and spec.view_config["grid_crops"] == N_CROPS
