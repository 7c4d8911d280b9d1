"""Folder scoring throughput (images/s), before and after pipelining, side by side in one run.

Three ways to score the same folder of 1080p JPEGs with the default model (ONNX Runtime):

- ``per_file``: the ``saliq score`` loop before issue 11, ``assess(path)`` one file at a time;
- ``batched``: one ``Assessor.assess([paths])`` call (the batched Assessor of the contract
  issue: decode everything in turn, then batches of 16);
- ``pipelined``: ``saliq.cli.score_rows``, what ``saliq score`` runs now (files decoded in a
  thread pool while the previous batch is preprocessed and run).

Rounds interleave the three so each sees the same machine load; the JSON keeps every round
and the medians. Writes benchmarks/results/cpu/folder_scoring.json.

    python benchmarks/folder_scoring.py [--images 32] [--rounds 3] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import real_frames  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "cpu" / "folder_scoring.json"


def _images_per_s(fn, count: int) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def main() -> None:
    import cv2
    import numpy as np

    import saliq
    from saliq.assess import default_model_path
    from saliq.cli import _decode_workers, score_rows

    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--decode-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--note", default="", help="recorded in the JSON (e.g. machine load)")
    args = parser.parse_args()

    frames, source = real_frames(args.images)
    folder = Path(tempfile.mkdtemp(prefix="saliq_folder_"))
    paths = []
    for i in range(args.images):  # fewer real photos than images: reuse them, files differ
        path = folder / f"{i:04d}.jpg"
        cv2.imwrite(str(path), frames[i % len(frames)], [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(str(path))
    assessor = saliq.load(default_model_path("onnx"), backend="onnxruntime", threads=args.threads)
    assessor.batch_size = args.batch_size
    workers = args.decode_workers or _decode_workers()
    methods = {
        "per_file": lambda: [assessor.assess(p) for p in paths],
        "batched": lambda: assessor.assess(paths),
        "pipelined": lambda: list(
            score_rows(assessor, [(p, None) for p in paths], args.batch_size, workers)
        ),
    }
    # Same scores whichever way (the pipeline passes decoded arrays to the same Assessor).
    batched = [r.score for r in assessor.assess(paths)]
    piped = [r["score"] for r in methods["pipelined"]()]
    assert np.allclose(batched, piped, atol=1e-6), "pipelined scores differ from batched"
    rounds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            rounds[name].append(_images_per_s(fn, len(paths)))
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    result = {
        "benchmark": "folder_scoring",
        "images": f"{len(paths)} JPEG q95 1920x1080 ({source})",
        "model": assessor.spec.name,
        "backend": "onnxruntime",
        "batch_size": args.batch_size,
        "decode_workers": workers,
        "rounds": args.rounds,
        "images_per_s_median": {k: round(v, 2) for k, v in medians.items()},
        "images_per_s_rounds": {k: [round(v, 2) for v in vs] for k, vs in rounds.items()},
        "pipelined_over_batched": round(medians["pipelined"] / medians["batched"], 3),
        "pipelined_over_per_file": round(medians["pipelined"] / medians["per_file"], 3),
        "note": args.note,
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_1m_at_start": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "onnxruntime": _version("onnxruntime"),
            "opencv": _version("cv2"),
            "numpy": np.__version__,
        },
    }
    print(f"{'method':<12}{'images/s':>10}   rounds")
    for name, value in medians.items():
        print(f"{name:<12}{value:>10.2f}   {result['images_per_s_rounds'][name]}")
    print("pipelined / batched:", result["pipelined_over_batched"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
