"""ModelSpec: the one description of a model that every artifact carries.

It is serialised as JSON into the checkpoint's safetensors metadata, the ONNX
``metadata_props`` and (later) the TensorRT engine's sidecar. The SDK reads everything it
needs about a model from here; nothing about a model is hard-coded twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from .errors import IncompatibleModelError, ModelFormatError
from .preprocess import PREPROCESSING_VERSION, SUPPORTED_PREPROCESSING_VERSIONS

SPEC_FORMAT = "saliq.modelspec"
SPEC_VERSION = 1
METADATA_KEY = "saliq_spec"  # key under which the JSON lives in safetensors / ONNX metadata
GRAPH_INPUTS = ("image", "gradient", "prior")
GRAPH_OUTPUTS = ("score", "saliency")
SIZE_MULTIPLE = 32


def load_tagged_json(text: str | bytes, fmt: str, source: str, invalid: str, foreign: str) -> dict:
    """Parse a saliq JSON document whose "format" field must be ``fmt``.

    ``invalid`` (may use ``{exc}``) and ``foreign`` complete the one-line error messages.
    """
    try:
        payload = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ModelFormatError(f"{source}: {invalid.format(exc=exc)}") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ModelFormatError(f"{source}: {foreign}")
    return payload


@dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: str
    backbone: str
    input_height: int
    input_width: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    color_order: str = "RGB"
    inputs: tuple[str, ...] = ("image",)
    outputs: tuple[str, ...] = ("score", "saliency")
    saliency_stride: int = 16
    score_range: tuple[float, float] = (0.0, 1.0)
    higher_is_better: bool = True
    resize: str = "stretch"  # aspect ratio is not kept
    preprocessing_version: int = PREPROCESSING_VERSION
    version: str = "0.1.0"  # the model's own version
    io_dtypes: dict[str, str] = field(default_factory=dict)
    model_config: dict = field(default_factory=dict)  # architecture kwargs for create_model
    spec_version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        for dim_name in ("input_height", "input_width"):
            value = getattr(self, dim_name)
            if not isinstance(value, int) or value <= 0 or value % SIZE_MULTIPLE:
                raise ModelFormatError(
                    f"ModelSpec.{dim_name}={value!r} must be a positive multiple of "
                    f"{SIZE_MULTIPLE}; fix the model config and re-export"
                )
        unknown = set(self.inputs) - set(GRAPH_INPUTS)
        if unknown or "image" not in self.inputs:
            raise ModelFormatError(
                f"ModelSpec.inputs={self.inputs} must include 'image' and only {GRAPH_INPUTS}"
            )
        if set(self.outputs) - set(GRAPH_OUTPUTS) or "score" not in self.outputs:
            raise ModelFormatError(
                f"ModelSpec.outputs={self.outputs} must include 'score' and only {GRAPH_OUTPUTS}"
            )

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    @property
    def saliency_size(self) -> tuple[int, int]:
        return self.input_height // self.saliency_stride, self.input_width // self.saliency_stride

    def to_json(self) -> str:
        payload = {"format": SPEC_FORMAT, **asdict(self)}
        return json.dumps(payload, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model") -> ModelSpec:
        payload = load_tagged_json(
            text,
            SPEC_FORMAT,
            source,
            invalid="its saliq spec is not valid JSON ({exc}); re-export the model",
            foreign="not a saliq model spec; export the model with `saliq export onnx`",
        )
        spec_version = payload.get("spec_version")
        if spec_version != SPEC_VERSION:
            raise IncompatibleModelError(
                f"{source}: model spec version {spec_version} is not supported by this saliq "
                f"(supports {SPEC_VERSION}); upgrade saliq or re-export the model with this one"
            )
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in payload.items() if k in known}
        for key in ("mean", "std", "inputs", "outputs", "score_range"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        try:
            spec = cls(**kwargs)
        except TypeError as exc:
            raise ModelFormatError(f"{source}: incomplete saliq spec ({exc}); re-export") from None
        spec.check_supported(source)
        return spec

    def check_supported(self, source: str = "model") -> None:
        if self.preprocessing_version not in SUPPORTED_PREPROCESSING_VERSIONS:
            raise IncompatibleModelError(
                f"{source}: needs preprocessing version {self.preprocessing_version}, this saliq "
                f"implements {sorted(SUPPORTED_PREPROCESSING_VERSIONS)}; upgrade saliq"
            )
