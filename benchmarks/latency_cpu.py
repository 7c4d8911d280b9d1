"""`saliq score`-path latency on one real 1080p photo, ONNX Runtime vs PyTorch, on the CPU.

Interleaves the two backends in one run (noisy shared machines: compare ratios measured
side by side, report medians). Writes benchmarks/results/cpu/latency_cpu.json.

    python benchmarks/latency_cpu.py [--model-dir sdk/models/default] [--repeats 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from saliq.bench.timer import time_call

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import real_frames  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "cpu" / "latency_cpu.json"


def _median_ms(fn, repeats: int) -> float:
    # Warm-up happened once before the rounds; each round is a plain median of `repeats`.
    return time_call(fn, runs=repeats, warmup=0).median_ms


def main() -> None:
    import cv2
    import numpy as np

    import saliq
    from saliq.assess import default_model_path

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    frames, source = real_frames(1)
    frame = frames[0]
    path = Path(tempfile.mkdtemp()) / "frame_1080p.jpg"
    cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    ort = saliq.load(default_model_path("onnx"), backend="onnxruntime", threads=args.threads)
    pt = saliq.load(default_model_path("safetensors"), backend="torch", threads=args.threads)
    pre = ort.preprocessor
    inputs = {k: v[None] for k, v in pre.one(frame, "BGR").items() if k in ort.spec.inputs}
    for a in (ort, pt):  # warm-up
        a.assess(str(path))

    rows = {}
    rounds = {"ort_path": [], "torch_path": [], "ort_infer": [], "torch_infer": []}
    for _ in range(3):  # interleave the backends so both see the same machine load
        rounds["ort_path"].append(_median_ms(lambda: ort.assess(str(path)), args.repeats))
        rounds["torch_path"].append(_median_ms(lambda: pt.assess(str(path)), args.repeats))
        rounds["ort_infer"].append(_median_ms(lambda: ort.backend.infer(inputs), args.repeats))
        rounds["torch_infer"].append(_median_ms(lambda: pt.backend.infer(inputs), args.repeats))
    rows = {k: statistics.median(v) for k, v in rounds.items()}
    rows["decode"] = _median_ms(lambda: cv2.imread(str(path)), args.repeats)
    rows["preprocess"] = _median_ms(lambda: pre.one(frame, "BGR"), args.repeats)
    ratio = [t / o for t, o in zip(rounds["torch_path"], rounds["ort_path"])]
    result = {
        "benchmark": "latency_cpu",
        "frame": f"{frame.shape[1]}x{frame.shape[0]} JPEG q95 ({source})",
        "model": ort.spec.name,
        "input": f"{ort.spec.input_width}x{ort.spec.input_height}",
        "repeats_per_round": args.repeats,
        "rounds": 3,
        "median_ms": {k: round(v, 2) for k, v in rows.items()},
        "torch_over_onnxruntime_assess": round(statistics.median(ratio), 3),
        "torch_over_onnxruntime_infer": round(rows["torch_infer"] / rows["ort_infer"], 3),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "onnxruntime": _version("onnxruntime"),
            "torch": _version("torch"),
            "numpy": np.__version__,
        },
    }
    print(f"{'step':<28}{'median ms':>10}")
    for k, v in rows.items():
        print(f"{k:<28}{v:>10.2f}")
    print(
        "PyTorch / ONNX Runtime (assess of a 1080p JPEG):",
        result["torch_over_onnxruntime_assess"],
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
