"""Calibration table of the synthetic distortions: mean PSNR / SSIM per type and level.

Runs over the bundled colour photos (scikit-image, scikit-learn, matplotlib) stretched to
224x224, the working-frame size, and writes benchmarks/results/distortion_calibration.json.
Every type must lose PSNR and SSIM with each level; the table is also how the levels were
matched across types (same level ~ similar damage), which the shared quality label assumes.

    python benchmarks/distortion_calibration.py [--size 224] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from saliq.preprocess import resize_stretch
from saliq.train.data.content import sample_photo_arrays
from saliq.train.data.distortions import MAX_LEVEL, TYPE_NAMES, apply_distortion

RESULTS = Path(__file__).resolve().parent / "results" / "distortion_calibration.json"


def working_frame(rgb: np.ndarray, size: int) -> np.ndarray:
    return np.clip(np.rint(resize_stretch(rgb.astype(np.float32), size, size)), 0, 255).astype(
        np.uint8
    )


def calibrate(size: int = 224, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """{type: {"psnr": [level 1..5], "ssim": [...]}} averaged over the sample photos."""
    frames = [working_frame(rgb, size) for rgb in sample_photo_arrays().values()]
    table: dict[str, dict[str, list[float]]] = {}
    for t, name in enumerate(TYPE_NAMES):
        psnr = np.zeros((len(frames), MAX_LEVEL))
        ssim = np.zeros((len(frames), MAX_LEVEL))
        for p, frame in enumerate(frames):
            for level in range(1, MAX_LEVEL + 1):
                # Same generator seed at every level: the random draw (angle, cast direction)
                # stays fixed, so only the level changes between columns.
                out = apply_distortion(frame, name, level, np.random.default_rng([seed, t, p]))
                psnr[p, level - 1] = peak_signal_noise_ratio(frame, out, data_range=255)
                ssim[p, level - 1] = structural_similarity(
                    frame, out, channel_axis=2, data_range=255
                )
        table[name] = {
            "psnr": [round(float(v), 2) for v in psnr.mean(axis=0)],
            "ssim": [round(float(v), 3) for v in ssim.mean(axis=0)],
        }
    return table


def format_table(table: dict[str, dict[str, list[float]]]) -> str:
    levels = range(1, MAX_LEVEL + 1)
    head = f"{'type':<15}" + "".join(f"  L{lv} PSNR/SSIM " for lv in levels)
    rows = [head, "-" * len(head)]
    for name, m in table.items():
        cells = "".join(f"  {p:6.2f}/{s:5.3f}" for p, s in zip(m["psnr"], m["ssim"], strict=True))
        rows.append(f"{name:<15}{cells}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = calibrate(args.size, args.seed)
    print(format_table(table))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "size": args.size,
        "seed": args.seed,
        "photos": list(sample_photo_arrays()),
        "metrics": table,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
