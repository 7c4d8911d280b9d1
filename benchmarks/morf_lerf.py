"""MoRF / LeRF masking curves of a saliq model on the held-out Scene photos (Kirillov et al.
2024, Sec. III-B): does masking the regions an explanation calls most relevant lower the score
more than masking the least relevant ones, and more than masking random regions?

Explanation maps per photo: the model's own predicted saliency (``saliency``), HiResCAM of the
score with rotation + SVD smoothing (``hirescam``, needs the PyTorch checkpoint), and the
human fixation density of the Scene data (``fixations``); plus the random-region baseline.
Method and numbers: docs/explain.md. Code: saliq.train.explain.masking.

    nice -n 10 python benchmarks/morf_lerf.py --model default \\
        --output benchmarks/results/cpu/morf_lerf_default.json

The photos are ``saliency`` of configs/heldout_camera.json (20 Scene photos held out from all
training) at the canonical 1920 px long side, read from ../shared/data/scene; without that
folder the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MAP_KINDS = ("saliency", "hirescam", "fixations")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from saliq.train.explain.masking import DEFAULT_FRACTIONS, FILLS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="default | model.onnx | ckpt.safetensors")
    p.add_argument(
        "--explain-model",
        default=None,
        help="the .safetensors for HiResCAM (default: the shipped one for --model default, "
        "--model itself for a checkpoint; skipped for other models)",
    )
    p.add_argument("--backend", default="auto", help="backend that scores the masked frames")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = runtime defaults)")
    p.add_argument("--scene-dir", default=str(REPO.parent / "shared" / "data" / "scene"))
    p.add_argument("--heldout", default=str(REPO / "configs" / "heldout_camera.json"))
    p.add_argument("--photos", type=int, default=0, help="use the first N photos (0 = all)")
    p.add_argument("--maps", nargs="+", default=list(MAP_KINDS), choices=MAP_KINDS)
    p.add_argument("--fills", nargs="+", default=list(FILLS), choices=FILLS)
    p.add_argument("--fractions", nargs="+", type=float, default=list(DEFAULT_FRACTIONS))
    p.add_argument("--random-draws", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--output", default=str(REPO / "benchmarks" / "results" / "cpu" / "morf_lerf_default.json")
    )
    p.add_argument("--plot", default=None, help="PNG of the curves (default: --output .png)")
    return p.parse_args(argv)


def _explainer(args: argparse.Namespace):
    """(torch model, spec) for HiResCAM, or None where no checkpoint is at hand."""
    from saliq.train.explain.cam import load_explainable

    source = args.explain_model
    if source is None:
        if args.model == "default" or args.model.endswith(".safetensors"):
            source = args.model
        else:
            return None
    return load_explainable(source)


def _hirescam(explainer, bgr: np.ndarray) -> np.ndarray:
    import torch

    from saliq.preprocess import Preprocessor
    from saliq.train.explain.cam import score_cams

    model, spec = explainer
    prep = Preprocessor.from_spec(spec)(bgr, fmt="BGR")
    inputs = {k: torch.from_numpy(np.ascontiguousarray(prep[k])) for k in spec.inputs}
    return score_cams(model, inputs, ("hirescam",))["hirescam"][0, 0].numpy()


def _mean_std(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0}


def run(args: argparse.Namespace) -> dict | None:
    import saliq
    from saliq.train.camera.evaluate import load_photos
    from saliq.train.camera.heldout import heldout_photos
    from saliq.train.explain.masking import masking_curves, summarise
    from saliq.train.metrics import fixation_density_map

    scene = Path(args.scene_dir)
    if not (scene / "images").is_dir():
        print(f"skipped: Scene data not found at {scene} (no images/ folder); pass --scene-dir")
        return None
    names = heldout_photos(args.heldout)["saliency"]
    names = names[: args.photos] if args.photos else names
    maps_wanted = list(args.maps)
    explainer = _explainer(args) if "hirescam" in maps_wanted else None
    if "hirescam" in maps_wanted and explainer is None:
        print(f"note: no PyTorch checkpoint for {args.model}: HiResCAM skipped")
        maps_wanted.remove("hirescam")
    assessor = saliq.load(args.model, backend=args.backend, threads=args.threads)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    mean = assessor.spec.mean

    def score(frames: list[np.ndarray]) -> np.ndarray:
        return np.array([r.score for r in assessor.assess(frames, color="RGB")])

    start = time.time()
    per_photo: list[dict] = []
    for index, photo in enumerate(load_photos(scene, names)):
        bgr = photo.frame
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        maps: dict[str, np.ndarray] = {}
        if "saliency" in maps_wanted:
            maps["saliency"] = assessor.assess(bgr, saliency_map=True).saliency_full
        if "hirescam" in maps_wanted:
            maps["hirescam"] = _hirescam(explainer, bgr)
        if "fixations" in maps_wanted and photo.fixations is not None:
            maps["fixations"] = fixation_density_map(photo.fixations, bgr.shape[:2])
        rng = np.random.default_rng([args.seed, index])
        by_fill = masking_curves(
            score, rgb, maps, args.fills, mean, args.fractions, args.random_draws, rng
        )
        row: dict = {"photo": photo.name, "size": list(bgr.shape[:2]), "fills": {}}
        for fill, curves in by_fill.items():
            row["fills"][fill] = {"curves": curves, "summary": summarise(curves, args.fractions)}
        per_photo.append(row)
        print(f"[{index + 1}/{len(names)}] {photo.name} {time.time() - start:.0f}s", flush=True)

    report: dict = {
        "what": "MoRF/LeRF masking curves: mean score vs masked fraction (docs/explain.md)",
        "model": assessor.spec.name,
        "model_arg": args.model,
        "photos": [r["photo"] for r in per_photo],
        "fractions": list(args.fractions),
        "random_draws": args.random_draws,
        "seed": args.seed,
        "command": "python benchmarks/morf_lerf.py " + " ".join(sys.argv[1:]),
        "seconds": round(time.time() - start, 1),
        "machine": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
        "fills": {},
        "per_photo": per_photo,
    }
    for fill in args.fills:
        names_in = sorted({k for r in per_photo for k in r["fills"][fill]["curves"]})
        mean_curves = {}
        for name in names_in:
            modes = per_photo[0]["fills"][fill]["curves"].get(name, {})
            mean_curves[name] = {
                mode: np.mean(
                    [r["fills"][fill]["curves"][name][mode] for r in per_photo], axis=0
                ).tolist()
                for mode in modes
            }
        summary = {}
        for name in names_in:
            if name == "random":
                continue
            rows = [r["fills"][fill]["summary"][name] for r in per_photo]
            summary[name] = {
                key: _mean_std([row[key] for row in rows])
                for key in rows[0]
                if key != "area_random"
            }
            summary[name]["photos_gap_positive"] = sum(row["gap"] > 0 for row in rows)
            summary[name]["photos_morf_below_random"] = sum(
                row.get("morf_below_random", 0) > 0 for row in rows
            )
            summary[name]["photos"] = len(rows)
        report["fills"][fill] = {"mean_curves": mean_curves, "summary": summary}
    return report


def print_table(report: dict) -> None:
    print(f"\n{report['model']} on {len(report['photos'])} held-out Scene photos")
    print("fill   map        area MoRF  area LeRF  gap (LeRF-MoRF)        random-MoRF  LeRF-random")
    for fill, block in report["fills"].items():
        for name, s in block["summary"].items():
            morf, lerf, gap = s["area_morf"]["mean"], s["area_lerf"]["mean"], s["gap"]
            positive = f"({s['photos_gap_positive']}/{s['photos']})"
            print(
                f"{fill:<6} {name:<10} {morf:.4f}     {lerf:.4f}     {gap['mean']:+.4f}"
                f"+-{gap['std']:.4f} {positive:<8} {s['morf_below_random']['mean']:+.4f}"
                f"      {s['lerf_above_random']['mean']:+.4f}"
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    if report is None:
        return 0
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n")
    plot = Path(args.plot) if args.plot else output.with_suffix(".png")
    try:
        from saliq.train.explain.figure import masking_figure

        curves = {fill: block["mean_curves"] for fill, block in report["fills"].items()}
        title = f"{report['model']}: {len(report['photos'])} held-out Scene photos"
        masking_figure(report["fractions"], curves, plot, title=title)
        print(f"wrote {output} and {plot}")
    except ImportError as exc:  # matplotlib missing: the JSON is the result
        print(f"wrote {output}; no plot ({exc})")
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
