"""Loaders for real MOS data sets in their released formats, plus a torch Dataset over them.

Every loader returns ``MosRecord``s whose ``score`` is in [0, 1], higher = better, and
keeps the released value in ``raw``. Mappings:

- KonIQ-10k  ``koniq10k_scores_and_distributions.csv``: MOS on 1..5 -> (MOS - 1) / 4.
  Images in ``1024x768/`` by default (``512x384/`` is the other release). A ``set`` column
  (training/validation/test, as in ``koniq10k_distributions_sets.csv``) becomes ``split``;
  the rating counts ``c1..c5`` (1 = bad first) become ``dist``.
- LIVE Challenge  ``Data/AllImages_release.mat`` + ``Data/AllMOS_release.mat``: MOS on
  0..100 -> MOS / 100; images in ``Images/``. The first 7 entries are the release's
  training images (``Images/trainingImages/``); they are kept, like the rest.
- KADID-10k  ``dmos.csv`` (dist_img, ref_img, dmos, var): despite the name, dmos is on
  1..5 with higher = better -> (dmos - 1) / 4; images in ``images/``. ``group`` is the
  reference image, so splits can keep all distortions of one scene together.
- SPAQ  ``Annotations/MOS and Image attribute scores.xlsx`` (``Image name``, ``MOS`` 0..100,
  attribute columns) or a CSV export of it: MOS / 100; images in ``TestImage/``. The .xlsx
  is read with the standard library (data/xlsx.py), no openpyxl.
- pyiqa meta-info CSV: no-reference files have the image name first and the score second
  (e.g. ``image_name,MOS,...``); full-reference ones are ``ref_name,dist_name,mos``.
  Range and direction are arguments, as pyiqa stores scores on each set's own scale.
- Generic ``image,score[,split][,group]`` CSV with explicit range and direction.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from saliq.errors import ConfigError, InvalidImageError
from saliq.preprocess import Preprocessor

from .crops import FLIP_PROB, augment_photo, check_crop, check_rotation
from .items import DEFAULT_INPUTS, DEFAULT_TARGETS, ItemBuilder
from .labels import DIST_SIGMA, SCORE_BINS, counts_distribution
from .xlsx import read_xlsx_rows

RANGE_TOLERANCE = 1e-6  # relative; a score outside [min, max] means the range is wrong


@dataclass(frozen=True)
class MosRecord:
    path: str
    score: float  # in [0, 1], higher = better
    raw: float  # as released
    split: str | None = None
    group: str | None = None  # source content (e.g. reference image) for leak-free splits
    dist: tuple[float, ...] | None = None  # released rating distribution, worst bin first


def normalise_score(raw: float, lo: float, hi: float, higher_is_better: bool = True) -> float:
    """Map ``raw`` on [lo, hi] to [0, 1] with 1 = best."""
    if not hi > lo:
        raise ConfigError(f"score range must have max > min, got [{lo}, {hi}]")
    tol = RANGE_TOLERANCE * (hi - lo)
    if not lo - tol <= raw <= hi + tol:
        raise ConfigError(f"score {raw} outside the declared range [{lo}, {hi}]; fix the range")
    unit = min(max((raw - lo) / (hi - lo), 0.0), 1.0)
    return unit if higher_is_better else 1.0 - unit


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    return path


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    _require(path, "CSV file")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or ()]
        missing = [c for c in required if c not in columns]
        if missing:
            raise ConfigError(
                f"{path} lacks columns {missing}; expected {', '.join(required)} (has {columns})"
            )
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def _read_xlsx(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    rows = [r for r in read_xlsx_rows(_require(path, "spreadsheet")) if any(c.strip() for c in r)]
    if not rows:
        raise ConfigError(f"{path}: the first sheet is empty; expected {', '.join(required)}")
    columns = [c.strip() for c in rows[0]]
    missing = [c for c in required if c not in columns]
    if missing:
        raise ConfigError(
            f"{path} lacks columns {missing}; expected {', '.join(required)} (has {columns})"
        )
    return [
        {name: (row[i].strip() if i < len(row) else "") for i, name in enumerate(columns) if name}
        for row in rows[1:]
    ]


def _read_table(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """A CSV or .xlsx annotation table as dicts keyed by the header row."""
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return _read_xlsx(path, required)
    if suffix == ".xls":
        raise ConfigError(f"{path}: old binary Excel is not read; save it as .xlsx or CSV")
    return _read_csv(path, required)


def _float(row: dict[str, str], column: str, path: Path) -> float:
    try:
        return float(row[column])
    except ValueError:
        raise ConfigError(f"{path}: non-numeric {column} {row[column]!r}") from None


_KONIQ_COUNTS = tuple(f"c{i}" for i in range(1, SCORE_BINS + 1))


def load_koniq10k(
    root: str | os.PathLike[str],
    image_dir: str = "1024x768",
    csv_name: str = "koniq10k_scores_and_distributions.csv",
) -> list[MosRecord]:
    root = Path(root)
    path = root / csv_name
    rows = _read_csv(path, ("image_name", "MOS"))
    images = _require(root / image_dir, "KonIQ-10k image folder")
    has_counts = bool(rows) and all(c in rows[0] for c in _KONIQ_COUNTS)
    out = []
    for row in rows:
        raw = _float(row, "MOS", path)
        split = row.get("set") or None
        dist = None
        if has_counts:
            counts = [_float(row, c, path) for c in _KONIQ_COUNTS]
            where = f"{path}, {row['image_name']}"
            dist = tuple(float(p) for p in counts_distribution(counts, where))
        out.append(
            MosRecord(
                str(images / row["image_name"]),
                normalise_score(raw, 1.0, 5.0),
                raw,
                split,
                dist=dist,
            )
        )
    return out


SPAQ_ANNOTATIONS = "Annotations/MOS and Image attribute scores.xlsx"
SPAQ_CSV_EXPORTS = (
    "Annotations/MOS and Image attribute scores.csv",
    "Annotations/MOS_and_Image_attribute_scores.csv",
)


def load_spaq(
    root: str | os.PathLike[str],
    annotations: str | os.PathLike[str] | None = None,
    image_dir: str = "TestImage",
) -> list[MosRecord]:
    """SPAQ: the released .xlsx (or a CSV export with the same columns); MOS 0..100 -> /100.

    ``annotations`` (relative to ``root`` or absolute) overrides the file searched for:
    the .xlsx, else either usual name of its CSV export.
    """
    root = Path(root)
    if annotations is not None:
        path = root / annotations
    else:
        candidates = [root / SPAQ_ANNOTATIONS, *(root / name for name in SPAQ_CSV_EXPORTS)]
        path = next((p for p in candidates if p.is_file()), candidates[0])
        if not path.is_file():
            raise ConfigError(
                f"SPAQ annotations not found under {root}: expected {SPAQ_ANNOTATIONS} (or its "
                "CSV export); set data.root to the SPAQ folder or data.annotations to the file"
            )
    rows = _read_table(path, ("Image name", "MOS"))
    images = _require(root / image_dir, "SPAQ image folder")
    out = []
    for row in rows:
        if not row["Image name"]:
            continue  # trailing blank rows of a spreadsheet
        raw = _float(row, "MOS", path)
        out.append(
            MosRecord(str(images / row["Image name"]), normalise_score(raw, 0.0, 100.0), raw)
        )
    return out


def _mat_variable(path: Path, preferred: str) -> np.ndarray:
    from scipy.io import loadmat

    data = {
        k: v
        for k, v in loadmat(_require(path, "LIVE Challenge file")).items()
        if not k.startswith("__")
    }
    if preferred in data:
        return data[preferred]
    if len(data) == 1:
        return next(iter(data.values()))
    raise ConfigError(f"{path} has no variable {preferred!r} (has {sorted(data)})")


def _mat_strings(cell: np.ndarray) -> list[str]:
    # loadmat gives a cell array as an object array of 1-element string arrays.
    out = []
    for entry in np.asarray(cell, dtype=object).ravel():
        while isinstance(entry, np.ndarray):
            entry = entry.ravel()[0] if entry.size else ""
        out.append(str(entry).strip())
    return out


def load_live_challenge(root: str | os.PathLike[str]) -> list[MosRecord]:
    root = Path(root)
    names_cell = _mat_variable(root / "Data" / "AllImages_release.mat", "AllImages_release")
    names = _mat_strings(names_cell)
    mos = np.asarray(
        _mat_variable(root / "Data" / "AllMOS_release.mat", "AllMOS_release"), np.float64
    ).ravel()
    if len(names) != len(mos):
        raise ConfigError(f"LIVE Challenge under {root}: {len(names)} images but {len(mos)} MOS")
    images = _require(root / "Images", "LIVE Challenge image folder")
    out = []
    for name, raw in zip(names, mos, strict=True):
        path = images / name
        if not path.exists() and (images / "trainingImages" / name).exists():
            path = images / "trainingImages" / name  # where the release keeps the first 7
        out.append(MosRecord(str(path), normalise_score(float(raw), 0.0, 100.0), float(raw)))
    return out


def load_kadid10k(root: str | os.PathLike[str], csv_name: str = "dmos.csv") -> list[MosRecord]:
    root = Path(root)
    path = root / csv_name
    rows = _read_csv(path, ("dist_img", "ref_img", "dmos"))
    images = _require(root / "images", "KADID-10k image folder")
    out = []
    for row in rows:
        raw = _float(row, "dmos", path)
        out.append(
            MosRecord(
                str(images / row["dist_img"]),
                normalise_score(raw, 1.0, 5.0),
                raw,
                group=row["ref_img"],
            )
        )
    return out


_PYIQA_IMAGE_COLUMNS = ("dist_name", "image_name", "img_name", "image", "name", "filename")
_PYIQA_SCORE_COLUMNS = ("mos", "dmos", "score", "mos_zscore")


def load_pyiqa_meta(
    meta_csv: str | os.PathLike[str],
    image_dir: str | os.PathLike[str],
    score_min: float,
    score_max: float,
    higher_is_better: bool = True,
    split_file: str | os.PathLike[str] | None = None,
    split_index: int = 1,
) -> list[MosRecord]:
    """A pyiqa ``meta_info_*.csv``; ``split_file`` is pyiqa's split table as JSON,
    ``{"1": {"train": [rows], "val": [...], "test": [...]}, ...}``.

    pyiqa ships splits as pickles; saliq never unpickles a file it is handed (unpickling runs
    code), so convert a split you trust once, in your own session:
    ``json.dump(pickle.load(open("s.pkl", "rb")), open("s.json", "w"))``
    """
    path = Path(meta_csv)
    rows = _read_csv(path, ())
    columns = list(rows[0]) if rows else []
    lower = {c.lower(): c for c in columns}
    image_col = next((lower[c] for c in _PYIQA_IMAGE_COLUMNS if c in lower), None)
    if image_col is None and columns:
        image_col = columns[0]  # pyiqa's NR convention: name first, score second
    score_col = next((lower[c] for c in _PYIQA_SCORE_COLUMNS if c in lower), None)
    if score_col is None and image_col in columns and columns.index(image_col) + 1 < len(columns):
        score_col = columns[columns.index(image_col) + 1]
    if image_col is None or score_col is None:
        raise ConfigError(
            f"{path}: cannot find image and score columns; expected e.g. "
            f"'image_name,MOS' (NR) or 'ref_name,dist_name,mos' (FR), got {columns}"
        )
    splits: dict[int, str] = {}
    if split_file is not None:
        split_path = _require(Path(split_file), "pyiqa split file")
        if split_path.suffix.lower() != ".json":
            raise ConfigError(
                f"{split_path}: saliq reads split tables as JSON only (never pickles); convert "
                "it once with json.dump(pickle.load(...)) in a trusted session"
            )
        try:
            table = {int(k): v for k, v in json.loads(split_path.read_text()).items()}
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"{split_path}: not a JSON split table ({exc})") from None
        if split_index not in table:
            raise ConfigError(f"{split_file} has no split {split_index} (has {sorted(table)})")
        splits = {int(i): name for name, idx in table[split_index].items() for i in idx}
    ref_col = lower.get("ref_name")
    out = []
    for i, row in enumerate(rows):
        raw = _float(row, score_col, path)
        score = normalise_score(raw, score_min, score_max, higher_is_better)
        group = row[ref_col] if ref_col else None
        path_i = str(Path(image_dir) / row[image_col])
        out.append(MosRecord(path_i, score, raw, splits.get(i), group))
    return out


def load_generic_csv(
    csv_path: str | os.PathLike[str],
    score_min: float,
    score_max: float,
    higher_is_better: bool = True,
    image_dir: str | os.PathLike[str] | None = None,
) -> list[MosRecord]:
    """``image,score[,split][,group]`` CSV; relative image paths resolve against ``image_dir``
    (default: the CSV's folder). ``group`` (e.g. the source scene) keeps rows together when
    splitting."""
    path = Path(csv_path)
    rows = _read_csv(path, ("image", "score"))
    base = Path(image_dir) if image_dir is not None else path.parent
    out = []
    for row in rows:
        raw = _float(row, "score", path)
        score = normalise_score(raw, score_min, score_max, higher_is_better)
        out.append(
            MosRecord(
                str(base / row["image"]),
                score,
                raw,
                row.get("split") or None,
                row.get("group") or None,
            )
        )
    return out


class MosDataset(Dataset):
    """MOS records -> items (data/items.py): no fixations, so the saliency target is the
    preprocessing prior; level = type_index = -1, photo_index = record index.

    ``crop`` None: the whole photo, stretched to the model input by the preprocessing.
    ``crop`` (h, w): a native-resolution window (data/crops.py): random and mirrored with
    probability ``flip_prob`` when ``train``, the centre one otherwise. A training item's
    randomness is seeded by (seed, epoch, index): reproducible, independent of workers.
    """

    def __init__(
        self,
        records: Sequence[MosRecord],
        preprocessor: Preprocessor,
        saliency_hw: tuple[int, int],
        *,
        inputs: Sequence[str] = DEFAULT_INPUTS,
        targets: Sequence[str] = DEFAULT_TARGETS,
        crop: Sequence[int] | None = None,
        train: bool = False,
        flip_prob: float = FLIP_PROB,
        seed: int = 0,
        dist_sigma: float = DIST_SIGMA,
        rotate_deg: float = 0.0,
    ) -> None:
        self.records = list(records)
        self.rotate_deg = check_rotation(rotate_deg)
        self.builder = ItemBuilder(
            preprocessor, saliency_hw, tuple(inputs), tuple(targets), dist_sigma
        )
        self.crop = check_crop(list(crop) if crop is not None else None)
        self.train = bool(train)
        self.flip_prob = float(flip_prob)
        self.seed = int(seed)
        self.epoch = 0

    @property
    def preprocessor(self) -> Preprocessor:
        return self.builder.preprocessor

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> np.ndarray:
        """float64 score labels in item order (for SRCC/PLCC on a validation set)."""
        return np.array([r.score for r in self.records], dtype=np.float64)

    def frame(self, index: int) -> tuple[np.ndarray, bool, float]:
        """The uint8 BGR frame item ``index`` feeds the preprocessing, whether it was mirrored,
        and its rotation in degrees (data/crops.py; 0.0 unless training with rotate_deg)."""
        record = self.records[index]
        bgr = cv2.imread(record.path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise InvalidImageError(f"cannot read image {record.path}: missing or not an image")
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        return augment_photo(bgr, self.crop, rng, self.flip_prob, self.rotate_deg)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        frame, flipped, angle = self.frame(index)
        record = self.records[index]
        return self.builder(
            frame,
            "BGR",
            score=record.score,
            score_counts=record.dist,
            flipped=flipped,
            rotation=angle,
            photo_index=index,
        )
