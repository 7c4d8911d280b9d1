#!/usr/bin/env bash
# Leave-one-type-out: train without one distortion type, then test on that type only.
# Same recipe as the default model but fewer epochs (CPU budget); reports land in
# benchmarks/results/cpu/loto_<type>.json.
#   scripts/leave_one_type_out.sh [epochs] type...
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-4}; shift || true
types=${*:-defocus_blur jpeg underexposure}
for t in $types; do
  run=runs/loto_$t
  saliq train --config configs/sgdnet_lite0_default.yaml \
    --set "data.exclude_types=[$t]" --set "output_dir=$run" --set "optim.epochs=$epochs"
  saliq evaluate "$run/best.safetensors" --types "$t" --no-saliency \
    --output "benchmarks/results/cpu/loto_$t.json"
done
