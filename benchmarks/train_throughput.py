"""Training throughput of the real trainer on this machine: images per second per device and
precision, side by side in one run.

    python benchmarks/train_throughput.py [--devices cpu cuda] [--precisions fp32 bf16]
        [--size 224] [--batch 16] [--steps 12] [--output FILE]

(default FILE: benchmarks/results/<cpu|gpu name>/train_throughput.json)

Each (device, precision) trains the default SGDNet/EfficientNet-Lite0 architecture (its
frozen layers and loss; random initial weights) for one short epoch on procedural 384x512
scenes (``saliq.frames``) through the CSV data source, and reports images/s from the median
time between optimizer steps after the first (which warms up). It needs neither the Scene
data nor the sample-photo or weight packages, so it runs on a bare GPU machine too.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import torch

from saliq.atomic import write_text_atomic
from saliq.frames import scene
from saliq.train.config import load_config
from saliq.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sgdnet_lite0_default.yaml"  # the default model's recipe


def _one_run(device: str, precision: str, size: int, batch: int, steps: int) -> dict:
    step_times: list[float] = []
    original = torch.optim.AdamW.step

    def timed_step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        step_times.append(time.perf_counter())
        return out

    with tempfile.TemporaryDirectory() as work:
        frames = Path(work) / "frames"
        frames.mkdir()
        rows = ["image,score"]
        for i in range(batch * (steps + 1) + 8):
            cv2.imwrite(str(frames / f"{i:04d}.png"), scene(i % 16, (384, 512))[..., ::-1])
            rows.append(f"{i:04d}.png,{(i * 37) % 101}")
        (frames / "mos.csv").write_text("\n".join(rows) + "\n")
        overrides = {
            "output_dir": str(Path(work) / "run"),
            "device": device,
            "precision": precision,
            "max_steps_per_epoch": steps,
            "num_workers": 2 if device == "cuda" else 1,
            "loss": [{"name": "l1"}],  # the CSV source has no fixations for the TV term
            "model.pretrained": False,
            "model.input_height": size,
            "model.input_width": size,
            "data.source": "csv",
            "data.root": str(frames),
            "data.csv": {"path": "mos.csv", "score_min": 0, "score_max": 100},
            "data.val_fraction": 0.05,
            "data.test_fraction": 0.05,
            "optim.epochs": 1,
            "optim.batch_size": batch,
            "optim.warmup_steps": 1,
        }
        config = load_config(CONFIG, overrides)
        torch.optim.AdamW.step = timed_step
        try:
            train(config, progress=False)
        finally:
            torch.optim.AdamW.step = original
    gaps = [b - a for a, b in zip(step_times, step_times[1:])]
    median = statistics.median(gaps) if gaps else float("nan")
    return {
        "device": device,
        "precision": precision,
        "steps_timed": len(gaps),
        "median_step_s": median,
        "images_per_second": batch / median if gaps else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, + cuda if any")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for precision in dict.fromkeys(args.precisions):
            if device == "cpu" and precision == "auto":
                continue  # auto is fp32 on a CPU: already measured
            rows.append(_one_run(device, precision, args.size, args.batch, args.steps))
            print(
                f"{device:5s} {precision:5s} {rows[-1]['images_per_second']:8.1f} images/s "
                f"(median step {rows[-1]['median_step_s'] * 1000:.0f} ms, "
                f"{rows[-1]['steps_timed']} steps)"
            )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    result = {
        "benchmark": f"saliq train throughput, SGDNet/Lite0 {args.size}x{args.size}, "
        f"global batch {args.batch}, median over steps 2..{args.steps}",
        "command": "python benchmarks/train_throughput.py "
        + " ".join(
            f"--{k} {v}"
            for k, v in (("size", args.size), ("batch", args.batch), ("steps", args.steps))
        ),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "runs": rows,
    }
    default_dir = "cpu" if gpu is None else gpu.lower().replace(" ", "-")
    output = Path(
        args.output or ROOT / "benchmarks" / "results" / default_dir / "train_throughput.json"
    )
    write_text_atomic(output, json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
