"""``saliq gate`` throughput and latency on the CPU: frames/s, p50/p99 per-frame latency for
720p and 1080p BGR streams, default model, ONNX Runtime.

A stream is a clip of procedural scenes (saliq.frames) with a blur ramp and an exposure change
in the middle, fed frame by frame through :class:`saliq.QualityGate` (histogram exposure check
included), i.e. what ``saliq gate`` does per frame minus JSON printing and video decoding.
Writes benchmarks/results/cpu/gate_throughput.json.

    python benchmarks/gate_throughput.py [--frames 60] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "cpu" / "gate_throughput.json"
SIZES = {"720p": (720, 1280), "1080p": (1080, 1920)}


def stream(size: tuple[int, int], count: int) -> list[np.ndarray]:
    from saliq.frames import distort, scene

    base = scene(3, size)
    plan = ["none"] * 3 + [f"blur{lv}" for lv in (1, 3, 5, 3, 1)] + ["dark4", "bright3"]
    frames = []
    for i in range(count):
        step = plan[i % len(plan)]
        rgb = base if step == "none" else distort(base, step[:-1], int(step[-1]))
        frames.append(np.ascontiguousarray(rgb[:, :, ::-1]))
    return frames


def run(size_name: str, count: int, threads: int) -> dict:
    import saliq
    from saliq.gate import GatePolicy, QualityGate

    gate = QualityGate(saliq.load("default", threads=threads), GatePolicy(threshold=0.2))
    frames = stream(SIZES[size_name], min(count, 10))  # 10 distinct frames, cycled
    for frame in frames[:3]:  # warm-up: session, thread pools, allocator
        gate(frame)
    gate.reset()
    latencies = []
    start = time.perf_counter()
    for i in range(count):
        decision = gate(frames[i % len(frames)])
        latencies.append(decision.latency_ms)
    elapsed = time.perf_counter() - start
    return {
        "stream": size_name,
        "frames": count,
        "fps": round(count / elapsed, 2),
        "latency_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "latency_p99_ms": round(float(np.percentile(latencies, 99)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    rows = [run(name, args.frames, args.threads) for name in SIZES]
    report = {
        "benchmark": "gate_throughput",
        "model": "default (ONNX Runtime, CPU)",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "threads": args.threads,
        "note": "shared machine with a training job running: numbers are noisy, rerun idle",
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for row in rows:
        print(
            f"{row['stream']:>6}: {row['fps']:6.1f} frames/s  p50 {row['latency_p50_ms']:.1f} ms"
            f"  p99 {row['latency_p99_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
