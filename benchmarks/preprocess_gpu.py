"""GPU preprocessing speed: saliq._preproc's CUDA path against PyTorch and the CPU paths.

Runs only where ``saliq._preproc.cuda_available()`` (else prints why, writes nothing, exits 0);
needs torch with CUDA. Timed with CUDA events after a warm-up, medians of many repeats, rotating
among several input buffers so that the L2 cache does not flatter the numbers:

(a) latency, one 1080p BGR uint8 frame -> 384x512 outputs: host in/host out (numpy, the call
    synchronises) and device in/device out (torch CUDA tensors through
    ``__cuda_array_interface__``, outputs into preallocated device arrays via ``out=``);
(b) throughput on batches of 16 and 64 1080p frames already on the GPU: bytes/s, counting the
    input read once and the outputs written once, against the device-to-device copy bandwidth
    measured in the same run (a ~1 GiB ``copy_``, bytes read + written);
(c) the same ops in PyTorch on the GPU (area resize, normalise, luma, Sobel by conv2d,
    magnitude; prior: 4x4 avg-pool, Gaussian blur, centre weight, / max) on the same batches;
(d) the OpenCV chain (benchmarks/preprocess.py) and the native CPU twin for one frame;
(e) version 2 (docs/preprocessing.md): one frame on the device -> 224x224 + 4 crops of 96
    (ViewConfig defaults) into device arrays, at 1080p and 4K (that frame upscaled 2x),
    beside version 1 at 224x224, with the boxes checked against the CPU twin's.

Writes $OUT/preprocess_gpu.json when OUT is set, else
benchmarks/results/<gpu-name>/preprocess_gpu.json.

    python benchmarks/preprocess_gpu.py [--repeats 100] [--warmup 10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

from saliq.bench.timer import time_call

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

OUT_HW = (384, 512)
FRAME_HW = (1080, 1920)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BATCHES = (16, 64)
N_BUFFERS = 3  # batches rotated through in the throughput loops (each batch > 100 MB)
N_SINGLE = 16  # single 1080p frames rotated through (16 x 6.2 MB: more than an H100/H200 L2)
TOL = {"float32": 1e-4, "float16": 2e-3}  # native CUDA vs native CPU, max abs
# The spec's constants (csrc/preproc_math.h), for the PyTorch version.
LUMA = (0.299, 0.587, 0.114)
GRADIENT_SCALE = 1020 * math.sqrt(2)
PRIOR_STRIDE, BLUR_SIGMA_FRACTION, CENTRE_SIGMA_FRACTION = 4, 0.03, 0.2


def median_ms(fn, n_iter: int, warmup: int, sync_each: bool) -> float:
    """Median of per-call CUDA-event times of fn(i) on the current stream.

    sync_each: wait for each call before the next (latency); else calls queue back to back
    (throughput: the GPU never waits for the host between calls).
    """
    import torch

    for i in range(warmup):
        fn(i)
    torch.cuda.synchronize()
    pairs = []
    for i in range(n_iter):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn(i)
        end.record()
        if sync_each:
            end.synchronize()
        pairs.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in pairs)


def wall_median_ms(fn, n_iter: int, warmup: int) -> float:
    """Median host wall time of fn(i) followed by a device synchronise (saliq.bench.timer)."""
    import itertools

    import torch

    counter = itertools.count()
    # fn(i) rotates inputs by the call index; warm-up calls take the first indices, as before.
    timing = time_call(
        lambda: fn(next(counter)), runs=n_iter, warmup=warmup, synchronize=torch.cuda.synchronize
    )
    return timing.median_ms


def copy_bandwidth(torch, repeats: int) -> dict:
    """Device-to-device copy of ~1 GiB; bytes = read + written."""
    n = 1 << 30
    src = torch.randint(0, 256, (n,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = median_ms(lambda i: dst.copy_(src), repeats, 3, sync_each=False)
    assert torch.equal(dst[:4096], src[:4096])
    return {"bytes": 2 * n, "median_ms": ms, "bytes_per_s": 2 * n / (ms * 1e-3)}


def out_bytes(n: int, dtype: str) -> int:
    h, w = OUT_HW
    item = 4 if dtype == "float32" else 2
    return n * (3 * h * w + h * w + (h // PRIOR_STRIDE) * (w // PRIOR_STRIDE)) * item


def alloc_out(torch, n: int, dtype: str) -> dict:
    h, w = OUT_HW
    dt = torch.float32 if dtype == "float32" else torch.float16
    hp, wp = h // PRIOR_STRIDE, w // PRIOR_STRIDE
    return {
        "image": torch.empty((n, 3, h, w), dtype=dt, device="cuda"),
        "gradient": torch.empty((n, 1, h, w), dtype=dt, device="cuda"),
        "prior": torch.empty((n, 1, hp, wp), dtype=dt, device="cuda"),
    }


class TorchPreprocess:
    """Preprocessing v1 in PyTorch ops, as close as they come: area resize of BGR (adaptive
    average pooling: whole-pixel bins, where the spec weighs partial pixels; bilinear,
    half-pixel, per axis when an axis grows), then RGB, normalise, luma, Sobel (replicated
    border), magnitude, 4x4 mean pool, Gaussian blur (replicated border), centre weight, / max.
    float32 throughout."""

    def __init__(self, torch, out_hw=OUT_HW, device="cuda"):
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        self.h, self.w = out_hw
        dev = device
        self.mean = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
        self.inv_std = 1.0 / torch.tensor(STD, device=dev).view(1, 3, 1, 1)
        self.luma = torch.tensor(LUMA, device=dev).view(1, 3, 1, 1)
        sx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=dev)
        self.sobel = torch.stack([sx, sx.t()]).unsqueeze(1) / GRADIENT_SCALE  # [2,1,3,3]
        hp, wp = self.h // PRIOR_STRIDE, self.w // PRIOR_STRIDE
        sigma = BLUR_SIGMA_FRACTION * max(self.h, self.w) / PRIOR_STRIDE
        self.r = math.ceil(3 * sigma)
        t = torch.arange(-self.r, self.r + 1, dtype=torch.float64, device=dev)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = (k / k.sum()).float()
        self.kx = k.view(1, 1, 1, -1)
        self.ky = k.view(1, 1, -1, 1)
        ys = (torch.arange(hp, device=dev, dtype=torch.float64) + 0.5 - hp / 2) / (
            CENTRE_SIGMA_FRACTION * hp
        )
        xs = (torch.arange(wp, device=dev, dtype=torch.float64) + 0.5 - wp / 2) / (
            CENTRE_SIGMA_FRACTION * wp
        )
        self.centre = torch.exp(-0.5 * ys[:, None] ** 2 - 0.5 * xs[None, :] ** 2).float()

    def resize(self, x):  # x: [N, C, H, W] float
        F, (h_in, w_in) = self.F, x.shape[-2:]
        if self.h < h_in and self.w < w_in:  # both shrink: one area pass (separable anyway)
            return F.interpolate(x, size=(self.h, self.w), mode="area")
        for size, shrink in (((self.h, w_in), self.h < h_in), ((self.h, self.w), self.w < w_in)):
            if shrink:
                x = F.interpolate(x, size=size, mode="area")
            else:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    def __call__(self, bgr):  # bgr: [N, H, W, 3] uint8 on the GPU
        F = self.F
        x = bgr.permute(0, 3, 1, 2).float()  # channels-last view -> float
        rgb = self.resize(x).flip(1)  # [N, 3, h, w] on the 0..255 scale
        image = (rgb * (1 / 255) - self.mean) * self.inv_std
        luma = (rgb * self.luma).sum(1, keepdim=True)
        g = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), self.sobel)
        gradient = g.pow(2).sum(1, keepdim=True).sqrt()
        p = F.avg_pool2d(gradient, PRIOR_STRIDE)
        p = F.conv2d(F.pad(p, (self.r, self.r, 0, 0), mode="replicate"), self.kx)
        p = F.conv2d(F.pad(p, (0, 0, self.r, self.r), mode="replicate"), self.ky)
        p = p * self.centre
        peak = p.amax(dim=(2, 3), keepdim=True)
        prior = p / self.torch.where(peak > 0, peak, self.torch.ones_like(peak))
        return {"image": image.contiguous(), "gradient": gradient, "prior": prior}


def max_abs(a: dict, b: dict) -> dict:
    import numpy as np

    return {
        k: float(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)).max())
        for k in b
    }


def to_host(d: dict) -> dict:
    return {k: v.float().cpu().numpy() for k, v in d.items()}


def gpu_info(torch) -> dict:
    props = torch.cuda.get_device_properties(0)
    driver = None
    try:
        driver = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            .stdout.strip()
            .splitlines()[0]
        )
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return {
        "name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "l2_cache_mib": round(getattr(props, "L2_cache_size", 0) / 2**20, 1) or None,
        "driver": driver,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    }


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def main() -> int:
    from saliq import _preproc as P

    if not P.cuda_available():
        print(
            f"preprocess_gpu: skipped, CUDA preprocessing unavailable: "
            f"{P.cuda_unavailable_reason()}"
        )
        return 0
    try:
        import torch
    except ImportError:
        print("preprocess_gpu: skipped, needs torch with CUDA")
        return 0
    if not torch.cuda.is_available():
        print("preprocess_gpu: skipped, torch sees no CUDA device")
        return 0
    import cv2
    import numpy as np
    from frames import real_frames
    from preprocess import opencv_chain

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    rep, warm = args.repeats, args.warmup
    h, w = OUT_HW
    torch.backends.cudnn.benchmark = True
    stream = torch.cuda.current_stream()  # events, torch ops and preprocess_cuda all on it
    info = gpu_info(torch)
    result: dict = {
        "benchmark": "preprocess 1080x1920 BGR uint8 -> 384x512 (image, gradient, prior)",
        "gpu": info,
        "timing": f"CUDA events, {warm} warm-up calls, median of {rep}; inputs rotate among "
        f"{N_SINGLE} frames (latency) or {N_BUFFERS} batches (throughput)",
        "bytes_counted": "input read once + outputs written once",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }

    def cuda(frames, dtype="float32", out=None):
        return P.preprocess_cuda(
            frames, "BGR", h, w, MEAN, STD, dtype=dtype, stream=stream, out=out
        )

    # Frames: real photos (benchmarks/frames.py), cycled and shifted on the GPU so that every
    # frame of every buffer differs.
    try:
        photos, source = real_frames(4)
    except Exception as e:  # noqa: BLE001 - a benchmark still runs on noise, and says so
        rng = np.random.default_rng(0)
        photos = [rng.integers(0, 256, (*FRAME_HW, 3), dtype=np.uint8) for _ in range(4)]
        source = f"uniform noise (real frames unavailable: {e})"
    result["frame_source"] = source
    host = [np.ascontiguousarray(p) for p in photos]
    base = torch.from_numpy(np.stack(host)).cuda()

    def batch(n: int, b: int):
        return torch.stack(
            [
                base[i % len(host)].roll((37 * i + 101 * b, 53 * i + 211 * b), (0, 1))
                for i in range(n)
            ]
        )

    # Correctness once, before any timing: CUDA (device in, device out) vs the CPU twin.
    check_in = batch(4, 0)
    cpu_in = check_in.cpu().numpy()
    correct = {}
    for dtype in ("float32", "float16"):
        out = alloc_out(torch, 4, dtype)
        for v in out.values():
            v.fill_(float("nan"))  # poison: unwritten elements fail the check
        cuda(check_in, dtype, out)
        torch.cuda.synchronize()
        ref = P.preprocess(cpu_in, "BGR", h, w, MEAN, STD, dtype=dtype)
        diff = max_abs(to_host(out), ref)
        ok = all(d <= TOL[dtype] for d in diff.values())  # NaN compares False
        correct[dtype] = {"max_abs_vs_cpu": diff, "tolerance": TOL[dtype], "ok": ok}
    host_io = cuda([host[0]])
    correct["float32_host_io"] = {
        "max_abs_vs_cpu": max_abs(host_io, P.preprocess([host[0]], "BGR", h, w, MEAN, STD)),
    }
    torch_version = TorchPreprocess(torch)
    correct["torch_ops_vs_native"] = {
        "max_abs": max_abs(
            to_host(torch_version(check_in)), P.preprocess(cpu_in, "BGR", h, w, MEAN, STD)
        ),
        "note": "area resize differs by design (whole-pixel bins vs exact overlap)",
    }
    result["correctness"] = correct
    all_ok = correct["float32"]["ok"] and correct["float16"]["ok"]

    # (a) single-frame latency, rotating N_SINGLE frames ([1, H, W, 3] slices of one batch).
    singles = batch(N_SINGLE, 1)
    single_host = list(singles.cpu().numpy())

    def one(i: int):
        return singles[i % N_SINGLE : i % N_SINGLE + 1]

    out1 = alloc_out(torch, 1, "float32")
    lat = {
        "host_io_event_ms": median_ms(
            lambda i: cuda([single_host[i % N_SINGLE]]), rep, warm, sync_each=True
        ),
        "host_io_wall_ms": wall_median_ms(lambda i: cuda([single_host[i % N_SINGLE]]), rep, warm),
        "device_io_event_ms": median_ms(
            lambda i: cuda(one(i), out=out1), rep, warm, sync_each=True
        ),
        "device_io_wall_ms": wall_median_ms(lambda i: cuda(one(i), out=out1), rep, warm),
        "torch_ops_device_event_ms": median_ms(
            lambda i: torch_version(one(i)), rep, warm, sync_each=True
        ),
    }
    result["latency_1_frame"] = lat

    # (b) + (c) throughput on device-resident batches.
    copy = copy_bandwidth(torch, max(20, rep // 5))
    torch.cuda.empty_cache()
    result["d2d_copy"] = copy

    def time_batch(n: int) -> dict:
        """{version: (median ms, bytes moved at least)} for a batch of n device frames."""
        bufs = [batch(n, b) for b in range(N_BUFFERS)]
        in_bytes = bufs[0].numel()
        rows = {}
        for dtype in ("float32", "float16"):
            out = alloc_out(torch, n, dtype)
            ms = median_ms(
                lambda i, dt=dtype, o=out: cuda(bufs[i % N_BUFFERS], dt, o), rep, warm, False
            )
            rows[f"native_cuda_{dtype}"] = (ms, in_bytes + out_bytes(n, dtype))
        ms = median_ms(lambda i: torch_version(bufs[i % N_BUFFERS]), rep, warm, False)
        rows["torch_ops_float32"] = (ms, in_bytes + out_bytes(n, "float32"))
        return rows

    throughput = {}
    for n in BATCHES:
        rows = time_batch(n)
        torch.cuda.empty_cache()
        throughput[str(n)] = {
            name: {
                "median_ms": ms,
                "frames_per_s": n / (ms * 1e-3),
                "bytes": nbytes,
                "bytes_per_s": nbytes / (ms * 1e-3),
                "fraction_of_copy_bw": nbytes / (ms * 1e-3) / copy["bytes_per_s"],
            }
            for name, (ms, nbytes) in rows.items()
        }
    result["throughput"] = throughput

    # (d) CPU reference, one frame, perf_counter medians.
    threads = os.cpu_count() or 1
    cv2.setNumThreads(threads)
    P.set_num_threads(threads)
    cpu_runs = {
        "opencv_chain": lambda i: opencv_chain(single_host[i % N_SINGLE], cv2, np),
        "native_cpu_float32": lambda i: P.preprocess(
            [single_host[i % N_SINGLE]], "BGR", h, w, MEAN, STD
        ),
    }
    cpu = {}
    for name, fn in cpu_runs.items():
        calls = iter(range(1 << 30))
        timing = time_call(
            lambda fn=fn, calls=calls: fn(next(calls)), runs=max(20, rep // 2), warmup=3
        )
        cpu[name] = timing.median_ms
    result["cpu_1_frame_ms"] = cpu
    result["cpu_threads"] = threads
    v2 = version2_latency(torch, P, host[0], stream, rep, warm)
    result["version2"] = v2
    all_ok = all_ok and all(c["boxes_equal"] for c in v2["correct"].values())
    result["correct"] = all_ok

    out_dir = (
        Path(os.environ["OUT"])
        if os.environ.get("OUT")
        else (HERE / "results" / slug(info["name"]))
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "preprocess_gpu.json"
    path.write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"{info['name']}  driver {info['driver']}  torch {info['torch']}  "
        f"CUDA {info['torch_cuda']}  frames: {source}"
    )
    for dtype in ("float32", "float16"):
        c = correct[dtype]
        print(
            f"correct {dtype}: {'ok' if c['ok'] else 'FAILED'}  max abs vs CPU "
            + ", ".join(f"{k} {v:.2e}" for k, v in c["max_abs_vs_cpu"].items())
        )
    print(
        f"\nlatency, 1 frame (ms)   host I/O {lat['host_io_event_ms']:.3f} "
        f"(wall {lat['host_io_wall_ms']:.3f})   device I/O {lat['device_io_event_ms']:.3f} "
        f"(wall {lat['device_io_wall_ms']:.3f})   torch ops {lat['torch_ops_device_event_ms']:.3f}"
    )
    print(f"d2d copy bandwidth: {copy['bytes_per_s'] / 1e9:.0f} GB/s (read + write)\n")
    print(f"{'batch':>5}  {'version':<22} {'ms':>9} {'frames/s':>10} {'GB/s':>8} {'of copy':>8}")
    for n, rows in throughput.items():
        for name, r in rows.items():
            print(
                f"{n:>5}  {name:<22} {r['median_ms']:9.3f} {r['frames_per_s']:10.0f} "
                f"{r['bytes_per_s'] / 1e9:8.0f} {r['fraction_of_copy_bw']:8.1%}"
            )
    print(
        f"\nCPU, 1 frame, {threads} threads: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in cpu.items())
    )
    print(
        f"version 2, 1 frame device I/O (ms): {v2['latency_device_io_event_ms']}; "
        f"4K/1080p {v2['ratio_4k_vs_1080p']}"
    )
    print(f"-> {path}")
    return 0 if all_ok else 1


def version2_latency(torch, P, frame, stream, rep: int, warm: int) -> dict:
    """(e): version 1 vs 2 at 224x224, one device frame, 1080p and 4K (device outputs)."""
    import cv2
    import numpy as np

    from saliq.views import ViewConfig

    cfg = ViewConfig()  # 4 detail crops of 96, no grid
    k, size = cfg.detail_crops, cfg.crop_size
    shapes_v1 = {"image": (1, 3, 224, 224), "gradient": (1, 1, 224, 224), "prior": (1, 1, 56, 56)}
    shapes_v2 = {
        **shapes_v1,
        "crops": (1, k, 3, size, size),
        "crop_gradient": (1, k, 1, size, size),
        "crop_boxes": (1, k, 4),
        "crop_weights": (1, k),
    }
    frames = {"1080p": frame, "4k": cv2.resize(frame, (3840, 2160), interpolation=cv2.INTER_LINEAR)}
    out: dict = {"views": cfg.to_dict(), "latency_device_io_event_ms": {}, "correct": {}}
    for name, host_frame in frames.items():
        dev = torch.from_numpy(np.ascontiguousarray(host_frame[None])).cuda()
        bufs = {}
        for version, shapes in (("v1", shapes_v1), ("v2", shapes_v2)):
            bufs = {key: torch.empty(shape, device="cuda") for key, shape in shapes.items()}
            views = cfg.to_dict() if version == "v2" else None

            def call(_i, dev=dev, bufs=bufs, views=views):
                return P.preprocess_cuda(
                    dev, "BGR", 224, 224, MEAN, STD, stream=stream, out=bufs, views=views
                )

            out["latency_device_io_event_ms"][f"{version}_{name}"] = median_ms(
                call, rep, warm, sync_each=True
            )
        torch.cuda.synchronize()
        got = to_host(bufs)  # the v2 buffers after the last timed call, against the CPU twin
        ref = P.preprocess([host_frame], "BGR", 224, 224, MEAN, STD, views=cfg.to_dict())
        out["correct"][name] = {
            "boxes_equal": bool(np.array_equal(got["crop_boxes"], ref["crop_boxes"])),
            "max_abs_vs_cpu": max_abs(got, {key: ref[key] for key in shapes_v2}),
        }
    lat = out["latency_device_io_event_ms"]
    out["ratio_4k_vs_1080p"] = {v: lat[f"{v}_4k"] / lat[f"{v}_1080p"] for v in ("v1", "v2")}
    return out


if __name__ == "__main__":
    sys.exit(main())
