"""Build saliq._preproc with its CUDA part running on the host (see cuda_runtime.h here).

csrc/preproc_cuda.cu is compiled as it is, except that each ``kernel<<<cfg>>>(args)`` launch
is rewritten into a call of the emulator (C++ has no ``<<<>>>``); bindings.cpp and the CPU
twin are the real sources, built with SALIQ_WITH_CUDA. So ``preprocess_cuda`` runs the real
bindings, the real launcher (``run()``: buffers, tables, staging, launch geometry, copies)
and the real kernels. With AddressSanitizer, an out-of-bounds read or write anywhere in them
stops the process with a report, which is what compute-sanitizer's memcheck does on a GPU.
The module also exports the stand-in's switches and its ordered log of stream-ordered calls
(emulation_log.cpp; read with ctypes, see ``EmulatorLog``). It is built for the compute
capabilities ``ARCHS`` as setup.py would pass them (``-DSALIQ_CUDA_ARCHS``): a list unlike
setup.py's, so a test can tell that the "no kernel for this GPU" message comes from the define.

    python tests/cuda_emulation/build.py OUT_DIR [--asan]
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
HERE = Path(__file__).resolve().parent
LAUNCH = re.compile(r"(\w+)<<<(.*?)>>>\((.*?)\);", re.S)
KERNEL = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\(")
# What the emulated build says it was compiled for, in setup.py's define form (_nvcc_arch_flags
# there): deliberately not setup.py's default list.
ARCHS = ("75", "80", "90a")


def _kernels_that_sync(source: str) -> set[str]:
    """Kernels whose body (up to the next top-level closing brace) calls __syncthreads."""
    names = set()
    for match in KERNEL.finditer(source):
        end = source.find("\n}\n", match.end())
        if "__syncthreads" in source[match.end() : end]:
            names.add(match.group(1))
    return names


def emulated_source(cu_text: str) -> str:
    """preproc_cuda.cu with its launches rewritten for the host emulator."""
    syncing = _kernels_that_sync(cu_text)

    def launch(match: re.Match) -> str:
        name, config, args = match.group(1), match.group(2), match.group(3)
        sync = "true" if name in syncing else "false"
        cfg = f'saliq_emu::LaunchConfig{{{config}}}.named("{name}")'
        return f"saliq_emu::launch<{sync}>({name}, {cfg}, {args});"

    out, count = LAUNCH.subn(launch, cu_text)
    if count == 0 or "<<<" in out:
        raise RuntimeError("could not rewrite the kernel launches of preproc_cuda.cu")
    return out


def asan_preload() -> str | None:
    """LD_PRELOAD for an ASan-built module in a plain Python, or None without g++'s ASan.

    libstdc++ is preloaded with the ASan runtime: otherwise ASan's ``__cxa_throw``
    interceptor finds no real function and aborts at the first C++ exception.
    """
    cxx = shutil.which("g++")
    if not cxx:
        return None
    paths = []
    for name in ("libasan.so", "libstdc++.so"):
        found = subprocess.run(
            [cxx, f"-print-file-name={name}"], capture_output=True, text=True
        ).stdout.strip()
        if not found or not Path(found).is_file():
            return None
        paths.append(str(Path(found).resolve()))
    return " ".join(paths)


def build(out_dir: Path, asan: bool = False) -> Path:
    """Compile the emulated module into ``out_dir``; returns the .so path."""
    import pybind11

    out_dir.mkdir(parents=True, exist_ok=True)
    generated = out_dir / "preproc_cuda_emulated.cpp"
    generated.write_text(emulated_source((CSRC / "preproc_cuda.cu").read_text()))
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = out_dir / f"_preproc{suffix}"
    flags = ["-std=c++20", "-O1", "-g", "-fPIC", "-shared", "-pthread", "-DSALIQ_WITH_CUDA"]
    flags.append(f"-DSALIQ_CUDA_ARCHS={'_'.join(ARCHS)}")
    if asan:
        flags += ["-fsanitize=address", "-fno-omit-frame-pointer"]
    includes = [
        f"-I{HERE}",  # cuda_runtime.h: the host stand-in
        f"-I{CSRC}",
        f"-I{pybind11.get_include()}",
        f"-I{sysconfig.get_paths()['include']}",
    ]
    sources = [str(CSRC / "bindings.cpp"), str(CSRC / "preproc_cpu.cpp"), str(generated)]
    sources.append(str(HERE / "emulation_log.cpp"))
    cmd = ["g++", *flags, *includes, *sources, "-o", str(target)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"emulated build failed:\n{' '.join(cmd)}\n{result.stderr[-4000:]}")
    return target


class EmulatorLog:
    """The stand-in's switches and ordered log in a process that has loaded the built module."""

    def __init__(self, module_path: str | Path) -> None:
        # dlopen of the loaded file returns the same handle: the extension's own state.
        self._lib = ctypes.CDLL(str(module_path))
        self._lib.saliq_emu_log.restype = ctypes.c_char_p

    def lines(self) -> list[str]:
        return self._lib.saliq_emu_log().decode().splitlines()

    def clear(self) -> None:
        self._lib.saliq_emu_clear_log()

    def set_pools_supported(self, supported: bool) -> None:
        self._lib.saliq_emu_set_pools_supported(int(supported))

    def set_kernels_missing(self, missing: bool, major: int = 0, minor: int = 0) -> None:
        self._lib.saliq_emu_set_kernels_missing(int(missing), major, minor)


if __name__ == "__main__":
    path = build(Path(sys.argv[1]), asan="--asan" in sys.argv[2:])
    print(path)
