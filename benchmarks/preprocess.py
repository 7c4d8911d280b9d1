"""Preprocessing speed: one real 1080p BGR frame -> 384x512 outputs.

CPU: saliq._preproc's CPU twin (image + gradient + prior, one call) against the equivalent
OpenCV chain (cvtColor + float + resize + normalise + luma + Sobel + magnitude; no prior), both at
the same thread count, interleaved in one run (noisy shared machines: compare ratios measured
side by side, report medians). GPU (only when saliq._preproc.cuda_available()): the CUDA path
from host memory. Writes benchmarks/results/cpu/preprocess.json.

Version 2 (docs/preprocessing.md): the same frame at 1080p and 2x upscaled to 4K -> 224x224 +
4 crops of 96 (ViewConfig defaults), beside version 1 at 224x224 on the same frames, all in
one interleaved run. Reported: the 4K/1080p ratio of each version, and the crops' own cost
(v2 - v1) at each size, which the definition keeps flat in the frame size (a 4K crop reads
2P x 2P pixels); the rest of the 4K cost is version 1's whole-frame area resize.

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
    from saliq.views import ViewConfig

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

    # Version 2 rows. The 4K frame is the 1080p one upscaled (the cost does not depend on the
    # content; placement on its prior is a few microseconds).
    frame_4k = cv2.resize(frame, (3840, 2160), interpolation=cv2.INTER_LINEAR)
    views = ViewConfig().to_dict()
    sizes = {"1080p": frame, "4k": frame_4k}

    def at_224(f, with_views):
        return _preproc.preprocess(
            [f], "BGR", 224, 224, MEAN, STD, views=views if with_views else None
        )

    runs = {
        "opencv_chain": lambda: opencv_chain(frame, cv2, np),
        "native_cpu_float32": native,
        "native_cpu_float16": lambda: native("float16"),
    }
    for size, f in sizes.items():
        runs[f"v1_{size}_224"] = lambda f=f: at_224(f, False)
        runs[f"v2_{size}_224_crops_4x96"] = lambda f=f: at_224(f, True)
    if _preproc.cuda_available():
        runs["native_cuda_float32_host_io"] = lambda: _preproc.preprocess_cuda(
            [frame], "BGR", h, w, MEAN, STD
        )
    # Interleaved rounds, one warm-up call each (the one timer: saliq.bench.timer).
    timings = time_interleaved(runs, runs=args.repeats, warmup=1)
    medians = {name: t.median_ms for name, t in timings.items()}
    speedup = medians["opencv_chain"] / medians["native_cpu_float32"]

    v2 = {
        "views": views,
        "median_ms": {k: round(v, 3) for k, v in medians.items() if k[:3] in ("v1_", "v2_")},
        "ratio_4k_vs_1080p": {
            version: round(
                medians[f"{version}_4k_224{suffix}"] / medians[f"{version}_1080p_224{suffix}"], 3
            )
            for version, suffix in (("v1", ""), ("v2", "_crops_4x96"))
        },
        "crops_ms": {  # version 2's own cost: the crop views on top of the whole-frame view
            size: round(medians[f"v2_{size}_224_crops_4x96"] - medians[f"v1_{size}_224"], 3)
            for size in sizes
        },
        "frames": f"{source}; 4K = that frame upscaled 2x (bilinear)",
    }
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
        "version2": v2,
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
    print(f"4K / 1080p: {v2['ratio_4k_vs_1080p']}; crops alone (ms): {v2['crops_ms']}")


if __name__ == "__main__":
    main()
