"""Recover the previous default model (saliq-sgdnet-lite0, preprocessing v1) from the shipped
crop-view default, whose frozen whole-frame branch it is, bit for bit.

python scripts/recover_previous_default.py [runs/previous/saliq_sgdnet_lite0.safetensors]
"""

import sys
from pathlib import Path

from saliq.assess import default_model_path
from saliq.spec import ModelSpec
from saliq.train.checkpoint import extract_submodule

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS_SPEC = ROOT / "configs" / "previous_default_spec.json"


def main(target: str = "runs/previous/saliq_sgdnet_lite0.safetensors") -> None:
    spec = ModelSpec.from_json(PREVIOUS_SPEC.read_text(), source=str(PREVIOUS_SPEC))
    path = extract_submodule(default_model_path("safetensors"), "whole", spec, target)
    print(f"wrote {path} ({spec.name}, preprocessing version {spec.preprocessing_version})")


if __name__ == "__main__":
    main(*sys.argv[1:2])
