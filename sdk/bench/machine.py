"""What a benchmark ran on: CPU, threads, GPU, driver and library versions; and the threads
it pins (:func:`pin_threads`).

``describe()`` never fails and never imports a heavy runtime to find out: versions come from
the installed packages' metadata, GPU facts from torch only when the benchmark already
imported it, else from ``nvidia-smi`` (absent on Jetson, which is told by its L4T release).
Every probe that cannot answer leaves ``None``, so a result file always says what it knows.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ..device_info import is_tegra

# Distribution names per library (the first one installed is reported).
LIBRARIES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml"),
    "torch": ("torch",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "onnx": ("onnx",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
    "cuda-python": ("cuda-python", "cuda-bindings"),
    "matplotlib": ("matplotlib",),
}
# The keys every description has (the JSON schema of saliq bench checks them).
MACHINE_KEYS = (
    "slug",
    "cpu_model",
    "cpu_count_logical",
    "cpu_count_physical",
    "cpu_affinity",
    "threads",
    "gpus",
    "driver",
    "cuda",
    "jetson",
    "platform",
    "python",
    "libraries",
    "onnxruntime_providers",
    "load_average",
)
NVIDIA_SMI_TIMEOUT_S = 10


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's marketing name: /proc/cpuinfo's "model name" (x86), "Model"/"Hardware" (Arm
    boards), else what ``platform`` says."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        if match and match.group(1).strip():
            return match.group(1).strip()
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def physical_cores(cpuinfo: str | None = None) -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; None where it does not say."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    cores = set()
    for block in cpuinfo.split("\n\n"):
        physical = re.search(r"^physical id\s*:\s*(\d+)", block, re.MULTILINE)
        core = re.search(r"^core id\s*:\s*(\d+)", block, re.MULTILINE)
        if core:
            cores.add((physical.group(1) if physical else "0", core.group(1)))
    return len(cores) or None


def cpu_affinity() -> int | None:
    """How many CPUs this process may run on (a container or taskset may allow fewer)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def default_threads() -> int:
    """The thread count ``saliq bench`` pins when none is given: every CPU it may use."""
    return cpu_affinity() or os.cpu_count() or 1


def library_versions() -> dict[str, str | None]:
    """Installed version of each library of :data:`LIBRARIES` (None: not installed)."""
    from .. import __version__

    versions: dict[str, str | None] = {"saliq": __version__}
    for library, distributions in LIBRARIES.items():
        versions[library] = None
        for distribution in distributions:
            try:
                versions[library] = metadata.version(distribution)
                if distribution != distributions[0]:
                    versions[library] += f" ({distribution})"
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def onnxruntime_providers() -> list[str]:
    """ONNX Runtime's execution providers here ([] without onnxruntime)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def torch_cuda_usable() -> bool:
    """Whether torch, when already imported (never imported here), sees a CUDA GPU."""
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_available())
    except Exception:  # a broken CUDA setup means "no GPU" here, not a crash
        return False


def pin_threads(threads: int) -> dict[str, Any]:
    """Set every runtime's CPU thread count to ``threads``; returns what each now reports.

    torch is pinned only when already imported (call this after the model is loaded);
    ONNX Runtime takes the count per session (``intra_op_num_threads``), recorded as asked.
    """
    from ..preprocess import set_native_threads

    pinned: dict[str, Any] = {"requested": threads, "onnxruntime_intra_op": threads}
    set_native_threads(threads)
    pinned["native_preprocessing"] = threads
    try:
        import cv2

        cv2.setNumThreads(threads)
        pinned["opencv"] = cv2.getNumThreads()
    except ImportError:
        pinned["opencv"] = None
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
        pinned["torch"] = torch.get_num_threads()
    return pinned


def _nvidia_smi() -> tuple[list[dict[str, Any]], str | None]:
    """(GPUs, driver version) from nvidia-smi; ([], None) where it is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], None
    query = "name,compute_cap,memory.total,driver_version"
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):
        return [], None
    if out.returncode != 0:
        return [], None
    return parse_nvidia_smi(out.stdout)


def parse_nvidia_smi(text: str) -> tuple[list[dict[str, Any]], str | None]:
    """Rows of ``nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version
    --format=csv,noheader,nounits``."""
    gpus, driver = [], None
    for index, line in enumerate(text.strip().splitlines()):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 4:
            continue
        name, capability, memory, driver = fields[:4]
        gpus.append(
            {
                "index": index,
                "name": name,
                "compute_capability": capability,
                "memory_mib": int(memory) if memory.isdigit() else None,
            }
        )
    return gpus, driver


def _torch_gpus() -> list[dict[str, Any]]:
    """GPUs as torch sees them, only when torch is already imported (never imported here)."""
    if not torch_cuda_usable():
        return []
    torch = sys.modules["torch"]
    try:
        gpus = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(
                {
                    "index": index,
                    "name": props.name,
                    "compute_capability": f"{props.major}.{props.minor}",
                    "memory_mib": int(props.total_memory // (1 << 20)),
                }
            )
        return gpus
    except Exception:  # a broken CUDA setup is a fact to report as "no GPU", not a crash
        return []


def _tegra_release(root: Path = Path("/")) -> str | None:
    try:
        first = (root / "etc/nv_tegra_release").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return first.strip("# ").strip() or None


def _cuda_versions() -> dict[str, str | None]:
    torch = sys.modules.get("torch")
    runtime = getattr(getattr(torch, "version", None), "cuda", None) if torch else None
    native = None
    try:
        from ..preprocess import native_module

        module = native_module()
        if module is not None:
            native = (
                "usable" if module.cuda_available() else module.cuda_unavailable_reason() or "no"
            )
    except Exception:
        native = None
    return {"torch_cuda": runtime, "preprocessing_kernel": native}


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def device_slug(gpus: list[Mapping[str, Any]], jetson: bool = False) -> str:
    """The results folder of a machine: the first GPU's name without the vendor words
    ("NVIDIA H200" -> "h200", "NVIDIA GeForce RTX 4090" -> "rtx-4090"), "jetson-..." on a
    Jetson, "cpu" without a GPU (benchmarks/results/cpu/ holds this workplace's CPU runs)."""
    if not gpus:
        return "jetson" if jetson else "cpu"
    name = str(gpus[0].get("name", "gpu")).lower()
    name = re.sub(r"\b(nvidia|geforce|tesla|corporation)\b", " ", name)
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "gpu"
    return f"jetson-{slug}" if jetson and not slug.startswith("jetson") else slug


def describe(threads: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The machine description ``saliq bench`` writes beside its rows (keys:
    :data:`MACHINE_KEYS`). ``threads``: the thread counts the benchmark pinned."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = None
    gpus = _torch_gpus()
    smi_gpus, driver = _nvidia_smi()
    if not gpus:
        gpus = smi_gpus
    elif smi_gpus:  # torch's names, nvidia-smi's memory figure agrees; keep torch's view
        for gpu, smi in zip(gpus, smi_gpus):
            gpu.setdefault("memory_mib", smi.get("memory_mib"))
    jetson = is_tegra()
    if jetson and driver is None:
        driver = _tegra_release()
    description = {
        "slug": device_slug(gpus, jetson),
        "cpu_model": cpu_model(cpuinfo),
        "cpu_count_logical": os.cpu_count(),
        "cpu_count_physical": physical_cores(cpuinfo) if cpuinfo is not None else None,
        "cpu_affinity": cpu_affinity(),
        "threads": dict(threads or {}),
        "gpus": gpus,
        "driver": driver,
        "cuda": _cuda_versions(),
        "jetson": jetson,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "onnxruntime_providers": onnxruntime_providers(),
        "load_average": load_average(),
    }
    return description


def summary(description: Mapping[str, Any]) -> str:
    """One line for the table's header."""
    threads = description.get("threads") or {}
    pinned = threads.get("requested")
    cpu = f"{description.get('cpu_model')} ({description.get('cpu_count_logical')} CPUs"
    cpu += f", {pinned} threads pinned)" if pinned else ")"
    gpus = description.get("gpus") or []
    gpu = ", ".join(str(g.get("name")) for g in gpus) if gpus else "no GPU"
    if gpus and description.get("driver"):
        gpu += f" (driver {description['driver']})"
    libs = description.get("libraries") or {}
    versions = ", ".join(
        f"{name} {libs[name]}" for name in ("onnxruntime", "torch", "tensorrt") if libs.get(name)
    )
    return f"{cpu}; {gpu}; {versions}"


__all__ = [
    "LIBRARIES",
    "MACHINE_KEYS",
    "cpu_model",
    "default_threads",
    "describe",
    "device_slug",
    "library_versions",
    "load_average",
    "onnxruntime_providers",
    "parse_nvidia_smi",
    "physical_cores",
    "pin_threads",
    "summary",
    "torch_cuda_usable",
]
