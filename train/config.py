"""Training configuration: YAML -> nested dataclasses, validated once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from saliq.errors import ConfigError


@dataclass
class ModelConfig:
    architecture: str = "sgdnet"
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    input_height: int = 224
    input_width: int = 224
    kwargs: dict = field(default_factory=dict)
    init_from: str | None = None  # start from this checkpoint's weights (a second stage)


@dataclass
class DataConfig:
    scene_dir: str | None = "../shared/data/scene"
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


@dataclass
class OptimConfig:
    epochs: int = 10
    batch_size: int = 16
    lr: float = 3e-4
    backbone_lr_scale: float = 0.3
    weight_decay: float = 1e-4
    warmup_steps: int = 50


@dataclass
class TrainConfig:
    name: str = "saliq-sgdnet-lite0"
    seed: int = 0
    output_dir: str = "runs/default"
    alpha: float = 0.25  # SGDNet saliency-loss weight a: weights 1/(1+a), a/(1+a)
    threads: int = 2
    num_workers: int = 1
    max_steps_per_epoch: int | None = None  # for smoke tests
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

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


def _build(cls, values: dict, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(names)}")
    return cls(**values)


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return TrainConfig.from_dict(raw)
