"""Held-out evaluation: synthetic quality (model and classical peers) + Scene saliency.

Quality: every (test photo, distortion type, level) of the synthetic grid, run through the
SDK exactly as an app would (``saliq.load(model).assess(frames)``). Reported per model:
mean over (photo, type) groups of SRCC(score, -level), per-type means, and the ROC AUC that
separates the two mildest levels from the two worst with one global threshold.
Saliency: the model's map (upsampled to the photo) on Scene test photos against human
fixations (NSS, CC, AUC-Judd, shuffled AUC), beside the preprocessing prior alone and a
centre Gaussian whose width is tuned on the training photos' fixations.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

MILD_LEVELS = (1, 2)
SEVERE_LEVELS = (4, 5)
EVAL_LONG_SIDE = 1024  # saliency metrics on photos larger than this run on a downscaled grid
QUALITY_REPORT = "quality"
SALIENCY_REPORT = "saliency"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="default | model.onnx | checkpoint.safetensors")
    parser.add_argument(
        "--split-from",
        default=None,
        help="checkpoint whose recorded test split to use (default: the model's "
        "own .safetensors, or the one beside an .onnx)",
    )
    parser.add_argument("--scene-dir", default="../shared/data/scene")
    parser.add_argument("--types", nargs="*", default=None, help="distortion types (default all)")
    parser.add_argument("--peers", nargs="*", default=["brisque", "variance_of_laplacian"])
    parser.add_argument("--no-saliency", action="store_true")
    parser.add_argument("--max-photos", type=int, default=None)
    parser.add_argument("--output", default=None, help="write the JSON report here")
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="evaluate on the test photos that are present when some are missing (e.g. no "
        "Scene data beside a fresh clone); without it a missing photo is an error",
    )


def _split_checkpoint(model: str, split_from: str | None) -> Path:
    from saliq.assess import default_model_path

    if split_from:
        return Path(split_from)
    if model == "default":
        return default_model_path("safetensors")
    path = Path(model)
    return path if path.suffix == ".safetensors" else path.with_suffix(".safetensors")


def test_items(checkpoint: Path, scene_dir: str | None, allow_partial: bool = False):
    """The content photos the checkpoint recorded as its test split (never seen in training)."""
    from saliq.errors import ConfigError
    from saliq.train.checkpoint import CONFIG_KEY, read_metadata

    from .data.content import sample_photo_items, scene_items

    config = json.loads(read_metadata(checkpoint)[CONFIG_KEY])
    split = config.get("split")
    if not split:
        raise ConfigError(f"{checkpoint}: records no content split; pass --split-from")
    pool = []
    if scene_dir and Path(scene_dir).is_dir():
        pool += scene_items(scene_dir)
    if config.get("data", {}).get("sample_photos", True):
        pool += sample_photo_items(config["data"]["cache_dir"])
    by_name = {item.name: item for item in pool}
    found = {k: [by_name[n] for n in names if n in by_name] for k, names in split.items()}
    missing = len(split["test"]) - len(found["test"])
    if missing and not allow_partial:
        raise ConfigError(
            f"{missing} of the {len(split['test'])} test photos recorded in {checkpoint} are "
            f"not found (scene dir {scene_dir!r}); point --scene-dir at the Scene data, or pass "
            f"--allow-partial to evaluate the {len(found['test'])} photos present"
        )
    if missing:
        print(
            f"[saliq evaluate] --allow-partial: {missing} test photos not found; evaluating "
            f"{len(found['test'])}"
        )
    if not found["test"]:
        raise ConfigError(f"none of the test photos recorded in {checkpoint} is present")
    return found


def severity_metrics(scores, levels, photos, types) -> dict:
    """Grouped SRCC, per-type SRCC and the mild-vs-severe ROC AUC for one scorer."""
    from .metrics import grouped_srcc, roc_auc

    scores, levels = np.asarray(scores, float), np.asarray(levels)
    photos, types = np.asarray(photos), np.asarray(types)
    distorted = levels > 0
    groups = [f"{p}|{t}" for p, t in zip(photos[distorted], types[distorted])]
    mean, per_group = grouped_srcc(scores[distorted], levels[distorted], groups)
    per_type: dict[str, list[float]] = defaultdict(list)
    for key, value in per_group.items():
        per_type[key.split("|", 1)[1]].append(value)
    mild = np.isin(levels, MILD_LEVELS)
    severe = np.isin(levels, SEVERE_LEVELS)
    keep = mild | severe
    return {
        "grouped_srcc": mean,
        "per_type_srcc": {t: float(np.mean(v)) for t, v in sorted(per_type.items())},
        "min_type_srcc": float(min(np.mean(v) for v in per_type.values())),
        "auc_mild_vs_severe": roc_auc(scores[keep], mild[keep].astype(int)),
        "groups": len(per_group),
    }


def evaluate_quality(assessor, items, types=None, peers=(), progress=True) -> dict:
    from tqdm import tqdm

    from saliq.preprocess import Preprocessor

    from .data.synthetic import SyntheticGridSet
    from .peers import PEERS

    spec = assessor.spec
    grid = SyntheticGridSet(items, Preprocessor.from_spec(spec), spec.saliency_size, types=types)
    photos, kinds, levels = (list(col) for col in zip(*grid.records))
    scorers = {"model": [], **{name: [] for name in peers}}
    batch = assessor.batch_size
    for start in tqdm(range(0, len(grid), batch), desc="quality grid", disable=not progress):
        frames = [grid.frame(i) for i in range(start, min(start + batch, len(grid)))]
        scorers["model"] += [r.score for r in assessor.assess(frames, color="RGB")]
        for name in peers:
            scorers[name] += [PEERS[name](f) for f in frames]
    report = {"images": len(grid), "photos": len(items), "types": grid.types}
    for name, scores in scorers.items():
        report[name] = severity_metrics(scores, levels, photos, kinds)
    return report


def _eval_grid(item) -> tuple[tuple[int, int], np.ndarray]:
    """Photo size for the metrics (long side capped) and fixations scaled to it."""
    scale = min(1.0, EVAL_LONG_SIDE / max(item.height, item.width))
    hw = (max(1, round(item.height * scale)), max(1, round(item.width * scale)))
    return hw, item.fixations * np.array([hw[1] / item.width, hw[0] / item.height])


def evaluate_saliency(assessor, test, train, progress=True) -> dict:
    import cv2
    from tqdm import tqdm

    from . import metrics as M

    test = [i for i in test if i.fixations is not None and len(i.fixations)]
    train = [i for i in train if i.fixations is not None and len(i.fixations)]
    if not test:
        return {"skipped": "no test photos with fixations (Scene data absent?)"}
    sigma = M.tune_centre_gaussian([((i.height, i.width), i.fixations) for i in train])
    grids = [_eval_grid(i) for i in test]
    rng = np.random.default_rng(0)
    rows: dict[str, list[dict]] = defaultdict(list)
    for idx, item in enumerate(tqdm(test, desc="saliency", disable=not progress)):
        hw, points = grids[idx]
        fix_map = M.fixation_map_from_points(points, hw)
        density = M.fixation_density_map(points, hw)
        others = [grids[j] for j in range(len(test)) if j != idx]
        other_pts = np.concatenate([p * np.array([hw[1] / g[1], hw[0] / g[0]]) for g, p in others])
        other_map = M.fixation_map_from_points(other_pts, hw)
        bgr = cv2.imread(item.path, cv2.IMREAD_COLOR)
        prior = assessor.preprocessor.one(bgr, "BGR")["prior"][0]
        maps = {}
        if assessor.spec.saliency:  # a score-only model has no map of its own to rate
            maps["model"] = M.resize_to(assessor.assess(bgr).saliency, hw)
        maps["prior"] = M.resize_to(prior, hw)
        maps["centre_gaussian"] = M.centre_gaussian_map(hw, sigma)
        for name, sal in maps.items():
            rows[name].append(
                {
                    "nss": M.nss(sal, fix_map),
                    "cc": M.cc(sal, density),
                    "auc_judd": M.auc_judd(sal, fix_map, rng=rng),
                    "shuffled_auc": M.shuffled_auc(sal, fix_map, other_map, rng=rng),
                }
            )
    report = {"photos": len(test), "centre_sigma_fraction": sigma}
    for name, values in rows.items():
        report[name] = {k: float(np.nanmean([v[k] for v in values])) for k in values[0]}
    return report


def scorers(section: dict) -> list[str]:
    """The scorers (quality) or maps (saliency) a report section holds, in report order."""
    return [name for name, value in section.items() if isinstance(value, dict)]


def format_report(report: dict) -> str:
    lines = []
    quality = report.get(QUALITY_REPORT)
    if quality:
        lines.append(f"Synthetic test set: {quality['photos']} photos, {quality['images']} images")
        lines.append(f"{'scorer':<22}{'grouped SRCC':>13}{'min type':>10}{'AUC mild/sev':>14}")
        for n in scorers(quality):
            q = quality[n]
            lines.append(
                f"{n:<22}{q['grouped_srcc']:>13.3f}{q['min_type_srcc']:>10.3f}"
                f"{q['auc_mild_vs_severe']:>14.3f}"
            )
        lines.append(
            "per type SRCC: "
            + "  ".join(f"{t}={v:.3f}" for t, v in quality["model"]["per_type_srcc"].items())
        )
    saliency = report.get(SALIENCY_REPORT)
    if saliency and "skipped" not in saliency:
        lines.append(
            f"Scene saliency: {saliency['photos']} held-out photos "
            f"(centre sigma {saliency['centre_sigma_fraction']:.3f})"
        )
        lines.append(f"{'map':<18}{'NSS':>8}{'CC':>8}{'AUC-J':>8}{'sAUC':>8}")
        for name in scorers(saliency):
            s = saliency[name]
            lines.append(
                f"{name:<18}{s['nss']:>8.3f}{s['cc']:>8.3f}{s['auc_judd']:>8.3f}"
                f"{s['shuffled_auc']:>8.3f}"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    from saliq.assess import load

    checkpoint = _split_checkpoint(args.model, args.split_from)
    splits = test_items(checkpoint, args.scene_dir, getattr(args, "allow_partial", False))
    test = splits["test"][: args.max_photos] if args.max_photos else splits["test"]
    assessor = load(args.model)
    report = {"model": str(args.model), "split_from": str(checkpoint)}
    report[QUALITY_REPORT] = evaluate_quality(assessor, test, args.types, args.peers)
    if not args.no_saliency:
        report[SALIENCY_REPORT] = evaluate_saliency(assessor, test, splits.get("train", []))
    return report


def main(args: argparse.Namespace) -> int:
    from saliq.atomic import write_text_atomic

    report = run(args)
    print(format_report(report))
    if args.output:
        write_text_atomic(args.output, json.dumps(_finite(report), indent=2) + "\n")
        print(f"report written to {args.output}")
    return 0


def _finite(value):
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
