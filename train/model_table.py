"""The model table: parameters, GFLOPs and inputs/outputs of every registered architecture.

``python -m saliq.train.model_table`` prints the markdown table that docs/models.md carries
(regenerate it there, never edit the numbers by hand); :func:`model_table` returns the rows.

Each architecture is measured in the configuration a user gets by default: its
``configs/<architecture>/default.yaml``, else a top-level ``configs/*default*.yaml`` naming
it, else its constructor defaults at 224 x 224. The shipped default model (the one
``saliq.load("default")`` opens) is measured from its own spec. GFLOPs are counted by
``torch.utils.flop_counter`` for one image (batch 1, eval mode): 2 FLOPs per multiply-add of
convolutions, matrix products and attention; element-wise ops, normalisation and pooling are
not counted (they are a few percent for these models). Many papers print multiply-adds and
call them FLOPs: halve ours to compare.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from saliq.errors import ConfigError

DEFAULT_HW = (224, 224)  # input size of an architecture measured with constructor defaults
SHIPPED = "shipped default"
FLOPS_NOTE = (
    "GFLOPs per image at the input size shown, batch 1 (torch.utils.flop_counter: 2 FLOPs per "
    "multiply-add of convolutions, matrix products and attention; element-wise ops not counted)"
)


@dataclass
class ModelRow:
    """One line of the table."""

    name: str  # the architecture (or "shipped default")
    architecture: str
    backbone: str
    source: str  # the config it was measured from, or why none
    input_hw: tuple[int, int]
    params: int
    trainable_params: int
    gflops: float
    inputs: dict[str, list[int]] = field(default_factory=dict)  # per-sample shapes
    outputs: dict[str, list[int]] = field(default_factory=dict)


def count_parameters(model) -> tuple[int, int]:
    """(all parameters, trainable parameters) of a module."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def example_inputs(spec, batch: int = 1, seed: int = 0) -> dict:
    """Random inputs in [0, 1) for every graph input of ``spec``, shaped as the spec says.

    Random, not zeros: a model that divides by a map's mean must not take a NaN path that a
    real frame never takes.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    return {
        name: torch.rand((batch, *spec.tensor_shape(name)), generator=gen) for name in spec.inputs
    }


def count_flops(model, inputs: Mapping) -> int:
    """FLOPs of one forward pass of ``model(inputs)`` (eval mode, no autograd)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(dict(inputs))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def measure(model, spec, name: str, source: str) -> ModelRow:
    """Parameters, GFLOPs (batch 1) and I/O shapes of a built model and its spec."""
    total, trainable = count_parameters(model)
    flops = count_flops(model, example_inputs(spec))
    return ModelRow(
        name=name,
        architecture=spec.architecture,
        backbone=spec.backbone,
        source=source,
        input_hw=(spec.input_height, spec.input_width),
        params=total,
        trainable_params=trainable,
        gflops=flops / 1e9,
        inputs={n: list(spec.tensor_shape(n)) for n in spec.inputs},
        outputs={n: list(spec.tensor_shape(n)) for n in spec.outputs},
    )


def build_from_config(config, name: str = "model"):
    """(model, spec) of a TrainConfig's architecture, random weights (nothing is downloaded)."""
    from .models import backbone_normalisation, create_model, model_spec
    from .models.contract import BACKBONE_WEIGHTS_KEY

    kwargs = {k: v for k, v in config.model.kwargs.items() if k != BACKBONE_WEIGHTS_KEY}
    model = create_model(
        config.model.architecture, backbone=config.model.backbone, pretrained=False, **kwargs
    )
    mean, std = backbone_normalisation(config.model.backbone)
    spec = model_spec(
        model,
        name=name,
        architecture=config.model.architecture,
        backbone=config.model.backbone,
        input_height=config.model.input_height,
        input_width=config.model.input_width,
        mean=mean,
        std=std,
        model_config={"backbone": config.model.backbone, **kwargs},
    )
    return model, spec


def default_configs(configs_dir: str | Path = "configs") -> dict[str, Path]:
    """architecture -> the config a user trains it with by default.

    ``<dir>/<family>/default.yaml`` first (sorted), then top-level ``<dir>/*default*.yaml``;
    the first file naming an architecture wins.
    """
    import yaml

    root = Path(configs_dir)
    candidates = sorted(root.glob("*/default.yaml")) + sorted(root.glob("*default*.yaml"))
    found: dict[str, Path] = {}
    for path in candidates:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        model = raw.get("model") if isinstance(raw, dict) else None
        arch = (model or {}).get("architecture", "sgdnet") if isinstance(model, dict) else None
        if arch and arch not in found:
            found[arch] = path
    return found


def _architecture_row(architecture: str, config_path: Path | None) -> ModelRow:
    from .config import load_config
    from .models import create_model, model_spec

    if config_path is not None:
        config = load_config(config_path)
        model, spec = build_from_config(config, name=architecture)
        return measure(model, spec, architecture, config_path.as_posix())
    # No config names it: its constructor defaults (the registry's builder takes **cfg only).
    model = create_model(architecture, pretrained=False)
    spec = model_spec(
        model,
        name=architecture,
        architecture=architecture,
        backbone="(constructor default)",
        input_height=DEFAULT_HW[0],
        input_width=DEFAULT_HW[1],
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        model_config={},
    )
    return measure(model, spec, architecture, "constructor defaults (no config names it)")


def shipped_row() -> ModelRow:
    """The model ``saliq.load("default")`` opens, measured from its own spec."""
    from saliq.assess import default_model_path
    from saliq.checkpoint import load_spec

    from .models import model_from_spec

    path = default_model_path("safetensors")
    spec = load_spec(path)
    model = model_from_spec(spec)  # weights do not change the counts
    return measure(model, spec, SHIPPED, f'saliq.load("default"): {path.name}')


def model_table(
    configs_dir: str | Path = "configs",
    architectures: Sequence[str] | None = None,
    include_shipped: bool = True,
) -> list[ModelRow]:
    """Rows for every registered architecture (or those named) plus the shipped default."""
    from .models import list_models

    registered = list_models()
    names = list(architectures) if architectures is not None else registered
    unknown = [n for n in names if n not in registered]
    if unknown:
        raise ConfigError(f"unknown architectures {unknown}; registered: {', '.join(registered)}")
    configs = default_configs(configs_dir)
    rows = [_architecture_row(name, configs.get(name)) for name in names]
    if include_shipped:
        rows.append(shipped_row())
    return rows


def _shapes(shapes: Mapping[str, Sequence[int]]) -> str:
    # a per-sample scalar (score) is shown by its name alone
    return ", ".join(
        f"{n} [{','.join(str(d) for d in s)}]" if len(s) else n for n, s in shapes.items()
    )


def format_number(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_markdown(rows: Sequence[ModelRow]) -> str:
    """The markdown table (plus the counting note) that docs/models.md carries."""
    lines = [
        "| model | backbone | input | params (M) | trainable (M) | GFLOPs | inputs | outputs "
        "| measured from |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.backbone} | {r.input_hw[0]}x{r.input_hw[1]} "
            f"| {r.params / 1e6:.2f} | {r.trainable_params / 1e6:.2f} | {format_number(r.gflops)} "
            f"| {_shapes(r.inputs)} | {_shapes(r.outputs)} | {r.source} |"
        )
    lines += ["", FLOPS_NOTE + "."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m saliq.train.model_table",
        description="Parameters, GFLOPs and inputs/outputs of every registered architecture.",
    )
    parser.add_argument("--configs-dir", default="configs")
    parser.add_argument("--architectures", nargs="*", default=None, help="default: all")
    parser.add_argument("--no-shipped", action="store_true", help="leave the shipped model out")
    parser.add_argument("--json", action="store_true", help="JSON instead of markdown")
    args = parser.parse_args(argv)
    try:
        rows = model_table(args.configs_dir, args.architectures, not args.no_shipped)
    except ConfigError as exc:
        print(f"saliq: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(format_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
