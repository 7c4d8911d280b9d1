"""End-to-end cost from a camera frame (uint8 BGR array) to a score, per model and frame size.

    python benchmarks/views_cost.py --model previous.onnx --model default [--runs 30]

Every model scores the same 1080p and 4K frames, interleaved in one run (these machines are
shared: compare ratios, not absolute times); the table gives medians and the ratios the
issue asks for: each model's 1080p cost against the first model's, and 4K against 1080p.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import saliq
from saliq.atomic import write_text_atomic
from saliq.bench.timer import time_interleaved
from saliq.frames import pristine_frames

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"1080p": (1080, 1920), "4K": (2160, 3840)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", required=True, help="repeatable; first = baseline"
    )
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/cpu/views_cost.json"))
    args = parser.parse_args()
    assessors = [saliq.load(m, threads=args.threads) for m in args.model]
    frames = {name: pristine_frames(1, size, order="BGR")[0] for name, size in SIZES.items()}
    calls = {}
    for label, assessor in zip(args.model, assessors):
        for size_name, frame in frames.items():
            calls[f"{label} @ {size_name}"] = lambda a=assessor, f=frame: a.assess(f)
    timings = time_interleaved(calls, runs=args.runs, warmup=3)
    rows = []
    base = args.model[0]
    for label, assessor in zip(args.model, assessors):
        med = {s: timings[f"{label} @ {s}"].median_ms for s in SIZES}
        rows.append(
            {
                "model": label,
                "name": assessor.spec.name,
                "preprocessing_version": assessor.spec.preprocessing_version,
                "median_ms": med,
                "vs_first_at_1080p": med["1080p"] / timings[f"{base} @ 1080p"].median_ms,
                "4k_over_1080p": med["4K"] / med["1080p"],
            }
        )
    print(f"{'model':<48} {'1080p ms':>9} {'4K ms':>8} {'vs first':>9} {'4K/1080p':>9}")
    for r in rows:
        print(
            f"{r['model']:<48} {r['median_ms']['1080p']:9.2f} {r['median_ms']['4K']:8.2f} "
            f"{r['vs_first_at_1080p']:9.2f} {r['4k_over_1080p']:9.2f}"
        )
    result = {
        "benchmark": "assess(uint8 BGR frame) end to end: preprocessing + network, ONNX Runtime",
        "command": "python benchmarks/views_cost.py "
        + " ".join(f"--model {m}" for m in args.model),
        "runs": args.runs,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "frames": "saliq.frames.pristine_frames (procedural scenes)",
        "rows": rows,
    }
    write_text_atomic(args.output, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
