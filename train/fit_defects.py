"""Stage 3 of a crop-view model: fit its defect-type head, every other weight frozen.

    python -m saliq.train.fit_defects runs/views3/fused.safetensors \
        -o runs/views3/defects.safetensors --report benchmarks/results/cpu/defect_confusion.json

The head (models/views.py ``DefectHead``) names the defect that most likely lowered the
score: one of ``DEFECT_CLASSES`` (train/data/distortions.py; "none" for a clean frame). Its
inputs (the whole view's pooled features and the mean and maximum over crops of the crop
features) are computed once on fresh draws of the training photos at native resolution
(integer levels 1-5 of every training type, whole-frame or confined to a region, and clean
frames), then the standardisation and a small MLP (dropout 0.5) are fitted by full-batch AdamW on a
class-balanced cross-entropy, with the weight decay chosen by balanced recall on the
validation photos' grid. Scores, saliency and region scores do not change.

The report is the confusion matrix on the held-out test photos of the checkpoint's split
(never trained on by any stage): each photo's centre window, clean once and every training
type at every level, as the validation grid cuts it. Recall per class over levels 1-5 and per
level, precision per class. ``--report`` writes it as JSON (and the table as markdown beside).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from saliq.atomic import write_text_atomic
from saliq.preprocess import Preprocessor
from saliq.spec import NO_DEFECT

from .data.distortions import DEFECT_CLASSES, DEFECT_OF_TYPE, TYPE_NAMES

FIT_STEPS = 1500
FIT_LR = 3e-3
# AdamW weight decays tried; the one with the best balanced recall on the validation photos
# is kept
WEIGHT_DECAYS = (0.01, 0.05, 0.1)
FRESH_EPOCH = 2000  # draws no training epoch and no fusion fit used
COPIES_PER_PHOTO = 32  # fresh windows per training photo (up to 9,280 draws)
VAL_PHOTOS = 10
SCALE_FLOOR = 1e-3
# Issue 9's gate-AUC counts level 1 with the clean frames (a frame a gate may pass): recall is
# also reported over the levels from here on, the frames a gate should reject and explain.
REJECTED_FROM_LEVEL = 2


def defect_index(type_index: int) -> int:
    """Class index of a training item's ``type_index`` (-1: clean)."""
    name = NO_DEFECT if type_index < 0 else DEFECT_OF_TYPE[TYPE_NAMES[type_index]]
    return DEFECT_CLASSES.index(name)


def with_defect_head(model, spec):
    """A copy of a crop-view model with an (unfitted) defect head, and its spec."""
    from .models.contract import respec
    from .models.registry import create_model

    config = {**spec.model_config, "defect_classes": list(DEFECT_CLASSES)}
    config.pop("backbone_weights", None)  # the weights come from the checkpoint, not a file
    headed = create_model(spec.architecture, **config)
    missing, unexpected = headed.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not key.startswith("defect_head.") for key in missing):
        raise SystemExit(f"not a crop-view checkpoint this head fits: {missing=} {unexpected=}")
    headed.eval()
    return headed, respec(headed, spec, config)


@torch.no_grad()
def head_features(model, dataset, spec, batch_size: int = 16, desc: str = "features"):
    """(features [n, F], class index [n], level [n]) of every item of ``dataset``."""
    from tqdm import tqdm

    feats, classes, levels = [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=1)
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False):
        out = model({name: batch[name] for name in spec.inputs})
        feats.append(out["defect_features"])
        classes += [defect_index(int(t)) for t in batch["type_index"]]
        levels += [int(v) for v in batch["level"]]
    return torch.cat(feats), np.array(classes), np.array(levels)


def _cached_features(cache: Path | None, key: str, compute) -> tuple:
    """``compute()``'s (features, classes, levels), stored in ``cache`` (npz) under ``key``."""
    if cache is not None and cache.is_file():
        with np.load(cache) as stored:
            if f"{key}/features" in stored:
                return (
                    torch.from_numpy(stored[f"{key}/features"]),
                    stored[f"{key}/classes"],
                    stored[f"{key}/levels"],
                )
    feats, classes, levels = compute()
    if cache is not None:
        old = {}
        if cache.is_file():
            with np.load(cache) as stored:
                old = dict(stored)
        old.update(
            {f"{key}/features": feats.numpy(), f"{key}/classes": classes, f"{key}/levels": levels}
        )
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **old)
        tmp.replace(cache)
    return feats, classes, levels


def fit_head(
    head,
    feats: torch.Tensor,
    classes: np.ndarray,
    steps: int = FIT_STEPS,
    weight_decay: float = WEIGHT_DECAYS[0],
) -> float:
    """Standardise, then class-balanced cross-entropy by full-batch AdamW with the head's
    dropout on, from a fixed start (a fit depends only on its data); the final loss. The
    head is left in eval mode."""
    # Seeded inside (initialisation and dropout), without touching the caller's RNG state.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for layer in head.mlp:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        with torch.no_grad():
            head.shift.copy_(feats.mean(0))
            head.scale.copy_(feats.std(0).clamp(min=SCALE_FLOOR))
        target = torch.as_tensor(classes)
        counts = torch.bincount(target, minlength=head.mlp[-1].out_features).float()
        weights = torch.where(
            counts > 0, counts.sum() / counts.clamp(min=1), torch.zeros_like(counts)
        )
        optimizer = torch.optim.AdamW(head.mlp.parameters(), lr=FIT_LR, weight_decay=weight_decay)
        loss = torch.zeros(())
        head.train()
        for _ in range(steps):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(head.logits(feats), target, weight=weights)
            loss.backward()
            optimizer.step()
    head.eval()
    return float(loss.detach())


def balanced_recall(true: np.ndarray, pred: np.ndarray) -> float:
    """Mean over the classes present of their recall."""
    return float(np.mean([np.mean(pred[true == c] == c) for c in np.unique(true)]))


def confusion_report(true: np.ndarray, pred: np.ndarray, levels: np.ndarray) -> dict:
    """Confusion matrix (rows: true class, columns: predicted), recall/precision per class."""
    n = len(DEFECT_CLASSES)
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (true, pred), 1)
    recall = {
        c: float(matrix[i, i] / matrix[i].sum())
        for i, c in enumerate(DEFECT_CLASSES)
        if matrix[i].sum()
    }
    precision = {
        c: float(matrix[i, i] / matrix[:, i].sum())
        for i, c in enumerate(DEFECT_CLASSES)
        if matrix[:, i].sum()
    }
    rejected = levels >= REJECTED_FROM_LEVEL
    recall_rejected = {
        c: float(np.mean(pred[rejected & (true == i)] == i))
        for i, c in enumerate(DEFECT_CLASSES)
        if np.any(rejected & (true == i))
    }
    by_level = {}
    for level in sorted(set(levels.tolist()) - {0}):
        at = levels == level
        by_level[str(level)] = {
            c: float(np.mean(pred[at & (true == i)] == i))
            for i, c in enumerate(DEFECT_CLASSES)
            if np.any(at & (true == i))
        }
    return {
        "classes": list(DEFECT_CLASSES),
        "matrix": matrix.tolist(),
        "recall": recall,
        "precision": precision,
        "recall_by_level": by_level,
        f"recall_levels_{REJECTED_FROM_LEVEL}_up": recall_rejected,
        "accuracy": float(np.mean(true == pred)),
        "frames": int(len(true)),
    }


def markdown(report: dict) -> str:
    classes = report["classes"]
    lines = [
        "| true \\ predicted | " + " | ".join(classes) + " | recall |",
        "|---" * (len(classes) + 2) + "|",
    ]
    for i, c in enumerate(classes):
        row = report["matrix"][i]
        recall = report["recall"].get(c)
        shown = f"{recall:.2f}" if recall is not None else "-"
        lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + f" | {shown} |")
    key = f"recall_levels_{REJECTED_FROM_LEVEL}_up"
    if key in report:
        shown = ", ".join(f"{c} {v:.2f}" for c, v in report[key].items() if c != NO_DEFECT)
        lines += [
            "",
            f"Recall over levels {REJECTED_FROM_LEVEL}-5 (frames a gate rejects): {shown}",
        ]
    levels = sorted(report["recall_by_level"], key=int)
    lines += [
        "",
        "| recall at level | " + " | ".join(levels) + " |",
        "|---" * (len(levels) + 1) + "|",
    ]
    for c in classes[1:]:
        cells = [report["recall_by_level"][lv].get(c) for lv in levels]
        lines.append(
            f"| {c} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in cells) + " |"
        )
    return "\n".join(lines) + "\n"


def fit_defects(
    checkpoint: str | Path,
    output: str | Path,
    items: int = 8000,
    seed: int = 11,
    test_photos: int = 20,
    report_path: str | Path | None = None,
    cache: str | Path | None = None,
) -> dict:
    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import TrainConfig
    from .data.native import NativeGridSet
    from .data.sources import build_datasets, content_splits
    from .fit_fusion import fresh_draws

    started = time.perf_counter()
    model, spec, config, metrics = load_checkpoint(checkpoint)
    if not hasattr(model, "crop_features"):
        raise SystemExit(f"{checkpoint}: {spec.architecture} has no crop views for a defect head")
    model, spec = with_defect_head(model, spec)
    run = TrainConfig.from_run_record(config)
    # integer levels, one frame per draw; a clean frame as often as each class
    run.data.group_size, run.data.continuous_levels = 1, False
    run.data.pristine_prob = 1.0 / len(DEFECT_CLASSES)
    run.data.copies_per_photo = COPIES_PER_PHOTO
    preprocessor = Preprocessor.from_spec(spec)
    data = build_datasets(run.data, spec, preprocessor, {"score"}, seed)
    draws = fresh_draws(data.train, FRESH_EPOCH, items, seed)
    # cached features are keyed by what made them: the weights file, the draws, the head's inputs
    stamp = Path(checkpoint).stat()
    key = f"{Path(checkpoint).name}-{stamp.st_size}-{stamp.st_mtime_ns}-{seed}-{len(draws)}"
    key += f"-{model.defect_head.shift.numel()}"
    cache_path = None if cache is None else Path(cache)
    feats, classes, _ = _cached_features(
        cache_path,
        f"{key}/train",
        lambda: head_features(model, draws, spec),
    )
    splits = content_splits(run.data)
    val = NativeGridSet(splits["val"][:VAL_PHOTOS], preprocessor, spec.inputs, seed=seed)
    val_feats, val_true, _ = _cached_features(
        cache_path,
        f"{key}/val",
        lambda: head_features(model, val, spec, desc="validation grid"),
    )
    val_recall = {}
    for weight_decay in WEIGHT_DECAYS:
        fit_head(model.defect_head, feats, classes, weight_decay=weight_decay)
        with torch.no_grad():
            val_pred = model.defect_head.logits(val_feats).argmax(1).numpy()
        val_recall[weight_decay] = balanced_recall(val_true, val_pred)
    best = max(WEIGHT_DECAYS, key=lambda wd: (val_recall[wd], wd))
    loss = fit_head(model.defect_head, feats, classes, weight_decay=best)
    with torch.no_grad():
        train_pred = model.defect_head.logits(feats).argmax(1).numpy()

    test_items = splits["test"][:test_photos]
    grid = NativeGridSet(test_items, preprocessor, spec.inputs, seed=seed)
    test_feats, test_true, test_levels = _cached_features(
        cache_path,
        f"{key}/test{test_photos}",
        lambda: head_features(model, grid, spec, desc="test grid"),
    )
    with torch.no_grad():
        test_pred = model.defect_head.logits(test_feats).argmax(1).numpy()
    report = confusion_report(test_true, test_pred, test_levels)
    report.update(
        {
            "command": "python -m saliq.train.fit_defects " + " ".join(sys.argv[1:]),
            "checkpoint": str(checkpoint),
            "test_photos": [item.name for item in test_items],
            "fit": {
                "items": len(draws),
                "seed": seed,
                "steps": FIT_STEPS,
                "weight_decay": best,
                "val_balanced_recall": {str(k): v for k, v in val_recall.items()},
                "val_photos": len(val.items),
                "loss": loss,
                "train_accuracy": float(np.mean(train_pred == classes)),
            },
            "elapsed_s": round(time.perf_counter() - started, 1),
        }
    )
    config = {**config, "defect_fit": report["fit"]}
    config["model"] = {
        **config.get("model", {}),
        "kwargs": {
            **config.get("model", {}).get("kwargs", {}),
            "defect_classes": list(DEFECT_CLASSES),
        },
    }
    save_checkpoint(output, model, spec, config, metrics)
    if report_path is not None:
        path = Path(report_path)
        write_text_atomic(path, json.dumps(report, indent=1) + "\n")
        write_text_atomic(path.with_suffix(".md"), markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--items", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--test-photos", type=int, default=20)
    parser.add_argument("--report", help="write the confusion report JSON here (and .md beside)")
    parser.add_argument("--cache", help="keep the computed head inputs in this .npz (refits)")
    args = parser.parse_args(argv)
    report = fit_defects(
        args.checkpoint,
        args.output,
        args.items,
        args.seed,
        args.test_photos,
        args.report,
        args.cache,
    )
    print(markdown(report))
    shown = ("recall", f"recall_levels_{REJECTED_FROM_LEVEL}_up", "accuracy", "fit", "elapsed_s")
    print(json.dumps({k: report[k] for k in shown}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
