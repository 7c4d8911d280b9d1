"""Input resolution trade-off: what a distortion at 1080p looks like after the downscale, vs cost.

For each candidate model input size: (1) ONNX Runtime latency of the SGDNet/EfficientNet-Lite0
graph at that size (batch 1, CPU), and (2) how much of a camera distortion made at the
frame's native 1080p survives preprocessing, measured model-free as the relative change of
the mean ``gradient`` (preprocessing step 4) against the pristine frame: blur lowers it,
noise raises it. A change near 0 means the model cannot see the distortion at that size.
Writes benchmarks/results/cpu/resolution_tradeoff.json.

    python benchmarks/resolution_tradeoff.py [--frames 12]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from saliq.bench.timer import time_call

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import real_frames  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "cpu" / "resolution_tradeoff.json"
SIZES = [(224, 224), (288, 384), (384, 512), (544, 960)]
BLUR_SIGMAS_1080P = (1.0, 2.0, 4.0)
NOISE_STDS = (3.0, 6.0, 12.0)


def _latency_ms(height: int, width: int, repeats: int) -> float:
    import numpy as np
    import onnxruntime as ort
    import torch

    from saliq.train.models import create_model

    model = create_model("sgdnet", pretrained=True).eval()
    path = Path(tempfile.mkdtemp()) / "m.onnx"
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, height, width),),
            str(path),
            input_names=["image"],
            output_names=["score", "saliency"],
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
    timing = time_call(lambda: session.run(None, {"image": x}), runs=repeats, warmup=1)
    return timing.median_ms


def _distortions(frame, rng):
    import cv2
    import numpy as np

    out = {}
    for sigma in BLUR_SIGMAS_1080P:
        out[f"blur_sigma{sigma:g}"] = cv2.GaussianBlur(frame, (0, 0), sigma)
    for std in NOISE_STDS:
        noisy = frame.astype(np.float32) + rng.normal(0, std, frame.shape)
        out[f"noise_std{std:g}"] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out


def main() -> None:
    import numpy as np

    from saliq.preprocess import Preprocessor

    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    frames, source = real_frames(args.frames)
    rng = np.random.default_rng(0)
    distorted = [_distortions(f, rng) for f in frames]
    rows = []
    for height, width in SIZES:
        pre = Preprocessor(height, width)
        changes: dict[str, list[float]] = {}
        for frame, variants in zip(frames, distorted):
            base = float(pre.one(frame, "BGR")["gradient"].mean())
            for name, img in variants.items():
                value = float(pre.one(img, "BGR")["gradient"].mean())
                changes.setdefault(name, []).append(value / base - 1.0)
        row = {
            "input": f"{height}x{width}",
            "latency_ms": round(_latency_ms(height, width, args.repeats), 2),
        }
        row.update({k: round(statistics.median(v), 4) for k, v in changes.items()})
        rows.append(row)
    keys = list(rows[0])
    print("relative change of mean gradient vs pristine (median over frames); latency: ORT CPU")
    print("".join(f"{k:>16}" for k in keys))
    for row in rows:
        print("".join(f"{row[k]:>16}" for k in keys))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "resolution_tradeoff",
                "frames": len(frames),
                "source": source,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
