"""Camera-resolution evaluation (issue 9): held-out real photos at the 1920x1080 class,
six camera-like distortions at native resolution, any saliq models beside BRISQUE and the
variance of the Laplacian; optionally the saliency-awareness test. Protocol and results:
docs/camera_evaluation.md. Code: saliq.train.camera.

    nice -n 10 python benchmarks/camera_eval.py --model default --saliency \\
        --output benchmarks/results/cpu/camera_eval_v1.json
    python benchmarks/camera_eval.py --model default --model new.onnx --peers   # models only
"""

from __future__ import annotations

import sys
from pathlib import Path

from saliq.train.camera.evaluate import main

REPO = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    sys.exit(main(repo=REPO))
