"""Training configuration: YAML -> nested dataclasses, validated once."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from saliq.errors import ConfigError

from .data.crops import check_rotation
from .data.labels import DIST_SIGMA


@dataclass
class ModelConfig:
    architecture: str = "sgdnet"
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    input_height: int = 224
    input_width: int = 224
    kwargs: dict = field(default_factory=dict)
    init_from: str | None = None  # start from this checkpoint's weights (a second stage)
    # With a prefix, init_from is a checkpoint of another architecture whose weights fill the
    # submodule of that name (e.g. "whole": a crop-view model's whole-frame SGDNet).
    init_prefix: str = ""


@dataclass
class DataConfig:
    """Where training data comes from (docs/data.md); train/data/sources.py builds it."""

    SOURCES: ClassVar[tuple[str, ...]] = (
        "synthetic",
        "native",
        "koniq",
        "kadid",
        "livec",
        "spaq",
        "csv",
    )
    CSV_KEYS: ClassVar[tuple[str, ...]] = (
        "path",  # the CSV, relative to data.root when that is set
        "score_min",
        "score_max",
        "higher_is_better",
        "format",  # generic (image,score[,split][,group]) | pyiqa (meta_info_*.csv)
        "image_dir",  # default: the CSV's folder (generic) / data.root (pyiqa)
        "split_file",  # pyiqa split table as JSON
        "split_index",
    )

    source: str = "synthetic"  # synthetic | native | koniq | kadid | livec | spaq | csv
    root: str | None = None  # the real data set's release folder (all but synthetic, csv)
    annotations: str | None = None  # override the label file (relative to root)
    image_dir: str | None = None  # override the image folder (relative to root)
    crop: list[int] | None = None  # [h, w] native-resolution crop of MOS photos; null: whole
    # training frames rotated by an angle uniform in [-rotate_deg, rotate_deg] degrees about
    # their centre (corners reflected), fixations/saliency targets rotated alike; 0: off
    rotate_deg: float = 0.0
    csv: dict = field(default_factory=dict)  # options of source "csv", keys in CSV_KEYS
    dist_sigma: float = DIST_SIGMA  # width of the Gaussian score_dist around a label
    scene_dir: str | None = "../shared/data/scene"
    allow_sample_fallback: bool = False  # missing scene_dir: warn and use sample photos
    sample_photos: bool = True
    cache_dir: str = "work_data/samples"
    split_seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.15
    copies_per_photo: int = 4
    exclude_types: list[str] = field(default_factory=list)
    gray_prob: float = 0.1
    pristine_prob: float = 0.1
    val_photos: int = 20  # validation grid photos per epoch (all types x levels each)
    # native source (crop-view models): share of items distorted in one region only
    region_prob: float = 0.3
    # native source: items in groups of this many frames of one window (a pristine frame and
    # one defect at rising severities), kept in one batch, for the group_ranking loss term
    group_size: int = 1
    # native source: fractional severities in (0, 5] (parameters interpolated) instead of 1..5
    continuous_levels: bool = False
    # JSON file {"<list name>": [photo names]} of photos kept out of train and validation
    # (configs/heldout_camera.json: the camera-resolution evaluation's photos)
    exclude_photos_file: str | None = None

    def __post_init__(self) -> None:
        # Checked at load time so a typo fails before any data is read.
        if self.source not in self.SOURCES:
            raise ConfigError(
                f"data.source={self.source!r} is unknown; use one of {', '.join(self.SOURCES)}"
            )
        for name in ("val_photos", "copies_per_photo", "group_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name}={getattr(self, name)} must be >= 1")
        if self.crop is not None:
            crop = self.crop
            if (
                not isinstance(crop, list | tuple)
                or len(crop) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in crop)
            ):
                raise ConfigError(f"data.crop must be null or [height, width], got {crop!r}")
            self.crop = [int(crop[0]), int(crop[1])]
        self.rotate_deg = check_rotation(self.rotate_deg)
        if not isinstance(self.csv, dict):
            raise ConfigError(f"data.csv must be a mapping of options, got {self.csv!r}")
        unknown = sorted(set(self.csv) - set(self.CSV_KEYS))
        if unknown:
            raise ConfigError(f"data.csv: unknown keys {unknown}; allowed: {list(self.CSV_KEYS)}")
        if not (isinstance(self.dist_sigma, int | float) and self.dist_sigma > 0):
            raise ConfigError(f"data.dist_sigma must be > 0, got {self.dist_sigma!r}")
        fractions = (self.val_fraction, self.test_fraction)
        if min(fractions) < 0 or sum(fractions) >= 1:
            raise ConfigError(
                f"data.val_fraction + data.test_fraction must be in [0, 1), got {fractions}"
            )


OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("cosine", "step", "plateau", "constant")


@dataclass
class OptimConfig:
    epochs: int = 10
    batch_size: int = 16  # global: split over data-parallel processes
    optimizer: str = "adamw"  # adamw | adam (the seeds' Adam)
    lr: float = 3e-4
    backbone_lr_scale: float = 0.3
    weight_decay: float = 1e-4
    # cosine: linear warm-up then cosine to 0 (per step); step: x gamma every step_epochs;
    # plateau: x gamma after plateau_patience epochs without a better validation metric.
    schedule: str = "cosine"
    warmup_steps: int = 50
    step_epochs: int = 10
    gamma: float = 0.1
    plateau_patience: int = 2
    early_stopping_patience: int | None = None  # stop after this many epochs without a new best

    def __post_init__(self) -> None:
        _choice("optim.optimizer", self.optimizer, OPTIMIZERS)
        _choice("optim.schedule", self.schedule, SCHEDULES)
        for name in ("epochs", "batch_size", "step_epochs", "plateau_patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"optim.{name}={getattr(self, name)} must be >= 1")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(
                f"optim.early_stopping_patience={self.early_stopping_patience} must be >= 1 "
                "(or null: no early stopping)"
            )
        if not self.lr > 0:
            raise ConfigError(f"optim.lr={self.lr} must be > 0")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"optim.gamma={self.gamma} must be in (0, 1] (a decay factor)")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.backbone_lr_scale < 0:
            raise ConfigError("optim.warmup_steps, weight_decay and backbone_lr_scale must be >= 0")


DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def sgdnet_loss_config(alpha: float = 0.25) -> list[dict]:
    """SGDNet's loss as configuration: L1 / (1 + a) + a * TV / (1 + a) (the authors' code).

    The labels ``quality`` / ``saliency`` are the keys logged for the two terms.
    """
    if not alpha >= 0:
        raise ConfigError(f"alpha must be >= 0, got {alpha}")
    return [
        {"name": "l1", "weight": 1.0 / (1.0 + alpha), "label": "quality"},
        {"name": "tv", "on": "saliency", "weight": alpha / (1.0 + alpha), "label": "saliency"},
    ]


@dataclass
class TrainConfig:
    name: str = "saliq-sgdnet-lite0"
    seed: int = 0
    output_dir: str = "runs/default"
    # Weighted loss terms (saliq.train.losses); the default is SGDNet's with a = 0.25.
    loss: list[dict] | dict = field(default_factory=sgdnet_loss_config)
    device: str = "auto"  # auto: CUDA when available, else CPU
    precision: str = "auto"  # auto: bf16 autocast on a GPU that has it, else fp16; fp32 on CPU
    threads: int = 2
    num_workers: int = 1
    max_steps_per_epoch: int | None = None  # for smoke tests
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        if self.threads < 1:
            raise ConfigError(f"threads={self.threads} must be >= 1")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers={self.num_workers} must be >= 0")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(f"max_steps_per_epoch={self.max_steps_per_epoch} must be >= 1")
        # The loss is a list of terms, or {terms: [...], normalise: true} (docs/losses.md).
        terms = self.loss.get("terms") if isinstance(self.loss, dict) else self.loss
        if not terms or not isinstance(terms, list):
            raise ConfigError("loss: list at least one term, e.g. [{name: l1, weight: 1.0}]")
        # YAML 1.1 reads a bare `on:` key as the boolean true; give the term its key back.
        terms = [
            {("on" if key is True else key): value for key, value in entry.items()}
            if isinstance(entry, dict)
            else entry
            for entry in terms
        ]
        self.loss = {**self.loss, "terms": terms} if isinstance(self.loss, dict) else terms

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_run_record(cls, record: dict) -> TrainConfig:
        """The config a checkpoint recorded, without what later stages added beside it
        (the split's photo names, the fusion and defect-head fit records)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls.from_dict({k: v for k, v in record.items() if k in names})

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        sections = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig}
        kwargs = {}
        for key, value in raw.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value or {}, key)
            else:
                kwargs[key] = value
        return _build(cls, kwargs, "config")


_MOVED = {
    "alpha": "SGDNet's alpha is now a loss weight: loss: [{name: l1, weight: 0.8}, "
    "{name: tv, on: saliency, weight: 0.2}] (see docs/losses.md)"
}


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: choose one of {', '.join(allowed)}")


def _check_type(where: str, value: object, hint: object) -> object:
    """Check (and mildly coerce: int -> float, list -> tuple stays list) one config value."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _check_type(where, value, option)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    expected = origin or hint
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str):
        # YAML 1.1 reads 1e-4 (no dot) as a string; a number written so is still a number.
        try:
            return float(value)
        except ValueError:
            pass
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        list: "a list",
        dict: "a mapping",
    }
    if expected in names:
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{where}={value!r} must be {names[expected]}")
    return value


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    for key in sorted(unknown & set(_MOVED)):
        raise ConfigError(f"{where}.{key}: {_MOVED[key]}")
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        if dataclasses.is_dataclass(value):
            checked[key] = value
        else:
            checked[key] = _check_type(f"{where}.{key}", value, hints[key])
    return cls(**checked)


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a config is a mapping of keys to values, not {type(raw).__name__}"
        )
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for depth, part in enumerate(parents):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(f"--set {dotted}: {where} is not a section in {path}")
        node[leaf] = value
    return TrainConfig.from_dict(raw)
