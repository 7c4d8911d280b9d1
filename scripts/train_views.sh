#!/usr/bin/env bash
# Reproduce the crop-view default model (preprocessing version 2) on a CPU (about 40 minutes
# on 2 cores; `--device cuda` on a GPU): its whole-frame branch starts from (and keeps) the
# previous default, saliq-sgdnet-lite0 (scripts/train_default.sh reproduces that one; its
# weights are also recovered from any views checkpoint by saliq.train.checkpoint.extract_submodule).
# Then ship it as sdk/models/default and evaluate: camera resolution + held-out synthetic.
# Needs the Scene data at ../shared/data/scene.
set -euo pipefail
cd "$(dirname "$0")/.."
saliq train --config configs/sgdnet_views_default.yaml "$@"
python scripts/ship_default.py runs/views/best.safetensors sdk/models/default
python benchmarks/camera_eval.py --model default --saliency \
  --output benchmarks/results/cpu/camera_eval_views.json
saliq evaluate default --output benchmarks/results/cpu/eval_views.json
