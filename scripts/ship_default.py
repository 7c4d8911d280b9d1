"""Turn a trained checkpoint into the shipped default model (fp16 safetensors + verified ONNX).

python scripts/ship_default.py runs/views/best.safetensors sdk/models/default [--stem NAME]

The files are named ``<stem>.safetensors`` / ``<stem>.onnx`` (default: the SDK's
``DEFAULT_MODEL_STEM``, the name ``saliq.load("default")`` opens).
"""

import argparse
from pathlib import Path

from saliq.assess import DEFAULT_MODEL_STEM
from saliq.export.onnx import export_onnx
from saliq.train.checkpoint import release_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out_dir")
    parser.add_argument("--stem", default=DEFAULT_MODEL_STEM)
    args = parser.parse_args()
    target = Path(args.out_dir) / f"{args.stem}.safetensors"
    release_checkpoint(args.checkpoint, target, half=True)
    report = export_onnx(target, target.with_suffix(".onnx"))
    print(f"shipped {target} and {report.path} (max |score diff| {report.max_score_diff:.1e})")


if __name__ == "__main__":
    main()
