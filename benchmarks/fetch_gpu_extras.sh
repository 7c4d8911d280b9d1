#!/usr/bin/env bash
# Run here (with internet), before a GPU session: puts into .whl/ (git-ignored) what the
# offline GPU machine lacks for benchmarks/gpu_suite.sh to test the pycuda memory layer:
# pycuda's source distribution (built there, against that machine's CUDA) and the wheels it
# needs at run time. Then call the device tool with carry [".whl"].
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.whl
PYCUDA_VERSION="${PYCUDA_VERSION:-2026.1}"
# pycuda's run-time needs, and theirs, that the GPU image does not ship (device/KINDS.md).
WHEELS=(pytools==2026.1.1 platformdirs==4.5.0 siphash24==1.9 mako==1.4.3
  pyyaml==6.0.3 tqdm==4.67.1)  # the last two: saliq train (benchmarks/train_throughput.py)
PY="${PYTHON:-python3}"
mkdir -p "$DEST"

# The sdist, from PyPI's JSON API (pip download would build its metadata), checked against
# the sha256 PyPI publishes, written under a temporary name and then renamed.
"$PY" - "$PYCUDA_VERSION" "$DEST" <<'PYEOF'
import hashlib, json, sys, urllib.request
from pathlib import Path

version, dest = sys.argv[1], Path(sys.argv[2])
with urllib.request.urlopen("https://pypi.org/pypi/pycuda/json", timeout=60) as r:
    files = json.load(r)["releases"][version]
sdist = next(f for f in files if f["packagetype"] == "sdist")
target = dest / sdist["filename"]
with urllib.request.urlopen(sdist["url"], timeout=120) as r:
    data = r.read()
if hashlib.sha256(data).hexdigest() != sdist["digests"]["sha256"]:
    sys.exit(f"{sdist['filename']}: sha256 differs from PyPI's; not saved")
part = dest / (sdist["filename"] + ".part")
part.write_bytes(data)
part.replace(target)
print("saved", target, len(data), "bytes")
PYEOF

"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$DEST" "${WHEELS[@]}"
ls -l "$DEST"
