#!/usr/bin/env bash
# One command for a lent GPU machine (offline, under 10 minutes), run from the repo root:
#   bash benchmarks/gpu_suite.sh
# Builds and installs saliq for the local GPU's arch only, runs the GPU tests, compute-sanitizer
# memcheck on one small call, the GPU and CPU preprocessing benchmarks, then prints a summary.
# Results go to $OUT (default ./gpu_suite_out), 8 files (the device tool returns <= 8):
#   nvidia-smi.txt build.log gpu_tests.log sanitizer.txt bench.log preprocess_gpu.json
#   preprocess_cpu.json results.tar (prior_gpu.json, train_throughput.json and the
#   `saliq bench` JSON of the default and of every architecture)
# With .whl/ carried (benchmarks/fetch_gpu_extras.sh fills it), pycuda is built there from its
# sdist, in the background, and the memory-layer tests run on it too (log: end of
# gpu_tests.log; its build log: end of build.log).
set -uo pipefail

OUT="${OUT:-$PWD/gpu_suite_out}"
export OUT
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
status() { printf '%-22s %s\n' "$1" "$2" >>"$OUT/.summary"; }
: >"$OUT/.summary"

echo "== nvidia-smi"
nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')"
if [[ "$CAP" =~ ^[0-9]+$ ]]; then
  export SALIQ_CUDA_ARCHS="$CAP"
fi
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
{
  echo "SALIQ_CUDA_ARCHS=${SALIQ_CUDA_ARCHS:-<default list>}"
  echo "nvcc: $(command -v nvcc || echo 'not found: the build will be CPU-only')"
  nvcc --version 2>/dev/null | tail -n 2
} | tee -a "$OUT/nvidia-smi.txt"

PYCUDA_PID=""
PYCUDA_SDIST="$(ls .whl/pycuda-*.tar.gz 2>/dev/null | head -n1)"
if [ -n "$PYCUDA_SDIST" ]; then
  echo "== pycuda: wheels + background build of $PYCUDA_SDIST"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    >"$OUT/.pycuda_build" 2>&1
  export PYTHONPATH="/tmp/site:/tmp/site_pycuda${PYTHONPATH:+:$PYTHONPATH}"
  # pycuda's configure.py defaults CUDA's root to the first nvcc's parent, and a wrapper in
  # /usr/local/bin makes that /usr/local (no cuda.h): name the toolkit that has the header.
  # CURAND is left out: saliq does not use it and not every toolkit ships its headers.
  CUDA_ROOT_DIR=""
  for d in "${CUDA_HOME:-}" /usr/local/cuda "$(dirname "$(dirname "$(readlink -f \
    "$(command -v nvcc)" 2>/dev/null)")")"; do
    if [ -n "$d" ] && [ -f "$d/include/cuda.h" ]; then CUDA_ROOT_DIR="$d"; break; fi
  done
  build_pycuda() {
    echo "pycuda build: CUDA root ${CUDA_ROOT_DIR:-not found (no cuda.h)}"
    # -lcuda needs libcuda.so: the toolkit's stub, else a link to the driver's libcuda.so.1
    # (containers often carry only the .so.1).
    local drv_dirs="$CUDA_ROOT_DIR/lib64/stubs,$CUDA_ROOT_DIR/lib64"
    if [ ! -e "$CUDA_ROOT_DIR/lib64/stubs/libcuda.so" ]; then
      local so1
      so1="$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 .*x86-64/ {print $NF; exit}')"
      if [ -n "$so1" ]; then
        mkdir -p /tmp/cudadrv && ln -sf "$so1" /tmp/cudadrv/libcuda.so
        drv_dirs="/tmp/cudadrv,$drv_dirs"
      fi
    fi
    echo "pycuda build: driver library dirs $drv_dirs"
    rm -rf /tmp/pycuda_src && mkdir -p /tmp/pycuda_src &&
      tar xzf "$PYCUDA_SDIST" -C /tmp/pycuda_src --strip-components 1 &&
      (cd /tmp/pycuda_src && "$PY" configure.py --cuda-root="$CUDA_ROOT_DIR" \
        --cudadrv-lib-dir="$drv_dirs" --no-cuda-enable-curand) &&
      timeout 420 "$PY" -m pip install --no-index --no-deps --no-build-isolation \
        --no-cache-dir --target /tmp/site_pycuda /tmp/pycuda_src
  }
  build_pycuda >>"$OUT/.pycuda_build" 2>&1 &
  PYCUDA_PID=$!
  PYCUDA_T0=$SECONDS
fi

echo "== build + install (pip --no-deps --no-build-isolation)"
t0=$SECONDS
# --no-build-isolation: the build requirements (setuptools, pybind11) must already be there.
"$PY" -c "import pybind11, setuptools" 2>/dev/null ||
  echo "saliq: pybind11/setuptools missing for $PY: the build below fails (carry their wheels)"
timeout 300 "$PY" -m pip install -v --no-deps --no-build-isolation . >"$OUT/build.log" 2>&1
rc=$?
grep -E "nvcc|gencode|saliq:|Successfully|error" "$OUT/build.log" | tail -n 15
"$PY" - >>"$OUT/build.log" 2>&1 <<'EOF'
from saliq import _preproc as P
print("built_with_cuda", P.built_with_cuda, "cuda_available", P.cuda_available(),
      repr(P.cuda_unavailable_reason()), P.__file__)
EOF
tail -n 1 "$OUT/build.log"
status build "rc=$rc ($((SECONDS - t0)) s) $(tail -n 1 "$OUT/build.log")"

echo "== GPU tests"
t0=$SECONDS
# Every gpu-marked test: native preprocessing, DLPack, the CUDA memory layer (cuda-python; pycuda
# below once built), TensorRT (skips: not installed on the lent machine).
timeout 240 "$PY" -m pytest -m gpu -v -rs -p no:cacheprovider --continue-on-collection-errors \
  tests/ 2>&1 | tee "$OUT/gpu_tests.log"
rc=$?
status gpu_tests "rc=$rc ($((SECONDS - t0)) s) $(grep -E '(passed|failed|skipped|error)' \
  "$OUT/gpu_tests.log" | tail -n 1)"

echo "== compute-sanitizer memcheck"
SAN_PY="$(mktemp --suffix=.py)"
cat >"$SAN_PY" <<'EOF'
import numpy as np
from saliq import _preproc as P

rng = np.random.default_rng(0)
bgr = rng.integers(0, 256, (1, 67, 93, 3), dtype=np.uint8)  # odd sizes: edge handling
nv12 = rng.integers(0, 65536, (1, 96, 80), dtype=np.uint16)
for frames, fmt, dtype in ((bgr, "BGR", "float32"), (nv12, "NV12", "float16")):
    gpu = P.preprocess_cuda(frames, fmt, 32, 48, dtype=dtype)
    cpu = P.preprocess(frames, fmt, 32, 48, dtype=dtype)
    for k in cpu:
        d = float(np.abs(gpu[k].astype(np.float64) - cpu[k].astype(np.float64)).max())
        print(fmt, dtype, k, "max abs vs CPU", d)
print("sanitizer script done")
EOF
t0=$SECONDS
if command -v compute-sanitizer >/dev/null 2>&1; then
  timeout 180 compute-sanitizer --tool memcheck --error-exitcode 3 \
    "$PY" "$SAN_PY" >"$OUT/.san" 2>&1
  rc=$?
  if grep -qiE "device not supported|not supported on|unable to|error 999|unknown error" \
    "$OUT/.san" && ! grep -q "ERROR SUMMARY: 0 errors" "$OUT/.san"; then
    verdict="unavailable (compute-sanitizer refused the device, rc=$rc)"
  elif [ "$rc" -eq 0 ] && grep -q "ERROR SUMMARY: 0 errors" "$OUT/.san"; then
    verdict="clean (ERROR SUMMARY: 0 errors)"
  elif [ "$rc" -eq 124 ]; then
    verdict="unavailable (timed out after 180 s)"
  else
    verdict="ERRORS or failure (rc=$rc): $(grep 'ERROR SUMMARY' "$OUT/.san" | tail -n 1)"
  fi
  { echo "$verdict"; echo; cat "$OUT/.san"; } >"$OUT/sanitizer.txt"
  rm -f "$OUT/.san"
else
  verdict="unavailable (compute-sanitizer not on PATH)"
  echo "$verdict" >"$OUT/sanitizer.txt"
fi
rm -f "$SAN_PY"
echo "$verdict"
status sanitizer "$verdict ($((SECONDS - t0)) s)"

# Before the benchmarks: the background pycuda build would otherwise load the CPU they time.
if [ -n "$PYCUDA_PID" ]; then
  echo "== pycuda memory-layer tests"
  wait "$PYCUDA_PID"
  rc=$?
  { echo; echo "## pycuda build from $PYCUDA_SDIST: rc=$rc ($((SECONDS - PYCUDA_T0)) s)";
    grep -E "pycuda build:|fatal error|error:|ld:|Successfully" "$OUT/.pycuda_build" | tail -n 12
    echo "## last lines"; tail -n 15 "$OUT/.pycuda_build"; } >>"$OUT/build.log"
  rm -f "$OUT/.pycuda_build"
  t0=$SECONDS
  { echo; echo "## pycuda (built above: rc=$rc)"; } >>"$OUT/gpu_tests.log"
  timeout 120 "$PY" -m pytest -m gpu -v -rs -p no:cacheprovider tests/test_cuda_memory.py \
    -k pycuda 2>&1 | tee -a "$OUT/gpu_tests.log"
  rc=$?
  status pycuda_tests "rc=$rc ($((SECONDS - t0)) s) $(tail -n 1 "$OUT/gpu_tests.log")"
fi

echo "== benchmarks"
t0=$SECONDS
{
  echo "## benchmarks/preprocess_gpu.py"
  timeout 240 "$PY" benchmarks/preprocess_gpu.py
  echo "rc=$?"
} 2>&1 | tee "$OUT/bench.log"
status bench_gpu "$(tail -n 1 "$OUT/bench.log") ($((SECONDS - t0)) s)"
t0=$SECONDS
{
  echo "## benchmarks/prior_gpu.py (1024x1024 prior kernels; allocator settings per call)"
  timeout 120 "$PY" benchmarks/prior_gpu.py
  echo "rc=$?"
} 2>&1 | tee -a "$OUT/bench.log"
status bench_prior "$(tail -n 1 "$OUT/bench.log") ($((SECONDS - t0)) s)"
t0=$SECONDS
{
  echo "## benchmarks/preprocess.py (CPU, writes benchmarks/results/cpu/preprocess.json)"
  timeout 120 "$PY" benchmarks/preprocess.py
  echo "rc=$?"
} 2>&1 | tee -a "$OUT/bench.log"
cp benchmarks/results/cpu/preprocess.json "$OUT/preprocess_cpu.json" 2>/dev/null
status bench_cpu "$(tail -n 1 "$OUT/bench.log") ($((SECONDS - t0)) s)"
t0=$SECONDS
{
  echo "## benchmarks/train_throughput.py (saliq train --device cuda: fp32 and bf16/fp16 autocast)"
  timeout 180 "$PY" benchmarks/train_throughput.py --devices cuda --precisions fp32 auto \
    --batch 32 --steps 20 --output "$OUT/train_throughput.json"
  echo "rc=$?"
} 2>&1 | tee -a "$OUT/bench.log"
status bench_train "$(tail -n 1 "$OUT/bench.log") ($((SECONDS - t0)) s)"
t0=$SECONDS
{
  echo "## saliq bench default (GPU: fp32, fp16, bf16, torch.compile; CUDA-kernel end to end)"
  timeout 200 "$PY" -m saliq.train.bench.cli default --device cuda --batch 1,16,64 --no-plots \
    --output-dir "$OUT/results"
  echo "rc=$?"
  for a in sgdnet sgdnet_views tres transla biosiqnet dualtask; do  # the zoo, random weights
    timeout 45 "$PY" -m saliq.train.bench.cli "$a" --quick --device cuda --no-stages --no-plots \
      --backends torch-fp32-cuda,torch-fp16-cuda,torch-bf16-cuda --output-dir "$OUT/results"
    echo "rc=$?"
  done
} 2>&1 | tee -a "$OUT/bench.log"
status saliq_bench "($((SECONDS - t0)) s) tables in bench.log, JSON in results.tar"
# The device tool returns at most 8 files: the per-run JSON travel in one tar.
mkdir -p "$OUT/results"
mv "$OUT/prior_gpu.json" "$OUT/train_throughput.json" "$OUT/results/" 2>/dev/null
tar cf "$OUT/results.tar" -C "$OUT" results && rm -rf "$OUT/results"

echo
echo "== summary (files in $OUT)"
cat "$OUT/.summary"
rm -f "$OUT/.summary"
if [ -f "$OUT/preprocess_gpu.json" ]; then
  "$PY" - <<'EOF'
import json, os

r = json.load(open(os.path.join(os.environ["OUT"], "preprocess_gpu.json")))
lat, bw = r["latency_1_frame"], r["d2d_copy"]["bytes_per_s"]
print(f"{r['gpu']['name']}: correct={r['correct']}  d2d copy {bw / 1e9:.0f} GB/s")
print(f"1 frame: host I/O {lat['host_io_event_ms']:.3f} ms, device I/O "
      f"{lat['device_io_event_ms']:.3f} ms, torch ops {lat['torch_ops_device_event_ms']:.3f} ms")
for n, rows in r["throughput"].items():
    for name, x in rows.items():
        print(f"batch {n:>3} {name:<20} {x['median_ms']:8.3f} ms {x['frames_per_s']:8.0f} f/s "
              f"{x['fraction_of_copy_bw']:6.1%} of copy bw")
print("CPU 1 frame:", ", ".join(f"{k} {v:.2f} ms" for k, v in r["cpu_1_frame_ms"].items()))
EOF
fi
ls -l "$OUT"
