"""``saliq --version``, and ``default`` as the model argument of every export command."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import saliq
from saliq import cli
from saliq.assess import default_model_path

from .conftest import require

# ---------------------------------------------------------------- --version


def test_version_prints_one_line_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "saliq.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"saliq {importlib.metadata.version('saliq')}\n"
    assert done.stderr == ""


def test_version_in_process_and_without_distribution_metadata(capsys, monkeypatch) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"saliq {cli.version()}\n"

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    # A source tree on sys.path, never pip-installed: the package's own __version__.
    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert cli.version() == saliq.__version__


# ---------------------------------------------------------------- export ... default


def test_resolver_leaves_other_models_alone() -> None:
    assert cli.resolve_export_model("m.safetensors", None, "safetensors", ".onnx") == (
        "m.safetensors",
        None,
    )
    assert cli.resolve_export_model("m.onnx", "x.engine", "onnx", ".engine") == (
        "m.onnx",
        "x.engine",
    )


def test_every_export_command_takes_default(monkeypatch, tmp_path, capsys) -> None:
    """Stand-in exporters record what they were given: the shipped model's files, and an
    output in the working folder, never beside the model (inside the installed package)."""
    import saliq.engine_sidecar
    import saliq.export.onnx
    import saliq.export.tensorrt
    import saliq.export.triton

    calls: dict[str, tuple] = {}

    def export_onnx(checkpoint, output=None, opset=17):
        calls["onnx"] = (checkpoint, output)
        return SimpleNamespace(
            path=output, opset=opset, images=8, max_score_diff=0.0, max_saliency_diff=0.0, lint=None
        )

    def build_engine(model, output=None, **kwargs):
        calls["trt"] = (model, output)
        return Path(output)

    def export_triton(model, repository, **kwargs):
        calls["triton"] = (model, repository)
        return Path(repository) / "m"

    sidecar = SimpleNamespace(
        extra={}, tensorrt_version="10.3", precision="fp16", compute_capability="8.7"
    )
    monkeypatch.setattr(saliq.export.onnx, "export_onnx", export_onnx)
    monkeypatch.setattr(saliq.export.tensorrt, "build_engine", build_engine)
    monkeypatch.setattr(saliq.engine_sidecar, "read_sidecar", lambda path: sidecar)
    monkeypatch.setattr(saliq.export.triton, "export_triton", export_triton)
    monkeypatch.chdir(tmp_path)
    stem = default_model_path("onnx").stem

    assert cli.main(["export", "onnx", "default"]) == 0
    assert calls["onnx"] == (str(default_model_path("safetensors")), f"{stem}.onnx")
    assert cli.main(["export", "onnx", "default", "-o", "x.onnx"]) == 0
    assert calls["onnx"][1] == "x.onnx"
    # TensorRT and Triton read ONNX: the shipped export of the same weights (no torch needed).
    assert cli.main(["export", "trt", "default"]) == 0
    assert calls["trt"] == (str(default_model_path("onnx")), f"{stem}.engine")
    assert cli.main(["export", "triton", "default", "repo", "--cpu"]) == 0
    assert calls["triton"] == (str(default_model_path("onnx")), "repo")


def test_export_triton_default_writes_a_repository(tmp_path) -> None:
    require("onnx", "Triton export reads the model's spec with onnx")
    assert cli.main(["export", "triton", "default", str(tmp_path / "repo"), "--cpu"]) == 0
    models = list((tmp_path / "repo").glob("*/1/model.onnx"))
    assert len(models) == 1
    assert models[0].stat().st_size == default_model_path("onnx").stat().st_size


@pytest.mark.slow
def test_export_onnx_default(tmp_path, capsys) -> None:
    """The real export of the shipped checkpoint (about 10 s on a laptop CPU)."""
    require("torch", "exporting a .safetensors checkpoint needs torch")
    require("onnx", "saliq export onnx writes ONNX with the onnx package")
    require("onnxruntime", "the exported model is opened with onnxruntime")
    target = tmp_path / "x.onnx"
    assert cli.main(["export", "onnx", "default", "-o", str(target)]) == 0
    assert f"wrote {target}" in capsys.readouterr().out
    with saliq.load(target) as exported, saliq.load("default") as shipped:
        assert exported.spec == shipped.spec
