"""Data sources from configuration: ``data.source`` -> (train set, validation set, test records).

One entry point for the trainer, ``build_datasets``. Sources:

- ``synthetic``: content photos (Scene + package sample photos) split by photo, with
  synthetic distortions (SyntheticTrainSet / SyntheticGridSet);
- ``koniq``, ``kadid``, ``livec``, ``spaq``: real MOS data sets in their released formats
  under ``data.root`` (loaders in data/mos.py);
- ``csv``: a generic ``image,score[,split][,group]`` CSV or a pyiqa meta-info CSV
  (``data.csv`` options).

Splits never leak content: by photo (synthetic), by image, and by reference content where a
data set has it (KADID-10k: every distorted version of one reference lands in one split).
Released splits (KonIQ-10k's ``set`` column, a pyiqa split table, a CSV ``split`` column)
are used when every record has one. Missing data is a ConfigError naming the path and the
fix; the only fallback (Scene photos -> package sample photos) is opt-in.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from saliq.errors import ConfigError
from saliq.preprocess import Preprocessor

from .content import ContentItem, sample_photo_items, scene_items, split_by_photo
from .mos import (
    MosDataset,
    MosRecord,
    load_generic_csv,
    load_kadid10k,
    load_koniq10k,
    load_live_challenge,
    load_pyiqa_meta,
    load_spaq,
)
from .synthetic import SyntheticGridSet, SyntheticTrainSet

SPLIT_NAMES = ("train", "val", "test")
# Released split labels -> saliq's names (KonIQ-10k says training/validation/test).
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
KONIQ_SETS_CSV = "koniq10k_distributions_sets.csv"  # carries the released split ("set")
KONIQ_SCORES_CSV = "koniq10k_scores_and_distributions.csv"
KONIQ_IMAGE_DIRS = ("1024x768", "512x384")
_RELEASES = {
    "koniq": f"the KonIQ-10k release ({KONIQ_SCORES_CSV} or {KONIQ_SETS_CSV}, 1024x768/)",
    "kadid": "the KADID-10k release (dmos.csv, images/)",
    "livec": "the LIVE Challenge release (Data/AllMOS_release.mat, Images/)",
    "spaq": "the SPAQ release (Annotations/MOS and Image attribute scores.xlsx, TestImage/)",
}


@dataclass(frozen=True)
class Datasets:
    """What ``build_datasets`` returns; unpacks as (train, val, test_records).

    ``test_records``: ContentItems (synthetic) or MosRecords held out for the final
    evaluation. ``split``: file names per split, for the checkpoint's config (``saliq
    evaluate`` finds the held-out photos by these names).
    """

    train: Dataset
    val: Dataset
    test_records: list
    split: dict[str, list[str]]

    def __iter__(self) -> Iterator:
        return iter((self.train, self.val, self.test_records))


def build_datasets(
    data_config,
    spec,
    preprocessor: Preprocessor,
    required_targets: Iterable[str],
    seed: int,
) -> Datasets:
    """Train/validation datasets and test records for ``data_config`` (a DataConfig).

    Items carry exactly ``spec.inputs``, the loss's ``required_targets`` and the
    bookkeeping keys (data/items.py). ``seed`` seeds the per-item randomness (distortions,
    crops, flips); the split itself uses ``data.split_seed``.
    """
    targets = tuple(required_targets)
    common = {
        "inputs": tuple(spec.inputs),
        "targets": targets,
        "dist_sigma": data_config.dist_sigma,
    }
    native_only = data_config.group_size > 1 or data_config.continuous_levels
    if native_only and data_config.source != "native":
        raise ConfigError(
            "data.group_size and data.continuous_levels are options of data.source=native; "
            f"the {data_config.source} source has neither: remove them"
        )
    if data_config.source == "synthetic":
        return _synthetic(data_config, spec, preprocessor, seed, common)
    if data_config.source == "native":
        return _native(data_config, spec, preprocessor, seed, targets)
    loader = _LOADERS.get(data_config.source)
    if loader is None:
        raise ConfigError(
            f"data.source={data_config.source!r} is unknown; use one of synthetic, "
            f"{', '.join(_LOADERS)}"
        )
    records = loader(data_config)
    _check_images_exist(records, data_config.source)
    splits = split_records(records, _fractions(data_config), data_config.split_seed)
    for name in ("train", "val"):
        if not splits[name]:
            raise ConfigError(
                f"data.source={data_config.source}: the {name} split is empty "
                f"({len(records)} images); lower data.val_fraction / data.test_fraction or "
                "add images"
            )
    crop = data_config.crop
    train = MosDataset(
        splits["train"],
        preprocessor,
        spec.saliency_size,
        crop=crop,
        train=True,
        seed=seed,
        **common,
        **_rotation(data_config, MosDataset),
    )
    val = MosDataset(splits["val"], preprocessor, spec.saliency_size, crop=crop, **common)
    root = Path(data_config.root) if data_config.root else None
    names = {k: [_record_name(r, root) for r in v] for k, v in splits.items()}
    return Datasets(train, val, splits["test"], names)


def _rotation(data_config, train_set: type) -> dict:
    """``rotate_deg`` for a training set when rotation is on; nothing when off, so the
    defaults build exactly the sets they built before rotation existed."""
    if not data_config.rotate_deg:
        return {}
    # A source whose training set cannot rotate yet must not silently train unrotated.
    if "rotate_deg" not in inspect.signature(train_set).parameters:
        raise ConfigError(
            f"data.rotate_deg={data_config.rotate_deg}: the {data_config.source} source cannot "
            "rotate yet; set data.rotate_deg=0"
        )
    return {"rotate_deg": data_config.rotate_deg}


# ---------------------------------------------------------------- synthetic


def content_splits(data_config) -> dict[str, list[ContentItem]]:
    """Content photos split train/val/test by photo (``data.split_seed``).

    ``data.scene_dir`` set but missing is an error unless ``data.allow_sample_fallback``
    is true, in which case it warns and trains on the package sample photos.
    """
    items: list[ContentItem] = []
    use_samples = bool(data_config.sample_photos)
    if data_config.scene_dir:
        scene_dir = Path(data_config.scene_dir)
        if scene_dir.is_dir():
            items += scene_items(scene_dir)
        elif data_config.allow_sample_fallback:
            warnings.warn(
                f"Scene data not found at {scene_dir}; training on the package sample photos "
                "only (data.allow_sample_fallback=true)",
                stacklevel=2,
            )
            use_samples = True
        else:
            raise ConfigError(
                f"Scene data not found at {scene_dir} (relative to {Path.cwd()}); set "
                "data.scene_dir to the Scene folder, or --set data.allow_sample_fallback=true "
                "to train on the package sample photos only"
            )
    if use_samples:
        items += sample_photo_items(data_config.cache_dir)
    if len(items) < 3:
        raise ConfigError(
            f"need at least 3 content photos (train/val/test), have {len(items)}; set "
            "data.scene_dir or data.sample_photos=true"
        )
    return split_by_photo(items, _fractions(data_config), seed=data_config.split_seed)


def _distortion_types(data_config) -> list[str] | None:
    """The training distortion types left by ``data.exclude_types`` (None: all of them)."""
    from .distortions import DISTORTIONS

    unknown = sorted(set(data_config.exclude_types) - set(DISTORTIONS))
    if unknown:
        raise ConfigError(
            f"data.exclude_types: unknown types {unknown}; known: {', '.join(sorted(DISTORTIONS))}"
        )
    if not data_config.exclude_types:
        return None
    types = [t for t in sorted(DISTORTIONS) if t not in data_config.exclude_types]
    if not types:
        raise ConfigError("data.exclude_types excludes every distortion type; keep one")
    return types


def _synthetic(data_config, spec, preprocessor, seed, common) -> Datasets:
    if data_config.crop is not None:
        raise ConfigError(
            "data.crop applies to MOS sources; synthetic distortions are defined on the "
            "model-size working frame (docs/data.md): set data.crop=null"
        )
    types = _distortion_types(data_config)
    splits = content_splits(data_config)
    train = SyntheticTrainSet(
        splits["train"],
        preprocessor,
        spec.saliency_size,
        copies_per_photo=data_config.copies_per_photo,
        types=types,
        pristine_prob=data_config.pristine_prob,
        gray_prob=data_config.gray_prob,
        seed=seed,
        **common,
        **_rotation(data_config, SyntheticTrainSet),
    )
    val = SyntheticGridSet(
        splits["val"][: data_config.val_photos],
        preprocessor,
        spec.saliency_size,
        types=types,
        seed=seed,
        **common,
    )
    names = {k: [Path(i.path).name for i in v] for k, v in splits.items()}
    return Datasets(train, val, splits["test"], names)


def excluded_photos(data_config) -> set[str]:
    if not data_config.exclude_photos_file:
        return set()
    path = Path(data_config.exclude_photos_file)
    try:
        lists = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"data.exclude_photos_file={path}: unreadable ({exc})") from None
    if not isinstance(lists, dict):
        raise ConfigError(f"{path}: expected a JSON object of photo-name lists")
    return {name for names in lists.values() if isinstance(names, list) for name in names}


def _native(data_config, spec, preprocessor, seed, targets=("score", "crop_targets")) -> Datasets:
    """Native-resolution distortions for crop-view models (train/data/native.py)."""
    from .native import NativeGridSet, NativeTrainSet

    if preprocessor.views is None:
        raise ConfigError(
            "data.source=native feeds crop-view models (preprocessing version 2); this model "
            "reads version 1: use data.source=synthetic"
        )
    excluded = excluded_photos(data_config)
    splits = content_splits(data_config)
    train_items = [i for i in splits["train"] if i.name not in excluded]
    val_items = [i for i in splits["val"] if i.name not in excluded]
    types = _distortion_types(data_config)
    # The loss's targets (score, crop_targets always; saliency maps at the spec's size).
    wanted = {
        "targets": tuple(targets),
        "saliency_hw": spec.saliency_size,
        "dist_sigma": data_config.dist_sigma,
    }
    train = NativeTrainSet(
        train_items,
        preprocessor,
        spec.inputs,
        copies_per_photo=data_config.copies_per_photo,
        types=types,
        pristine_prob=data_config.pristine_prob,
        region_prob=data_config.region_prob,
        seed=seed,
        rotate_deg=data_config.rotate_deg,
        group_size=data_config.group_size,
        continuous_levels=data_config.continuous_levels,
        **wanted,
    )
    val = NativeGridSet(
        val_items[: data_config.val_photos], preprocessor, spec.inputs, types, seed, **wanted
    )
    names = {k: [Path(i.path).name for i in v] for k, v in splits.items()}
    names["excluded"] = sorted(excluded)
    return Datasets(train, val, splits["test"], names)


# ---------------------------------------------------------------- real MOS data sets


def _fractions(data_config) -> tuple[float, float, float]:
    val, test = float(data_config.val_fraction), float(data_config.test_fraction)
    return (1.0 - val - test, val, test)


def _root(data_config) -> Path:
    source = data_config.source
    if not data_config.root:
        raise ConfigError(
            f"data.source={source} needs data.root: the folder of {_RELEASES[source]}; set it "
            "in the config or pass --set data.root=PATH"
        )
    root = Path(data_config.root)
    if not root.is_dir():
        raise ConfigError(
            f"data.root={root} does not exist (relative to {Path.cwd()}); point it at "
            f"{_RELEASES[source]}"
        )
    return root


def _load_koniq(data_config) -> list[MosRecord]:
    root = _root(data_config)
    csv_name = data_config.annotations
    if csv_name is None:
        # The sets file carries KonIQ's released train/validation/test split; prefer it.
        csv_name = KONIQ_SETS_CSV if (root / KONIQ_SETS_CSV).is_file() else KONIQ_SCORES_CSV
    image_dir = data_config.image_dir
    if image_dir is None:
        image_dir = next((d for d in KONIQ_IMAGE_DIRS if (root / d).is_dir()), KONIQ_IMAGE_DIRS[0])
    return load_koniq10k(root, image_dir=image_dir, csv_name=csv_name)


def _load_kadid(data_config) -> list[MosRecord]:
    root = _root(data_config)
    return load_kadid10k(root, csv_name=data_config.annotations or "dmos.csv")


def _load_livec(data_config) -> list[MosRecord]:
    return load_live_challenge(_root(data_config))


def _load_spaq(data_config) -> list[MosRecord]:
    root = _root(data_config)
    return load_spaq(root, data_config.annotations, data_config.image_dir or "TestImage")


def _load_csv(data_config) -> list[MosRecord]:
    options = dict(data_config.csv)
    for key in ("path", "score_min", "score_max"):
        if options.get(key) is None:
            raise ConfigError(
                f"data.source=csv needs data.csv.{key} (e.g. data.csv: {{path: scores.csv, "
                "score_min: 1, score_max: 5}})"
            )
    base = Path(data_config.root) if data_config.root else Path()
    path = base / options["path"]
    if not path.is_file():
        raise ConfigError(f"data.csv.path: {path} not found; fix data.csv.path or data.root")
    fmt = options.get("format", "generic")
    image_dir = options.get("image_dir")
    lo, hi = float(options["score_min"]), float(options["score_max"])
    higher = bool(options.get("higher_is_better", True))
    if fmt == "generic":
        return load_generic_csv(
            path, lo, hi, higher, image_dir=base / image_dir if image_dir else None
        )
    if fmt == "pyiqa":
        split_file = options.get("split_file")
        return load_pyiqa_meta(
            path,
            base / image_dir if image_dir else base,
            lo,
            hi,
            higher,
            split_file=base / split_file if split_file else None,
            split_index=int(options.get("split_index", 1)),
        )
    raise ConfigError(f"data.csv.format={fmt!r}: use generic or pyiqa")


_LOADERS: dict[str, Callable[..., list[MosRecord]]] = {
    "koniq": _load_koniq,
    "kadid": _load_kadid,
    "livec": _load_livec,
    "spaq": _load_spaq,
    "csv": _load_csv,
}


def _check_images_exist(records: Sequence[MosRecord], source: str) -> None:
    # Up front, so a wrong image folder fails now with one message, not mid-epoch.
    if not records:
        raise ConfigError(f"data.source={source}: the annotation file lists no images")
    missing = [r.path for r in records if not os.path.isfile(r.path)]
    if missing:
        raise ConfigError(
            f"data.source={source}: {len(missing)} of {len(records)} images not found (first: "
            f"{missing[0]}); check data.root / data.image_dir"
        )


def _record_name(record: MosRecord, root: Path | None) -> str:
    path = Path(record.path)
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def split_records(
    records: Sequence[MosRecord],
    fractions: tuple[float, float, float] = (0.75, 0.1, 0.15),
    seed: int = 0,
) -> dict[str, list[MosRecord]]:
    """Records into train/val/test, never splitting a content group.

    When every record carries a released split, that split is used (and checked: one
    group in two splits is an error). Otherwise groups (``record.group``, else the image
    itself) are shuffled with ``seed`` and cut by ``fractions``; records keep file order
    within each split.
    """

    def key(r: MosRecord) -> str:
        return r.group or r.path

    labelled = [r.split for r in records if r.split]
    if labelled and len(labelled) < len(records):
        raise ConfigError(
            f"{len(records) - len(labelled)} of {len(records)} records have no split while "
            "the others do; label every row or none"
        )
    out: dict[str, list[MosRecord]] = {name: [] for name in SPLIT_NAMES}
    if labelled:
        seen: dict[str, str] = {}
        for record in records:
            name = _SPLIT_ALIASES.get(record.split.strip().lower())
            if name is None:
                raise ConfigError(
                    f"unknown split {record.split!r} for {record.path}; use train, val or test"
                )
            if seen.setdefault(key(record), name) != name:
                raise ConfigError(
                    f"content {key(record)!r} appears in both the {seen[key(record)]} and the "
                    f"{name} split; its images would leak between them"
                )
            out[name].append(record)
        return out
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ConfigError(f"fractions must be three non-negative numbers, got {fractions}")
    by_group: dict[str, list[MosRecord]] = defaultdict(list)
    for record in records:
        by_group[key(record)].append(record)
    groups = sorted(by_group)
    order = np.random.default_rng(seed).permutation(len(groups))
    total = sum(fractions)
    n_train = round(len(groups) * fractions[0] / total)
    n_val = round(len(groups) * fractions[1] / total)
    assignment = {}
    for rank, index in enumerate(order):
        assignment[groups[index]] = (
            "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        )
    for record in records:
        out[assignment[key(record)]].append(record)
    return out
