"""ModelSpec: the one description of a model that every artifact carries.

It is serialised as JSON into the checkpoint's safetensors metadata, the ONNX
``metadata_props`` and (later) the TensorRT engine's sidecar. The SDK reads everything it
needs about a model from here; nothing about a model is hard-coded twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

from .errors import IncompatibleModelError, ModelFormatError
from .preprocess import PREPROCESSING_VERSION, PRIOR_STRIDE, SUPPORTED_PREPROCESSING_VERSIONS

SPEC_FORMAT = "saliq.modelspec"
SPEC_VERSION = 1
METADATA_KEY = "saliq_spec"  # key under which the JSON lives in safetensors / ONNX metadata
# What each preprocessing version produces, per sample, as a function of the spec: the one
# table of input shapes (backends, exporters and Triton read it through tensor_shape).
_WHOLE_FRAME: dict[str, Callable[[ModelSpec], tuple[int, ...]]] = {
    "image": lambda s: (3, s.input_height, s.input_width),
    "gradient": lambda s: (1, s.input_height, s.input_width),
    "prior": lambda s: (1, s.input_height // PRIOR_STRIDE, s.input_width // PRIOR_STRIDE),
}


def _view_shape(name: str) -> Callable[[ModelSpec], tuple[int, ...]]:
    def shape(spec: ModelSpec) -> tuple[int, ...]:
        from .views import ViewConfig

        return ViewConfig.from_dict(spec.view_config).shapes()[name]

    return shape


PREPROCESSING_OUTPUTS: dict[int, dict[str, Callable[[ModelSpec], tuple[int, ...]]]] = {
    1: dict(_WHOLE_FRAME),
    2: {
        **_WHOLE_FRAME,
        **{
            name: _view_shape(name)
            for name in (
                "crops",
                "crop_gradient",
                "crop_boxes",
                "crop_weights",
                "grid",
                "grid_boxes",
            )
        },
    },
}
SCORE = "score"
SALIENCY = "saliency"
GRAPH_OUTPUTS = (SCORE, SALIENCY)  # outputs whose shape the spec derives; others declare theirs
DEFECT_PROBS = "defect_probs"  # [classes] probabilities of a defect-type head (defect_classes)
NO_DEFECT = "none"  # the defect head's class for "no defect seen"
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
    # Per-sample shapes of exported outputs other than score/saliency (derived for those two).
    output_shapes: dict[str, list[int]] = field(default_factory=dict)
    # Preprocessing version 2's crop views (saliq.views.ViewConfig fields); empty in version 1.
    view_config: dict = field(default_factory=dict)
    # Names of the classes of the `defect_probs` output (a defect-type head), in order.
    defect_classes: tuple[str, ...] = ()
    spec_version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        self._check_types()
        for dim_name in ("input_height", "input_width"):
            value = getattr(self, dim_name)
            if not isinstance(value, int) or value <= 0 or value % SIZE_MULTIPLE:
                raise ModelFormatError(
                    f"ModelSpec.{dim_name}={value!r} must be a positive multiple of "
                    f"{SIZE_MULTIPLE}; fix the model config and re-export"
                )
        if self.preprocessing_version >= 2:
            from .views import ViewConfig

            ViewConfig.from_dict(self.view_config)  # raises a one-line ModelFormatError
            if "grid" in self.inputs and not self.view_config.get("grid_crops"):
                raise ModelFormatError("a model reading `grid` needs view_config.grid_crops > 0")
        elif self.view_config:
            raise ModelFormatError("view_config needs preprocessing_version 2")
        produced = PREPROCESSING_OUTPUTS.get(self.preprocessing_version, {})
        unknown = [name for name in self.inputs if name not in produced]
        if (
            (unknown and produced)
            or "image" not in self.inputs
            or len(set(self.inputs)) != len(self.inputs)
        ):
            raise ModelFormatError(
                f"ModelSpec.inputs={self.inputs} must include 'image', once each, and only "
                f"what preprocessing version {self.preprocessing_version} produces "
                f"({', '.join(produced)})"
            )
        if SCORE not in self.outputs or len(set(self.outputs)) != len(self.outputs):
            raise ModelFormatError(
                f"ModelSpec.outputs={self.outputs} must include 'score', each name once"
            )
        undeclared = [
            o for o in self.outputs if o not in GRAPH_OUTPUTS and o not in self.output_shapes
        ]
        if undeclared:
            raise ModelFormatError(
                f"ModelSpec.outputs {undeclared} have no shape in output_shapes; the model must "
                "declare the per-sample shape of every extra exported output"
            )
        classes = self.defect_classes
        has_head = DEFECT_PROBS in self.outputs
        if has_head != bool(classes) or (
            has_head and list(self.output_shapes[DEFECT_PROBS]) != [len(classes)]
        ):
            raise ModelFormatError(
                f"ModelSpec: output {DEFECT_PROBS!r} and defect_classes {list(classes)} must come "
                "together, one probability per class; re-export the model"
            )

    def _check_types(self) -> None:
        """Field types and ranges a hand-edited or foreign spec may get wrong."""

        def names(value) -> bool:
            return isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)

        def positive_ints(value) -> bool:
            return isinstance(value, (tuple, list)) and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
            )

        problems = []
        if not names(self.inputs) or not names(self.outputs):
            problems.append("inputs and outputs must be lists of tensor names")
        if not names(self.defect_classes):
            problems.append("defect_classes must be a list of class names")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if not (
                isinstance(value, (tuple, list))
                and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            ):
                problems.append(f"{key} must be 3 numbers (R, G, B)")
        if not all(float(v) > 0 for v in self.std if isinstance(v, (int, float))):
            problems.append("std must be positive")
        stride = self.saliency_stride
        if not isinstance(stride, int) or isinstance(stride, bool) or stride <= 0:
            problems.append(f"saliency_stride={stride!r} must be a positive integer")
        if not isinstance(self.output_shapes, dict) or not all(
            isinstance(k, str) and positive_ints(v) for k, v in self.output_shapes.items()
        ):
            problems.append("output_shapes must map output names to lists of positive sizes")
        if problems:
            raise ModelFormatError(f"invalid ModelSpec: {'; '.join(problems)}; re-export the model")

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    @property
    def saliency_size(self) -> tuple[int, int]:
        return self.input_height // self.saliency_stride, self.input_width // self.saliency_stride

    @property
    def saliency(self) -> bool:
        """Whether the model exports a saliency map."""
        return SALIENCY in self.outputs

    def tensor_shape(self, name: str) -> tuple[int, ...]:
        """Per-sample shape (no batch axis) of a graph input or exported output."""
        if name in self.inputs:
            table = PREPROCESSING_OUTPUTS.get(self.preprocessing_version)
            if table is None or name not in table:
                raise IncompatibleModelError(
                    f"input {name!r} of preprocessing version {self.preprocessing_version} is "
                    "not implemented by this saliq; upgrade saliq"
                )
            return table[name](self)
        if name == SCORE:
            return ()
        if name == SALIENCY:
            return (1, *self.saliency_size)
        if name in self.output_shapes:
            return tuple(int(d) for d in self.output_shapes[name])
        raise KeyError(f"{name!r} is neither an input nor an output of model {self.name!r}")

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
        try:
            for key in ("mean", "std", "inputs", "outputs", "score_range", "defect_classes"):
                if key in kwargs:
                    if isinstance(kwargs[key], str):
                        raise ModelFormatError(f"invalid ModelSpec: {key} must be a list")
                    kwargs[key] = tuple(kwargs[key])
            spec = cls(**kwargs)
        except ModelFormatError as exc:
            raise ModelFormatError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{source}: incomplete saliq spec ({exc}); re-export") from None
        spec.check_supported(source)
        return spec

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str = "model") -> ModelSpec:
        """The spec from an artifact's key/value metadata (ONNX ``metadata_props``, safetensors).

        The one reader of embedded specs: every loader and exporter calls this.
        """
        if METADATA_KEY not in metadata:
            raise ModelFormatError(
                f"{source}: a model without a saliq spec; export it with `saliq export onnx` "
                "(or train it with `saliq train`)"
            )
        return cls.from_json(metadata[METADATA_KEY], source=source)

    def check_graph(
        self,
        inputs: Mapping[str, Sequence[object]],
        outputs: Mapping[str, Sequence[object]],
        source: str = "model",
    ) -> None:
        """Refuse a graph whose tensor names or static per-sample shapes differ from the spec.

        ``inputs``/``outputs`` map tensor names to shapes as the runtime reports them (batch
        axis first; symbolic dimensions as strings or None are not checked).
        """
        fix = "the spec does not describe this graph; re-export it with `saliq export onnx`"
        if set(inputs) != set(self.inputs):
            raise ModelFormatError(
                f"{source}: graph inputs {sorted(inputs)} differ from the spec's "
                f"{sorted(self.inputs)}; {fix}"
            )
        missing = [name for name in self.outputs if name not in outputs]
        if missing:
            raise ModelFormatError(f"{source}: graph lacks the spec's outputs {missing}; {fix}")
        for kind, table in (("input", inputs), ("output", outputs)):
            for name, shape in table.items():
                if kind == "output" and name not in self.outputs:
                    continue
                expected = self.tensor_shape(name)
                dims = list(shape)[1:]
                if len(dims) != len(expected) or any(
                    isinstance(d, int) and d != e for d, e in zip(dims, expected)
                ):
                    raise ModelFormatError(
                        f"{source}: {kind} {name!r} has per-sample shape "
                        f"{tuple(dims)}, the spec says {expected}; {fix}"
                    )

    def check_supported(self, source: str = "model") -> None:
        if self.preprocessing_version not in SUPPORTED_PREPROCESSING_VERSIONS:
            raise IncompatibleModelError(
                f"{source}: needs preprocessing version {self.preprocessing_version}, this saliq "
                f"implements {sorted(SUPPORTED_PREPROCESSING_VERSIONS)}; upgrade saliq"
            )
