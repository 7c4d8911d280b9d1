"""Grouped native training (one window, rising severities), fractional severities, the
within-group ranking term, the group batch sampler, and the defect-type head."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from saliq.errors import ConfigError, ModelFormatError  # noqa: E402
from saliq.spec import ModelSpec  # noqa: E402
from saliq.train.data.distortions import (  # noqa: E402
    DEFECT_CLASSES,
    DEFECT_OF_TYPE,
    DISTORTIONS,
    TYPE_NAMES,
    ZERO_PARAMETER,
    apply_distortion,
    apply_severity,
    parameter_at,
)
from saliq.train.data.native import NativeTrainSet  # noqa: E402
from saliq.train.data.samplers import GroupBatchSampler  # noqa: E402
from saliq.train.losses import LossContext, build_loss, group_pairwise_hinge  # noqa: E402
from tests.test_native_data import INPUTS, _photos, _pre  # noqa: E402

# ------------------------------------------------------------------ fractional severities


def test_parameter_at_integers_is_the_table_and_between_interpolates():
    for name in TYPE_NAMES:
        assert parameter_at(name, 0) == ZERO_PARAMETER[name]
        for level in range(1, 6):
            assert parameter_at(name, level) == DISTORTIONS[name].levels[level - 1]
    assert parameter_at("gaussian_noise", 0.5) == pytest.approx(3.0)  # half of level 1's 6
    assert parameter_at("jpeg", 1.5) == pytest.approx((43 + 27) / 2)
    assert parameter_at("underexposure", 2.5) == pytest.approx((1.25, 1.135))
    # shot noise: the noise variance (1 / photons) is what is interpolated
    assert 1 / parameter_at("shot_noise", 0.5) == pytest.approx(0.5 / 300)
    with pytest.raises(ValueError, match="severity"):
        parameter_at("jpeg", 5.5)


def test_apply_severity_matches_levels_and_grows_between_them():
    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3)).astype(np.uint8)
    for level in (0, 2, 5):
        a = apply_severity(rgb, "gaussian_noise", float(level), np.random.default_rng(3))
        b = apply_distortion(rgb, "gaussian_noise", level, np.random.default_rng(3))
        assert np.array_equal(a, b)
    err = [
        np.abs(
            apply_severity(rgb, "defocus_blur", s, np.random.default_rng(0)).astype(int) - rgb
        ).mean()
        for s in (0.3, 0.6, 0.9, 1.4)
    ]
    assert err == sorted(err) and err[0] > 0


# ------------------------------------------------------------------ groups


def test_group_members_share_the_window_and_rise_in_severity(tmp_path):
    data = NativeTrainSet(
        _photos(tmp_path),
        _pre(),
        INPUTS,
        copies_per_photo=8,
        group_size=4,
        continuous_levels=True,
        region_prob=0.0,
        seed=5,
    )
    for group in range(len(data) // 4):
        members = [data[group * 4 + m] for m in range(4)]
        assert {int(m["group_index"]) for m in members} == {group}
        severity = [float(m["severity"]) for m in members]
        assert severity[0] == 0.0 and severity == sorted(severity)
        assert all(not float(s).is_integer() for s in severity[1:])  # fractional draws
        assert len({int(m["type_index"]) for m in members[1:]}) == 1  # one defect per group
        scores = [float(m["score"]) for m in members]
        assert scores == sorted(scores, reverse=True)
        assert np.allclose(scores, [1 - 0.18 * s for s in severity], atol=1e-6)
        # one window: the distortion is the only difference (a mild one: small)
        mild = (members[1]["image"] - members[0]["image"]).abs().mean()
        strong = (members[3]["image"] - members[0]["image"]).abs().mean()
        assert float(mild) < float(strong)
    assert not np.array_equal(data[0]["image"], data[4]["image"])  # groups differ


def test_group_size_must_divide_the_copies(tmp_path):
    with pytest.raises(ConfigError, match="group_size"):
        NativeTrainSet(_photos(tmp_path), _pre(), INPUTS, copies_per_photo=6, group_size=4)


def test_ungrouped_integer_draws_are_unchanged_by_the_new_options(tmp_path):
    # group_size 1 and integer levels: the same items as before these options existed
    data = NativeTrainSet(_photos(tmp_path), _pre(), INPUTS, copies_per_photo=4, seed=1)
    levels = [data._draw(i)[2] for i in range(len(data))]
    assert all(float(v).is_integer() for v in levels)
    assert set(int(data[i]["group_index"]) for i in range(len(data))) == set(range(len(data)))


def test_group_batch_sampler_keeps_groups_whole_and_covers_them_once():
    sampler = GroupBatchSampler(n_items=40, group_size=4, batch_size=8, seed=0)
    sampler.set_epoch(3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    seen = []
    for batch in batches:
        assert len(batch) == 8
        for start in range(0, 8, 4):
            members = batch[start : start + 4]
            assert members == list(range(members[0], members[0] + 4)) and members[0] % 4 == 0
            seen.append(members[0] // 4)
    assert sorted(seen) == list(range(10))
    sampler.set_epoch(4)
    assert list(sampler) != batches
    ranks = [GroupBatchSampler(40, 4, 8, seed=0, rank=r, world_size=2) for r in (0, 1)]
    both = [set(i for b in s for i in b) for s in ranks]
    assert not both[0] & both[1]
    with pytest.raises(ConfigError, match="multiple"):
        GroupBatchSampler(40, 4, 6)


# ------------------------------------------------------------------ the ranking term


def test_group_pairwise_hinge_by_hand():
    pred = torch.tensor([0.9, 0.8, 0.2, 0.5, 0.6])
    labels = torch.tensor([1.0, 0.8, 0.5, 1.0, 0.5])
    groups = torch.tensor([0, 0, 0, 1, 1])
    # group 0 pairs (margin 1): (1.0>0.8) 0.2-0.1=0.1, (1.0>0.5) 0.5-0.7<0 -> 0,
    # (0.8>0.5) 0.3-0.6<0 -> 0; group 1: (1.0>0.5) 0.5-(-0.1)=0.6. Mean over 4 pairs.
    loss = group_pairwise_hinge(pred, labels, groups, margin=1.0)
    assert float(loss) == pytest.approx((0.1 + 0.6) / 4)
    assert float(group_pairwise_hinge(labels, labels, groups, margin=1.0)) == 0.0
    # no pair with different labels in any group: zero, still connected to the graph
    alone = torch.tensor([0.3, 0.4], requires_grad=True)
    zero = group_pairwise_hinge(alone, torch.tensor([1.0, 0.5]), torch.tensor([0, 1]))
    zero.backward()
    assert float(zero.detach()) == 0.0 and alone.grad is not None


def test_group_ranking_term_averages_crop_scores_and_needs_groups():
    loss = build_loss([{"name": "group_ranking", "on": "crop_scores", "margin": 0.5}])
    outputs = {"crop_scores": torch.tensor([[0.2, 0.4], [0.9, 0.9]])}
    batch = {"score": torch.tensor([1.0, 0.5]), "group_index": torch.tensor([7, 7])}
    total = loss(LossContext(None, {}, outputs, batch))["loss"]
    # means 0.3 (label 1.0) and 0.9 (label 0.5): 0.5 * 0.5 - (0.3 - 0.9) = 0.85
    assert float(total) == pytest.approx(0.85)
    with pytest.raises(ConfigError, match="group_index"):
        loss(LossContext(None, {}, outputs, {"score": batch["score"]}))


# ------------------------------------------------------------------ the defect head


def test_luma_histogram_reads_pixels_whatever_the_backbone_normalisation():
    """The defect head's luma CDF undoes the backbone's mean/std: the same [0, 1] pixels give
    the same histogram under EfficientNet-Lite's (0.5, 0.5) and ImageNet's normalisation, and
    a grey frame at 0.3 sits between the levels 0.25 and 0.35 under ImageNet's too."""
    from saliq.train.models.views import LUMA_LEVELS, _luma_cdf

    norms = (((0.5,) * 3, (0.5,) * 3), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))

    def cdf(rgb, mean, std):
        m, s = torch.tensor(mean), torch.tensor(std)
        return _luma_cdf((rgb - m.view(3, 1, 1)) / s.view(3, 1, 1), m, s)

    rgb = torch.rand(2, 3, 3, 24, 24, generator=torch.Generator().manual_seed(3))  # [N, K, ...]
    lite, imagenet = (cdf(rgb, *norm) for norm in norms)
    torch.testing.assert_close(lite, imagenet, atol=1e-5, rtol=0)
    assert lite.shape == (2, len(LUMA_LEVELS)) and (lite[:, 1:] >= lite[:, :-1]).all()
    grey = cdf(torch.full((1, 3, 8, 8), 0.3), *norms[1])[0]
    assert (grey[:3] < 0.01).all() and (grey[3:] > 0.99).all()  # levels 0.05-0.25 | 0.35-0.95


def test_every_training_type_has_a_defect_class():
    assert set(DEFECT_OF_TYPE) == set(TYPE_NAMES)
    assert DEFECT_CLASSES[0] == "none" and len(set(DEFECT_CLASSES)) == len(DEFECT_CLASSES)


def _views_model(**kwargs):
    from saliq.train.models import create_model

    return create_model(
        "sgdnet_views",
        backbone="efficientnet_lite0",
        feature_dim=32,
        hidden=(16,),
        crop_dim=8,
        crop_hidden=8,
        views={"detail_crops": 3, "crop_size": 32, "salient_crops": 2},
        **kwargs,
    ).eval()


def test_defect_head_output_spec_and_unchanged_score():
    from saliq.train.models.contract import model_spec

    plain = _views_model()
    headed = _views_model(defect_classes=list(DEFECT_CLASSES))
    missing, unexpected = headed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("defect_head.") for k in missing)
    inputs = {
        "image": torch.rand(2, 3, 64, 64),
        "crops": torch.rand(2, 3, 3, 32, 32),
        "crop_weights": torch.rand(2, 3),
    }
    with torch.no_grad():
        a, b = plain(inputs), headed(inputs)
    assert torch.equal(a["score"], b["score"])
    probs = b["defect_probs"]
    assert tuple(probs.shape) == (2, len(DEFECT_CLASSES))
    assert torch.allclose(probs.sum(1), torch.ones(2))
    # whole features, crop mean and max pools, colour statistics, two luma CDFs
    assert b["defect_features"].shape[1] == 32 + 4 * 8 + 12 + 20
    spec = model_spec(
        headed,
        name="t",
        architecture="sgdnet_views",
        backbone="efficientnet_lite0",
        input_height=64,
        input_width=64,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        model_config={},
    )
    assert spec.defect_classes == DEFECT_CLASSES
    assert spec.output_shapes["defect_probs"] == [len(DEFECT_CLASSES)]
    again = ModelSpec.from_json(spec.to_json())
    assert again.defect_classes == DEFECT_CLASSES
    with pytest.raises(ModelFormatError, match="defect_classes"):
        ModelSpec.from_json(spec.to_json().replace('"defect_classes": ["none"', '"x": ["none"'))


def test_luma_cdf_moves_with_exposure():
    from saliq.train.models.views import LUMA_LEVELS, _luma_cdf

    def cdf(pixels):  # EfficientNet-Lite's normalisation: [-1, 1]
        return _luma_cdf(pixels, torch.full((3,), 0.5), torch.full((3,), 0.5))

    dark, mid, bright = (torch.full((1, 3, 8, 8), v) for v in (-0.95, 0.0, 0.95))
    assert torch.allclose(cdf(dark), torch.ones(1, len(LUMA_LEVELS)), atol=0.1)
    assert torch.allclose(cdf(bright), torch.zeros(1, len(LUMA_LEVELS)), atol=0.1)
    half = cdf(mid)[0]
    assert float(half[4]) < 0.01 and float(half[5]) > 0.99  # levels 0.45 and 0.55 of [0, 1]
    crops = torch.cat([dark, bright], 0).unsqueeze(0)  # [1, K=2, 3, 8, 8]
    assert torch.allclose(cdf(crops), torch.full((1, len(LUMA_LEVELS)), 0.5), atol=0.05)


def test_fit_head_learns_separable_classes():
    from saliq.train.fit_defects import confusion_report, fit_head
    from saliq.train.models.views import DefectHead

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 6))
    classes = np.repeat(np.arange(3), 40)
    feats = torch.tensor(centres[classes] + rng.normal(0, 0.5, (120, 6)), dtype=torch.float32)
    head = DefectHead(6, 3)
    fit_head(head, feats, classes, steps=300)
    pred = head.logits(feats).argmax(1).numpy()
    assert np.mean(pred == classes) > 0.95
    report = confusion_report(classes, pred, np.ones(120, int))
    assert sum(map(sum, report["matrix"])) == 120
    assert math.isclose(report["accuracy"], float(np.mean(pred == classes)))
