"""Alternative fusions of a crop-view model's branches, refitted and measured side by side.

    python benchmarks/fusion_variants.py runs/views2/fused.safetensors \
        --scene-dir ../shared/data/scene [--cache work_data/fusion_evidence.npz]

SGDNet-Views fuses three pieces of evidence (logits of the whole-frame score q_g, the
saliency-weighted crop score Q_s and the worst crop q_min) with a logistic layer
(docs/models.md). This asks whether another form of that layer would serve camera frames
better, without retraining either branch: each variant's parameters are fitted, as
`saliq.train.fit_fusion` does, on fresh draws of the TRAINING data only (1200 items, seed 7,
L1 on the score), and every variant is then measured on the same held-out sets: the camera
grid and the saliency-awareness photos of benchmarks/camera_eval.py, and the synthetic test
grid of `saliq evaluate`. Branch outputs are computed once per frame and cached by the
frame's bytes, so a variant costs only its fit. Choosing a variant by these numbers uses
the test sets for selection: a variant that wins here is a candidate to retrain and
re-measure, not a measured model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from saliq.atomic import write_text_atomic
from saliq.preprocess import Preprocessor

ROOT = Path(__file__).resolve().parents[1]
FIT_ITEMS, FIT_SEED, FRESH_EPOCH = 1200, 7, 1000  # as the shipped model's fusion fit
FIT_STEPS, FIT_LR = 2000, 0.05


def _weakest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.minimum(a, b)[:, None]


# evidence columns: 0 = logit q_g (whole frame), 1 = logit Q_s (salient crops), 2 = logit q_min
VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "shipped form (q_g, Q_s, q_min)": lambda e: e,
    "+ min(q_g, Q_s)": lambda e: np.hstack([e, _weakest(e[:, 0], e[:, 1])]),
    "+ min(q_g, q_min)": lambda e: np.hstack([e, _weakest(e[:, 0], e[:, 2])]),
    "q_g, Q_s, min(q_g, Q_s)": lambda e: np.hstack([e[:, :2], _weakest(e[:, 0], e[:, 1])]),
}


class EvidenceCache:
    """Branch evidence per frame, keyed by the frame's bytes and shape."""

    def __init__(self, model, spec, path: Path | None) -> None:
        self.model, self.spec, self.path = model, spec, path
        self.pre = Preprocessor.from_spec(spec)
        self.table: dict[str, np.ndarray] = {}
        if path is not None and path.is_file():
            with np.load(path) as stored:
                self.table = {k: stored[k] for k in stored.files}

    @staticmethod
    def key(frame: np.ndarray) -> str:
        return hashlib.sha1(frame.tobytes() + str(frame.shape).encode()).hexdigest()

    def __call__(self, frames: list[np.ndarray], fmt: str) -> np.ndarray:
        keys = [self.key(f) for f in frames]
        todo = [i for i, k in enumerate(keys) if k not in self.table]
        if todo:
            batch = self.pre([frames[i] for i in todo], fmt=fmt)
            with torch.no_grad():
                out = self.model({n: torch.from_numpy(batch[n]) for n in self.spec.inputs})
                weights = torch.from_numpy(batch["crop_weights"])
                evidence, _ = self.model.evidence(out["global_score"], out["crop_scores"], weights)
            for row, i in enumerate(todo):
                self.table[keys[i]] = evidence[row].numpy()
        return np.stack([self.table[k] for k in keys])

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.stem + ".partial.npz")
            np.savez(tmp, **self.table)
            tmp.replace(self.path)


def training_evidence(model, spec, config) -> tuple[np.ndarray, np.ndarray]:
    from torch.utils.data import DataLoader, Subset

    from saliq.train.config import TrainConfig
    from saliq.train.data.sources import build_datasets

    run = TrainConfig.from_dict(
        {k: v for k, v in config.items() if k not in ("split", "fusion_fit")}
    )
    data = build_datasets(run.data, spec, Preprocessor.from_spec(spec), {"score"}, FIT_SEED)
    data.train.set_epoch(FRESH_EPOCH)
    rng = np.random.default_rng(FIT_SEED)
    chosen = rng.choice(len(data.train), size=min(FIT_ITEMS, len(data.train)), replace=False)
    loader = DataLoader(Subset(data.train, chosen.tolist()), batch_size=16)
    rows, labels = [], []
    with torch.no_grad():
        for batch in loader:
            out = model({n: batch[n] for n in spec.inputs})
            evidence, _ = model.evidence(
                out["global_score"], out["crop_scores"], batch["crop_weights"]
            )
            rows.append(evidence.numpy())
            labels.append(batch["score"].numpy())
    return np.concatenate(rows), np.concatenate(labels)


def fit_logistic(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The fusion layer's fit (saliq.train.fit_fusion): full-batch Adam on the L1 loss."""
    x, y = torch.from_numpy(features).float(), torch.from_numpy(labels).float()
    layer = torch.nn.Linear(x.shape[1], 1)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    optimizer = torch.optim.Adam(layer.parameters(), lr=FIT_LR)
    for _ in range(FIT_STEPS):
        optimizer.zero_grad()
        loss = (torch.sigmoid(layer(x)).squeeze(1) - y).abs().mean()
        loss.backward()
        optimizer.step()
    return layer.weight.detach().numpy()[0], float(layer.bias.detach()), float(loss.detach())


def measure(variant, weights, bias, cache, camera_photos, saliency_photos, test_items, spec):
    from saliq.train import evaluate as synthetic
    from saliq.train.camera import evaluate as camera

    def fused(frames: list[np.ndarray], fmt: str) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(variant(cache(frames, fmt)) @ weights + bias)))

    class Scores:  # the Assessor surface that evaluate_quality uses
        batch_size = 16

        def __init__(self) -> None:
            self.spec = spec

        def assess(self, frames, color="RGB"):
            return [_Result(float(s)) for s in fused(list(frames), color)]

    scorer = camera.Scorer("variant", lambda f: float(fused([f], "BGR")[0]))
    severity = camera.evaluate_severity(camera_photos, [scorer], progress=False)
    aware = camera.evaluate_saliency(
        saliency_photos, [scorer], camera.ACCEPTANCE_SALIENCY_TYPES, progress=False
    )
    quality = synthetic.evaluate_quality(Scores(), test_items, progress=False)["model"]
    sev = severity["scorers"]["variant"]
    return {
        "camera_within_group_srcc": sev["within_group_srcc"],
        "camera_per_type_srcc": sev["per_type_srcc"],
        "camera_gate_auc": sev["gate_auc"],
        "camera_min_type_gate_auc": sev["min_type_gate_auc"],
        "saliency_awareness": aware["scorers"]["variant"],
        "synthetic_grouped_srcc": quality["grouped_srcc"],
        "synthetic_per_type_srcc": quality["per_type_srcc"],
        "synthetic_auc_mild_vs_severe": quality["auc_mild_vs_severe"],
    }


class _Result:
    def __init__(self, score: float) -> None:
        self.score = score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a crop-view model's .safetensors checkpoint")
    parser.add_argument("--scene-dir", default=str(ROOT.parent / "shared/data/scene"))
    parser.add_argument("--heldout", default=str(ROOT / "configs/heldout_camera.json"))
    parser.add_argument("--cache", default=str(ROOT / "work_data/fusion_evidence.npz"))
    parser.add_argument(
        "--output", default=str(ROOT / "benchmarks/results/cpu/fusion_variants.json")
    )
    args = parser.parse_args()
    from saliq.train import evaluate as synthetic
    from saliq.train.camera.evaluate import load_photos
    from saliq.train.camera.heldout import heldout_photos
    from saliq.train.checkpoint import load_checkpoint

    started = time.perf_counter()
    model, spec, config, _ = load_checkpoint(args.checkpoint)
    if not hasattr(model, "evidence"):
        raise SystemExit(f"{args.checkpoint}: {spec.architecture} has no crop-view fusion")
    cache = EvidenceCache(model, spec, Path(args.cache) if args.cache else None)
    features, labels = training_evidence(model, spec, config)
    lists = heldout_photos(args.heldout)
    camera_photos = load_photos(args.scene_dir, lists["quality"])
    saliency_photos = load_photos(args.scene_dir, lists["saliency"])
    split = synthetic._split_checkpoint(args.checkpoint, None)
    test_items = synthetic.test_items(split, args.scene_dir)["test"]
    report: dict = {
        "command": "python benchmarks/fusion_variants.py " + args.checkpoint,
        "checkpoint": args.checkpoint,
        "fit": {"items": len(labels), "seed": FIT_SEED, "steps": FIT_STEPS, "lr": FIT_LR},
        "variants": {},
    }
    header = f"{'variant':<32}{'camera SRCC':>12}{'gate AUC':>9}{'min type':>9}"
    header += f"{'synthetic':>10}{'colour cast':>12}"
    print(header)
    fits = {}
    shipped = config.get("fusion_fit", {}).get("weights_after")
    if shipped:  # the checkpoint's own fusion, as a check that the refit reproduces it
        fits["checkpoint's fusion (as fitted)"] = (
            VARIANTS["shipped form (q_g, Q_s, q_min)"],
            np.array(shipped[:-1]),
            shipped[-1],
            None,
        )
    for name, variant in VARIANTS.items():
        fits[name] = (variant, *fit_logistic(variant(features), labels))
    for name, (variant, weights, bias, l1) in fits.items():
        row = measure(
            variant, weights, bias, cache, camera_photos, saliency_photos, test_items, spec
        )
        row = {"weights": weights.tolist(), "bias": bias, "train_l1": l1, **row}
        report["variants"][name] = row
        cache.save()
        print(
            f"{name:<32}{row['camera_within_group_srcc']:>12.4f}{row['camera_gate_auc']:>9.3f}"
            f"{row['camera_min_type_gate_auc']:>9.3f}{row['synthetic_grouped_srcc']:>10.4f}"
            f"{row['synthetic_per_type_srcc'].get('colour_cast', float('nan')):>12.4f}",
            flush=True,
        )
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    write_text_atomic(Path(args.output), json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
