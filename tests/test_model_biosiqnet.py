"""BioSIQNet (train/models/biosiqnet.py): the saliency split on hand-made maps, the blocks and
decoders, the fusion equations, Tables I-II as toggles that change the graph as documented,
its loss, ONNX export + SDK scoring (whole view and grid view), configs and a training run."""

from __future__ import annotations

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
from saliq.train.data.saliency_split import SPLIT_THRESHOLD, split_saliency  # noqa: E402
from saliq.train.losses import LossContext, build_loss  # noqa: E402
from saliq.train.models import model_spec  # noqa: E402
from saliq.train.models.backbones import build_backbone  # noqa: E402
from saliq.train.models.biosiqnet import (  # noqa: E402
    BLOCK_STRIDES,
    BioSIQNet,
    SaliencyDecoder,
    encoder_blocks,
    grid_view_checkpoint,
    run_block,
)

REPO = Path(__file__).resolve().parents[1]
H, W = 64, 96  # two x three stride-32 cells
TINY = {"decoder_channels": [8, 8, 8, 8], "hidden": [8]}
LOSS = [  # docs/losses.md, "BioSIQNet"
    {"name": "l2"},
    {"name": "kld_cc_sim", "on": "saliency_high", "target": "saliency_high", "label": "sal_high"},
    {"name": "kld_cc_sim", "on": "saliency_low", "target": "saliency_low", "label": "sal_low"},
]


def _model(**overrides) -> BioSIQNet:
    torch.manual_seed(0)
    return BioSIQNet(**{**TINY, **overrides})


def _image(batch: int = 2, seed: int = 0, h: int = H, w: int = W) -> torch.Tensor:
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _spec(model: BioSIQNet, config: dict, h: int = H, w: int = W):
    return model_spec(
        model,
        name="test-biosiqnet",
        architecture="biosiqnet",
        backbone="efficientnet_lite0",
        input_height=h,
        input_width=w,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        model_config=config,
    )


def _targets(batch: int, hw: tuple[int, int], seed: int = 0) -> dict[str, torch.Tensor]:
    """Blob-shaped saliency maps split as the data layer does; scores spread over [0, 1]."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0 : hw[0], 0 : hw[1]]
    highs, lows = [], []
    for _ in range(batch):
        cy, cx = rng.uniform(0, hw[0]), rng.uniform(0, hw[1])
        blob = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * (0.25 * hw[1]) ** 2))
        high, low = split_saliency(blob)
        highs.append(high[None])
        lows.append(low[None])
    return {
        "score": torch.linspace(0.1, 0.9, batch),
        "saliency_high": torch.from_numpy(np.stack(highs)),
        "saliency_low": torch.from_numpy(np.stack(lows)),
    }


# -- the saliency split --------------------------------------------------------------------


def test_split_on_hand_made_maps():
    # 8-bit intensities, max 255: the paper's threshold 120 puts 120 (and above) in the high map
    m = np.array([[0, 60, 119], [120, 255, 10]], np.float32)
    high, low = split_saliency(m)
    np.testing.assert_allclose(high, np.array([[0, 0, 0], [120, 255, 0]]) / 375.0, rtol=1e-6)
    np.testing.assert_allclose(low, np.array([[0, 60, 119], [0, 0, 10]]) / 189.0, rtol=1e-6)
    assert high.dtype == low.dtype == np.float32
    # the threshold is relative to the maximum: any positive scale gives the same split
    for scale in (1e-6, 3.7, 1e4):
        h2, l2 = split_saliency(m * scale)
        np.testing.assert_allclose(h2, high, rtol=1e-5)
        np.testing.assert_allclose(l2, low, rtol=1e-5)
    assert SPLIT_THRESHOLD == pytest.approx(120 / 255)
    # another threshold (Fig. 5 sweeps 70..150): 60 joins the high part at 60/255
    high60, low60 = split_saliency(m, threshold=60 / 255)
    np.testing.assert_allclose(high60, np.array([[0, 60, 119], [120, 255, 0]]) / 554.0, rtol=1e-6)
    np.testing.assert_allclose(low60, np.array([[0, 0, 0], [0, 0, 10]]) / 10.0, rtol=1e-6)


def test_split_edge_cases():
    zeros = np.zeros((1, 3, 4), np.float32)
    high, low = split_saliency(zeros)
    assert high.shape == low.shape == (1, 3, 4) and not high.any() and not low.any()
    flat = np.full((2, 2), 0.3, np.float32)  # every pixel is the maximum: no low part
    high, low = split_saliency(flat)
    np.testing.assert_allclose(high, 0.25)
    assert not low.any()
    # threshold 1: only the maxima are high
    high, low = split_saliency(np.array([1.0, 2.0, 2.0, 0.5]), threshold=1.0)
    np.testing.assert_allclose(high, [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(low, [1 / 1.5, 0, 0, 0.5 / 1.5])
    for bad in (0.0, 1.5, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match="threshold"):
            split_saliency(flat, threshold=bad)
    with pytest.raises(ValueError, match="non-negative"):
        split_saliency(np.array([[1.0, -0.1]]))


# -- blocks and decoders -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "vgg19"])
def test_blocks_reproduce_forward_features(name):
    net = build_backbone(name).eval()
    x = _image(1, h=64, w=64)
    with torch.no_grad():
        reference = net.forward_features(x)
        h, ours = x, []
        for block in encoder_blocks(net):
            h = run_block(block, h)
            ours.append(h)
    assert len(ours) == 4
    for k, (a, b) in enumerate(zip(reference, ours), start=1):
        assert torch.equal(a, b) and a.shape[-1] == 64 // BLOCK_STRIDES[k]
    owned = {id(p) for p in net.parameters()}
    cut = {id(p) for block in encoder_blocks(net) for m in block for p in m.parameters()}
    assert cut == owned  # the blocks are the backbone's own modules, all of them


@pytest.mark.parametrize(
    ("stride", "strides", "features"),
    [
        (1, (32, 16, 8, 4, 2), {32: 6, 16: 5, 8: 4, 4: 3}),
        (4, (32, 16, 8, 4, 4), {32: 6, 16: 5, 8: 4, 4: 3}),
        (8, (32, 16, 8, 8, 8), {32: 6, 16: 5, 8: 4}),
        (32, (32, 32, 32, 32, 32), {32: 6}),
    ],
)
def test_decoder_five_steps_up_to_the_declared_stride(stride, strides, features):
    decoder = SaliencyDecoder(12, (6, 5, 4, 3), stride)
    assert len(decoder.convs) == 5 and decoder.step_strides() == strides
    assert [c.out_channels for c in decoder.convs] == [6, 5, 4, 3, 1]
    x = torch.randn(2, 12, 2, 3)
    saliency, steps = decoder(x)
    assert saliency.shape == (2, 1, 2 * 32 // stride, 3 * 32 // stride)
    assert (saliency >= 0).all()
    # each stride's first conv output, on that stride's grid (the shared encoder fuses these)
    assert {s: f.shape[1] for s, f in steps.items()} == features
    assert all(f.shape[-2:] == (2 * 32 // s, 3 * 32 // s) for s, f in steps.items())
    if stride == 1:  # the paper's fifth upsampling duplicates the stride-2 map (nearest)
        torch.testing.assert_close(saliency[..., ::2, ::2], saliency[..., 1::2, 1::2])


# -- the model -----------------------------------------------------------------------------


@pytest.mark.parametrize("encoders", ["shared", "separate"])
def test_forward_backward_shapes_and_outputs(encoders):
    model = _model(encoders=encoders).train()
    out = model({"image": _image(4)})
    assert model.inputs == ("image",) and model.outputs == ("score", "saliency")
    assert model.aux_outputs == ("saliency_high", "saliency_low", "features")
    assert set(out) == {*model.outputs, *model.aux_outputs}
    assert out["score"].shape == (4,) and ((out["score"] > 0) & (out["score"] < 1)).all()
    for name in ("saliency", "saliency_high", "saliency_low"):
        assert out[name].shape == (4, 1, H // 4, W // 4) and (out[name] >= 0).all()
    assert out["saliency"] is out["saliency_high"]  # exported: the high-saliency map
    assert out["features"].shape == (4, model.backbone.feature_channels[-1])
    criterion = build_loss(LOSS)
    values = criterion(LossContext(model, {}, out, _targets(4, (H // 4, W // 4))))
    values["loss"].backward()
    names = ["fusions.low.a", "fusions.high.b", "decoders.low.convs.0.weight", "head.net.0.weight"]
    names += ["decoders.high.convs.4.weight", "backbone.stages.6.0.project.conv.weight"]
    if encoders == "separate":
        names += ["saliency_encoders.low.stages.2.0.project.conv.weight"]
        names += ["saliency_encoders.high.stages.6.0.project.conv.weight"]
    for name in names:
        assert model.get_parameter(name).grad.abs().sum() > 0, name


@pytest.mark.parametrize("encoders", ["shared", "separate"])
def test_fusion_is_eqs_1_and_2(encoders):
    """alpha = gamma = 0, beta = sigma = 1 removes the saliency features: the score is then the
    quality encoder's alone; any other scalars change it."""
    model = _model(encoders=encoders).eval()
    for fusion in model.fusions.values():
        assert fusion.a.item() == fusion.b.item() == 1.0  # init 1 (Sec. IV-A)
    x = _image(2)
    with torch.no_grad():
        fused = model({"image": x})
        for fusion in model.fusions.values():
            fusion.a.zero_()
        alone = model({"image": x})
        plain = model.backbone.forward_features(x)[-1].mean((2, 3))
        torch.testing.assert_close(alone["features"], plain)
        torch.testing.assert_close(alone["score"], torch.sigmoid(model.head.net(plain)[:, 0]))
        assert not torch.allclose(fused["features"], alone["features"])
        # Eq. 1 by hand on a tiny case
        fusion = model.fusions["low"]
        fusion.a.fill_(0.5)
        fusion.b.fill_(2.0)
        f_iq = torch.randn(1, model.backbone.feature_channels[1], 3, 3)
        shared = encoders == "shared"
        width = fusion.project.in_channels if shared else model.backbone.feature_channels[1]
        f_ls = torch.randn(1, width, 3, 3)
        torch.testing.assert_close(fusion(f_ls, f_iq), 0.5 * fusion.project(f_ls) + 2.0 * f_iq)


ROWS = {  # Table I: (low branch, high branch) -> decoders / fusions, exported outputs, aux
    "baseline": ((False, False), set(), ("score",), ("features",)),
    "low": ((True, False), {"low"}, ("score",), ("saliency_low", "features")),
    "high": ((False, True), {"high"}, ("score", "saliency"), ("saliency_high", "features")),
    "full": (
        (True, True),
        {"low", "high"},
        ("score", "saliency"),
        ("saliency_high", "saliency_low", "features"),
    ),
}


@pytest.mark.parametrize("encoders", ["shared", "separate"])
@pytest.mark.parametrize("row", sorted(ROWS))
def test_table1_toggles_change_the_module_tree(row, encoders):
    (low, high), branches, outputs, aux = ROWS[row]
    model = _model(low_saliency=low, high_saliency=high, encoders=encoders)
    assert set(model.decoders) == set(model.fusions) == branches
    assert set(model.saliency_encoders) == (branches if encoders == "separate" else set())
    assert model.outputs == outputs and model.aux_outputs == aux
    out = model.eval()({"image": _image(1)})
    assert set(out) == {*outputs, *aux}
    backbone = sum(p.numel() for p in model.backbone.parameters())
    extra = sum(p.numel() for p in model.saliency_encoders.parameters())
    assert extra == (len(branches) * backbone if encoders == "separate" else 0)
    if encoders == "shared":  # decoder features projected onto the fused block's channels
        for name, fusion in model.fusions.items():
            block = model.low_block if name == "low" else model.high_block
            assert fusion.project.out_channels == model.backbone.feature_channels[block - 1]
    else:
        assert all(isinstance(f.project, torch.nn.Identity) for f in model.fusions.values())


def _block_calls(model: BioSIQNet, x: torch.Tensor) -> tuple[list[int], dict[str, tuple]]:
    """How often each quality-encoder block ran, and the grid each fusion saw."""
    calls = [0, 0, 0, 0]
    seen: dict[str, tuple] = {}
    hooks = [
        block[-1].register_forward_hook(lambda *_, k=k: calls.__setitem__(k, calls[k] + 1))
        for k, block in enumerate(model._blocks)
    ]
    for name, fusion in model.fusions.items():
        hooks.append(
            fusion.register_forward_hook(
                lambda _m, args, out, n=name: seen.__setitem__(n, tuple(out.shape[-3:]))
            )
        )
    with torch.no_grad():
        model.eval()({"image": x})
    for hook in hooks:
        hook.remove()
    return calls, seen


@pytest.mark.parametrize("low_block", [1, 2, 3, 4])
@pytest.mark.parametrize("high_block", [1, 2, 3, 4])
def test_table2_placement_decides_where_the_maps_enter(low_block, high_block):
    model = _model(low_block=low_block, high_block=high_block)
    calls, seen = _block_calls(model, _image(1))
    channels = model.backbone.feature_channels
    for name, block in (("low", low_block), ("high", high_block)):
        stride = BLOCK_STRIDES[block]
        assert seen[name] == (channels[block - 1], H // stride, W // stride), name
    # shared encoder: blocks after the earliest fusion run again (the quality pass), none before
    first = min(low_block, high_block)
    assert calls == [1 if k <= first else 2 for k in range(1, 5)]


def test_separate_encoders_run_each_block_once_per_encoder():
    model = _model(encoders="separate", low_block=1, high_block=3)
    calls, seen = _block_calls(model, _image(1))
    assert calls == [1, 1, 1, 1]
    channels = model.backbone.feature_channels
    assert seen == {"low": (channels[0], H // 4, W // 4), "high": (channels[2], H // 16, W // 16)}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"encoders": "triple"}, "choose shared or separate"),
        ({"low_block": 5}, "low_block=5 must be a block number"),
        ({"high_block": True}, "high_block=True"),
        ({"decoder_channels": [8, 8, 8]}, "4 positive integers"),
        ({"saliency_stride": 3}, "saliency_stride=3"),
        ({"saliency_stride": 8, "low_block": 1}, "set saliency_stride <= 4 or encoders: separate"),
        ({"views": {"grid_crops": 2, "grid_size": 48}}, "multiple of 32"),
        ({"views": {"grid": 2}}, "unknown keys"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_configuration_is_one_clear_error(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        _model(**kwargs)


def test_separate_encoders_allow_coarse_maps_at_any_placement():
    model = _model(encoders="separate", saliency_stride=32, low_block=1)
    assert model({"image": _image(1)})["saliency_low"].shape == (1, 1, H // 32, W // 32)


def test_loss_matches_the_paper_formula_by_hand():
    """L = L2 + sum over the two maps of 5 KLD - CC - SIM (eps 1e-8), on sum-normalised maps."""
    model = _model().eval()
    with torch.no_grad():
        out = model({"image": _image(2)})
    targets = _targets(2, (H // 4, W // 4), seed=3)
    loss = [dict(t, eps=1.0e-8) if t["name"] == "kld_cc_sim" else t for t in LOSS]
    values = build_loss(loss)(LossContext(model, {}, out, targets))

    def by_hand(p: np.ndarray, q: np.ndarray) -> float:
        total = 0.0
        for pi, qi in zip(p, q):
            P, Q = pi / pi.sum(), qi / qi.sum()
            kld = float(np.sum(Q * np.log(1e-8 + Q / (P + 1e-8))))
            cc = float(np.corrcoef(pi.ravel(), qi.ravel())[0, 1])
            Pm, Qm = [(a - a.min()) / (a.max() - a.min()) for a in (pi, qi)]
            sim = float(np.minimum(Pm / Pm.sum(), Qm / Qm.sum()).sum())
            total += 5 * kld - cc - sim
        return total / len(p)

    for name in ("high", "low"):
        p = out[f"saliency_{name}"].double().numpy()[:, 0]
        q = targets[f"saliency_{name}"].double().numpy()[:, 0]
        assert float(values[f"sal_{name}"]) == pytest.approx(by_hand(p, q), rel=1e-4, abs=1e-5)
    l2 = float(((out["score"] - targets["score"]) ** 2).mean())
    assert float(values["l2"]) == pytest.approx(l2, rel=1e-6)
    expected = l2 + float(values["sal_high"]) + float(values["sal_low"])
    assert float(values["loss"]) == pytest.approx(expected, rel=1e-6)


# -- grid view, export, SDK ----------------------------------------------------------------


def test_grid_view_scores_crops_as_the_whole_view_model_scores_them(tmp_path):
    model = _model().eval()
    ckpt = save_checkpoint(tmp_path / "b.safetensors", model, _spec(model, TINY))
    grid_ckpt = grid_view_checkpoint(ckpt, tmp_path / "grid.safetensors", 2, 64)
    from saliq.checkpoint import load_spec
    from saliq.train.checkpoint import load_checkpoint

    spec = load_spec(grid_ckpt)
    assert spec.inputs == ("image", "grid") and spec.preprocessing_version == 2
    assert spec.outputs == ("score", "saliency", "crop_scores")
    assert spec.tensor_shape("grid") == (2, 3, 64, 64) and spec.tensor_shape("crop_scores") == (2,)
    grid_model = load_checkpoint(grid_ckpt)[0]
    image, crops = _image(2), torch.randn(2, 2, 3, 64, 64)
    with torch.no_grad():
        out = grid_model({"image": image, "grid": crops})
        whole = model({"image": image})
        each = [model({"image": crops[:, k]})["score"] for k in range(2)]
    torch.testing.assert_close(out["crop_scores"], torch.stack(each, 1))
    torch.testing.assert_close(out["score"], torch.stack(each, 1).mean(1))
    for name in ("saliency", "saliency_low"):  # the maps come from the whole frame
        torch.testing.assert_close(out[name], whole[name])
    back = load_checkpoint(grid_view_checkpoint(grid_ckpt, tmp_path / "back.safetensors", 0))[0]
    with torch.no_grad():
        torch.testing.assert_close(back({"image": image})["score"], whole["score"])
    with pytest.raises(ValueError, match=r"grid must be \[N, 2, 3, 64, 64\]"):
        grid_model({"image": image, "grid": crops[:, :1]})


def _frames(n: int) -> list[np.ndarray]:
    """RGB frames larger than a grid crop, noisier one after the other."""
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 160 * 120, dtype=np.float32).reshape(120, 160)
    noisy = [base[..., None] + rng.normal(0, 10 + 25 * i, (120, 160, 3)) for i in range(n)]
    return [np.clip(f, 0, 255).astype(np.uint8) for f in noisy]


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs",
    [{"encoders": "separate"}, {"views": {"grid_crops": 2, "grid_size": 64}}],
    ids=["separate_whole_view", "shared_grid_view"],
)
def test_onnx_export_parity_lint_and_sdk_scoring(kwargs, tmp_path):
    from saliq.export.onnx import export_onnx

    config = {**TINY, **kwargs}
    model = _model(**kwargs).eval()
    spec = _spec(model, config)
    ckpt = save_checkpoint(tmp_path / "b.safetensors", model, spec, {"test": "biosiqnet"})
    report = export_onnx(ckpt, tmp_path / "b.onnx", verify_images=2)
    assert report.max_score_diff <= 1e-4
    assert report.lint.ok and not report.lint.warnings, report.lint.format()

    frames = [f[..., ::-1].copy() for f in _frames(2)]  # BGR, as a camera hands them over
    with saliq.load(ckpt, backend="torch") as torch_assessor:
        from_torch = torch_assessor.assess(frames)
    with saliq.load(tmp_path / "b.onnx") as onnx_assessor:
        assert onnx_assessor.spec.outputs == spec.outputs
        from_onnx = onnx_assessor.assess(frames)
    batch = Preprocessor.from_spec(spec)([f[..., ::-1] for f in frames], fmt="RGB")
    with torch.no_grad():
        ref = model({k: torch.from_numpy(batch[k]) for k in spec.inputs})
    for i, (a, b) in enumerate(zip(from_torch, from_onnx)):
        assert a.score == pytest.approx(float(ref["score"][i]), abs=1e-5)
        assert abs(a.score - b.score) <= 1e-4 and 0.0 <= b.score <= 1.0
        assert b.saliency.shape == spec.saliency_size == (H // 4, W // 4)
        np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-4)
        if "views" in kwargs:
            np.testing.assert_allclose(a.outputs["crop_scores"], b.outputs["crop_scores"], 1e-4)
            assert b.score == pytest.approx(float(np.mean(b.outputs["crop_scores"])), abs=1e-5)


# -- configurations and training -----------------------------------------------------------

TABLE1 = {  # file stem -> (low, high, loss terms as (on, target))
    "table1_1_baseline": (False, False, set()),
    "table1_2_low": (True, False, {("saliency_low", "saliency_low")}),
    "table1_3_high": (False, True, {("saliency_high", "saliency_high")}),
    "table1_4_entire": (False, True, {("saliency_high", "saliency")}),
    "table1_5_full": (
        True,
        True,
        {("saliency_low", "saliency_low"), ("saliency_high", "saliency_high")},
    ),
}


def _load(path: Path):
    from saliq.train.config import load_config

    return load_config(path)


def test_every_table1_row_is_a_config_on_the_same_budget():
    root = REPO / "configs" / "biosiqnet"
    default = _load(root / "default.yaml")
    assert {p.stem for p in root.glob("table1_*.yaml")} == set(TABLE1)
    for stem, (low, high, maps) in TABLE1.items():
        config = _load(root / f"{stem}.yaml")
        kwargs = config.model.kwargs
        assert (kwargs["low_saliency"], kwargs["high_saliency"]) == (low, high), stem
        assert (kwargs["low_block"], kwargs["high_block"]) == (2, 4)
        assert config.model.architecture == "biosiqnet"
        assert config.model.backbone == "efficientnet_lite0" and kwargs["encoders"] == "shared"
        terms = config.loss
        assert terms[0] == {"name": "l2"}
        saliency_terms = terms[1:]
        assert {(t["on"], t["target"]) for t in saliency_terms} == maps, stem
        for term in saliency_terms:
            assert term["name"] == "kld_cc_sim" and term["eps"] == 1.0e-8
        for key in ("data", "optim"):
            assert getattr(config, key) == getattr(default, key), (stem, key)
        assert config.output_dir != default.output_dir
    full = _load(root / "table1_5_full.yaml")
    assert (full.loss, full.model, full.optim, full.data) == (
        default.loss,
        default.model,
        default.optim,
        default.data,
    )


def test_table2_placements_differ_from_the_full_row_only_in_the_two_blocks():
    root = REPO / "configs" / "biosiqnet" / "table2"
    full = _load(REPO / "configs" / "biosiqnet" / "table1_5_full.yaml")
    stems = {p.stem for p in root.glob("*.yaml")}
    assert stems == {f"low{l}_high{h}" for l in range(1, 5) for h in range(1, 5)}
    for stem in sorted(stems):
        config = _load(root / f"{stem}.yaml")
        low, high = int(stem[3]), int(stem[-1])
        kwargs = dict(config.model.kwargs)
        assert (kwargs.pop("low_block"), kwargs.pop("high_block")) == (low, high)
        reference = {k: v for k, v in full.model.kwargs.items() if not k.endswith("_block")}
        assert kwargs == reference
        for key in ("loss", "data", "optim", "seed"):
            assert getattr(config, key) == getattr(full, key), (stem, key)
        assert stem.replace("_", "-") in config.name and stem in config.output_dir
        # and the placement builds (random weights) with its fusions where the file says
        model = BioSIQNet(**{**config.model.kwargs, **TINY})
        assert (model.low_block, model.high_block) == (low, high)


def test_paper_vgg19_config_is_the_paper_recipe():
    config = _load(REPO / "configs" / "biosiqnet" / "vgg19" / "paper.yaml")
    kwargs = config.model.kwargs
    assert config.model.backbone == "vgg19" and kwargs["encoders"] == "separate"
    assert (config.model.input_height, config.model.input_width) == (288, 384)
    assert config.data.crop == [288, 384] and kwargs["saliency_stride"] == 1
    assert (config.optim.lr, config.optim.batch_size, config.optim.epochs) == (5e-5, 4, 50)
    assert (config.optim.schedule, config.optim.step_epochs, config.optim.gamma) == (
        "step",
        10,
        0.1,
    )
    assert config.optim.early_stopping_patience == 5
    sal = [t for t in config.loss if t["name"] == "kld_cc_sim"]
    assert len(sal) == 2 and all((t["kld"], t["cc"], t["sim"]) == (5, -2, -1) for t in sal)


def test_cpu_default_builds_at_its_configured_size():
    config = _load(REPO / "configs" / "biosiqnet" / "default.yaml")
    model = BioSIQNet(backbone=config.model.backbone, **config.model.kwargs)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for prefix in ("stem.", "stages.0.", "stages.1."):  # block 1 stays at its ImageNet weights
        assert not any(n.startswith("backbone." + prefix) for n in trainable), prefix
    assert "backbone.stages.2.0.project.conv.weight" in trainable  # block 2 (the fusion) learns
    spec = _spec(model, config.model.kwargs, config.model.input_height, config.model.input_width)
    assert spec.saliency_size == (56, 56) and spec.outputs == ("score", "saliency")


def test_three_optimiser_steps_lower_the_loss_on_a_fixed_batch():
    model = _model(dropout=0.0, drop_connect=False).train()
    criterion = build_loss(LOSS)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    inputs, targets = {"image": _image(2)}, _targets(2, (H // 4, W // 4))
    losses = []
    for _ in range(4):
        values = criterion(LossContext(model, inputs, model(inputs), targets))
        optimiser.zero_grad()
        values["loss"].backward()
        optimiser.step()
        losses.append(float(values["loss"]))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert float(model.fusions["low"].a) != 1.0  # the scalars learn


def _items_split_the_saliency_target() -> bool:
    from saliq.train.data import items

    return "saliency_high" in items.TARGET_NAMES


@pytest.mark.slow
@pytest.mark.skipif(
    not _items_split_the_saliency_target(),
    reason="the data layer does not emit saliency_high/saliency_low yet (train/data/items.py)",
)
def test_three_training_steps_through_the_trainer(tmp_path):
    import json

    from saliq.train.config import TrainConfig
    from saliq.train.trainer import LOG_NAME, train

    config = TrainConfig.from_dict(
        {
            "name": "test-biosiqnet",
            "output_dir": str(tmp_path / "run"),
            "threads": 1,
            "num_workers": 0,
            "device": "cpu",
            "max_steps_per_epoch": 3,
            "loss": LOSS,
            "model": {
                "architecture": "biosiqnet",
                "pretrained": True,  # a random backbone scores all frames alike: SRCC undefined
                "input_height": 64,
                "input_width": 64,
                "kwargs": {**TINY, "frozen_prefixes": ["stem.", "stages.0."]},
            },
            "data": {
                "scene_dir": None,
                "sample_photos": True,
                "cache_dir": str(REPO / "work_data" / "samples"),
                "val_fraction": 0.25,
                "test_fraction": 0.25,
                "copies_per_photo": 2,
                "val_photos": 1,
            },
            "optim": {"epochs": 1, "batch_size": 4, "warmup_steps": 1},
        }
    )
    best = train(config, progress=False)
    record = json.loads((best.parent / LOG_NAME).read_text().splitlines()[-1])
    for key in ("train_l2", "train_sal_high", "train_sal_low", "val_srcc"):
        assert key in record and np.isfinite(record[key]), (key, record)
    with saliq.load(best, backend="torch") as assessor:
        result = assessor.assess([_frames(1)[0][..., ::-1].copy()])[0]
    assert 0.0 <= result.score <= 1.0 and result.saliency.shape == (16, 16)
