"""The saliency prior's cost at large outputs, and the scratch allocator's cost per call (GPU).

(a) prior: one 1080p BGR uint8 frame on the device -> 224x224, 512x512 and 1024x1024 outputs
    in device arrays (``out=``), and a batch of 8 at 1024x1024. Per-kernel device time per call
    from the CUDA profiler (torch.profiler over CUPTI, which sees every kernel of the process)
    for k_hpass, k_vpass, k_gradient and k_prior, beside the whole call by CUDA events.
    k_prior is one block of 1024 threads per frame over the H/4 x W/4 map (256 x 256 at
    1024x1024, blur radius 24 in float64), run frame after frame: the table shows its share.
    The 1024x1024 outputs are checked against the CPU twin.
(b) allocator (issue 13, bug 5): median wall time per call, with a device sync after each (as
    an application waiting for its inference), of one 1080p host frame -> 384x512 host outputs
    and of a device frame -> device outputs, each setting in a fresh process (the allocator
    is chosen once per device and process): the stream-ordered pool keeping up to 256 MiB
    (the default), the pool with release threshold 0 (before the fix: the memory went back
    to the OS at every sync and was mapped again on the next call), and cudaMalloc/cudaFree
    (SALIQ_CUDA_MEMPOOL=0; what devices without memory pools get). The outputs' sha256 must
    agree across the settings.

Runs only where ``saliq._preproc.cuda_available()`` and torch sees a GPU (else prints why,
writes nothing, exits 0). Frames are random: these kernels do the same work for any content.
Writes $OUT/prior_gpu.json when OUT is set, else benchmarks/results/<gpu-name>/prior_gpu.json.

    python benchmarks/prior_gpu.py [--repeats 50] [--warmup 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FRAME_HW = (1080, 1920)
CASES = (((224, 224), 1), ((512, 512), 1), ((1024, 1024), 1), ((1024, 1024), 8))
KERNELS = ("k_hpass", "k_vpass", "k_gradient", "k_prior")
ALLOC_OUT_HW = (384, 512)
ALLOC_SETTINGS = {
    "pool, keeps 256 MiB (default)": {},
    "pool, release threshold 0 (before)": {"SALIQ_CUDA_POOL_KEEP_MB": "0"},
    "cudaMalloc/cudaFree (no pools)": {"SALIQ_CUDA_MEMPOOL": "0"},
}
TOL = 1e-4  # native CUDA vs native CPU, float32, max abs (as benchmarks/preprocess_gpu.py)


def _device_out(torch, n: int, hw: tuple[int, int]) -> dict:
    h, w = hw
    return {
        "image": torch.empty((n, 3, h, w), device="cuda"),
        "gradient": torch.empty((n, 1, h, w), device="cuda"),
        "prior": torch.empty((n, 1, h // 4, w // 4), device="cuda"),
    }


def kernel_ms_per_call(torch, fn, calls: int) -> dict | None:
    """Device time per call of each of KERNELS (summed over a call's launches), or None when
    the profiler records no kernel (no CUPTI)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    total = dict.fromkeys(KERNELS, 0.0)
    seen = False
    for event in prof.events():
        for name in KERNELS:
            if name in event.name:  # demangled or not (k_prior: "...7k_priorE...")
                total[name] += event.time_range.elapsed_us() / 1e3
                seen = True
    return {k: v / calls for k, v in total.items()} if seen else None


def prior_cases(torch, P, repeats: int, warmup: int) -> tuple[list, bool]:
    import numpy as np
    from preprocess_gpu import median_ms

    rng = np.random.default_rng(0)
    host = rng.integers(0, 256, (8, *FRAME_HW, 3), dtype=np.uint8)
    frames = torch.from_numpy(host).cuda()
    stream = torch.cuda.current_stream()
    rows, correct = [], True
    for hw, n in CASES:
        out = _device_out(torch, n, hw)
        batch = frames[:n]

        def call(_i=0, batch=batch, out=out, hw=hw):
            P.preprocess_cuda(batch, "BGR", *hw, stream=stream.cuda_stream, out=out)

        ms = median_ms(call, repeats, warmup, sync_each=True)
        kernels = kernel_ms_per_call(torch, call, max(10, repeats // 5))
        row = {"out_hw": list(hw), "batch": n, "call_event_ms": ms, "kernel_ms": kernels}
        if kernels:
            busy = sum(kernels.values())
            row["prior_share_of_kernels"] = kernels["k_prior"] / busy if busy else None
        if hw == (1024, 1024) and n == 1:
            cpu = P.preprocess(host[:1], "BGR", *hw)
            call()
            torch.cuda.synchronize()
            err = {k: float(np.abs(out[k].cpu().numpy() - cpu[k]).max()) for k in cpu}
            row["max_abs_vs_cpu"] = err
            correct = correct and all(e <= TOL for e in err.values())
        rows.append(row)
    return rows, correct


def alloc_child(repeats: int, warmup: int) -> None:
    """One allocator setting (from the environment): prints its timings as JSON."""
    import numpy as np
    import torch

    from saliq import _preproc as P
    from saliq.bench.timer import time_call

    host = np.random.default_rng(1).integers(0, 256, (1, *FRAME_HW, 3), dtype=np.uint8)
    h, w = ALLOC_OUT_HW
    # A device sync after each call, as an application waiting for its inference does: that is
    # where a pool with release threshold 0 hands its memory back to the OS.
    host_ms = time_call(
        lambda: P.preprocess_cuda(host, "BGR", h, w),
        runs=repeats,
        warmup=warmup,
        synchronize=torch.cuda.synchronize,
    )
    got = P.preprocess_cuda(host, "BGR", h, w)
    digest = hashlib.sha256(b"".join(got[k].tobytes() for k in sorted(got))).hexdigest()
    dev = torch.from_numpy(host).cuda()
    out = _device_out(torch, 1, ALLOC_OUT_HW)
    stream = torch.cuda.current_stream().cuda_stream
    device_ms = time_call(
        lambda: P.preprocess_cuda(dev, "BGR", h, w, stream=stream, out=out),
        runs=repeats,
        warmup=warmup,
        synchronize=torch.cuda.synchronize,
    )
    print(
        json.dumps(
            {
                "host_io_ms": host_ms.median_ms,
                "device_io_ms": device_ms.median_ms,
                "sha256": digest,
            }
        )
    )


def allocator_settings(repeats: int, warmup: int) -> dict:
    results = {}
    for name, env in ALLOC_SETTINGS.items():
        run = subprocess.run(
            [sys.executable, __file__, "--alloc-child", "--repeats", str(repeats)]
            + ["--warmup", str(warmup)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if run.returncode != 0:
            results[name] = {"error": (run.stderr or run.stdout).strip()[-500:]}
            continue
        results[name] = {"env": env, **json.loads(run.stdout.strip().splitlines()[-1])}
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--alloc-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alloc_child:
        alloc_child(args.repeats, args.warmup)
        return 0

    from saliq import _preproc as P

    if not P.cuda_available():
        print(f"prior_gpu: skipped, CUDA preprocessing unavailable: {P.cuda_unavailable_reason()}")
        return 0
    try:
        import torch
    except ImportError:
        print("prior_gpu: skipped, needs torch with CUDA")
        return 0
    if not torch.cuda.is_available():
        print("prior_gpu: skipped, torch sees no CUDA device")
        return 0
    from preprocess_gpu import gpu_info, slug

    info = gpu_info(torch)
    rows, correct = prior_cases(torch, P, args.repeats, args.warmup)
    alloc = allocator_settings(args.repeats, args.warmup)
    digests = {r.get("sha256") for r in alloc.values()}
    same_bits = len(digests) == 1 and None not in digests
    result = {
        "gpu": info,
        "frame_hw": list(FRAME_HW),
        "prior": rows,
        "allocator": {"out_hw": list(ALLOC_OUT_HW), "settings": alloc, "same_bits": same_bits},
        "correct": correct and same_bits,
    }
    out_dir = (
        Path(os.environ["OUT"]) if os.environ.get("OUT") else HERE / "results" / slug(info["name"])
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "prior_gpu.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"{info['name']}  driver {info['driver']}  torch {info['torch']}")
    print("\nprior: 1080p BGR on the device -> device outputs; ms per call")
    print(f"{'output':>10} {'batch':>5} {'call':>8} " + " ".join(f"{k:>10}" for k in KERNELS))
    for r in rows:
        k = r["kernel_ms"]
        kernels = " ".join(f"{k[n]:10.3f}" for n in KERNELS) if k else "  (no profiler)"
        size = "x".join(map(str, r["out_hw"]))
        print(f"{size:>10} {r['batch']:>5} {r['call_event_ms']:8.3f} {kernels}")
    print(f"\nallocator: 1080p -> {ALLOC_OUT_HW[0]}x{ALLOC_OUT_HW[1]}, median ms per call")
    for name, r in alloc.items():
        if "error" in r:
            print(f"{name:<38} failed: {r['error'][-200:]}")
        else:
            print(
                f"{name:<38} host I/O {r['host_io_ms']:7.3f}  device I/O {r['device_io_ms']:7.3f}"
            )
    print(f"\ncorrect: {result['correct']} (1024x1024 vs CPU twin; same bits in every setting)")
    return 0 if result["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
