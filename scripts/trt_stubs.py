#!/usr/bin/env python3
"""Type-check saliq's TensorRT code against the TensorRT 10.13 API (``tensorrt-stubs``).

TensorRT cannot be installed on the machines that develop and test saliq, so its calls are
checked statically. The ``tensorrt-stubs`` wheel describes the API but cannot be used as
is: some stubs do not parse (parameters named ``in``; required parameters after defaulted
ones, as pybind11 prints them) and it lacks ``py.typed``. This script downloads it with
pip, patches those lines, caches the result under ``.cache/trt-stubs/<version>`` (the
repository should ignore ``.cache/``), and runs mypy with the stubs on ``MYPYPATH``.

    python scripts/trt_stubs.py              # the default modules (those present)
    python scripts/trt_stubs.py FILE ...     # other files

Exit status: mypy's (0 clean, 1 type errors), 3 when the stubs cannot be downloaded.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUBS_VERSION = "10.13.0.35.1"  # the TensorRT 10.13 API; `pip index versions tensorrt-stubs`
CACHE = Path(os.environ.get("SALIQ_TRT_STUBS_CACHE", REPO / ".cache" / "trt-stubs"))
DEFAULT_TARGETS = ("export/tensorrt.py", "sdk/backends/tensorrt.py", "sdk/cuda_memory.py")
STUB_PACKAGES = ("tensorrt", "tensorrt_bindings")
EXIT_NO_STUBS = 3
MAX_PATCH_ROUNDS = 200  # one syntax error is fixed per round; the 10.13 wheel needs a handful

IN_PARAM = re.compile(r"(?<=[(,\s])in(?=\s*:)")
# The stubs export TensorRT's ``bool`` data type as a module variable, which shadows the
# builtin in every ``-> bool`` annotation (mypy then reads them as Any, unchecked).
BOOL_ANNOTATION = re.compile(r"(?:(?<=-> )|(?<=: )|(?<=\[)|(?<=, )|(?<=\| ))bool\b")
PATCH_LEVEL = 2  # bump when the patches change: the cache folder is keyed by it
MYPY_CONFIG = """\
[mypy]
[mypy-tensorrt.*]
ignore_errors = True
[mypy-tensorrt_bindings.*]
ignore_errors = True
"""


def _split_params(text: str) -> list[str]:
    """Split a parameter list at top-level commas (annotations contain brackets)."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current))
    return parts


def _keyword_only_after_defaults(line: str) -> str:
    """``f(a=1, b: int)`` -> ``f(a=1, *, b: int)``: valid, and ``b`` stays required."""
    match = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not match:
        return line
    params = _split_params(match.group(2))
    seen_default = False
    for index, param in enumerate(params):
        name = param.strip()
        if name.startswith("*"):
            return line  # already keyword-only from here
        if "=" in name:
            seen_default = True
        elif seen_default:
            params.insert(index, " *")
            return match.group(1) + ",".join(params) + match.group(3)
    return line


def patch_stub(text: str, source: str) -> str:
    """Fix the lines Python's parser rejects, one syntax error at a time."""
    lines = text.splitlines(keepends=True)
    for _ in range(MAX_PATCH_ROUNDS):
        try:
            ast.parse("".join(lines), filename=source)
            return "".join(lines)
        except SyntaxError as exc:
            # The parser may report the line before the offending ``def`` (after a
            # docstring), so the reported line and its neighbours are candidates.
            reported = (exc.lineno or 1) - 1
            for index in (reported, reported + 1, reported - 1):
                if 0 <= index < len(lines):
                    fixed = _keyword_only_after_defaults(IN_PARAM.sub("in_", lines[index]))
                    if fixed != lines[index]:
                        lines[index] = fixed
                        break
            else:
                bad = lines[reported].strip() if reported < len(lines) else ""
                raise RuntimeError(f"{source}:{exc.lineno}: cannot patch: {bad}") from None
    raise RuntimeError(f"{source}: more than {MAX_PATCH_ROUNDS} syntax errors")


def unshadow_bool(text: str) -> str:
    lines = text.splitlines(keepends=True)
    out = [
        line if line.startswith("bool:") else BOOL_ANNOTATION.sub("builtins.bool", line)
        for line in lines
    ]
    head = "from __future__ import annotations\n"
    body = "".join(out)
    if body.startswith(head):
        return head + "import builtins\n" + body[len(head) :]
    return "import builtins\n" + body


def _download(version: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into)]
    result = subprocess.run(
        [*cmd, f"tensorrt-stubs=={version}"], capture_output=True, text=True, timeout=300
    )
    wheels = sorted(into.glob("tensorrt_stubs-*.whl"))
    if result.returncode or not wheels:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise ConnectionError(f"pip download tensorrt-stubs=={version} failed: {detail[0]}")
    return wheels[0]


def ensure_stubs(version: str = STUBS_VERSION, cache: Path = CACHE) -> Path:
    """A folder to put on MYPYPATH holding the patched ``tensorrt`` stubs (cached)."""
    target = cache / f"{version}-p{PATCH_LEVEL}"
    if all((target / pkg / "__init__.pyi").is_file() for pkg in STUB_PACKAGES):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        wheel = _download(version, Path(tmp) / "wheel")
        staged = Path(tmp) / "stubs"
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.split("/")[0] in STUB_PACKAGES and member.endswith(".pyi"):
                    archive.extract(member, staged)
        for pkg in STUB_PACKAGES:
            for stub in (staged / pkg).rglob("*.pyi"):
                text = patch_stub(stub.read_text(), str(stub.relative_to(staged)))
                stub.write_text(unshadow_bool(text))
            (staged / pkg / "py.typed").write_text("")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staged, target)  # whole folder at once: no half-patched cache
    return target


def run_mypy(files: list[str], stubs: Path) -> int:
    env = {**os.environ, "MYPYPATH": str(stubs)}
    config = stubs / "mypy.ini"  # silences the stubs' own (generated) inconsistencies
    config.write_text(MYPY_CONFIG)
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--ignore-missing-imports",  # numpy/onnx/saliq internals are not what is checked here
        "--follow-imports=silent",  # report errors in the named files only
        "--check-untyped-defs",  # a call inside an unannotated function is still checked
        "--no-incremental",
        f"--config-file={config}",
        "--python-version=3.10",  # JetPack 6's Python
        *files,
    ]
    return subprocess.run(cmd, env=env, cwd=REPO).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="files to check (default: saliq's TRT code)")
    parser.add_argument("--version", default=STUBS_VERSION, help="tensorrt-stubs version")
    args = parser.parse_args(argv)
    files = args.files or [f for f in DEFAULT_TARGETS if (REPO / f).is_file()]
    try:
        stubs = ensure_stubs(args.version)
    except (ConnectionError, subprocess.TimeoutExpired) as exc:
        print(f"trt_stubs: {exc}", file=sys.stderr)
        return EXIT_NO_STUBS
    print(f"trt_stubs: mypy with tensorrt-stubs {args.version} on {', '.join(files)}")
    return run_mypy(files, stubs)


if __name__ == "__main__":
    sys.exit(main())
