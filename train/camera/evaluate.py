"""Camera-resolution evaluation (issue 9's acceptance measurement; docs/camera_evaluation.md).

Held-out real photos (configs/heldout_camera.json) are area-downscaled to the 1920x1080
class (long side 1920, aspect kept; smaller photos are left as they are), distorted at that
native resolution by :mod:`saliq.train.camera.distortions` (pristine + 5 levels of 6
types), and scored by any number of saliq models (``saliq.load(spec)``, the app's path from
a BGR uint8 frame to a score) and the classical peers of train/peers.py, all on the same
frames. Per scorer:

* within-group SRCC: SRCC(score, -level) in each (photo, type) group of 6 frames (the
  pristine frame is level 0 of every group of its photo), mean over groups and per type
  (train/metrics.py ``grouped_srcc``: a constant group counts 0);
* gate-AUC: ROC AUC of the score separating {pristine, level 1} from {levels 4, 5} across
  all photos, overall and per type (per type: the pristine frames + that type's levels);
* latency: median wall time per frame of the scorer's call on those frames;
* saliency awareness (``--saliency``): with human fixations, the same distortion confined
  to the 30 % most- vs 30 % least-looked-at pixels (feathered masks): the fraction of photos
  where the salient-distorted frame scores lower; and a level-5 defect confined to the
  background: the fraction of photos where it scores below the pristine frame.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from saliq import views
from saliq.bench.timer import timing_from_ns
from saliq.errors import ConfigError, InvalidImageError, SaliqError

from .distortions import CAMERA_DISTORTIONS, LEVELS, PRISTINE, TYPES, distort, group_seed
from .heldout import heldout_photos
from .regions import FEATHER_SIGMA_PX, REGION_FRACTION, region_masks

CANONICAL_LONG_SIDE = 1920
GATE_GOOD_LEVELS = (0, 1)  # frames a gate must pass
GATE_BAD_LEVELS = (4, 5)  # frames a gate must reject
SALIENCY_LEVEL = 3  # the middle level: visible, yet not so strong that any region saturates
BACKGROUND_LEVEL = 5
ACCEPTANCE_SALIENCY_TYPES = ("gaussian_blur", "gaussian_noise")
DEFAULT_BRISQUE_DOWNSCALE = 2  # BRISQUE takes ~1.5 s on a 1920x1440 frame on a 2-core CPU
PRISTINE_TYPE = "pristine"
TARGETS = {
    "within_group_srcc": 0.95,
    "gate_auc": 0.95,
    "min_type_gate_auc": 0.90,
    "salient_lower_fraction": 0.90,
    "background_below_pristine_fraction": 0.90,
}


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def canonical_frame(bgr: np.ndarray, long_side: int = CANONICAL_LONG_SIDE) -> np.ndarray:
    """Area-downscale so the long side is ``long_side`` (aspect kept); smaller frames unchanged:
    the native scale of preprocessing version 2 (saliq.views.canonical_frame)."""
    return views.canonical_frame(bgr, long_side)


def scale_fixations(
    points_xy: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]
) -> np.ndarray:
    """(x, y) fixations of a photo moved onto a resized copy (pixel-centre convention)."""
    pts = np.asarray(points_xy, np.float64).reshape(-1, 2)
    sx, sy = dst_hw[1] / src_hw[1], dst_hw[0] / src_hw[0]
    return np.stack([(pts[:, 0] + 0.5) * sx - 0.5, (pts[:, 1] + 0.5) * sy - 0.5], axis=1)


@dataclass
class Photo:
    """A held-out photo at the canonical size; ``fixations`` (x, y) are on that frame."""

    name: str
    frame: np.ndarray  # uint8 [H, W, 3] BGR
    original_hw: tuple[int, int]
    fixations: np.ndarray | None = None


def load_photos(scene_dir: str | os.PathLike[str], names: Sequence[str]) -> list[Photo]:
    """The named Scene photos, canonical-sized, with their fixations (ConfigError if absent)."""
    import cv2

    from saliq.train.data.content import scene_items

    root = Path(scene_dir)
    if not (root / "images").is_dir():
        raise ConfigError(
            f"Scene data not found at {root} (no images/ folder); point --scene-dir at the "
            "Scene saliency folder (../shared/data/scene beside the repository)"
        )
    items = {item.name: item for item in scene_items(root)}
    missing = [n for n in names if n not in items]
    if missing:
        raise ConfigError(
            f"{len(missing)} held-out photos are missing from {root / 'images'}: {missing[:5]}; "
            "is --scene-dir the full Scene data set?"
        )
    photos = []
    for name in names:
        item = items[name]
        bgr = cv2.imread(item.path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise InvalidImageError(f"{item.path}: OpenCV cannot decode it; replace the file")
        frame = canonical_frame(bgr)
        fix = None
        if item.fixations is not None and len(item.fixations):
            fix = scale_fixations(item.fixations, bgr.shape[:2], frame.shape[:2])
        photos.append(Photo(name, np.ascontiguousarray(frame), bgr.shape[:2], fix))
    return photos


# --------------------------------------------------------------------------------------------
# Scorers
# --------------------------------------------------------------------------------------------


@dataclass
class Scorer:
    """One row of the report: ``score(bgr_uint8_frame) -> float``, higher = better."""

    name: str
    score: Callable[[np.ndarray], float]
    info: dict = field(default_factory=dict)


def model_scorer(model: str, backend: str = "auto") -> Scorer:
    """A saliq model as an app runs it: ``saliq.load(model).assess(frame).score``."""
    from saliq.assess import default_model_path, load

    assessor = load(model, backend=backend)
    if str(model) == "default":
        path = default_model_path("safetensors" if backend == "torch" else "onnx")
    else:
        path = Path(model)
    spec = assessor.spec
    info = {
        "kind": "saliq model",
        "model": str(model),
        "file": path.name,
        "spec_name": spec.name,
        "backend": type(assessor.backend).__name__,
        "input_hw": [spec.input_height, spec.input_width],
        "preprocessing_version": spec.preprocessing_version,
        "inputs": list(spec.inputs),
    }
    return Scorer(f"{spec.name} ({path.name})", lambda f: float(assessor.assess(f).score), info)


def peer_scorer(name: str, downscale: int = 1) -> Scorer:
    """A classical peer of train/peers.py on the BGR frame (optionally area-downscaled first)."""
    import cv2

    from saliq.train.peers import PEERS

    if name not in PEERS:
        raise ConfigError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    if downscale < 1:
        raise ConfigError(f"downscale must be an integer >= 1, got {downscale}")
    fn = PEERS[name]

    def score(frame: np.ndarray) -> float:
        if downscale > 1:
            h, w = frame.shape[:2]
            size = (max(8, w // downscale), max(8, h // downscale))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        return float(fn(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))

    info = {"kind": "classical peer", "peer": name, "downscale": downscale}
    if downscale > 1:
        info["note"] = f"computed on the frame area-downscaled {downscale}x (cost)"
    return Scorer(name, score, info)


def _unique_names(scorers: list[Scorer]) -> list[Scorer]:
    seen: dict[str, int] = defaultdict(int)
    for s in scorers:
        seen[s.name] += 1
        if seen[s.name] > 1:
            s.name = f"{s.name} #{seen[s.name]}"
    return scorers


# --------------------------------------------------------------------------------------------
# Metrics (formulas live in train/metrics.py)
# --------------------------------------------------------------------------------------------


def severity_metrics(
    scores: Sequence[float], levels: Sequence[int], photos: Sequence[str], types: Sequence[str]
) -> dict:
    """Within-group SRCC and gate-AUC, overall and per type, for one scorer.

    Frames are listed once; a pristine frame (level 0, type ``"pristine"``) joins every
    (photo, type) group of its photo. Non-finite scores (a scorer that failed on a frame)
    are left out and counted in ``invalid_scores``.
    """
    from saliq.train.metrics import grouped_srcc, roc_auc

    s = np.asarray(scores, np.float64)
    lv = np.asarray(levels, np.int64)
    ph = np.asarray(photos, dtype=object)
    ty = np.asarray(types, dtype=object)
    if not (s.size == lv.size == ph.size == ty.size):
        raise ValueError("scores, levels, photos and types must have one entry per frame")
    ok = np.isfinite(s)
    s, lv, ph, ty = s[ok], lv[ok], ph[ok], ty[ok]
    kinds = sorted({t for t in ty if t != PRISTINE_TYPE})
    pristine = lv == PRISTINE
    exp_s, exp_l, exp_g = [], [], []
    for kind in kinds:
        sel = (ty == kind) | pristine
        exp_s.append(s[sel])
        exp_l.append(lv[sel])
        exp_g += [(p, kind) for p in ph[sel]]
    if kinds:
        mean, per_group = grouped_srcc(np.concatenate(exp_s), np.concatenate(exp_l), exp_g)
    else:
        mean, per_group = float("nan"), {}
    per_type: dict[str, list[float]] = defaultdict(list)
    for (_, kind), value in per_group.items():
        per_type[kind].append(value)
    good = np.isin(lv, GATE_GOOD_LEVELS)
    bad = np.isin(lv, GATE_BAD_LEVELS)

    def gate(sel: np.ndarray) -> float:
        keep = sel & (good | bad)
        return roc_auc(s[keep], good[keep].astype(int))

    per_type_auc = {k: gate((ty == k) | pristine) for k in kinds}
    finite_aucs = [v for v in per_type_auc.values() if np.isfinite(v)]
    return {
        "within_group_srcc": mean,
        "per_type_srcc": {k: float(np.mean(per_type[k])) for k in kinds if per_type[k]},
        "gate_auc": gate(np.ones_like(good)),
        "per_type_gate_auc": per_type_auc,
        "min_type_gate_auc": float(min(finite_aucs)) if finite_aucs else float("nan"),
        "groups": len(per_group),
        "invalid_scores": int((~ok).sum()),
    }


def region_metrics(rows: list[dict]) -> dict:
    """Saliency-awareness fractions from per-photo scores of one scorer and one type.

    Each row: ``pristine``, ``salient`` and ``background`` (the same distortion confined to
    each region) and ``background_severe`` (level 5 in the background). A tie counts as a
    failure: a scorer that cannot tell the versions apart gets no credit.
    """

    def frac(pairs: list[tuple[float, float]]) -> float:
        pairs = [(a, b) for a, b in pairs if np.isfinite(a) and np.isfinite(b)]
        return float(np.mean([a < b for a, b in pairs])) if pairs else float("nan")

    gaps = [r["background"] - r["salient"] for r in rows]
    gaps = [g for g in gaps if np.isfinite(g)]
    return {
        "salient_lower_fraction": frac([(r["salient"], r["background"]) for r in rows]),
        "background_below_pristine_fraction": frac(
            [(r["background_severe"], r["pristine"]) for r in rows]
        ),
        "mean_gap_background_minus_salient": float(np.mean(gaps)) if gaps else float("nan"),
        "photos": len(rows),
    }


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


def _timed(scorer: Scorer, frame: np.ndarray, times: list[int] | None) -> float:
    start = time.perf_counter_ns()
    value = scorer.score(frame)
    if times is not None:
        times.append(time.perf_counter_ns() - start)
    return value


def _warm_up(scorers: Sequence[Scorer], frame: np.ndarray) -> None:
    # First calls pay one-off costs (ONNX Runtime's first run, BRISQUE's SVR load): keep
    # them out of the latency figures.
    for scorer in scorers:
        scorer.score(frame)


def evaluate_severity(
    photos: Sequence[Photo],
    scorers: Sequence[Scorer],
    types: Sequence[str] = TYPES,
    progress: bool = True,
) -> dict:
    """Score pristine + levels 1..5 of each type on every photo; metrics and latency per scorer."""
    from tqdm import tqdm

    frames: dict[str, list] = {"photo": [], "type": [], "level": []}
    scores: dict[str, list[float]] = {s.name: [] for s in scorers}
    times: dict[str, list[int]] = {s.name: [] for s in scorers}
    plan = [(PRISTINE_TYPE, PRISTINE)] + [(t, lv) for t in types for lv in LEVELS]
    if photos:
        _warm_up(scorers, photos[0].frame)
    for photo in tqdm(photos, desc="camera grid", disable=not progress):
        for kind, level in plan:
            frame = photo.frame
            if level != PRISTINE:
                frame = distort(frame, kind, level, group_seed(photo.name, kind))
            frames["photo"].append(photo.name)
            frames["type"].append(kind)
            frames["level"].append(level)
            for scorer in scorers:
                scores[scorer.name].append(_timed(scorer, frame, times[scorer.name]))
    out: dict = {"frames": len(frames["level"]), "photos": len(photos), "scorers": {}}
    for scorer in scorers:
        latency = {"median": float("nan"), "p90": float("nan"), "frames": 0}
        if times[scorer.name]:
            # The project's one timer statistics (saliq.bench.timer), over one call per frame.
            timing = timing_from_ns(times[scorer.name])
            latency = {"median": timing.median_ms, "p90": timing.p90_ms, "frames": timing.runs}
        out["scorers"][scorer.name] = {
            **severity_metrics(
                scores[scorer.name], frames["level"], frames["photo"], frames["type"]
            ),
            "latency_ms": latency,
        }
    out["scores"] = {**frames, **{k: [round(v, 6) for v in vs] for k, vs in scores.items()}}
    return out


def evaluate_saliency(
    photos: Sequence[Photo],
    scorers: Sequence[Scorer],
    types: Sequence[str] = TYPES,
    level: int = SALIENCY_LEVEL,
    background_level: int = BACKGROUND_LEVEL,
    fraction: float = REGION_FRACTION,
    feather_px: float = FEATHER_SIGMA_PX,
    progress: bool = True,
) -> dict:
    """Salient-vs-background and background-only defects on photos with fixations."""
    from tqdm import tqdm

    from saliq.train.metrics import fixation_density_map

    usable = [p for p in photos if p.fixations is not None and len(p.fixations)]
    if not usable:
        return {"skipped": "no held-out photo has fixations (Scene fixations.csv absent?)"}
    rows: dict[str, dict[str, list[dict]]] = {s.name: defaultdict(list) for s in scorers}
    per_photo: list[dict] = []
    for photo in tqdm(usable, desc="saliency awareness", disable=not progress):
        density = fixation_density_map(photo.fixations, photo.frame.shape[:2])
        salient, background = region_masks(density, fraction, feather_px)
        pristine = {s.name: s.score(photo.frame) for s in scorers}
        record: dict = {"photo": photo.name, "pristine": pristine}
        for kind in types:
            seed = group_seed(photo.name, kind)
            versions = {
                "salient": distort(photo.frame, kind, level, seed, region=salient),
                "background": distort(photo.frame, kind, level, seed, region=background),
                "background_severe": distort(
                    photo.frame, kind, background_level, seed, region=background
                ),
            }
            got = {v: {s.name: s.score(f) for s in scorers} for v, f in versions.items()}
            record[kind] = got
            for s in scorers:
                row = {"pristine": pristine[s.name], **{v: got[v][s.name] for v in versions}}
                rows[s.name][kind].append(row)
        per_photo.append(record)
    out: dict = {
        "photos": len(usable),
        "level": level,
        "background_level": background_level,
        "region_fraction": fraction,
        "feather_sigma_px": feather_px,
        "acceptance_types": list(ACCEPTANCE_SALIENCY_TYPES),
        "scorers": {
            name: {kind: region_metrics(kind_rows) for kind, kind_rows in by_kind.items()}
            for name, by_kind in rows.items()
        },
        "per_photo": per_photo,
    }
    return out


def acceptance(report: dict) -> dict[str, dict[str, bool]]:
    """Per scorer, which of issue 9's targets it meets (absent parts are left out)."""
    out: dict[str, dict[str, bool]] = {}
    for name, q in report.get("severity", {}).get("scorers", {}).items():
        checks = {
            "within_group_srcc": q["within_group_srcc"] >= TARGETS["within_group_srcc"],
            "gate_auc": q["gate_auc"] >= TARGETS["gate_auc"],
            "min_type_gate_auc": q["min_type_gate_auc"] >= TARGETS["min_type_gate_auc"],
        }
        sal = report.get("saliency", {}).get("scorers", {}).get(name)
        if sal:
            for kind in ACCEPTANCE_SALIENCY_TYPES:
                if kind in sal:
                    for key in ("salient_lower_fraction", "background_below_pristine_fraction"):
                        checks[f"{kind}.{key}"] = bool(sal[kind][key] >= TARGETS[key])
        out[name] = {k: bool(v) for k, v in checks.items()}
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

_SHORT = {
    "gaussian_noise": "noise",
    "gaussian_blur": "blur",
    "defocus_blur": "defocus",
    "motion_blur": "motion",
    "jpeg": "jpeg",
    "low_light": "lowlight",
}


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def fmt(row: list[str]) -> str:
        # First column (names) left-aligned, numbers right-aligned.
        cells = (
            str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths))
        )
        return "  ".join(cells).rstrip()

    return [fmt(header)] + [fmt(r) for r in rows]


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def format_report(report: dict, markdown: bool = False) -> str:
    lines: list[str] = []
    sev = report.get("severity")
    if sev:
        lines.append(
            f"Camera-resolution severity: {sev['photos']} photos, {sev['frames']} frames "
            f"(pristine + 5 levels x {len(report['types'])} types)"
        )
        rows = [
            [
                name,
                _f(q["within_group_srcc"]),
                _f(q["gate_auc"]),
                _f(q["min_type_gate_auc"]),
                _f(q["latency_ms"]["median"], 1),
            ]
            for name, q in sev["scorers"].items()
        ]
        header = ["scorer", "within-group SRCC", "gate-AUC", "min type gate-AUC", "ms/frame"]
        lines += _table(header, rows, markdown) + [""]
        types = report["types"]
        for key, title in (("per_type_srcc", "SRCC"), ("per_type_gate_auc", "gate-AUC")):
            lines.append(f"Per type {title}:")
            rows = [
                [name] + [_f(q[key].get(t)) for t in types] for name, q in sev["scorers"].items()
            ]
            lines += _table(["scorer"] + [_SHORT.get(t, t) for t in types], rows, markdown)
            lines.append("")
    sal = report.get("saliency")
    if sal and "skipped" not in sal:
        lines.append(
            f"Saliency awareness: {sal['photos']} photos with fixations; level {sal['level']} in "
            f"the {round(100 * sal['region_fraction'])} % most vs least looked-at pixels "
            f"(salient < background), level {sal['background_level']} in the background "
            "(< pristine):"
        )
        header, rows = ["scorer"], []
        kinds = list(next(iter(sal["scorers"].values())))
        for kind in kinds:
            header += [f"{_SHORT.get(kind, kind)} sal<bg", f"{_SHORT.get(kind, kind)} bg5<prist"]
        for name, by_kind in sal["scorers"].items():
            row = [name]
            for kind in kinds:
                m = by_kind[kind]
                row += [
                    _f(m["salient_lower_fraction"], 2),
                    _f(m["background_below_pristine_fraction"], 2),
                ]
            rows.append(row)
        lines += _table(header, rows, markdown)
    elif sal:
        lines.append(f"Saliency awareness skipped: {sal['skipped']}")
    return "\n".join(lines).rstrip()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, repo: Path | None = None) -> None:
    repo = repo or Path.cwd()
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="a saliq model: default | model.onnx | checkpoint.safetensors | .engine "
        "(repeat for several; default: default)",
    )
    parser.add_argument("--backend", default="auto", help="saliq.load backend for the models")
    parser.add_argument(
        "--peers",
        nargs="*",
        default=["brisque", "variance_of_laplacian"],
        help="classical peers (train/peers.py); give none to leave them out",
    )
    parser.add_argument(
        "--brisque-downscale",
        type=int,
        default=DEFAULT_BRISQUE_DOWNSCALE,
        help="area-downscale factor of the frame BRISQUE sees (1 = full size; slow)",
    )
    parser.add_argument("--scene-dir", default=str(repo.parent / "shared" / "data" / "scene"))
    parser.add_argument("--heldout", default=str(repo / "configs" / "heldout_camera.json"))
    parser.add_argument("--types", nargs="*", default=None, help=f"subset of {', '.join(TYPES)}")
    parser.add_argument("--max-photos", type=int, default=None, help="first N photos (smoke runs)")
    parser.add_argument("--saliency", action="store_true", help="also the saliency-awareness test")
    parser.add_argument("--output", default=None, help="write the JSON report here")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    types = list(args.types) if args.types else list(TYPES)
    unknown = [t for t in types if t not in CAMERA_DISTORTIONS]
    if unknown:
        raise ConfigError(f"unknown camera distortions {unknown}; known: {', '.join(TYPES)}")
    lists = heldout_photos(args.heldout)
    quality_names = lists["quality"][: args.max_photos] if args.max_photos else lists["quality"]
    saliency_names = lists["saliency"][: args.max_photos] if args.max_photos else lists["saliency"]
    wanted = list(dict.fromkeys(quality_names + (saliency_names if args.saliency else [])))
    loaded = {p.name: p for p in load_photos(args.scene_dir, wanted)}
    scorers = [model_scorer(m, args.backend) for m in (args.model or ["default"])]
    scorers += [peer_scorer(p, args.brisque_downscale if p == "brisque" else 1) for p in args.peers]
    if not scorers:
        raise ConfigError("nothing to score: give --model and/or --peers")
    scorers = _unique_names(scorers)
    progress = not args.no_progress
    quality = [loaded[n] for n in quality_names]
    report: dict = {
        "command": " ".join(["python", *sys.argv]) if sys.argv else "",
        "heldout": _relative(args.heldout),
        "scene_dir": _relative(args.scene_dir),
        "canonical_long_side": CANONICAL_LONG_SIDE,
        "types": types,
        "distortions": {t: CAMERA_DISTORTIONS[t] for t in types},
        "photos": [
            {
                "name": p.name,
                "original_hw": list(p.original_hw),
                "frame_hw": list(p.frame.shape[:2]),
            }
            for p in quality
        ],
        "scorers": {s.name: s.info for s in scorers},
    }
    brisque = next((s for s in scorers if s.info.get("peer") == "brisque"), None)
    if brisque is not None and args.brisque_downscale > 1 and quality:
        # Record why BRISQUE runs on a smaller frame: its cost at full size, once.
        full = peer_scorer("brisque", 1)
        full.score(quality[0].frame)  # warm-up (SVR load)
        timing: list[int] = []
        _timed(full, quality[0].frame, timing)
        brisque.info["full_size_ms_one_frame"] = timing[0] / 1e6
    report["severity"] = evaluate_severity(quality, scorers, types, progress)
    if args.saliency:
        sal_photos = [loaded[n] for n in saliency_names]
        report["saliency"] = evaluate_saliency(sal_photos, scorers, types, progress=progress)
    report["targets"] = TARGETS
    report["acceptance"] = acceptance(report)
    report["environment"] = {**_environment(), "load_average_at_start": load_at_start}
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    return report


def _relative(path: str) -> str:
    """``path`` relative to the working directory where that is shorter (portable JSON)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)
    return rel if len(rel) < len(str(path)) else str(path)


def _environment() -> dict:
    import cv2

    env = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if hasattr(os, "getloadavg"):
        env["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return env


def to_json(value: object, indent: int = 0) -> str:
    """JSON with one key per line but each list of plain values on one line (the per-frame
    score lists stay readable and diffable instead of one number per line)."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {to_json(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value):
        items = [inner + to_json(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def main(argv: Sequence[str] | None = None, repo: Path | None = None) -> int:
    from saliq.atomic import write_text_atomic
    from saliq.train.evaluate import _finite

    parser = argparse.ArgumentParser(
        prog="camera_eval", description="Camera-resolution evaluation (issue 9)"
    )
    add_arguments(parser, repo)
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except SaliqError as exc:
        print(f"camera_eval: error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report, markdown=args.markdown))
    if args.output:
        write_text_atomic(args.output, to_json(_finite(report)) + "\n")
        print(f"report written to {args.output}")
    return 0
