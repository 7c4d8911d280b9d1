"""The runtime stands alone: it imports no training code, no exporter and no torch, and it
installs and runs from a wheel with only what its extras declare.

(a) In this environment: importing every runtime module, building the CLI parser for a
    runtime command, and scoring an image through ONNX Runtime import neither torch nor
    ``saliq.train`` nor ``saliq.export``.
(b) A fresh virtual environment holding the saliq wheel and numpy + safetensors alone (the
    install requirements; no extras) imports every runtime module, and ``saliq --help`` /
    ``saliq doctor`` work there.
(c) The same environment plus the ``export`` extra's packages (onnx) and onnxruntime + OpenCV,
    still without torch: ``saliq export trt model.onnx`` runs through the builder to a
    verified engine on the TensorRT stand-in (tests/fake_runtimes.py).
(d) SIGTERM while a command writes leaves no hidden temporary file.

Nothing is downloaded: the wheel is built from this checkout once per session, and the
dependencies are links to the packages of the running environment (their files, not its
site-packages, so nothing else leaks in).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from .conftest import require

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
FORBIDDEN = ("torch", "saliq.train", "saliq.export", "skimage", "sklearn", "tensorrt")
# `saliq export trt` is an exporter (and its TensorRT is a stand-in here), but it needs no
# torch, no training code and no sample-photo packages.
EXPORT_FORBIDDEN = ("torch", "saliq.train", "skimage", "sklearn", "matplotlib")


def runtime_modules() -> list[str]:
    """Every module of the runtime package (sdk/ -> saliq), from the source tree or, where
    the tests run without it, from the installed package."""
    import saliq

    root = REPO / "sdk" if (REPO / "sdk" / "__init__.py").is_file() else Path(saliq.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] in ("train", "export"):  # an installed package nests these inside
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(("saliq", *parts)))
    return names


def _run_python(python: str | Path, code: str, env: dict | None = None, timeout: int = 300):
    done = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(HERE.parent.parent),  # outside the checkout: no accidental imports from it
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _last_json(stdout: str):
    """The JSON report a driver prints last (after whatever the code under test printed)."""
    return json.loads(stdout.strip().splitlines()[-1])


CHECK_IMPORTS = """
import importlib, json, sys
names = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {names!r}
for name in names:
    importlib.import_module(name)
{extra}
loaded = [m for m in {forbidden!r} if m in sys.modules]
print(json.dumps({{"forbidden": loaded, "count": len(names)}}))
"""


def _check_imports_code(extra: str = "") -> str:
    return CHECK_IMPORTS.format(names=runtime_modules(), extra=extra, forbidden=FORBIDDEN)


# --- (a) this environment ------------------------------------------------------------------


def test_runtime_modules_import_no_training_exporter_or_torch():
    parser = textwrap.dedent(
        """
        from saliq.cli import build_parser
        for argv in (["score", "x.jpg"], ["doctor"], ["--help"]):
            try:
                build_parser(argv).parse_args(argv)
            except SystemExit:
                pass
        """
    )
    names = runtime_modules()
    assert {"saliq", "saliq.cli", "saliq.frames", "saliq.bench.runners"} <= set(names)
    assert any(n.startswith("saliq.backends.") for n in names)
    report = _last_json(_run_python(sys.executable, _check_imports_code(parser)))
    assert report["forbidden"] == [] and report["count"] == len(names)


def test_scoring_through_onnxruntime_imports_no_training_exporter_or_torch():
    score = textwrap.dedent(
        """
        import saliq
        from saliq.frames import parity_frames
        assessor = saliq.load("default", backend="onnxruntime")
        results = assessor.assess(parity_frames(2, (96, 128)), color="RGB")
        assert all(0.0 <= r.score <= 1.0 for r in results), results
        """
    )
    code = score + f"\nimport sys\nprint([m for m in {FORBIDDEN!r} if m in sys.modules])"
    assert _run_python(sys.executable, code).strip() == "[]"


# --- a fresh environment from a wheel -------------------------------------------------------


def _dist_closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` need (their requirements, recursively)."""
    packaging = require("packaging.requirements", reason="packaging evaluates requirements")
    seen: dict[str, metadata.Distribution] = {}
    stack = list(names)
    while stack:
        name = stack.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed here, so the fresh environment cannot have it")
        seen[name] = dist
        for text in dist.requires or []:
            req = packaging.Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    return list(seen.values())


def _link_distributions(names: list[str], folder: Path) -> Path:
    """A folder of links to exactly these distributions' files (for PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    for dist in _dist_closure(names):
        tops = {Path(f).parts[0] for f in dist.files or [] if Path(f).parts[0] != ".."}
        for top in tops - {"__pycache__"}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source, target_is_directory=source.is_dir())
    return folder


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory):
    """A venv with the saliq wheel built from this checkout, and no dependency installed."""
    if not (REPO / "setup.py").is_file() or not (REPO / "csrc").is_dir():
        pytest.skip("the source tree (setup.py, csrc/) is not beside the tests")
    require("pybind11", reason="pybind11 is needed to build the wheel")
    require("setuptools", reason="setuptools is needed to build the wheel")
    root = tmp_path_factory.mktemp("standalone")
    source = root / "src"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc", "build", "*.egg-info")
    for folder in ("sdk", "train", "export", "csrc"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    env = {**os.environ, "SALIQ_CUDA": "0"}  # CPU build: the wheel's packaging is the point
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", root, source],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(root.glob("saliq-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", python, "install", "--no-deps", "--no-index", wheel],
        check=True,
        timeout=300,
    )
    base = _link_distributions(["numpy", "safetensors"], root / "deps-base")
    export = _link_distributions(
        ["onnx", "onnxruntime", "opencv-python-headless"], root / "deps-export"
    )
    stand_ins = root / "stand-ins"
    stand_ins.mkdir()
    shutil.copy2(HERE / "fake_runtimes.py", stand_ins / "fake_runtimes.py")
    return {
        "python": python,
        "bin": venv / "bin",
        "base": base,
        "export": export,
        "stand_ins": stand_ins,
    }


def _env(venv, *paths: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    env["PATH"] = os.pathsep.join([str(venv["bin"]), env.get("PATH", "")])
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.mark.slow
def test_fresh_wheel_without_extras_imports_every_runtime_module(fresh_venv, tmp_path):
    import cv2
    import numpy as np

    photo = tmp_path / "frame.png"
    cv2.imwrite(str(photo), np.full((32, 32, 3), 128, np.uint8))
    env = _env(fresh_venv, fresh_venv["base"])
    absent = textwrap.dedent(
        """
        import importlib.util
        present = [m for m in ("cv2", "onnxruntime", "onnx", "torch", "yaml")
                   if importlib.util.find_spec(m) is not None]
        assert not present, f"not a bare environment: {present}"
        import saliq
        assert "site-packages" in saliq.__file__, saliq.__file__  # the wheel, not the checkout
        """
    )
    report = _last_json(_run_python(fresh_venv["python"], _check_imports_code(absent), env=env))
    assert report["forbidden"] == [] and report["count"] == len(runtime_modules())

    helped = subprocess.run(["saliq", "--help"], env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and "convert-weights" in helped.stdout, helped.stderr
    doctor = subprocess.run(["saliq", "doctor", "--json"], env=env, capture_output=True, text=True)
    assert doctor.returncode == 0, doctor.stderr
    rows = {row["check"]: row for row in json.loads(doctor.stdout)}
    assert rows["onnxruntime"]["status"] == "no" and "saliq[cpu]" in rows["onnxruntime"]["detail"]
    assert rows["onnx"]["status"] == "no" and "saliq[export]" in rows["onnx"]["detail"]
    # Scoring needs the cpu extra: a one-line error that says so, not a traceback.
    scored = subprocess.run(["saliq", "score", str(photo)], env=env, capture_output=True, text=True)
    assert scored.returncode == 2 and "Traceback" not in scored.stderr
    assert "saliq[cpu]" in scored.stderr and scored.stderr.count("\n") == 1, scored.stderr
    # So does exporting without the export extra (and without torch).
    exported = subprocess.run(
        ["saliq", "export", "onnx", str(tmp_path / "m.safetensors")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert exported.returncode == 2 and exported.stderr.count("\n") == 1, exported.stderr
    assert "'onnx' package" in exported.stderr and "saliq[export]" in exported.stderr


# The TensorRT builder API saliq's exporter calls, added to the runtime stand-in of
# tests/fake_runtimes.py; the plan it "builds" is the one that stand-in deserialises.
EXPORT_TRT_DRIVER = """
import json, sys, types
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

import fake_runtimes as fakes
from saliq import cuda_memory
from saliq.spec import METADATA_KEY, ModelSpec

work = Path(sys.argv[1])
spec = ModelSpec(
    name="tiny", architecture="test", backbone="none", input_height=32, input_width=32
)
fakes.tiny_onnx(work / "tiny.onnx", spec)

cuda = fakes.HostGraphCudaImpl()
api = cuda_memory.CudaApi(cuda)
cuda_memory.cuda_api = lambda prefer=None: api
trt = fakes.fake_tensorrt(batch=(1, 4, 8), cuda=cuda)
built = []

class Enum:
    def __init__(self, **members):
        self.__dict__.update(members)

class Config:
    def set_memory_pool_limit(self, pool, size): pass
    def set_flag(self, flag): built.append(("flag", flag))
    def add_optimization_profile(self, profile): built.append(("profile", profile.shapes))
    def create_timing_cache(self, data): return types.SimpleNamespace(serialize=lambda: b"")
    def set_timing_cache(self, cache, ignore_mismatch): return True
    def get_timing_cache(self): return types.SimpleNamespace(serialize=lambda: b"")

class Profile:
    def __init__(self): self.shapes = {}
    def set_shape(self, name, low, opt, high): self.shapes[name] = [low, opt, high]

class Network:
    num_inputs = 1
    def get_input(self, index): return types.SimpleNamespace(name="image")

class Builder:
    def __init__(self, logger): pass
    def create_network(self, flags): return Network()
    def create_builder_config(self): return Config()
    def create_optimization_profile(self): return Profile()
    def build_serialized_network(self, network, config):
        built.append(("built",))
        return fakes.PLAN

class OnnxParser:
    num_errors = 0
    def __init__(self, network, logger): pass
    def parse_from_file(self, path): return True

trt.Builder, trt.OnnxParser, trt.Dims = Builder, OnnxParser, list
trt.NetworkDefinitionCreationFlag = Enum(STRONGLY_TYPED=1)
trt.BuilderFlag = Enum(FP16="FP16", VERSION_COMPATIBLE="VERSION_COMPATIBLE")
trt.MemoryPoolType = Enum(WORKSPACE="WORKSPACE")
trt.HardwareCompatibilityLevel = Enum(AMPERE_PLUS="AMPERE_PLUS")
sys.modules["tensorrt"] = trt

from saliq.cli import main

engine = work / "tiny.engine"
rc = main(["export", "trt", str(work / "tiny.onnx"), "-o", str(engine),
           "--min-batch", "1", "--opt-batch", "4", "--max-batch", "8"])
forbidden = [m for m in %(forbidden)r if m in sys.modules]
print(json.dumps({"rc": rc, "built": built, "forbidden": forbidden,
                  "files": sorted(p.name for p in work.iterdir())}))
"""


@pytest.mark.slow
def test_export_trt_runs_without_torch_or_training_code(fresh_venv, tmp_path):
    env = _env(fresh_venv, fresh_venv["base"], fresh_venv["export"], fresh_venv["stand_ins"])
    probe = "import importlib.util as u; print(u.find_spec('torch') is None)"
    assert _run_python(fresh_venv["python"], probe, env=env).strip() == "True"
    code = EXPORT_TRT_DRIVER % {"forbidden": EXPORT_FORBIDDEN}
    done = subprocess.run(
        [str(fresh_venv["python"]), "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = _last_json(done.stdout)
    assert report["rc"] == 0, done.stderr
    assert report["forbidden"] == []
    assert ["built"] in report["built"] and ["flag", "FP16"] in report["built"]
    profile = next(entry[1] for entry in report["built"] if entry[0] == "profile")
    assert profile == {"image": [[1, 3, 32, 32], [4, 3, 32, 32], [8, 3, 32, 32]]}
    assert report["files"] == ["tiny.engine", "tiny.engine.json", "tiny.onnx"]
    sidecar = json.loads((tmp_path / "tiny.engine.json").read_text())
    assert sidecar["extra"]["parity"]["passed"] and sidecar["extra"]["parity"]["images"] == 64
    assert sidecar["extra"]["latency"]["batch"] == 4
    assert "wrote" in done.stdout and "parity vs ONNX Runtime" in done.stdout


# --- (d) SIGTERM while writing --------------------------------------------------------------

# Runs the real CLI; the export itself is replaced by one that opens its output through
# atomic_path, says so, and then takes far longer than the test waits.
SIGTERM_DRIVER = """
import sys, time
import saliq.export.onnx as exporter
from saliq.atomic import atomic_path

def slow_export(checkpoint, output=None, opset=17, **kwargs):
    with atomic_path(output) as tmp:
        tmp.write_bytes(b"half an ONNX file")
        print("writing", flush=True)
        time.sleep(60)
    raise AssertionError("not reached: SIGTERM arrives first")

exporter.export_onnx = slow_export
from saliq.cli import main
sys.exit(main(["export", "onnx", "model.safetensors", "-o", sys.argv[1]]))
"""


def test_sigterm_while_writing_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "model.onnx"
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_DRIVER, str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        temps = list(tmp_path.glob(".model.onnx.*.tmp"))
        assert len(temps) == 1 and temps[0].read_bytes() == b"half an ONNX file"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "terminated" in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # neither the temporary file nor a partial target


def test_sigterm_handler_is_restored_after_main(tmp_path):
    from saliq import cli

    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["score", str(tmp_path / "absent.jpg")]) == cli.EXIT_ERROR
    assert signal.getsignal(signal.SIGTERM) == before


# --- the CLI's lazily registered commands -----------------------------------------------------


def test_train_device_and_precision_flags_override_the_config():
    from saliq.cli import build_parser, train_overrides

    argv = ["train", "--config", "c.yaml", "--set", "device=cpu", "--set", "optim.lr=0.1"]
    args = build_parser(argv + ["--device", "cuda", "--precision", "bf16"]).parse_args(
        argv + ["--device", "cuda", "--precision", "bf16"]
    )
    assert train_overrides(args) == {"device": "cuda", "optim.lr": 0.1, "precision": "bf16"}
    plain = build_parser(argv).parse_args(argv)
    assert train_overrides(plain) == {"device": "cpu", "optim.lr": 0.1}  # flags absent: config
    with pytest.raises(SystemExit):
        build_parser(["train"]).parse_args(["train", "--config", "c.yaml", "--device", "tpu"])


def test_convert_weights_is_registered_and_calls_convert_pth(monkeypatch, capsys, tmp_path):
    convert = pytest.importorskip("saliq.train.convert_weights")
    from saliq.cli import main

    calls = []

    def fake_convert(src, dst, backbone=None):
        calls.append((src, dst, backbone))
        return tmp_path / "out.safetensors"

    monkeypatch.setattr(convert, "convert_pth", fake_convert)
    assert main(["convert-weights", "in.pth", "out.safetensors", "--backbone", "resnet50"]) == 0
    assert calls == [("in.pth", "out.safetensors", "resnet50")]
    assert "wrote" in capsys.readouterr().out


def test_help_lists_every_command_without_importing_them():
    code = textwrap.dedent(
        """
        import sys
        from saliq.cli import COMMANDS, main
        try:
            main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0
        loaded = [m for m in ("saliq.train", "saliq.export", "saliq.doctor") if m in sys.modules]
        print(sorted(COMMANDS), loaded)
        """
    )
    *help_lines, report = _run_python(sys.executable, code).strip().splitlines()
    help_text = "\n".join(help_lines)
    for name in ("score", "train", "export", "evaluate", "convert-weights", "doctor"):
        assert f"    {name}" in help_text, help_text
    assert report.endswith("[]"), report  # no command module was imported to list them
