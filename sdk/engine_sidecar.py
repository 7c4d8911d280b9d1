"""The sidecar of a TensorRT engine: ``<name>.engine.json`` beside the raw plan.

The plan itself stays a plain TensorRT plan (loadable by trtexec and Triton); everything
saliq needs to trust it lives here: the ModelSpec, the TensorRT version and GPU it was built
for, the precision, the optimisation profiles and the plan's sha256. A mismatch at load time
is a clear error that says how to rebuild.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .atomic import write_text_atomic
from .errors import IncompatibleModelError, ModelFormatError, UntrustedModelError
from .spec import ModelSpec, load_tagged_json

SIDECAR_FORMAT = "saliq.engine"
SIDECAR_VERSION = 1
SIDECAR_SUFFIX = ".json"  # appended: model.engine -> model.engine.json
PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class Profile:
    """One optimisation profile: batch sizes (the only dynamic axis)."""

    min_batch: int
    opt_batch: int
    max_batch: int

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"profile needs 1 <= min <= opt <= max, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )


@dataclass(frozen=True)
class EngineSidecar:
    spec: ModelSpec
    tensorrt_version: str  # e.g. "10.3.0"
    compute_capability: str  # e.g. "8.7"; "any" for a hardware-compatible build
    precision: str  # "fp16" | "fp32"
    profiles: tuple[Profile, ...]
    plan_sha256: str
    strongly_typed: bool = False
    version_compatible: bool = False
    hardware_compatible: bool = False
    build_command: str = ""  # how to rebuild, quoted in errors
    extra: dict = field(default_factory=dict)  # parity report, latency, builder notes

    def to_json(self) -> str:
        payload = asdict(self)
        payload["spec"] = json.loads(self.spec.to_json())
        return json.dumps(
            {"format": SIDECAR_FORMAT, "sidecar_version": SIDECAR_VERSION, **payload},
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "sidecar") -> EngineSidecar:
        payload = load_tagged_json(
            text,
            SIDECAR_FORMAT,
            source,
            invalid="not valid JSON ({exc}); rebuild the engine",
            foreign="not a saliq engine sidecar; build engines with `saliq export trt`",
        )
        if payload.get("sidecar_version") != SIDECAR_VERSION:
            raise IncompatibleModelError(
                f"{source}: sidecar version {payload.get('sidecar_version')} is not supported "
                f"(this saliq reads {SIDECAR_VERSION}); rebuild the engine with this saliq"
            )
        try:
            return cls(
                spec=ModelSpec.from_json(json.dumps(payload["spec"]), source=source),
                tensorrt_version=str(payload["tensorrt_version"]),
                compute_capability=str(payload["compute_capability"]),
                precision=payload["precision"],
                profiles=tuple(Profile(**p) for p in payload["profiles"]),
                plan_sha256=payload["plan_sha256"],
                strongly_typed=bool(payload.get("strongly_typed", False)),
                version_compatible=bool(payload.get("version_compatible", False)),
                hardware_compatible=bool(payload.get("hardware_compatible", False)),
                build_command=payload.get("build_command", ""),
                extra=payload.get("extra", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{source}: incomplete sidecar ({exc}); rebuild") from None


def sidecar_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + SIDECAR_SUFFIX)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sidecar(engine: str | Path, sidecar: EngineSidecar) -> Path:
    path = sidecar_path(engine)
    write_text_atomic(path, sidecar.to_json() + "\n")
    return path


def read_sidecar(engine: str | Path) -> EngineSidecar:
    path = sidecar_path(engine)
    if not path.is_file():
        raise ModelFormatError(
            f"{engine}: no sidecar {path.name} beside it; saliq only runs engines built by "
            "`saliq export trt` (the sidecar carries the model spec)"
        )
    return EngineSidecar.from_json(path.read_text(), source=str(path))


def _major_minor(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


def check_host_code_allowed(sidecar: EngineSidecar, engine: str | Path, allowed: bool) -> None:
    """Refuse a version-compatible engine (it embeds host code) unless the caller allows it."""
    if sidecar.version_compatible and not allowed:
        raise UntrustedModelError(
            f"{engine}: a version-compatible engine embeds TensorRT's lean runtime, host code "
            "that runs when the plan is loaded; load it only if you built it or trust its "
            "source: saliq.load(path, allow_engine_host_code=True) or `saliq score "
            "--allow-engine-host-code`, or rebuild it without --version-compatible"
        )


def check_compatible(
    sidecar: EngineSidecar, engine: str | Path, tensorrt_version: str, compute_capability: str
) -> None:
    """Refuse an engine built for another TensorRT or GPU, or whose plan changed."""
    rebuild = sidecar.build_command or "saliq export trt <model.onnx>"
    if sha256_file(engine) != sidecar.plan_sha256:
        raise ModelFormatError(
            f"{engine}: plan does not match its sidecar's sha256 (file changed or truncated); "
            f"rebuild it: {rebuild}"
        )
    same_trt = _major_minor(tensorrt_version) == _major_minor(sidecar.tensorrt_version)
    if not same_trt and not sidecar.version_compatible:
        raise IncompatibleModelError(
            f"{engine}: built with TensorRT {sidecar.tensorrt_version}, this machine runs "
            f"{tensorrt_version}; rebuild it here: {rebuild}"
        )
    if sidecar.compute_capability not in ("any", compute_capability) and not (
        sidecar.hardware_compatible
    ):
        raise IncompatibleModelError(
            f"{engine}: built for GPU compute capability {sidecar.compute_capability}, this "
            f"GPU is {compute_capability}; rebuild it on this device: {rebuild}"
        )
