"""Losses from configuration (saliq.train.losses) and the ranking batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from saliq.errors import ConfigError
from saliq.train import metrics as M
from saliq.train.data.samplers import RankingBatchSampler
from saliq.train.losses import (
    TERMS,
    CompositeLoss,
    LossContext,
    SGDNetLoss,
    build_loss,
    build_term,
    hflip,
    relative_ranking,
    sgdnet_loss_config,
)


def _maps(seed: int, shape=(3, 1, 6, 7), dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) + 0.01).to(dtype)


def _term_value(spec: dict, outputs: dict, batch: dict) -> torch.Tensor:
    loss = build_loss([spec])
    return loss(LossContext(None, {}, outputs, batch))["loss"]


# ---------------------------------------------------------------- values against NumPy metrics


def _per_map(fn, pred: torch.Tensor, target: torch.Tensor) -> float:
    p, t = pred.double().numpy(), target.double().numpy()
    return float(np.mean([fn(p[i, 0], t[i, 0]) for i in range(p.shape[0])]))


def _tv_numpy(p: np.ndarray, t: np.ndarray) -> float:
    ps = p / p.sum(axis=(1, 2, 3), keepdims=True)
    ts = t / t.sum(axis=(1, 2, 3), keepdims=True)
    return float(np.mean(0.5 * np.abs(ps - ts).sum(axis=(1, 2, 3))))


def test_saliency_terms_match_numpy_metrics() -> None:
    pred, target = _maps(0), _maps(1)
    out, batch = {"saliency": pred}, {"saliency": target}
    kld = _per_map(M.kld, pred, target)
    cc = _per_map(M.cc, pred, target)
    sim = _per_map(M.sim, pred, target)
    expected = {
        "tv": _tv_numpy(pred.double().numpy(), target.double().numpy()),
        "kl": kld,
        "cc": 1.0 - cc,
        "sim": 1.0 - sim,
        "kld_cc_sim": 5 * kld - cc - sim,
    }
    for name, want in expected.items():
        got = _term_value({"name": name}, out, batch).item()
        assert got == pytest.approx(want, abs=1e-5), name
    # BioSIQNet IV-A weights (5, -2, -1) are options of the same term.
    got = _term_value({"name": "kld_cc_sim", "cc": -2, "sim": -1}, out, batch).item()
    assert got == pytest.approx(5 * kld - 2 * cc - sim, abs=1e-5)
    # Sanity of the metric direction: a perfect map minimises every term.
    perfect = {"saliency": target}
    assert _term_value({"name": "cc"}, perfect, batch).item() == pytest.approx(0.0, abs=1e-6)
    assert _term_value({"name": "sim"}, perfect, batch).item() == pytest.approx(0.0, abs=1e-6)
    assert _term_value({"name": "kl"}, perfect, batch).item() == pytest.approx(0.0, abs=1e-6)


def test_saliency_target_is_area_pooled_to_the_prediction_grid() -> None:
    pred, fine = _maps(2, (2, 1, 4, 5)), _maps(3, (2, 1, 8, 10))
    pooled = fine.double().numpy().reshape(2, 1, 4, 2, 5, 2).mean(axis=(3, 5))
    got = _term_value({"name": "kl"}, {"saliency": pred}, {"saliency": fine}).item()
    want = np.mean([M.kld(pred[i, 0].double().numpy(), pooled[i, 0]) for i in range(2)])
    assert got == pytest.approx(want, abs=1e-5)
    coarse = _maps(4, (2, 1, 2, 3))  # a coarser target is interpolated up, not rejected
    assert torch.isfinite(_term_value({"name": "tv"}, {"saliency": pred}, {"saliency": coarse}))


def test_quality_terms_match_numpy() -> None:
    g = torch.Generator().manual_seed(5)
    score, label = torch.rand(6, generator=g), torch.rand(6, generator=g)
    out, batch = {"score": score}, {"score": label}
    s, t = score.double().numpy(), label.double().numpy()
    assert _term_value({"name": "l1"}, out, batch).item() == pytest.approx(np.abs(s - t).mean())
    assert _term_value({"name": "l2"}, out, batch).item() == pytest.approx(((s - t) ** 2).mean())
    logits = torch.randn(6, 5, generator=g)
    dist = torch.softmax(torch.randn(6, 5, generator=g), dim=1)
    z, q = logits.double().numpy(), dist.double().numpy()
    want = np.mean(-(q * (z - logsumexp(z, axis=1, keepdims=True))).sum(1))
    got = _term_value({"name": "cross_entropy"}, {"score_logits": logits}, {"score_dist": dist})
    assert got.item() == pytest.approx(want, abs=1e-5)


def _ranking_numpy(q: np.ndarray, s: np.ndarray) -> float:
    """TReS Eq. 5 written out from the paper, independently of the implementation."""
    order = np.argsort(s, kind="stable")
    mx, mx2, mn, mn2 = order[-1], order[-2], order[0], order[1]
    m1, m2 = s[mx2] - s[mn], s[mx] - s[mn2]
    d = lambda a, b: abs(q[a] - q[b])  # noqa: E731
    return max(0.0, d(mx, mx2) - d(mx, mn) + m1) + max(0.0, d(mn2, mn) - d(mx, mn) + m2)


def test_tres_ranking_matches_the_paper_and_the_authors_code() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.permutation(np.linspace(0.1, 0.9, 8))
        q = np.clip(s + rng.normal(0, 0.3, 8), 0, 1)
        got = relative_ranking(torch.tensor(q), torch.tensor(s)).item()
        assert got == pytest.approx(_ranking_numpy(q, s), abs=1e-9)
        # The authors' form: two nn.TripletMarginLoss(p=1) (it adds 1e-6 inside the distance).
        qt, idx = torch.tensor(q)[:, None], np.argsort(s, kind="stable")
        lo, lo2, hi2, hi = (int(i) for i in (idx[0], idx[1], idx[-2], idx[-1]))
        t1 = torch.nn.TripletMarginLoss(margin=float(s[hi] - s[lo2]), p=1)
        t2 = torch.nn.TripletMarginLoss(margin=float(s[hi2] - s[lo]), p=1)
        ref = t1(qt[[lo]], qt[[lo2]], qt[[hi]]) + t2(qt[[hi]], qt[[hi2]], qt[[lo]])
        assert got == pytest.approx(ref.item(), abs=1e-5)
    # Hand-worked: constant predictions leave both hinges at their margins, 0.6 + 0.6.
    labels = torch.tensor([0.9, 0.7, 0.3, 0.1])
    assert relative_ranking(torch.full((4,), 0.5), labels).item() == pytest.approx(1.2)
    # Perfect predictions cost nothing, tied labels included.
    tied = torch.tensor([0.9, 0.9, 0.5, 0.1, 0.1])
    assert relative_ranking(tied.clone(), tied).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.warns(UserWarning, match="< 4 samples"):
        small = _term_value({"name": "tres_ranking"}, {"score": labels[:3]}, {"score": labels[:3]})
    assert small.item() == 0.0


# ---------------------------------------------------------------- flip consistency


class _Toy(torch.nn.Module):
    """Two layers on a flattened 3x2x3 image: not flip invariant, so consistency has work."""

    def __init__(self, seed: int = 0, dtype=torch.float32) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = torch.nn.Linear(18, 8).to(dtype)
        self.fc2 = torch.nn.Linear(8, 1).to(dtype)
        self.calls = 0

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.calls += 1
        features = torch.tanh(self.fc1(inputs["image"].flatten(1)))
        return {"score": torch.sigmoid(self.fc2(features)).squeeze(1), "features": features}


def _toy_batch(n: int = 6, seed: int = 1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, 2, 3, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.linspace(0.1, 0.9, n, dtype=dtype)[torch.randperm(n, generator=g)]
    return {"image": image}, {"score": labels}


def test_flip_consistency_formula_and_single_flipped_pass() -> None:
    model = _Toy()
    inputs, batch = _toy_batch()
    spec = [
        {"name": "l1"},
        {"name": "l1", "flip": True},
        {"name": "tres_ranking", "weight": 0.05},
        {"name": "flip_consistency"},
    ]
    loss = build_loss(spec)
    outputs = model(inputs)
    ctx = LossContext(model, inputs, outputs, batch)
    values = loss(ctx)
    assert model.calls == 2  # the flipped pass ran once for two terms that use it
    flipped = model({"image": inputs["image"].flip(-1)})
    rr = relative_ranking(outputs["score"], batch["score"])
    rr_f = relative_ranking(flipped["score"], batch["score"])
    want = (
        (outputs["score"] - flipped["score"]).abs().mean()
        + (outputs["features"] - flipped["features"]).abs().mean()
        + 0.5 * (rr - rr_f).abs()
    )
    assert values["flip_consistency"].item() == pytest.approx(want.item(), abs=1e-6)
    l1_flip = (flipped["score"] - batch["score"]).abs().mean()
    assert values["l1_flip"].item() == pytest.approx(l1_flip.item(), abs=1e-6)
    total = values["l1"] + values["l1_flip"] + 0.05 * values["tres_ranking"] + want
    assert values["loss"].item() == pytest.approx(total.item(), abs=1e-6)
    assert set(values) == {"loss", "l1", "l1_flip", "tres_ranking", "flip_consistency"}
    assert not values["l1"].requires_grad and values["loss"].requires_grad


def test_flip_consistency_stop_gradient_and_flip_back() -> None:
    model = _Toy(dtype=torch.float64)
    inputs, batch = _toy_batch(dtype=torch.float64)
    for stop in (False, True):
        model.zero_grad()
        outputs = model(inputs)
        loss = build_loss([{"name": "flip_consistency", "stop_gradient": stop, "lambda_1": 0.0}])
        loss(LossContext(model, inputs, outputs, batch))["loss"].backward()
        got = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        a, b = model(inputs), model({"image": inputs["image"].flip(-1)})
        fb = {k: (v.detach() if stop else v) for k, v in b.items()}
        ref = sum((a[k] - fb[k]).abs().mean() for k in ("score", "features"))
        ref.backward()
        for g, p in zip(got, model.parameters()):
            assert torch.allclose(g, p.grad, atol=1e-12), stop

    image = torch.rand(2, 3, 4, 3)
    # A map that moves with the image is consistent once flipped back, not before.
    spec = {"name": "flip_consistency", "on": ["saliency"], "flip_back": True}
    same = lambda inp: {"saliency": inp["image"][:, :1] ** 2}  # noqa: E731
    ctx = LossContext(same, {"image": image}, same({"image": image}), {})
    assert build_loss([spec])(ctx)["loss"].item() == pytest.approx(0.0, abs=1e-7)
    ctx = LossContext(same, {"image": image}, same({"image": image}), {})
    assert build_loss([{**spec, "flip_back": False}])(ctx)["loss"].item() > 1e-3


def test_hflip_flips_only_image_like_tensors() -> None:
    x = {"image": torch.arange(12.0).view(1, 1, 3, 4), "score": torch.arange(3.0)}
    x["dist"] = torch.arange(10.0).view(2, 5)
    out = hflip(x)
    assert torch.equal(out["image"][0, 0, 0], torch.tensor([3.0, 2.0, 1.0, 0.0]))
    assert torch.equal(out["score"], x["score"]) and torch.equal(out["dist"], x["dist"])


def test_hflip_mirrors_crop_boxes_as_coordinates() -> None:
    """A crop box of the flipped frame covers the mirrored window (the flipped crop's pixels)."""
    boxes = torch.tensor([[[0.1, 0.2, 0.3, 0.6], [0.5, 0.0, 1.0, 0.5]]])
    out = hflip({"crop_boxes": boxes, "grid_boxes": boxes[:, :1]})
    want = torch.tensor([[[0.7, 0.2, 0.9, 0.6], [0.0, 0.0, 0.5, 0.5]]])
    torch.testing.assert_close(out["crop_boxes"], want)
    torch.testing.assert_close(out["grid_boxes"], want[:, :1])
    torch.testing.assert_close(hflip(out)["crop_boxes"], boxes)  # an involution


# ---------------------------------------------------------------- gradients


def _gradcheck(spec: dict, outputs: dict, batch: dict, wrt: str) -> None:
    term = build_term(spec)
    base = dict(outputs)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return term(LossContext(None, {}, {**base, wrt: x}, batch))

    x = outputs[wrt].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5), spec


def test_every_term_is_differentiable_gradcheck() -> None:
    d = torch.float64
    sal_out = {"saliency": _maps(10, (2, 1, 3, 4), d)}
    sal_batch = {"saliency": _maps(11, (2, 1, 6, 8), d)}
    for name in ("tv", "kl", "cc", "sim", "kld_cc_sim"):
        _gradcheck({"name": name}, sal_out, sal_batch, "saliency")
    g = torch.Generator().manual_seed(3)
    score = torch.rand(6, generator=g, dtype=d)
    labels = torch.tensor([0.9, 0.2, 0.5, 0.7, 0.1, 0.35], dtype=d)
    for name in ("l1", "l2", "tres_ranking"):
        _gradcheck({"name": name}, {"score": score}, {"score": labels}, "score")
    # Predictions far from the hinges' kinks, with both triplets active.
    ranked = torch.tensor([0.6, 0.3, 0.5, 0.55, 0.4, 0.45], dtype=d)
    assert relative_ranking(ranked, labels).item() > 0.1
    _gradcheck({"name": "tres_ranking"}, {"score": ranked}, {"score": labels}, "score")
    logits = torch.randn(4, 5, generator=g, dtype=d)
    dist = torch.softmax(torch.randn(4, 5, generator=g, dtype=d), 1)
    _gradcheck(
        {"name": "cross_entropy"}, {"score_logits": logits}, {"score_dist": dist}, "score_logits"
    )


def test_flip_consistency_gradcheck_through_the_model() -> None:
    inputs, batch = _toy_batch(dtype=torch.float64)
    weight = torch.randn(1, 18, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss = build_loss([{"name": "tres_ranking"}, {"name": "flip_consistency"}])

    def fn(w: torch.Tensor) -> torch.Tensor:
        def model(inp):
            h = inp["image"].flatten(1) * w
            return {"score": torch.sigmoid(h.sum(1)), "features": torch.tanh(h[:, :4])}

        return loss(LossContext(model, inputs, model(inputs), batch))["loss"]

    w = weight.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (w,), eps=1e-6, atol=1e-5)


# ---------------------------------------------------------------- configuration


def test_build_loss_errors_name_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown term 'huber'.*'l1'"):
        build_loss([{"name": "huber"}])
    with pytest.raises(ConfigError, match=r"unknown keys \['alpha'\].*'eps'"):
        build_loss([{"name": "kl", "alpha": 1}])
    with pytest.raises(ConfigError, match="weight must be finite and >= 0"):
        build_loss([{"name": "l1", "weight": -1}])
    with pytest.raises(ConfigError, match="distinct `label:`"):
        build_loss([{"name": "l1"}, {"name": "l1"}])
    with pytest.raises(ConfigError, match="takes no `target`"):
        build_loss([{"name": "flip_consistency", "target": "score"}])
    with pytest.raises(ConfigError, match="no `name`"):
        build_loss([{"weight": 1.0}])
    with pytest.raises(ConfigError, match="no terms"):
        build_loss([])
    with pytest.raises(ConfigError, match="eps must be in"):
        build_loss([{"name": "kl", "eps": 0}])
    with pytest.raises(ConfigError, match=r"unknown keys \['normalize'\]"):
        build_loss({"terms": [{"name": "l1"}], "normalize": True})
    loss = build_loss([{"name": "tv"}])
    with pytest.raises(ConfigError, match=r"reads model output 'saliency'.*\['score'\]"):
        loss(LossContext(None, {}, {"score": torch.zeros(2)}, {"saliency": torch.ones(2, 1, 2, 2)}))
    with pytest.raises(ConfigError, match="needs batch key 'saliency'"):
        loss(LossContext(None, {}, {"saliency": torch.ones(2, 1, 2, 2)}, {}))
    with pytest.raises(ConfigError, match=r"shape \[2, 1\] but target 'score' has \[2\]"):
        _term_value({"name": "l1"}, {"score": torch.zeros(2, 1)}, {"score": torch.zeros(2)})
    with pytest.raises(ConfigError, match="model=None"):
        _term_value({"name": "flip_consistency"}, {"score": torch.zeros(2)}, {})
    with pytest.raises(ValueError, match="negative values"):
        _term_value({"name": "kl"}, {"saliency": -_maps(0)}, {"saliency": _maps(1)})


def test_required_keys_normalise_and_config_round_trip() -> None:
    spec = [
        {"name": "cross_entropy"},
        {"name": "kl", "weight": 0.2},
        {"name": "kld_cc_sim", "on": "saliency_high", "target": "saliency_high", "label": "hs"},
        {"name": "tres_ranking", "weight": 0.05},
        {"name": "flip_consistency"},
    ]
    loss = build_loss(spec)
    assert loss.required_targets == {"score_dist", "saliency", "saliency_high", "score"}
    assert loss.required_outputs == {"score_logits", "saliency", "saliency_high", "score"}
    assert loss.needs_model and not build_loss([{"name": "l1"}]).needs_model
    again = build_loss(loss.config())
    assert again.config() == loss.config()
    assert isinstance(again, CompositeLoss) and set(TERMS) >= {t.name for t in again.terms}
    score, label = torch.tensor([0.2, 0.8]), torch.tensor([0.0, 1.0])
    ctx = LossContext(None, {}, {"score": score}, {"score": label})
    terms = [{"name": "l1", "weight": 3.0}, {"name": "l2", "weight": 1.0}]
    plain = build_loss(terms)(ctx)
    norm = build_loss({"terms": terms, "normalise": True})(ctx)
    assert norm["loss"].item() == pytest.approx(plain["loss"].item() / 4)
    assert build_loss(terms, normalise=True)(ctx)["loss"].item() == pytest.approx(
        3 * 0.2 / 4 + 1 * 0.04 / 4
    )


def test_sgdnet_config_reproduces_sgdnet_loss() -> None:
    pred_sal, target_sal = _maps(20, (4, 1, 4, 4)), _maps(21, (4, 1, 8, 8))
    score, label = torch.rand(4), torch.rand(4)
    old = SGDNetLoss(alpha=0.25)(score, pred_sal, label, target_sal)
    loss = build_loss(sgdnet_loss_config(0.25))
    new = loss(
        LossContext(
            None,
            {},
            {"score": score, "saliency": pred_sal},
            {"score": label, "saliency": target_sal},
        )
    )
    for key in ("loss", "quality", "saliency"):
        assert new[key].item() == pytest.approx(old[key].item(), abs=1e-7), key
    assert [t.weight for t in loss.terms] == pytest.approx([0.8, 0.2])


# ---------------------------------------------------------------- end to end


def test_toy_model_trains_with_l1_ranking_and_flip_consistency() -> None:
    torch.manual_seed(0)
    model = _Toy(seed=0)
    inputs, batch = _toy_batch(n=8, seed=2)
    loss = build_loss(
        [{"name": "l1"}, {"name": "tres_ranking", "weight": 0.05}, {"name": "flip_consistency"}]
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.03)

    def step() -> dict[str, torch.Tensor]:
        return loss(LossContext(model, inputs, model(inputs), batch))

    first = step()
    for _ in range(20):
        values = step()
        opt.zero_grad()
        values["loss"].backward()
        opt.step()
    last = step()
    assert last["loss"].item() < 0.6 * first["loss"].item()
    assert last["l1"].item() < first["l1"].item()


# ---------------------------------------------------------------- ranking sampler


def _synthetic_labels(photos: int = 30) -> np.ndarray:
    # As the synthetic data: per photo one pristine (level 0) and 11 types x levels 1..5.
    levels = np.concatenate([np.zeros(photos, int), np.tile(np.arange(1, 6), 11 * photos)])
    return 1.0 - 0.18 * levels


def _valid(batch: list[int], labels: np.ndarray) -> bool:
    v = labels[batch]
    return (v == v.max()).sum() == 1 and (v == v.min()).sum() == 1 and len(set(batch)) == len(v)


def test_ranking_sampler_batches_have_untied_extremes() -> None:
    labels = _synthetic_labels()
    sampler = RankingBatchSampler(labels, batch_size=16, seed=3)
    assert len(sampler) == labels.size // 16
    seen = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(len(b) == 16 and _valid(b, labels) for b in batches)
        seen.update(i for b in batches for i in b)
    # A batch holds at most one sample of the lowest label (its unique minimum), so those are
    # seen about once every three epochs here; set-aside samples come back in later epochs.
    assert len(seen) > 0.95 * labels.size
    # The ranking loss on such a batch is informative: both label gaps at the top are > 0.
    v = np.sort(labels[batches[0]])
    assert v[-1] > v[-2] and v[1] > v[0]


def test_ranking_sampler_is_deterministic_and_splits_ranks() -> None:
    labels = _synthetic_labels(10)
    a = RankingBatchSampler(labels, 8, seed=1)
    b = RankingBatchSampler(labels, 8, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    assert list(RankingBatchSampler(labels, 8, seed=2)) != list(RankingBatchSampler(labels, 8, 1))
    ranks = [RankingBatchSampler(labels, 8, seed=1, rank=r, world_size=3) for r in range(3)]
    plans = [list(r) for r in ranks]
    assert len({len(p) for p in plans}) == 1 and len(plans[0]) == labels.size // 24
    flat = [i for p in plans for batch in p for i in batch]
    assert all(_valid(batch, labels) for p in plans for batch in p)
    assert len(flat) == len(plans[0]) * 24
    keep_last = RankingBatchSampler(labels, 8, seed=1, drop_last=False)
    assert len(keep_last) == -(-labels.size // 8) == len(list(keep_last))


def test_ranking_sampler_rejects_unusable_labels() -> None:
    with pytest.raises(ConfigError, match="only 2 distinct values"):
        RankingBatchSampler([0.1, 0.9] * 10, 4)
    with pytest.raises(ConfigError, match="batch_size <= 4"):
        RankingBatchSampler([0.1] * 10 + [0.5, 0.5] + [0.9] * 10, 5)
    with pytest.raises(ConfigError, match="batch_size 3 < 4"):
        RankingBatchSampler(np.linspace(0, 1, 10), 3)
    with pytest.raises(ConfigError, match="nan"):
        RankingBatchSampler([0.1, float("nan"), 0.3, 0.4], 4)
    with pytest.raises(ConfigError, match="cannot fill one batch"):
        RankingBatchSampler(np.linspace(0, 1, 10), 4, world_size=3)


def test_every_configuration_in_the_docs_builds() -> None:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[1] / "docs" / "losses.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 7
    for block in blocks:
        # PyYAML reads the bare key `on` as True; build_loss takes it as `on`.
        loss = build_loss(yaml.safe_load(block)["loss"])
        assert loss.required_outputs and loss.required_targets
    first = build_loss(yaml.safe_load(blocks[0])["loss"])
    assert first.terms[1].on == "saliency" and first.terms[1].weight == 0.25
    alternative = re.search(r"# or: loss: (.*)", text).group(1)
    assert build_loss(yaml.safe_load(alternative)).normalise
