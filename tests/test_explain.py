"""Kirillov et al.'s explanation tools (saliq.train.explain): FracCP on hand-made cases, MoRF/LeRF
masking on synthetic images with known maps, HiResCAM/GradCAM against their closed form on a
GAP + linear model, rotation round trips, and ``saliq explain`` writing a figure."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from saliq.errors import ConfigError  # noqa: E402
from saliq.train.explain import cam as C  # noqa: E402
from saliq.train.explain import masking as M  # noqa: E402
from saliq.train.explain.fraccp import fraccp, fraccp_per_group  # noqa: E402
from tests.tiny_specs import tiny_spec  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is much faster than two on a shared 2-core machine
    (the second only adds synchronisation); restored for the rest of the session."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# FracCP
# --------------------------------------------------------------------------------------------


def test_fraccp_perfect_and_inverse_order():
    labels = [1, 2, 3, 4, 5, 6]
    groups = ["a", "a", "a", "b", "b", "b"]
    assert fraccp([0.1, 0.2, 0.3, 0.5, 0.6, 0.9], labels, groups) == 1.0
    assert fraccp([0.3, 0.2, 0.1, 0.9, 0.6, 0.5], labels, groups) == 0.0
    # the order across groups is irrelevant: group b far below group a is still perfect
    assert fraccp([0.7, 0.8, 0.9, 0.1, 0.2, 0.3], labels, groups) == 1.0


def test_fraccp_is_a_mean_over_groups_not_over_pairs():
    # a: 4 items, 6 pairs, all right (1.0); b: 2 items, 1 pair, wrong (0.0) -> 0.5, not 6/7
    scores = [1, 2, 3, 4, 2, 1]
    labels = [1, 2, 3, 4, 1, 2]
    groups = ["a"] * 4 + ["b"] * 2
    assert fraccp(scores, labels, groups) == 0.5
    assert fraccp_per_group(scores, labels, groups) == {"a": 1.0, "b": 0.0}


def test_fraccp_ties():
    # labels tied: the pair is left out; (1, 3) and (2, 3) decide -> one right, one wrong
    assert fraccp([0.2, 0.9, 0.5], [1, 1, 2], ["g"] * 3) == 0.5
    # predictions tied on different labels: half credit; (0,1) tie, (0,2) right, (1,2) right
    assert fraccp([0.4, 0.4, 0.8], [1, 2, 3], ["g"] * 3) == pytest.approx((0.5 + 1 + 1) / 3)
    assert fraccp([0.4, 0.4], [1, 2], ["g"] * 2, tie_credit=0.0) == 0.0
    # within score_tol counts as a tie
    assert fraccp([0.40, 0.41], [1, 2], ["g"] * 2, score_tol=0.02) == 0.5


def test_fraccp_single_pair_and_pairless_groups():
    scores, labels = [0.1, 0.9, 0.5, 0.3, 0.7], [1, 2, 3, 3, 3]
    groups = ["one_pair", "one_pair", "single", "all_tied", "all_tied"]
    per = fraccp_per_group(scores, labels, groups)
    assert per["one_pair"] == 1.0
    assert math.isnan(per["single"]) and math.isnan(per["all_tied"])
    assert fraccp(scores, labels, groups) == 1.0  # pairless groups left out
    with pytest.raises(ValueError, match="no group has two items"):
        fraccp([0.1, 0.2], [1, 1], ["a", "a"])
    with pytest.raises(ValueError, match="one entry per image"):
        fraccp([0.1, 0.2], [1, 2], ["a"])
    with pytest.raises(ValueError, match="NaN"):
        fraccp([0.1, float("nan")], [1, 2], ["a", "a"])


# --------------------------------------------------------------------------------------------
# MoRF / LeRF masking
# --------------------------------------------------------------------------------------------


def test_blur_kernel_scales_with_the_frame():
    assert M.blur_kernel_size(768, 1024) == 101  # the paper's ~101 px on KonIQ
    assert M.blur_kernel_size(1080, 1920) == 189
    assert M.blur_kernel_size(20, 20) == 3  # at least a 3x3 kernel


def test_morf_masks_exactly_the_top_quantile():
    rng = np.random.default_rng(1)
    h, w = 48, 64
    explanation = rng.random((6, 8)).astype(np.float32)
    smooth = M.smooth_map(explanation, h, w)
    order = M.relevance_order(explanation, h, w)
    assert sorted(order.tolist()) == list(range(h * w))  # a permutation
    for f in (0.1, 0.25, 0.5, 0.9):
        morf = M.masks_for(order, f, "morf", h, w)
        lerf = M.masks_for(order, f, "lerf", h, w)
        assert morf.sum() == lerf.sum() == round(f * h * w)
        # every masked pixel is at least as relevant as every kept one (MoRF), and the reverse
        assert smooth[morf].min() >= smooth[~morf].max()
        assert smooth[lerf].max() <= smooth[~lerf].min()
        # nested: a larger fraction masks a superset
        assert not (M.masks_for(order, f / 2, "morf", h, w) & ~morf).any()


def test_a_block_map_is_masked_as_the_block():
    h, w = 40, 60
    explanation = np.zeros((h, w), np.float32)
    explanation[:, :15] = 1.0  # the left quarter is relevant
    order = M.relevance_order(explanation, h, w)
    morf = M.masks_for(order, 0.25, "morf", h, w)
    assert morf[:, :15].all() and not morf[:, 15:].any()
    lerf = M.masks_for(order, 0.75, "lerf", h, w)
    assert (lerf == ~morf).all()
    # ties in a flat zero region are broken by the wider blur: nearer the block ranks first
    flat = np.zeros((h, w), np.float32)
    flat[:, :2] = 1.0
    order = M.relevance_order(flat, h, w)
    columns = order % w
    assert columns[: h * 10].max() < columns[-h * 10 :].min()


def _weighted_brightness(weights: np.ndarray):
    """A toy scorer that only looks where ``weights`` are high: mean brightness there."""

    def score(frames):
        return np.array([(f.mean(2) / 255.0 * weights).sum() / weights.sum() for f in frames])

    return score


def test_masking_curves_for_a_toy_scorer():
    h, w = 40, 60
    yy, xx = np.mgrid[0:h, 0:w]
    relevance = np.exp(-((xx - 40) ** 2 + (yy - 15) ** 2) / (2 * 6.0**2)).astype(np.float32)
    rgb = np.full((h, w, 3), 200, np.uint8)
    calls = []

    def score(frames):
        calls.append(len(frames))
        return _weighted_brightness(relevance + 0.05)(frames)

    fractions = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    out = M.masking_curves(
        score, rgb, {"truth": relevance}, ("black", "mean"), fractions=fractions, random_draws=2
    )
    # per fill: 2 modes x 4 inner fractions + 2 draws x 4 + the two shared extremes
    assert sum(calls) == 2 * (8 + 8 + 2)
    black = out["black"]
    for curve in (black["truth"]["morf"], black["truth"]["lerf"], black["random"]["random"]):
        assert curve[0] == pytest.approx(200 / 255) and curve[-1] == 0.0
        assert all(b <= a + 1e-12 for a, b in zip(curve, curve[1:]))  # monotone in f
    summary = M.summarise(black, fractions)["truth"]
    assert summary["gap"] > 0.1
    assert summary["morf_below_random"] > 0 and summary["lerf_above_random"] > 0
    mean = out["mean"]["truth"]["morf"]
    assert mean[-1] == pytest.approx(128 / 255)  # the model's mean (0.5) fills
    assert summary["area_morf"] == pytest.approx(M.curve_area(fractions, black["truth"]["morf"]))


def test_masking_errors_are_one_line():
    with pytest.raises(ConfigError, match="fill 'grey'"):
        M.fill_value("grey", (0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match="fractions must rise"):
        M.masking_curves(lambda f: np.zeros(len(f)), np.zeros((8, 8, 3), np.uint8), {},
                         fractions=[0.5, 0.2])  # fmt: skip
    with pytest.raises(ConfigError, match="finite 2-D"):
        M.smooth_map(np.zeros(5), 8, 8)
    assert M.curve_area([0, 0.5, 1], [1, 1, 0]) == pytest.approx(0.75)


# --------------------------------------------------------------------------------------------
# CAMs
# --------------------------------------------------------------------------------------------


class GapLinear(nn.Module):
    """A = ReLU(conv(image)), y = w . mean(A) + b (optionally through a sigmoid)."""

    def __init__(self, kernel: int = 3, sigmoid: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Conv2d(3, 5, kernel, padding=kernel // 2)
        self.head = nn.Linear(5, 1)
        self.sigmoid = sigmoid

    def forward(self, inputs):
        a = F.relu(self.features(inputs["image"]))
        z = self.head(a.mean((2, 3))).squeeze(1)
        return {"score": torch.sigmoid(z) if self.sigmoid else z}


def _tap(model: GapLinear) -> C.FeatureTap:
    return C.FeatureTap("features + ReLU", model, "features", relu=True)


@pytest.mark.parametrize("sigmoid", [False, True])
def test_gradcam_and_hirescam_closed_form_for_gap_linear(sigmoid):
    model = GapLinear(sigmoid=sigmoid).eval()
    image = torch.randn(2, 3, 12, 10)
    acts, grads, outputs = C.activations_and_gradients(model, {"image": image}, _tap(model))
    with torch.no_grad():
        a = F.relu(model.features(image))
        w = model.head.weight[0]
        z = model.head(a.mean((2, 3))).squeeze(1)
    assert torch.allclose(acts, a)
    # dy/dA_k,ij = w_k / hw (times sigmoid'(z)): both CAMs are ReLU(sum_k w_k A_k) / hw
    scale = torch.sigmoid(z) * (1 - torch.sigmoid(z)) if sigmoid else torch.ones(2)
    expected = F.relu((w[None, :, None, None] * a).sum(1, keepdim=True)) / (12 * 10)
    expected = expected * scale[:, None, None, None]
    for method in C.METHODS:
        got = C.cam(acts, grads, method)
        assert torch.allclose(got, expected, atol=1e-7, rtol=1e-5), method
    assert torch.allclose(outputs["score"], torch.sigmoid(z) if sigmoid else z)


def test_hirescam_differs_from_gradcam_when_gradients_vary():
    acts = torch.rand(1, 2, 3, 3)
    grads = torch.zeros(1, 2, 3, 3)
    grads[0, 0, 0, 0] = 9.0  # one cell's gradient: HiResCAM sees only that cell
    hires = C.cam(acts, grads, "hirescam")
    grad = C.cam(acts, grads, "gradcam")
    assert (hires[0, 0] > 0).sum() == 1 and hires[0, 0, 0, 0] == pytest.approx(9 * acts[0, 0, 0, 0])
    assert torch.allclose(grad, acts[:, :1])  # mean gradient 1 on channel 0
    with pytest.raises(ConfigError, match="unknown CAM method"):
        C.cam(acts, grads, "scorecam")


def test_first_component_equals_the_svd_projection_with_a_fixed_sign():
    torch.manual_seed(0)
    for shape in [(2, 16, 4, 5), (2, 6, 4, 5)]:  # channels above and below the cell count
        weighted = torch.randn(*shape, dtype=torch.float64)
        cells = weighted.flatten(2).transpose(1, 2)
        centred = cells - cells.mean(1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        reference = (centred @ vh[:, 0, :, None]).squeeze(2)
        got = C.first_component(weighted).flatten(1)
        assert torch.allclose(got.abs(), reference.abs(), atol=1e-9)
        plain = cells.sum(2)
        assert ((plain - plain.mean(1, keepdim=True)) * got).sum(1).min() >= 0
    # a rank-one map (one spatial pattern in every channel) comes back as that pattern
    pattern = torch.rand(1, 1, 4, 5, dtype=torch.float64)
    weighted = pattern * torch.rand(1, 7, 1, 1, dtype=torch.float64)
    got = C.first_component(weighted)[0, 0]
    centred = pattern[0, 0] - pattern.mean()
    assert torch.allclose(got / got.norm(), centred / centred.norm(), atol=1e-9)


def test_rotation_round_trip_and_direction():
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    smooth = torch.exp(-((xx - 20) ** 2 + (yy - 26) ** 2) / 60.0)[None, None]
    assert torch.allclose(C.rotate(smooth, 0.0), smooth, atol=1e-6)  # identity up to rounding
    back = C.rotate(C.rotate(smooth, 7.0), -7.0)
    inside = ((xx - 23.5) ** 2 + (yy - 23.5) ** 2) < 18**2
    assert (back - smooth)[0, 0][inside].abs().max() < 0.02
    # 90 degrees counter-clockwise as displayed: a point right of the centre goes up
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 7] = 1.0
    turned = C.rotate(impulse, 90.0, padding="zeros")
    assert divmod(int(turned.flatten().argmax()), 9) == (1, 4)
    # per-sample angles
    two = C.rotate(torch.cat([impulse, impulse]), torch.tensor([90.0, -90.0]), padding="zeros")
    assert divmod(int(two[1].flatten().argmax()), 9) == (7, 4)


def test_rotation_averaged_cam_matches_the_plain_one_for_a_pixelwise_model():
    # 1x1 features: the CAM is a per-pixel function of the image, so rotate -> CAM -> rotate
    # back must land on the unrotated CAM (a wrong back-rotation would double the angle).
    model = GapLinear(kernel=1).eval()
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[1.0, -0.5, 0.8, 0.3, 0.6]]))
    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    blob = torch.exp(-((xx - 26) ** 2 + (yy - 14) ** 2) / 40.0)
    image = torch.stack([blob, 0.5 * blob, -blob])[None] * 2
    tap = _tap(model)
    plain = C.score_cams(model, {"image": image}, angles=(), eigen_smooth=False, tap=tap)
    rotated = C.score_cams(model, {"image": image}, angles=(-5.0, 5.0), eigen_smooth=False, tap=tap)
    for method in C.METHODS:
        assert plain[method].shape == (1, 1, 40, 40)
        assert plain[method].max() == pytest.approx(1.0)
        inside = ((xx - 19.5) ** 2 + (yy - 19.5) ** 2) < 15**2
        diff = (plain[method] - rotated[method])[0, 0][inside].abs().max()
        assert diff < 0.05, method
        wrong = C.rotate(C.rotate(plain[method], 10.0), 0.0)  # what a sign error would give
        assert (wrong - plain[method])[0, 0][inside].abs().max() > 4 * diff


def _tiny_views_checkpoint(tmp_path, **extra):
    from saliq.train.checkpoint import save_checkpoint
    from saliq.train.models import create_model

    config = {
        "backbone": "efficientnet_lite0",
        "feature_dim": 32,
        "hidden": [16],
        "crop_dim": 16,
        "crop_hidden": 8,
        "views": {"detail_crops": 2, "crop_size": 32, "salient_crops": 1},
        **extra,
    }
    torch.manual_seed(0)
    model = create_model("sgdnet_views", pretrained=False, **config).eval()
    spec = tiny_spec(model, "sgdnet_views", config, 64, name="tiny-views")
    return save_checkpoint(tmp_path / "tiny.safetensors", model, spec), model, spec


def _photo(path):
    yy, xx = np.mgrid[0:90, 0:120]
    rgb = np.stack([xx * 2, yy * 2, 255 - xx], axis=2) % 256
    rgb[30:50, 60:90] = 255  # a bright patch: some structure for the maps
    cv2.imwrite(str(path), rgb.astype(np.uint8))
    return path


def test_taps_capture_the_map_without_changing_the_score(tmp_path):
    _, model, spec = _tiny_views_checkpoint(tmp_path)
    tap = C.feature_tap(model)
    assert tap.owner is model.whole and tap.attribute == "fuse"
    from saliq.preprocess import Preprocessor

    prep = Preprocessor.from_spec(spec)(cv2.imread(str(_photo(tmp_path / "p.png"))))
    inputs = {k: torch.from_numpy(prep[k]) for k in spec.inputs}
    with torch.no_grad():
        plain = model(inputs)["score"]
    acts, grads, outputs = C.activations_and_gradients(model, inputs)
    assert torch.equal(outputs["score"], plain)
    assert acts.shape == grads.shape == (1, 32, 4, 4) and acts.min() >= 0  # f_raw, stride 16
    with pytest.raises(ConfigError, match="no feature map is defined for Linear"):
        C.feature_tap(nn.Linear(2, 2))


def test_saliq_explain_writes_a_figure(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from saliq import cli

    ckpt, _, _ = _tiny_views_checkpoint(tmp_path)
    photo = _photo(tmp_path / "photo.png")
    # the one line sdk/cli.py gets (registered here until it lands)
    monkeypatch.setitem(
        cli.COMMANDS, "explain", ("explain a score", "saliq.train.explain.cli:register")
    )
    out = tmp_path / "fig.png"
    rc = cli.main(["explain", str(photo), "-o", str(out), "--model", str(ckpt), "--json"])
    assert rc == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert '"salient"' in printed and '"score"' in printed
    # an ONNX model has no gradients: one line naming the fix
    rc = cli.main(["explain", str(photo), "--model", str(tmp_path / "m.onnx")])
    assert rc == 2
    assert "only the PyTorch checkpoint" in capsys.readouterr().err


def test_explain_image_maps(tmp_path):
    from saliq.train.explain.cam import explain_image, load_explainable

    ckpt, _, _ = _tiny_views_checkpoint(tmp_path)
    model, spec = load_explainable(ckpt)
    e = explain_image(model, spec, str(_photo(tmp_path / "p.png")), angles=(-3.0, 3.0))
    assert set(e.maps) == {"saliency", "hirescam", "gradcam", "sobel", "input_gradient"}
    for name, m in e.maps.items():
        assert m.shape == (64, 64) and np.isfinite(m).all() and m.min() >= 0, name
    assert e.maps["hirescam"].max() == pytest.approx(1.0)
    assert e.region_scores is not None and e.crop_boxes.shape == (2, 4)
    assert e.rgb.shape == (90, 120, 3) and e.settings["angles"] == [-3.0, 3.0]
    assert e.defect is None  # no defect head


def test_explain_names_the_defect_head_guess(tmp_path):
    from saliq.train.explain.cam import explain_image, load_explainable

    classes = ["none", "blur", "noise"]
    ckpt, _, _ = _tiny_views_checkpoint(tmp_path, defect_classes=classes)
    model, spec = load_explainable(ckpt)
    e = explain_image(model, spec, str(_photo(tmp_path / "p.png")), angles=())
    with torch.no_grad():  # the same inputs through the model: its own argmax
        from saliq.preprocess import Preprocessor

        prep = Preprocessor.from_spec(spec)(cv2.imread(str(tmp_path / "p.png")))
        probs = model({k: torch.from_numpy(prep[k]) for k in spec.inputs})["defect_probs"][0]
    assert e.defect == (classes[int(probs.argmax())], pytest.approx(float(probs.max()), abs=1e-5))
