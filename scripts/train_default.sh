#!/usr/bin/env bash
# Reproduce the shipped default model from scratch on a CPU (about 45 minutes on 2 cores):
# train, write the fp16 checkpoint + verified ONNX into sdk/models/default, evaluate.
# Needs the Scene data at ../shared/data/scene (or pass --set data.scene_dir=PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
saliq train --config configs/sgdnet_lite0_default.yaml "$@"
python scripts/ship_default.py runs/default/best.safetensors sdk/models/default
saliq evaluate sdk/models/default/saliq_sgdnet_lite0.onnx \
  --output benchmarks/results/cpu/eval_default.json
