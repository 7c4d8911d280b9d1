"""The model contract every saliq architecture follows.

A model declares what it reads and what it produces, by name:

* ``inputs``: preprocessing outputs it reads (``image``, ``gradient``, ``prior``, ...);
* ``outputs``: what the exported graph returns (``score`` always; ``saliency`` or more);
* ``aux_outputs``: training-only tensors (features for a consistency loss, logits for a
  cross-entropy, per-layer tokens, extra maps) that losses may read and export drops.

``forward(inputs: dict) -> dict`` takes the inputs by name and returns every output and
auxiliary by name. The ModelSpec is built from these declarations (:func:`model_spec`), and
the trainer, checkpoints, exporters, backends and ``Assessor`` iterate over the spec, so no
code outside the architecture's own file names its tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from saliq.spec import GRAPH_OUTPUTS, SALIENCY, SCORE, ModelSpec

BACKBONE_WEIGHTS_KEY = "backbone_weights"  # architectures' keyword for a starting-weights file


class IQAModel(nn.Module):
    """Base class: subclasses set the three name tuples (per instance when configurable)."""

    inputs: tuple[str, ...] = ("image",)
    outputs: tuple[str, ...] = (SCORE,)
    aux_outputs: tuple[str, ...] = ()
    saliency_stride: int | None = None  # input pixels per saliency-map cell, when exported
    preprocessing_version: int = 1  # which definition produces its inputs (docs/preprocessing.md)
    view_config: dict = {}  # noqa: RUF012  (version 2's crop-view parameters; read-only)

    def extra_output_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        """Per-sample shapes of exported outputs other than score and saliency."""
        return {}

    def check_contract(self) -> None:
        """Refuse declarations the pipeline cannot honour (raised at build time, not export)."""
        if SCORE not in self.outputs:
            raise TypeError(f"{type(self).__name__}: outputs must include {SCORE!r}")
        if SALIENCY in self.outputs and not self.saliency_stride:
            raise TypeError(f"{type(self).__name__}: a saliency output needs saliency_stride")
        clash = set(self.outputs) & set(self.aux_outputs)
        if clash:
            raise TypeError(f"{type(self).__name__}: {sorted(clash)} both output and auxiliary")


class GraphModule(nn.Module):
    """Positional adapter for tracing/export: tensors in spec input order -> spec outputs.

    ``torch.onnx.export`` passes positional tensors and names graph tensors by position; this
    maps them onto the named contract and drops the training-only auxiliaries.
    """

    def __init__(self, model: nn.Module, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = tuple(inputs)
        self.output_names = tuple(outputs)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(dict(zip(self.input_names, tensors)))
        return tuple(out[name] for name in self.output_names)


def model_spec(
    model: IQAModel,
    *,
    name: str,
    architecture: str,
    backbone: str,
    input_height: int,
    input_width: int,
    mean: Sequence[float],
    std: Sequence[float],
    model_config: dict,
    version: str = "0.1.0",
) -> ModelSpec:
    """The ModelSpec of a built model: its inputs/outputs come from the model itself."""
    model.check_contract()
    extra = model.extra_output_shapes(input_height, input_width)
    undeclared = [o for o in model.outputs if o not in GRAPH_OUTPUTS and o not in extra]
    if undeclared:
        raise TypeError(f"{type(model).__name__}: outputs {undeclared} lack extra_output_shapes")
    return ModelSpec(
        name=name,
        architecture=architecture,
        backbone=backbone,
        input_height=input_height,
        input_width=input_width,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        inputs=tuple(model.inputs),
        outputs=tuple(model.outputs),
        saliency_stride=int(model.saliency_stride or 16),
        model_config=dict(model_config),
        output_shapes={k: list(v) for k, v in extra.items()},
        preprocessing_version=model.preprocessing_version,
        view_config=dict(model.view_config),
        defect_classes=tuple(getattr(model, "defect_classes", ())),
        version=version,
    )


def respec(model: IQAModel, spec: ModelSpec, model_config: dict) -> ModelSpec:
    """The spec of ``model``, rebuilt from ``model_config``, keeping ``spec``'s identity (name,
    backbone, input size, normalisation, version): for checkpoints whose architecture options
    change after training (another grid size, an added defect head)."""
    return model_spec(
        model,
        name=spec.name,
        architecture=spec.architecture,
        backbone=spec.backbone,
        input_height=spec.input_height,
        input_width=spec.input_width,
        mean=spec.mean,
        std=spec.std,
        model_config=model_config,
        version=spec.version,
    )


def model_from_spec(spec: ModelSpec, weights_path: str | Path | None = None) -> nn.Module:
    """Rebuild the architecture a spec names; load a checkpoint's weights strictly (eval mode).

    Used by the torch backend and the exporters: only architecture code, no training code.
    """
    from saliq.checkpoint import OPTIM_PREFIX
    from saliq.errors import ModelFormatError

    from .registry import create_model

    config = {**spec.model_config}
    # The checkpoint's weights replace any starting weights: never fetch ImageNet weights or
    # open the backbone file named at training time (it may not exist on this machine).
    config["pretrained"] = False
    config.pop(BACKBONE_WEIGHTS_KEY, None)
    model = create_model(spec.architecture, **config)
    if weights_path is not None:
        from safetensors.torch import load_file

        tensors = load_file(str(weights_path))
        weights = {k: v.float() for k, v in tensors.items() if not k.startswith(OPTIM_PREFIX)}
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ModelFormatError(
                f"{weights_path}: weights do not fit {spec.architecture} (missing "
                f"{missing[:3]}, unexpected {unexpected[:3]}); the checkpoint is from another "
                "model version"
            )
    declared = (tuple(getattr(model, "inputs", ())), tuple(getattr(model, "outputs", ())))
    if declared != (spec.inputs, spec.outputs):
        raise ModelFormatError(
            f"{weights_path or spec.name}: the {spec.architecture} model built from its spec "
            f"reads {declared[0]} and returns {declared[1]}, but the spec says {spec.inputs} -> "
            f"{spec.outputs}; re-export it with this saliq"
        )
    return model.eval()
