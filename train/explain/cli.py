"""``saliq explain IMAGE``: one figure explaining a model's score of one image.

Registered in ``saliq.cli.COMMANDS`` as ``"saliq.train.explain.cli:register"``; this module
imports argparse only at registration, torch and matplotlib when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "explain a score: saliency, HiResCAM/GradCAM, gradient maps, region scores (a PNG)"


def default_output(image: str) -> Path:
    """``photo.jpg`` -> ``photo_explain.png`` in the current folder."""
    return Path(f"{Path(image).stem}_explain.png")


def cmd_explain(args: argparse.Namespace) -> int:
    from .cam import DEFAULT_ANGLES, explain_image, load_explainable
    from .figure import explanation_figure, require_matplotlib

    require_matplotlib()  # fail before the slow part
    if Path(args.image).is_dir():
        from saliq.errors import ConfigError

        raise ConfigError(
            f"{args.image} is a folder; saliq explain takes one image file (for a folder: "
            f'for f in {args.image}/*.jpg; do saliq explain "$f"; done)'
        )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model, spec = load_explainable(args.model)
    angles = () if args.no_rotation else DEFAULT_ANGLES
    if not args.json:  # the CAMs take a while on a CPU: say what is running
        passes = "one pass"
        if angles:
            passes = f"{len(angles)} rotated passes (--no-rotation: one, faster)"
        print(f"explaining {args.image}: {passes} ...", file=sys.stderr, flush=True)
    explanation = explain_image(
        model, spec, args.image, angles=angles, eigen_smooth=not args.no_svd
    )
    output = Path(args.output) if args.output else default_output(args.image)
    explanation_figure(explanation, output, dpi=args.dpi, palette=args.palette)
    summary = {"image": args.image, "output": str(output), "score": round(explanation.score, 4)}
    if explanation.region_scores is not None:
        summary["salient"], summary["background"] = (round(v, 4) for v in explanation.region_scores)
    if explanation.defect is not None:
        summary["defect"], summary["defect_confidence"] = explanation.defect
        summary["defect_confidence"] = round(summary["defect_confidence"], 4)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        regions = (
            f"; salient {summary['salient']:.3f}, background {summary['background']:.3f}"
            if "salient" in summary
            else ""
        )
        defect = (
            f"; defect {summary['defect']} ({summary['defect_confidence']:.2f})"
            if "defect" in summary
            else ""
        )
        print(f"wrote {output} (score {summary['score']:.3f}{regions}{defect})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``saliq explain`` to the CLI's subcommands."""
    parser = subparsers.add_parser("explain", help=HELP, description=HELP)
    parser.add_argument("image", help="an image file")
    parser.add_argument("-o", "--output", default=None, help="PNG path (default: STEM_explain.png)")
    parser.add_argument(
        "--model", default="default", help="default | a .safetensors checkpoint (needs gradients)"
    )
    parser.add_argument(
        "--no-rotation", action="store_true", help="one plain pass instead of six rotated ones"
    )
    parser.add_argument(
        "--no-svd", action="store_true", help="channel sum instead of first-SVD-component smoothing"
    )
    parser.add_argument("--dpi", type=int, default=100, help="figure resolution (default 100)")
    parser.add_argument(
        "--palette", action="store_true", help="256-colour PNG, about a third of the bytes"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)"
    )
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(func=cmd_explain)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m saliq.train.explain.cli IMAGE ...``: the command without the saliq CLI."""
    import sys

    from saliq.errors import SaliqError

    parser = argparse.ArgumentParser(prog="saliq")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["explain", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except SaliqError as exc:
        print(f"saliq: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
