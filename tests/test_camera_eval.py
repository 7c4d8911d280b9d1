"""Camera-resolution evaluation (issue 9): native-resolution distortions, region masks, the
metrics plumbing and the held-out photo list. Small synthetic frames; Scene data only where
a test says so (skipped when absent)."""

import csv
import json
import math

import cv2
import numpy as np
import pytest

from saliq.errors import ConfigError, InvalidImageError
from saliq.train.camera import distortions as D
from saliq.train.camera import evaluate as E
from saliq.train.camera.heldout import heldout_photos
from saliq.train.camera.regions import rank_pixels, region_masks

from .conftest import REPO, SCENE_DIR

HELDOUT = REPO / "configs" / "heldout_camera.json"


def _frame(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """Textured BGR frame with a ramp and a sharp-edged square: every defect has something
    to act on, and nothing clips at level 0."""
    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), 3)
    x = (x - x.mean()) * 3 + 128
    x += (np.arange(w) / w * 60 - 30)[None, :, None]
    x[h // 5 : h * 3 // 5, w // 4 : w // 2] += 50
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _gray(a: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float64)


def _hf_energy(a: np.ndarray) -> float:
    g = _gray(a)
    return float(np.mean((g - cv2.GaussianBlur(g, (0, 0), 1.0)) ** 2))


def _gradient(a: np.ndarray) -> float:
    g = _gray(a)
    return float(np.mean(np.hypot(cv2.Sobel(g, cv2.CV_64F, 1, 0), cv2.Sobel(g, cv2.CV_64F, 0, 1))))


def _blockiness(a: np.ndarray) -> float:
    """Mean step across 8x8 block boundaries over the mean step inside blocks."""
    g = _gray(a)
    dx, dy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))
    across = dx[:, 7::8].mean() + dy[7::8, :].mean()
    inside = np.delete(dx, np.s_[7::8], axis=1).mean() + np.delete(dy, np.s_[7::8], axis=0).mean()
    return float(across / inside)


def _levels(frame, kind, seed=7, **kw):
    return [D.distort(frame, kind, lv, seed, **kw) for lv in range(6)]


def _strictly(values, rising: bool) -> bool:
    diffs = np.diff(values)
    return bool(np.all(diffs > 0) if rising else np.all(diffs < 0))


# --- the parameter table -----------------------------------------------------------------


def test_table_spans_the_issue_ranges_with_five_monotone_levels():
    ends = {
        "gaussian_noise": (3, 25),
        "gaussian_blur": (0.7, 3),
        "defocus_blur": (1, 6),
        "motion_blur": (3, 21),
        "jpeg": (70, 10),
        "low_light": (0.6, 0.15),
    }
    assert set(D.TYPES) == set(ends)
    for kind, (first, last) in ends.items():
        levels = D.CAMERA_DISTORTIONS[kind]["levels"]
        assert len(levels) == 5 and (levels[0], levels[-1]) == (first, last), kind
        assert _strictly(levels, rising=last > first), kind
        assert D.parameter(kind, 3) == levels[2]


# --- each distortion moves the right statistic the right way ------------------------------


def test_noise_raises_high_frequency_energy():
    energy = [_hf_energy(f) for f in _levels(_frame(), "gaussian_noise")]
    assert _strictly(energy, rising=True)
    assert energy[5] > 10 * energy[0]


@pytest.mark.parametrize("kind", ["gaussian_blur", "defocus_blur", "motion_blur"])
def test_blurs_lower_the_gradient(kind):
    grads = [_gradient(f) for f in _levels(_frame(), kind)]
    assert _strictly(grads, rising=False), grads
    assert grads[5] < 0.7 * grads[0]


def test_jpeg_lower_quality_raises_blockiness():
    block = [_blockiness(f) for f in _levels(_frame(), "jpeg")]
    assert _strictly(block, rising=True), block
    assert block[5] > 2 * block[0]


def test_low_light_darkens_and_adds_gain_noise():
    frames = _levels(np.full((64, 64, 3), 118, np.uint8), "low_light")
    means = [float(f.mean()) for f in frames]
    stds = [float(f.std()) for f in frames]
    assert _strictly(means, rising=False)
    assert _strictly(stds, rising=True)  # the gain 1/exposure amplifies shot + read noise
    assert 2 < stds[1] < 5 and 7 < stds[5] < 14  # the model's documented magnitudes


def test_levels_of_a_group_are_one_distortion_at_rising_strength():
    grey = np.full((64, 64, 3), 128, np.int16)
    mild = D.distort(grey.astype(np.uint8), "gaussian_noise", 2, 11).astype(np.int16) - grey
    strong = D.distort(grey.astype(np.uint8), "gaussian_noise", 4, 11).astype(np.int16) - grey
    assert np.corrcoef(mild.ravel(), strong.ravel())[0, 1] > 0.95  # same field, scaled
    other = D.distort(grey.astype(np.uint8), "gaussian_noise", 4, 12).astype(np.int16) - grey
    assert abs(np.corrcoef(mild.ravel(), other.ravel())[0, 1]) < 0.1
    assert D.motion_angle(5) == D.motion_angle(5) != D.motion_angle(6)


@pytest.mark.parametrize("kind", D.TYPES)
def test_distortions_are_deterministic_per_seed(kind):
    frame = _frame(48, 64)
    first = D.distort(frame, kind, 4, D.group_seed("a.jpg", kind))
    assert np.array_equal(first, D.distort(frame, kind, 4, D.group_seed("a.jpg", kind)))
    assert first.dtype == np.uint8 and first.shape == frame.shape
    assert not np.array_equal(first, frame)
    if kind in ("gaussian_noise", "motion_blur", "low_light"):  # the seeded ones
        assert not np.array_equal(first, D.distort(frame, kind, 4, D.group_seed("b.jpg", kind)))
    assert D.group_seed("a.jpg", kind) == D.group_seed("a.jpg", kind)
    assert np.array_equal(D.distort(frame, kind, 0, 1), frame)  # level 0 = pristine


def test_kernels():
    for r in (1.0, 2.0, 4.5, 6.0):
        k = D.disk_kernel(r)
        assert math.isclose(float(k.sum()), 1.0, rel_tol=1e-5)
        assert k.shape == (2 * math.ceil(r - 0.5) + 1,) * 2
        assert np.allclose(k, k.T) and np.allclose(k, k[::-1, ::-1])
        c = k.shape[0] // 2
        assert k[c, c] == k.max() and k[0, 0] < k[c, c]  # corners outside or partly covered
    horizontal = D.motion_kernel(3, 0.0)
    row = horizontal[horizontal.shape[0] // 2]
    assert np.allclose(row[row > 0], 1 / 3) and np.count_nonzero(horizontal) == 3
    for angle in (0.0, 33.0, 90.0, 145.0):
        k = D.motion_kernel(13, angle)
        assert math.isclose(float(k.sum()), 1.0, rel_tol=1e-5)
        assert np.allclose(k, k[::-1, ::-1])
    vertical = D.motion_kernel(5, 90.0)
    assert np.count_nonzero(vertical[:, vertical.shape[1] // 2]) == 5


# --- region masks ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", D.TYPES)
def test_region_mask_confines_the_change(kind):
    frame = _frame(64, 96)
    mask = np.zeros(frame.shape[:2], np.float32)
    mask[16:48, 24:72] = 1.0
    out = D.distort(frame, kind, 5, 3, region=mask)
    outside = mask == 0
    assert np.array_equal(out[outside], frame[outside])
    assert not np.array_equal(out[~outside], frame[~outside])
    full = D.distort(frame, kind, 5, 3)
    assert np.array_equal(out[~outside], full[~outside])  # inside: the full distortion


def test_feathered_mask_blends_and_leaves_zero_region_untouched():
    frame = np.full((64, 64, 3), 100, np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[:, 32:] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), 3)
    mask[mask < 1e-3] = 0
    out = D.distort(frame, "low_light", 5, 1, region=mask).astype(float)
    assert np.array_equal(out[mask == 0], frame[mask == 0])
    # Darkening grows with the mask value across the feathered edge.
    cols = out[:, :, 0].mean(axis=0)
    assert cols[5] > cols[31] > cols[60]


def test_region_masks_from_a_density():
    h, w = 60, 80
    yy, xx = np.mgrid[0:h, 0:w]
    density = np.exp(-((xx - 10) ** 2 + (yy - 10) ** 2) / 200.0)  # looked at: top left
    salient, background = region_masks(density, 0.3, feather_px=0)
    assert salient.sum() == background.sum() == round(0.3 * h * w)
    assert salient[10, 10] == 1 and background[10, 10] == 0
    assert background[h - 1, w - 1] == 1 and not np.any(salient * background)
    soft_sal, _ = region_masks(density, 0.3, feather_px=3)
    edge = soft_sal[(soft_sal > 0) & (soft_sal < 1)]
    assert edge.size > 0 and soft_sal.max() <= 1 and soft_sal.min() >= 0
    # All-zero density (no fixation nearby): ties fall back to the centre bias.
    order = rank_pixels(np.zeros((5, 5)))
    assert order[-1] == 12 and order[0] in (0, 4, 20, 24)
    with pytest.raises(ConfigError):
        region_masks(density, 0.8)


# --- bad input ---------------------------------------------------------------------------


def test_bad_input_gives_one_line_errors():
    frame = _frame(32, 32)
    with pytest.raises(ConfigError, match="known: gaussian_noise"):
        D.distort(frame, "fog", 1, 0)
    with pytest.raises(ConfigError, match="level must be"):
        D.distort(frame, "jpeg", 6, 0)
    with pytest.raises(InvalidImageError, match="uint8"):
        D.distort(frame.astype(np.float32), "jpeg", 1, 0)
    with pytest.raises(InvalidImageError, match="8x8"):
        D.distort(frame[:4], "jpeg", 1, 0)
    with pytest.raises(ConfigError, match="region mask is"):
        D.distort(frame, "jpeg", 1, 0, region=np.ones((8, 8)))
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        D.distort(frame, "jpeg", 1, 0, region=np.full((32, 32), 2.0))


# --- canonical frames --------------------------------------------------------------------


def test_canonical_frame_area_downscales_to_1920_long_side():
    big = np.zeros((2000, 3000, 3), np.uint8)
    assert E.canonical_frame(big).shape == (1280, 1920, 3)
    portrait = np.zeros((2592, 1944, 3), np.uint8)
    assert E.canonical_frame(portrait).shape == (1920, 1440, 3)
    small = np.zeros((1200, 1600, 3), np.uint8)
    assert E.canonical_frame(small) is small
    pts = E.scale_fixations(np.array([[2999.0, 0.0]]), (2000, 3000), (1280, 1920))
    assert np.allclose(pts, [[(2999.5 * 0.64) - 0.5, (0.5 * 0.64) - 0.5]])  # pixel centres


# --- metrics plumbing --------------------------------------------------------------------


def _grid(photos=3):
    rows = []
    for p in range(photos):
        rows.append((f"p{p}", E.PRISTINE_TYPE, 0))
        for kind in ("blur", "noise"):
            rows += [(f"p{p}", kind, lv) for lv in D.LEVELS]
    photos_, types, levels = zip(*rows)
    return list(photos_), list(types), np.array(levels)


def test_planted_scorer_gets_srcc_1_and_auc_1():
    photos, types, levels = _grid()
    m = E.severity_metrics(-levels.astype(float), levels, photos, types)
    assert m["within_group_srcc"] == pytest.approx(1.0)
    assert m["per_type_srcc"] == {"blur": pytest.approx(1.0), "noise": pytest.approx(1.0)}
    assert m["gate_auc"] == 1.0 and m["min_type_gate_auc"] == 1.0
    assert m["groups"] == 6 and m["invalid_scores"] == 0
    backwards = E.severity_metrics(levels, levels, photos, types)
    assert backwards["within_group_srcc"] == pytest.approx(-1.0) and backwards["gate_auc"] == 0


def test_constant_and_failing_scorers_are_handled():
    photos, types, levels = _grid()
    flat = E.severity_metrics(np.full(len(levels), 0.5), levels, photos, types)
    assert flat["within_group_srcc"] == 0.0  # grouped_srcc: a constant group earns nothing
    assert flat["gate_auc"] == 0.5 and flat["per_type_gate_auc"]["noise"] == 0.5
    scores = (-levels).astype(float)
    scores[[1, 7]] = np.nan  # a peer that failed on two frames
    partial = E.severity_metrics(scores, levels, photos, types)
    assert partial["invalid_scores"] == 2
    assert partial["within_group_srcc"] == pytest.approx(1.0) and partial["gate_auc"] == 1.0


def test_region_metrics_count_ties_as_failures():
    rows = [
        {"pristine": 1.0, "salient": 0.2, "background": 0.6, "background_severe": 0.9},
        {"pristine": 1.0, "salient": 0.6, "background": 0.6, "background_severe": 1.0},
        {"pristine": 1.0, "salient": 0.7, "background": 0.6, "background_severe": np.nan},
    ]
    m = E.region_metrics(rows)
    assert m["salient_lower_fraction"] == pytest.approx(1 / 3)
    assert m["background_below_pristine_fraction"] == pytest.approx(1 / 2)  # nan left out
    assert m["mean_gap_background_minus_salient"] == pytest.approx((0.4 + 0 - 0.1) / 3)


def test_evaluation_end_to_end_on_synthetic_photos():
    photos = []
    for i in range(2):
        frame = _frame(72, 96, seed=i)
        fix = np.array([[44.0 + i, 34.0], [48.0, 36.0], [50.0, 39.0]])  # people looked centre
        photos.append(E.Photo(f"s{i}.jpg", frame, frame.shape[:2], fix))
    sharp = E.Scorer("sharpness", _gradient)
    weights = {}

    def aware(frame):  # sharpness weighted by where people looked: saliency-aware by design
        w = weights.setdefault(frame.shape, _density(frame.shape[:2]))
        g = _gray(frame)
        grad = np.hypot(cv2.Sobel(g, cv2.CV_64F, 1, 0), cv2.Sobel(g, cv2.CV_64F, 0, 1))
        return float((grad * w).sum())

    scorers = [sharp, E.Scorer("aware", aware)]
    kinds = ["gaussian_blur", "defocus_blur"]
    sev = E.evaluate_severity(photos, scorers, kinds, progress=False)
    assert sev["frames"] == 2 * 11
    q = sev["scorers"]["sharpness"]
    assert q["within_group_srcc"] == pytest.approx(1.0) and q["gate_auc"] == 1.0
    assert q["latency_ms"]["frames"] == 22 and q["latency_ms"]["median"] > 0
    assert len(sev["scores"]["sharpness"]) == 22 and sev["scores"]["level"][:2] == [0, 1]
    sal = E.evaluate_saliency(photos, scorers, kinds, progress=False)
    assert sal["photos"] == 2
    aware_blur = sal["scorers"]["aware"]["gaussian_blur"]
    assert aware_blur["salient_lower_fraction"] == 1.0
    # A scorer that looks only where people look misses a severe background defect, and a
    # global one catches it: the two criteria measure different things.
    assert aware_blur["background_below_pristine_fraction"] == 0.0
    assert sal["scorers"]["sharpness"]["gaussian_blur"]["background_below_pristine_fraction"] == 1
    report = {"types": kinds, "severity": sev, "saliency": sal}
    accepted = E.acceptance(report)
    assert accepted["sharpness"]["within_group_srcc"] is True
    assert "gaussian_blur.salient_lower_fraction" in accepted["aware"]
    table = E.format_report(report, markdown=True)
    assert "| sharpness | 1.000 | 1.000 | 1.000 |" in table and "blur sal<bg" in table


def _density(hw):
    from saliq.train.metrics import fixation_density_map

    return fixation_density_map(np.array([[44.0, 34.0], [48.0, 36.0], [50.0, 39.0]]), hw)


# --- the held-out list and the command ----------------------------------------------------


def test_heldout_file_loads():
    lists = heldout_photos(HELDOUT)
    assert len(lists["quality"]) == 12 and len(lists["saliency"]) == 20
    assert set(lists["quality"]) <= set(lists["saliency"])
    assert lists["all"] == sorted(set(lists["saliency"]))


@pytest.mark.parametrize(
    "text, match",
    [
        ("not json", "not valid JSON"),
        ('{"quality": ["a.jpg"]}', "'saliency' must be"),
        ('{"quality": ["a.jpg", "a.jpg"], "saliency": ["a.jpg"]}', "more than once"),
        ('{"quality": ["x/a.jpg"], "saliency": ["a.jpg"]}', "not file names"),
    ],
)
def test_bad_heldout_file(tmp_path, text, match):
    path = tmp_path / "h.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        heldout_photos(path)
    with pytest.raises(ConfigError, match="not found"):
        heldout_photos(tmp_path / "missing.json")


@pytest.mark.skipif(not (SCENE_DIR / "images").is_dir(), reason="Scene data absent")
def test_heldout_photos_exist_and_follow_the_stated_rule():
    from saliq.train.data.content import scene_items

    items = {i.name: i for i in scene_items(SCENE_DIR)}
    lists = heldout_photos(HELDOUT)
    assert set(lists["all"]) <= set(items)
    big = sorted(
        n
        for n, i in items.items()
        if max(i.width, i.height) >= 1920 and min(i.width, i.height) >= 1080
    )
    assert len(big) == 22
    assert lists["quality"] == big[0:21:2] + [big[-1]]
    mid = sorted(n for n, i in items.items() if max(i.width, i.height) >= 1000 and n not in big)
    assert lists["saliency"] == lists["quality"] + mid[0::4]
    assert all(items[n].fixations is not None for n in lists["saliency"])


def _fake_scene(root, names):
    (root / "images").mkdir(parents=True)
    rows = []
    for i, name in enumerate(names):
        cv2.imwrite(str(root / "images" / name), _frame(120, 160, seed=i))
        rows += [{"image": name, "subject": 0, "x": 40 + k, "y": 30 + k} for k in range(5)]
    with open(root / "fixations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["image", "subject", "x", "y"])
        writer.writeheader()
        writer.writerows(rows)
    heldout = root / "heldout.json"
    heldout.write_text(json.dumps({"quality": names, "saliency": names}))
    return heldout


def test_command_writes_the_report(tmp_path, capsys):
    require_ort = pytest.importorskip("onnxruntime", reason="the default model runs on ORT")
    assert require_ort
    heldout = _fake_scene(tmp_path / "scene", ["001.jpg", "002.jpg"])
    out = tmp_path / "r.json"
    argv = ["--scene-dir", str(tmp_path / "scene"), "--heldout", str(heldout), "--saliency",
            "--types", "gaussian_blur", "jpeg", "--peers", "variance_of_laplacian",
            "--output", str(out), "--no-progress"]  # fmt: skip
    assert E.main(argv) == 0
    report = json.loads(out.read_text())
    names = list(report["severity"]["scorers"])
    assert names == [
        "saliq-sgdnet-views-lite0 (saliq_sgdnet_views_lite0.onnx)",
        "variance_of_laplacian",
    ]
    assert report["severity"]["frames"] == 2 * 11 and report["saliency"]["photos"] == 2
    assert report["scorers"][names[0]]["preprocessing_version"] >= 1
    assert report["photos"][0] == {"name": "001.jpg", "original_hw": [120, 160],
                                   "frame_hw": [120, 160]}  # fmt: skip
    vol = report["severity"]["scorers"]["variance_of_laplacian"]
    assert vol["per_type_srcc"]["gaussian_blur"] == pytest.approx(1.0)
    assert set(report["acceptance"][names[0]]) >= {"within_group_srcc", "gate_auc"}
    assert "within-group SRCC" in capsys.readouterr().out


def test_command_without_scene_data_fails_in_one_line(tmp_path, capsys):
    argv = ["--scene-dir", str(tmp_path / "nowhere"), "--heldout", str(HELDOUT), "--peers",
            "variance_of_laplacian", "--model", "default"]  # fmt: skip
    assert E.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("camera_eval: error: Scene data not found") and "\n" not in err
