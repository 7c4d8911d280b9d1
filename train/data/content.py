"""Pristine content: real photos (with eye fixations where available) and photo-level splits.

Two sources: the Scene saliency folder (400 photos + human fixations, passed in as a path,
never copied into the repo) and the colour photographs that ship inside scikit-image,
scikit-learn and matplotlib (no fixations; useful offline and in tests). Splits are made per
source photo, so distorted copies of one photo never land in two splits.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from saliq.errors import ConfigError

SCENE_SOURCE = "scene"
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class ContentItem:
    """A pristine photo on disk; ``fixations`` is [K, 2] (x, y) in its own pixel coordinates."""

    path: str
    source: str
    fixations: np.ndarray | None
    width: int
    height: int

    @property
    def name(self) -> str:
        return Path(self.path).name


def _image_size(path: Path) -> tuple[int, int]:
    # PIL reads only the header; decoding 400 photos just for their size would be slow.
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def scene_items(root: str | os.PathLike[str]) -> list[ContentItem]:
    """Items of the Scene folder (``images/*.jpg`` + ``fixations.csv``), sorted by file name."""
    root = Path(root)
    images, fix_csv = root / "images", root / "fixations.csv"
    for needed in (images, fix_csv):
        if not needed.exists():
            raise ConfigError(
                f"Scene data incomplete: {needed} is missing (expected images/NNN.jpg and "
                f"fixations.csv under {root})"
            )
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with fix_csv.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"image", "x", "y"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(f"{fix_csv} lacks columns {sorted(missing)}; expected image,x,y")
        for row in reader:
            points[row["image"]].append((float(row["x"]), float(row["y"])))
    items = []
    for path in sorted(images.glob("*.jpg")):
        width, height = _image_size(path)
        pts = points.get(path.name)
        fixations = np.asarray(pts, np.float32).reshape(-1, 2) if pts else None
        items.append(ContentItem(str(path), SCENE_SOURCE, fixations, width, height))
    if not items:
        raise ConfigError(f"no .jpg photos found in {images}")
    return items


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        img = getattr(data, name)()
        return img[0] if isinstance(img, tuple) else img  # stereo pairs: keep the left view

    return load


def _sklearn(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        bunch = load_sample_images()
        names = [Path(p).name for p in bunch.filenames]
        return bunch.images[names.index(file_name)]

    return load


def _matplotlib(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        with cbook.get_sample_data(file_name) as f:
            data = np.frombuffer(f.read(), np.uint8)
        return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]

    return load


# Camera photographs only: microscopy, astronomy, retina and synthetic images are left out
# because their "distortion-free" look is nothing like a camera frame. skimage's ``cat`` is
# the same photo as ``chelsea``, so it is left out too.
SAMPLE_PHOTOS: dict[str, tuple[str, Callable[[], np.ndarray]]] = {
    "astronaut": ("skimage", _skimage("astronaut")),
    "coffee": ("skimage", _skimage("coffee")),
    "chelsea": ("skimage", _skimage("chelsea")),
    "rocket": ("skimage", _skimage("rocket")),
    "motorcycle": ("skimage", _skimage("stereo_motorcycle")),
    "china": ("sklearn", _sklearn("china.jpg")),
    "flower": ("sklearn", _sklearn("flower.jpg")),
    "grace_hopper": ("matplotlib", _matplotlib("grace_hopper.jpg")),
}


def sample_photo_arrays(names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The bundled sample photos as uint8 HxWx3 RGB arrays, keyed by name."""
    names = list(SAMPLE_PHOTOS) if names is None else list(names)
    unknown = [n for n in names if n not in SAMPLE_PHOTOS]
    if unknown:
        raise ConfigError(f"unknown sample photos {unknown}; known: {', '.join(SAMPLE_PHOTOS)}")
    return {n: np.ascontiguousarray(SAMPLE_PHOTOS[n][1]()[:, :, :3]) for n in names}


def _write_png_atomic(path: Path, rgb: np.ndarray) -> None:
    # Temp file + os.replace: parallel workers or an interrupted run never leave a torn PNG.
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        if not cv2.imwrite(tmp, rgb[:, :, ::-1]):
            raise OSError(f"could not write {tmp}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sample_photo_items(cache_dir: str | os.PathLike[str]) -> list[ContentItem]:
    """The bundled sample photos, written once as PNG into ``cache_dir``; no fixations."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    items = []
    for name, (source, load) in SAMPLE_PHOTOS.items():
        path = cache / f"{name}.png"
        if not path.exists():
            _write_png_atomic(path, np.ascontiguousarray(load()[:, :, :3]))
        width, height = _image_size(path)
        items.append(ContentItem(str(path), source, None, width, height))
    return items


def split_by_photo(
    items: Sequence[ContentItem],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    test_names: Iterable[str] | None = None,
) -> dict[str, list[ContentItem]]:
    """Split into train/val/test by photo path, deterministically for a given seed.

    With ``test_names`` (file names or stems) those photos form the test split and the rest
    are divided train:val in the ratio of the first two fractions.
    """
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ConfigError(f"fractions must be three non-negative numbers, got {fractions}")
    by_photo: dict[str, list[ContentItem]] = defaultdict(list)
    for item in items:
        by_photo[item.path].append(item)
    photos = sorted(by_photo)
    splits: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    if test_names is not None:
        wanted = set(test_names)
        test = [p for p in photos if Path(p).name in wanted or Path(p).stem in wanted]
        found = {Path(p).name for p in test} | {Path(p).stem for p in test}
        if wanted - found:
            raise ConfigError(f"test photos not among the items: {sorted(wanted - found)}")
        splits["test"] = test
        photos = [p for p in photos if p not in set(test)]
        fractions = (fractions[0], fractions[1], 0.0)
    order = np.random.default_rng(seed).permutation(len(photos))
    shuffled = [photos[i] for i in order]
    total = sum(fractions)
    n_train = round(len(shuffled) * fractions[0] / total)
    n_val = round(len(shuffled) * fractions[1] / total) if fractions[2] else len(shuffled) - n_train
    splits["train"] = shuffled[:n_train]
    splits["val"] = shuffled[n_train : n_train + n_val]
    if test_names is None:
        splits["test"] = shuffled[n_train + n_val :]
    return {
        name: [it for p in sorted(paths) for it in by_photo[p]] for name, paths in splits.items()
    }
