"""Turn a trained checkpoint into the shipped default model (fp16 safetensors + verified ONNX).

python scripts/ship_default.py runs/default/best.safetensors sdk/models/default
"""

import sys
from pathlib import Path

from saliq.assess import DEFAULT_MODEL_STEM
from saliq.export.onnx import export_onnx
from saliq.train.checkpoint import release_checkpoint


def main(source: str, out_dir: str) -> None:
    target = Path(out_dir) / f"{DEFAULT_MODEL_STEM}.safetensors"
    release_checkpoint(source, target, half=True)
    report = export_onnx(target, target.with_suffix(".onnx"))
    print(f"shipped {target} and {report.path} (max |score diff| {report.max_score_diff:.1e})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
