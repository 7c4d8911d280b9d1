"""Preprocessing speed: one real 1080p BGR frame -> 384x512 outputs.

CPU: saliq._preproc's CPU twin (image + gradient + prior, one call) against the equivalent
OpenCV chain (cvtColor + float + resize + normalise + luma + Sobel + magnitude; no prior), both at
the same thread count, interleaved in one run (noisy shared machines: compare ratios measured
side by side, report medians). GPU (only when saliq._preproc.cuda_available()): the CUDA path
from host memory. Writes benchmarks/results/cpu/preprocess.json.

    python benchmarks/preprocess.py [--repeats 50] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from saliq.bench.timer import time_interleaved

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import real_frames  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "cpu" / "preprocess.json"
OUT_HW = (384, 512)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def opencv_chain(frame, cv2, np):
    """What preprocessing costs with OpenCV alone (the prior is left out, in its favour)."""
    h, w = OUT_HW
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32)
    small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    image = (small * np.float32(1 / 255) - np.float32(MEAN)) / np.float32(STD)
    luma = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gradient = cv2.magnitude(gx, gy) * np.float32(1 / 1442.497833620557)
    return np.ascontiguousarray(image.transpose(2, 0, 1)), gradient


def main() -> None:
    import cv2
    import numpy as np

    from saliq import _preproc

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0, help="0: all cores")
    args = parser.parse_args()
    threads = args.threads or os.cpu_count() or 1
    cv2.setNumThreads(threads)
    _preproc.set_num_threads(threads)

    frames, source = real_frames(1)
    frame = frames[0]
    h, w = OUT_HW

    def native(dtype="float32"):
        return _preproc.preprocess([frame], "BGR", h, w, MEAN, STD, dtype=dtype)

    runs = {
        "opencv_chain": lambda: opencv_chain(frame, cv2, np),
        "native_cpu_float32": native,
        "native_cpu_float16": lambda: native("float16"),
    }
    if _preproc.cuda_available():
        runs["native_cuda_float32_host_io"] = lambda: _preproc.preprocess_cuda(
            [frame], "BGR", h, w, MEAN, STD
        )
    # Interleaved rounds, one warm-up call each (the one timer: saliq.bench.timer).
    timings = time_interleaved(runs, runs=args.repeats, warmup=1)
    medians = {name: t.median_ms for name, t in timings.items()}
    speedup = medians["opencv_chain"] / medians["native_cpu_float32"]

    # Agreement of the two image outputs (OpenCV resizes both axes in one INTER_AREA call).
    ref_image, ref_grad = opencv_chain(frame, cv2, np)
    ours = native()
    result = {
        "benchmark": "preprocess 1080x1920 BGR uint8 -> 384x512 (image, gradient, prior)",
        "frame_source": source,
        "threads": threads,
        "repeats": args.repeats,
        "median_ms": {k: round(v, 3) for k, v in medians.items()},
        "speedup_native_cpu_vs_opencv": round(speedup, 2),
        "goal_speedup": 2.0,
        "meets_goal": speedup >= 2.0,
        "max_abs_diff_vs_opencv": {
            "image": float(np.abs(ours["image"][0] - ref_image).max()),
            "gradient": float(np.abs(ours["gradient"][0, 0] - ref_grad).max()),
        },
        "cuda": _preproc.cuda_available() or _preproc.cuda_unavailable_reason(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "opencv": cv2.__version__,
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, medians))
    for name, ms in medians.items():
        print(f"{name:<{width}}  {ms:8.2f} ms")
    print(f"speedup (OpenCV chain / native CPU float32): {speedup:.2f}x  -> {RESULTS}")


if __name__ == "__main__":
    main()
