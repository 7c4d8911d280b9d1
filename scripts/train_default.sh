#!/usr/bin/env bash
# Reproduce the shipped default model from scratch on a CPU (about an hour on 2 cores):
# stage 1 (12 epochs from ImageNet), stage 2 (4 epochs at a lower learning rate), then
# write the fp16 checkpoint + verified ONNX into sdk/models/default and evaluate.
# Needs the Scene data at ../shared/data/scene (or pass --set data.scene_dir=PATH); without it
# the run stops with an error unless you pass --set data.allow_sample_fallback=true.
# On a GPU: add --device cuda (bf16/fp16 autocast by default), or run under torchrun
# (docs/training.md).
set -euo pipefail
cd "$(dirname "$0")/.."
saliq train --config configs/sgdnet_lite0_default.yaml "$@"
saliq train --config configs/sgdnet_lite0_finetune.yaml "$@"
python scripts/ship_default.py runs/default_ft/best.safetensors sdk/models/default --stem saliq_sgdnet_lite0
saliq evaluate sdk/models/default/saliq_sgdnet_lite0.onnx \
  --output benchmarks/results/cpu/eval_default.json
