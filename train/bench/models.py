"""Which files one ``saliq bench`` run benchmarks: MODEL resolved to :class:`ModelArtifacts`.

MODEL is ``default`` (the shipped model), a registered architecture name (random weights,
seed 0: its default config, or constructor defaults; ``--model-config``/``--input-size``
shrink it), a ``.safetensors`` checkpoint, an ``.onnx`` file or a TensorRT ``.engine``/
``.plan``. Files beside MODEL with the same name and another suffix are used too; a
checkpoint without an ONNX beside it is exported for the run (into a temporary folder).

torch and ``saliq.train`` are imported only here, and only when a checkpoint or an
architecture is benchmarked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saliq.bench.machine import onnxruntime_providers
from saliq.errors import BackendUnavailableError, ConfigError, SaliqError
from saliq.spec import ModelSpec

from .settings import BenchSettings

MODEL_SUFFIXES = (".safetensors", ".onnx", ".engine", ".plan")
TORCH_INSTALL = "pip install torch==2.13.0 'saliq[train]'"


@dataclass
class ModelArtifacts:
    """The files (or in-memory model) one benchmark runs."""

    kind: str  # default | architecture | checkpoint | onnx | engine
    source: str
    spec: ModelSpec
    checkpoint: Path | None = None
    onnx: Path | None = None
    engines: list[Path] = field(default_factory=list)
    trained: bool | None = None
    module: Any = None  # the torch model (architecture names; checkpoints load lazily)
    notes: list[str] = field(default_factory=list)


def is_file_argument(model: str) -> bool:
    """Whether MODEL names a file (by its suffix, or because it exists) rather than a name."""
    return Path(model).suffix.lower() in MODEL_SUFFIXES or Path(model).is_file()


def resolve_model(settings: BenchSettings, workdir: Path) -> ModelArtifacts:
    """The artifacts of ``settings.model``; exports what is missing into ``workdir``."""
    name = settings.model
    if name == "default":
        artifacts = _default_model()
    elif is_file_argument(name):
        artifacts = _model_file(Path(name))
    else:
        artifacts = _architecture(settings, workdir)
    if settings.reference:
        _attach_reference(artifacts, Path(settings.reference))
    for engine in settings.engines:
        artifacts.engines.append(Path(engine))
    _check_companions(artifacts, name)
    if artifacts.checkpoint is not None and artifacts.trained is None:
        artifacts.trained = _checkpoint_trained(artifacts.checkpoint)
    if artifacts.checkpoint is not None and artifacts.onnx is None:
        if _onnx_wanted(settings):
            artifacts.onnx = _export_onnx(artifacts, workdir)
        else:
            artifacts.notes.append(
                "no ONNX Runtime rows: onnxruntime is not installed, or has no CUDA provider "
                "for --device cuda (pip install 'saliq[cpu]', or onnxruntime-gpu)"
            )
    return artifacts


def torch_module(artifacts: ModelArtifacts) -> Any:
    """The PyTorch model (loaded from the checkpoint once), or None without torch."""
    if artifacts.module is not None or artifacts.checkpoint is None:
        return artifacts.module
    try:
        import torch  # noqa: F401
    except ImportError:
        artifacts.notes.append(
            f"no PyTorch rows: torch is not installed ({TORCH_INSTALL}); "
            "reference: ONNX Runtime CPU"
        )
        return None
    from saliq.train.models.contract import model_from_spec

    artifacts.module = model_from_spec(artifacts.spec, weights_path=artifacts.checkpoint)
    return artifacts.module


# --- the kinds of MODEL ------------------------------------------------------------------------


def _default_model() -> ModelArtifacts:
    from saliq.assess import default_model_path

    checkpoint = default_model_path("safetensors")
    return ModelArtifacts(
        "default",
        'saliq.load("default")',
        _spec_of(checkpoint),
        checkpoint=checkpoint,
        onnx=default_model_path("onnx"),
        trained=_checkpoint_trained(checkpoint),
    )


def _model_file(path: Path) -> ModelArtifacts:
    """A checkpoint, ONNX file or engine, with the files beside it of the other kinds."""
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such model file; pass default, an architecture name, "
            "or an existing .safetensors, .onnx or .engine file"
        )
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ConfigError(
            f"{path}: unknown model file type {suffix!r}; pass a .safetensors "
            "checkpoint, an .onnx file or a TensorRT .engine/.plan"
        )
    kind = {".safetensors": "checkpoint", ".onnx": "onnx"}.get(suffix, "engine")
    artifacts = ModelArtifacts(kind, str(path), _spec_of(path))
    if kind == "checkpoint":
        artifacts.checkpoint = path
        artifacts.onnx = _sibling(path, ".onnx")
    elif kind == "onnx":
        artifacts.onnx = path
        artifacts.checkpoint = _sibling(path, ".safetensors")
    else:
        artifacts.engines.append(path)
        artifacts.onnx = _sibling(path, ".onnx")
        artifacts.checkpoint = _sibling(path, ".safetensors")
    return artifacts


def _architecture(settings: BenchSettings, workdir: Path) -> ModelArtifacts:
    """A registered architecture with random weights (seed 0), saved as a checkpoint."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            f"benchmarking the architecture {settings.model!r} builds it in PyTorch: "
            f"{TORCH_INSTALL}"
        ) from None
    from saliq.train.checkpoint import save_checkpoint
    from saliq.train.models import backbone_normalisation, create_model, list_models, model_spec

    name = settings.model
    if name not in list_models():
        raise ConfigError(
            f"unknown model {name!r}: pass default, a registered architecture "
            f"({', '.join(list_models())}), or a .safetensors, .onnx or .engine file"
        )
    torch.manual_seed(0)
    config_path = _config_for(name, settings)
    if config_path is not None:
        from saliq.train.config import load_config
        from saliq.train.model_table import build_from_config

        config = load_config(config_path)
        if config.model.architecture != name:
            raise ConfigError(
                f"{config_path} trains {config.model.architecture!r}, not {name!r}; "
                "pass a config of that architecture with --config"
            )
        config.model.kwargs.update(settings.model_config)
        if settings.input_size:
            config.model.input_height, config.model.input_width = settings.input_size
        model, spec = build_from_config(config, name=f"{name}-random-init")
        source = f"{name}, random weights (seed 0), {config_path}"
    else:
        kwargs = dict(settings.model_config)
        model = create_model(name, pretrained=False, **kwargs)
        backbone = kwargs.get("backbone")
        mean, std = backbone_normalisation(backbone) if backbone else ((0.5,) * 3, (0.5,) * 3)
        height, width = settings.input_size or (224, 224)
        spec = model_spec(
            model,
            name=f"{name}-random-init",
            architecture=name,
            backbone=str(backbone or "(constructor default)"),
            input_height=height,
            input_width=width,
            mean=mean,
            std=std,
            model_config=kwargs,
        )
        source = f"{name}, random weights (seed 0), constructor defaults"
    if settings.model_config:
        source += f" + {json.dumps(settings.model_config, sort_keys=True)}"
    model = model.eval()
    checkpoint = save_checkpoint(workdir / f"{name}.safetensors", model, spec, {})
    return ModelArtifacts(
        "architecture", source, spec, checkpoint=checkpoint, trained=False, module=model
    )


def _config_for(name: str, settings: BenchSettings) -> Path | None:
    if settings.config:
        path = Path(settings.config)
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
        return path
    if not Path(settings.configs_dir).is_dir():
        return None
    from saliq.train.model_table import default_configs

    return default_configs(settings.configs_dir).get(name)


# --- the companion files -----------------------------------------------------------------------


def _sibling(path: Path, suffix: str) -> Path | None:
    candidate = path.with_suffix(suffix)
    return candidate if candidate.is_file() else None


def _attach_reference(artifacts: ModelArtifacts, path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"--reference {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        artifacts.checkpoint = path
        artifacts.trained = None  # read from this checkpoint
    elif suffix == ".onnx":
        artifacts.onnx = path
    else:
        raise ConfigError(f"--reference {path}: pass a .safetensors checkpoint or an .onnx file")


def _check_companions(artifacts: ModelArtifacts, name: str) -> None:
    """Refuse a checkpoint or ONNX file (beside MODEL or --reference) of another model."""
    for other in (artifacts.checkpoint, artifacts.onnx):
        if other is None or other == Path(name):
            continue
        try:
            other_spec = _spec_of(other)
        except BackendUnavailableError:  # no onnxruntime to read the ONNX: its rows skip
            continue
        if not _same_model(artifacts.spec, other_spec):
            raise ConfigError(
                f"{other} is not the same model as {name} (architecture, inputs, "
                "outputs or input size differ); pass the matching file with "
                "--reference"
            )


def _spec_of(path: Path) -> ModelSpec:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from saliq.checkpoint import load_spec

        return load_spec(path)
    if suffix == ".onnx":
        from saliq.backends.onnxruntime import read_onnx_spec

        return read_onnx_spec(path)
    from saliq.engine_sidecar import read_sidecar

    return read_sidecar(path).spec


def _same_model(a: ModelSpec, b: ModelSpec) -> bool:
    return (a.architecture, a.inputs, a.outputs, a.input_height, a.input_width) == (
        b.architecture,
        b.inputs,
        b.outputs,
        b.input_height,
        b.input_width,
    )


def _checkpoint_trained(path: Path) -> bool:
    """A checkpoint written by ``saliq train`` carries its metrics; random weights none."""
    from saliq.checkpoint import read_checkpoint_info

    return bool(read_checkpoint_info(path).metrics)


def _onnx_wanted(settings: BenchSettings) -> bool:
    """Whether an ONNX Runtime backend would run: else exporting one is wasted time."""
    providers = set(onnxruntime_providers())
    if settings.device == "cuda":
        return bool(providers & {"CUDAExecutionProvider", "TensorrtExecutionProvider"})
    return bool(providers)


def _export_onnx(artifacts: ModelArtifacts, workdir: Path) -> Path | None:
    """ONNX for a checkpoint without one beside it (verified by the exporter); None, with a
    note, where the exporter cannot run here."""
    assert artifacts.checkpoint is not None
    try:
        from saliq.export.onnx import export_onnx

        report = export_onnx(
            artifacts.checkpoint, workdir / f"{artifacts.checkpoint.stem}.onnx", verify_images=4
        )
    except ImportError as exc:
        artifacts.notes.append(
            f"no ONNX Runtime rows: exporting the checkpoint needs {exc.name or 'onnx'} "
            "(pip install 'saliq[export]')"
        )
        return None
    except SaliqError as exc:
        artifacts.notes.append(f"no ONNX Runtime rows: the ONNX export failed: {exc}")
        return None
    artifacts.notes.append(
        f"ONNX exported from the checkpoint for this run (opset {report.opset}; the exporter's "
        f"own check: max |score diff| {report.max_score_diff:.1e})"
    )
    return Path(report.path)


__all__ = [
    "MODEL_SUFFIXES",
    "ModelArtifacts",
    "is_file_argument",
    "resolve_model",
    "torch_module",
]
