"""The one item builder, label distributions, native-resolution crops and build_datasets."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.io import savemat
from torch.utils.data import default_collate

from saliq.errors import ConfigError
from saliq.preprocess import Preprocessor
from saliq.spec import ModelSpec
from saliq.train.config import DataConfig, load_config
from saliq.train.data import sources
from saliq.train.data.crops import crop_photo, fit_to_crop
from saliq.train.data.items import BOOKKEEPING_KEYS, ItemBuilder
from saliq.train.data.labels import (
    BIN_CENTRES,
    DIST_SIGMA,
    counts_distribution,
    label_distribution,
)
from saliq.train.data.mos import MosDataset, MosRecord
from saliq.train.data.saliency_targets import fixation_density
from saliq.train.data.sources import Datasets, build_datasets, split_records
from saliq.train.data.synthetic import SyntheticGridSet, SyntheticTrainSet

REPO = Path(__file__).resolve().parents[1]
PRE = Preprocessor(64, 64)
ALL_INPUTS = ("image", "gradient", "prior")
ALL_TARGETS = ("score", "score_dist", "saliency")


def _spec(inputs: tuple[str, ...] = ("image",)) -> ModelSpec:
    return ModelSpec(
        name="t",
        architecture="sgdnet",
        backbone="efficientnet_lite0",
        input_height=64,
        input_width=64,
        inputs=inputs,
        saliency_stride=16,
    )


def _png(path: Path, hw: tuple[int, int] = (48, 72), seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = np.random.default_rng(seed).integers(0, 256, (*hw, 3), np.uint8)
    cv2.imwrite(str(path), bgr)
    return bgr


def _frame(hw: tuple[int, int] = (40, 56), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), np.uint8)


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize("score", [0.0, 0.05, 0.21, 0.5, 0.69, 0.93, 1.0])
def test_label_distribution_sums_to_one_and_peaks_at_the_labels_bin(score: float) -> None:
    dist = label_distribution(score)
    assert dist.dtype == np.float32 and dist.shape == (5,)
    assert float(dist.sum()) == pytest.approx(1.0, abs=1e-6) and (dist >= 0).all()
    assert int(dist.argmax()) == min(int(score * 5), 4)


def test_label_distribution_is_truncated_gaussian_mass() -> None:
    # Label at a bin centre: the bin holds the +-1 sigma mass (68.27 %), each neighbour the
    # 1..3 sigma mass (15.73 %), up to the tails beyond [0, 1] that truncation removes.
    dist = label_distribution(0.5, 0.1)
    np.testing.assert_allclose(dist[1:4], [0.1573, 0.6827, 0.1573], atol=2e-4)
    np.testing.assert_allclose(dist, dist[::-1], atol=1e-7)  # symmetric about the middle bin
    # At the edge, truncation renormalises the half that lies inside [0, 1].
    # Label 1.0: the inside half is [0, 1] -> its top bin holds the 0..2 sigma mass, 95.45 %.
    edge = label_distribution(1.0, 0.1)
    assert edge[4] == pytest.approx(0.9545, abs=2e-4) and edge[3] == pytest.approx(0.0455, abs=2e-4)
    assert np.dot(label_distribution(0.7, 0.05), BIN_CENTRES) == pytest.approx(0.7, abs=0.01)
    wide, narrow = label_distribution(0.5, 0.3), label_distribution(0.5, 0.05)
    assert wide.max() < narrow.max()
    with pytest.raises(ConfigError, match="dist_sigma"):
        label_distribution(0.5, 0.0)
    with pytest.raises(ConfigError, match="outside"):
        label_distribution(1.2)


def test_counts_distribution() -> None:
    np.testing.assert_allclose(counts_distribution([0, 1, 3, 0, 0]), [0, 0.25, 0.75, 0, 0])
    with pytest.raises(ConfigError, match="not all zero"):
        counts_distribution([0, 0, 0, 0, 0])
    with pytest.raises(ConfigError, match="5 rating counts"):
        counts_distribution([1, 2])


# ---------------------------------------------------------------- item builder


@pytest.mark.parametrize(
    ("inputs", "targets"),
    [
        (("image",), ("score",)),
        (("image", "gradient"), ("score", "saliency")),
        (ALL_INPUTS, ALL_TARGETS),
        (("prior", "image"), ("score_dist",)),
    ],
)
def test_builder_emits_exactly_the_requested_keys(inputs, targets) -> None:
    builder = ItemBuilder.for_model(
        _spec(tuple(sorted(inputs, key=ALL_INPUTS.index))), PRE, targets
    )
    item = builder(_frame(), "RGB", score=0.3, level=2, type_index=4, photo_index=7)
    assert set(item) == set(inputs) | set(targets) | set(BOOKKEEPING_KEYS) == set(builder.keys)
    shapes = {
        "image": (3, 64, 64),
        "gradient": (1, 64, 64),
        "prior": (1, 16, 16),
        "score": (),
        "score_dist": (5,),
        "saliency": (1, 4, 4),
    }
    for key in (*inputs, *targets):
        assert item[key].dtype == torch.float32 and tuple(item[key].shape) == shapes[key], key
    assert [int(item[k]) for k in BOOKKEEPING_KEYS] == [2, 4, 7]
    assert all(item[k].dtype == torch.int64 for k in BOOKKEEPING_KEYS)


def test_builder_inputs_are_the_preprocessors_pixels() -> None:
    frame = _frame()
    item = ItemBuilder(PRE, (4, 4), ALL_INPUTS, ("score",))(frame, "BGR", score=1.0)
    ref = PRE.one(frame, "BGR")
    for key in ALL_INPUTS:
        np.testing.assert_array_equal(item[key].numpy(), ref[key])
    assert float(item["gradient"].max()) > 0  # a real Sobel map, not a placeholder


def test_builder_score_dist_from_counts_or_gaussian() -> None:
    builder = ItemBuilder(PRE, (4, 4), ("image",), ("score", "score_dist"))
    counted = builder(_frame(), score=0.5, score_counts=[1, 0, 0, 0, 3])
    np.testing.assert_allclose(counted["score_dist"].numpy(), [0.25, 0, 0, 0, 0.75])
    gauss = builder(_frame(), score=0.82)
    np.testing.assert_allclose(gauss["score_dist"].numpy(), label_distribution(0.82, DIST_SIGMA))
    assert int(gauss["score_dist"].argmax()) == 4
    wider = ItemBuilder(PRE, (4, 4), ("image",), ("score_dist",), dist_sigma=0.3)
    assert float(wider(_frame(), score=0.82)["score_dist"].max()) < float(gauss["score_dist"].max())


def test_builder_saliency_rules() -> None:
    builder = ItemBuilder(PRE, (4, 4), ("image",), ("saliency",))
    frame = _frame((40, 80))
    # No fixations: the preprocessing prior, resized and sum-normalised.
    prior = PRE.one(frame, "RGB")["prior"][0]
    expected = fixation_density(None, (40, 80), (4, 4), prior=prior)
    np.testing.assert_allclose(builder(frame, score=0.5)["saliency"][0].numpy(), expected)
    # Fixations in a 200x400 photo that the frame is a stretched copy of, then mirrored.
    fix = np.array([[350.0, 20.0]])
    item = builder(frame, score=0.5, fixations=fix, fixation_hw=(200, 400))
    sal = item["saliency"][0].numpy()
    assert sal.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(sal.argmax(), sal.shape) == (0, 3)
    mirrored = builder(
        frame[:, ::-1], score=0.5, fixations=fix, fixation_hw=(200, 400), flipped=True
    )
    assert np.unravel_index(mirrored["saliency"][0].numpy().argmax(), (4, 4)) == (0, 0)
    # A shipped saliency map is used when there are no fixations.
    shipped = np.zeros((40, 80), np.float32)
    shipped[30:, :10] = 1.0
    item = builder(frame, score=0.5, saliency_map=shipped)
    assert np.unravel_index(item["saliency"][0].numpy().argmax(), (4, 4)) == (3, 0)


def test_builder_rejects_unknown_names() -> None:
    with pytest.raises(ConfigError, match="depth"):
        ItemBuilder(PRE, (4, 4), ("image", "depth"))
    with pytest.raises(ConfigError, match="mos_std"):
        ItemBuilder(PRE, (4, 4), ("image",), ("score", "mos_std"))


def test_synthetic_sets_emit_requested_keys(tmp_path: Path) -> None:
    from saliq.train.data.content import ContentItem

    photo = tmp_path / "p.png"
    _png(photo, (60, 80))
    items = [ContentItem(str(photo), "test", None, 80, 60)]
    train = SyntheticTrainSet(
        items,
        PRE,
        (4, 4),
        copies_per_photo=1,
        inputs=("image", "gradient"),
        targets=("score", "score_dist"),
        pristine_prob=0.0,
    )
    item = train[0]
    assert set(item) == {"image", "gradient", "score", "score_dist", *BOOKKEEPING_KEYS}
    dist = item["score_dist"].numpy()
    assert int(dist.argmax()) == min(int(float(item["score"]) * 5), 4)
    grid = SyntheticGridSet(items, PRE, (4, 4), types=["jpeg"], targets=("score",))
    np.testing.assert_allclose(grid.labels(), [1.0, 0.82, 0.64, 0.46, 0.28, 0.1])


# ---------------------------------------------------------------- crops


def test_fit_to_crop_upscales_the_short_photo_keeping_aspect() -> None:
    photo = _frame((30, 50))
    grown = fit_to_crop(photo, (38, 38))
    assert grown.shape == (38, 64, 3) and grown.dtype == np.uint8  # 30x50 * 38/30 -> 38x63.3
    assert fit_to_crop(photo, (20, 20)) is photo
    tall = fit_to_crop(_frame((100, 20)), (32, 32))
    assert tall.shape == (160, 32, 3)


def test_crop_photo_train_random_val_centre() -> None:
    photo = np.arange(60 * 80 * 3, dtype=np.uint32).reshape(60, 80, 3).astype(np.uint8)
    a, flip_a = crop_photo(photo, (32, 32), np.random.default_rng([0, 0, 5]))
    b, flip_b = crop_photo(photo, (32, 32), np.random.default_rng([0, 0, 5]))
    assert a.shape == (32, 32, 3) and np.array_equal(a, b) and flip_a == flip_b
    windows = {
        crop_photo(photo, (32, 32), np.random.default_rng([0, e, 5]))[0].tobytes() for e in range(6)
    }
    assert len(windows) > 1  # a new epoch draws a new window
    flips = [crop_photo(photo, (8, 8), np.random.default_rng(s))[1] for s in range(200)]
    assert 70 < sum(flips) < 130  # p = 0.5
    centre, flipped = crop_photo(photo, (32, 32), None)
    assert not flipped and np.array_equal(centre, photo[14:46, 24:56])
    whole, _ = crop_photo(photo, None, None)
    assert np.array_equal(whole, photo)


def test_mos_dataset_crops_at_native_resolution(tmp_path: Path) -> None:
    bgr = _png(tmp_path / "a.png", (100, 120))
    _png(tmp_path / "small.png", (40, 50), seed=3)
    records = [
        MosRecord(str(tmp_path / "a.png"), 0.6, 3.4),
        MosRecord(str(tmp_path / "small.png"), 0.2, 1.8),
    ]
    val = MosDataset(records, PRE, (4, 4), crop=[64, 64])
    item = val[0]
    # Crop == model size: the preprocessing is an identity resize of the centre window.
    np.testing.assert_array_equal(item["image"].numpy(), PRE.one(bgr[18:82, 28:92], "BGR")["image"])
    assert tuple(val[1]["image"].shape) == (3, 64, 64)  # smaller photo upscaled, then cut
    train = MosDataset(records, PRE, (4, 4), crop=[64, 64], train=True, seed=4)
    again = MosDataset(records, PRE, (4, 4), crop=[64, 64], train=True, seed=4)
    assert torch.equal(train[0]["image"], again[0]["image"])
    images = set()
    for epoch in range(5):
        train.set_epoch(epoch)
        images.add(train[0]["image"].numpy().tobytes())
    assert len(images) > 1
    np.testing.assert_allclose(val.labels(), [0.6, 0.2])
    whole = MosDataset(records, PRE, (4, 4))[0]  # no crop: the whole photo stretched (v1)
    np.testing.assert_array_equal(whole["image"].numpy(), PRE.one(bgr, "BGR")["image"])


# ---------------------------------------------------------------- sources


def _data(**kw) -> DataConfig:
    kw.setdefault("val_fraction", 0.2)
    kw.setdefault("test_fraction", 0.2)
    return DataConfig(**kw)


def _koniq(root: Path, n: int = 10, sets: bool = False) -> None:
    header = "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD" + (",set" if sets else "")
    lines = [header]
    for i in range(n):
        _png(root / "1024x768" / f"{i}.jpg", (40, 48), seed=i)
        split = ("training", "validation", "test")[i % 3] if sets else None
        row = f"{i}.jpg,{i % 5},1,2,0,{i % 2},0,{1 + 4 * i / n:.3f},0.5"
        lines.append(row + (f",{split}" if sets else ""))
    name = "koniq10k_distributions_sets.csv" if sets else "koniq10k_scores_and_distributions.csv"
    (root / name).write_text("\n".join(lines) + "\n")


def test_build_koniq_released_split_and_counts(tmp_path: Path) -> None:
    _koniq(tmp_path, 9, sets=True)
    spec = _spec(("image", "gradient"))
    built = build_datasets(
        _data(source="koniq", root=str(tmp_path)), spec, PRE, ("score", "score_dist"), seed=0
    )
    train, val, test = built
    assert isinstance(built, Datasets) and len(train) == len(val) == len(test) == 3
    assert built.split["train"] == ["1024x768/0.jpg", "1024x768/3.jpg", "1024x768/6.jpg"]
    item = train[1]  # 3.jpg: counts 3,1,2,0,1
    assert set(item) == {"image", "gradient", "score", "score_dist", *BOOKKEEPING_KEYS}
    np.testing.assert_allclose(item["score_dist"].numpy(), np.array([3, 1, 2, 0, 1]) / 7, atol=1e-6)
    assert not val.train and train.train


def test_build_koniq_random_split_by_image(tmp_path: Path) -> None:
    _koniq(tmp_path, 10)
    cfg = _data(source="koniq", root=str(tmp_path), crop=[32, 32])
    a = build_datasets(cfg, _spec(), PRE, ("score",), seed=0)
    b = build_datasets(cfg, _spec(), PRE, ("score",), seed=0)
    assert a.split == b.split and [len(v) for v in a.split.values()] == [6, 2, 2]
    assert not set(a.split["train"]) & (set(a.split["val"]) | set(a.split["test"]))
    assert a.train.crop == (32, 32) and set(a.train[0]) == {"image", "score", *BOOKKEEPING_KEYS}
    batch = default_collate([a.train[i] for i in range(3)])  # what the DataLoader does
    assert tuple(batch["image"].shape) == (3, 3, 64, 64) and batch["score"].shape == (3,)


def test_build_kadid_splits_by_reference(tmp_path: Path) -> None:
    lines = ["dist_img,ref_img,dmos,var"]
    for ref in range(6):
        for d in range(3):
            name = f"I{ref:02d}_{d + 1:02d}_01.png"
            _png(tmp_path / "images" / name, (32, 40), seed=ref * 3 + d)
            lines.append(f"{name},I{ref:02d}.png,{1 + d * 1.5},0.1")
    (tmp_path / "dmos.csv").write_text("\n".join(lines) + "\n")
    train, val, test = build_datasets(
        _data(source="kadid", root=str(tmp_path), val_fraction=0.34, test_fraction=0.34),
        _spec(),
        PRE,
        ("score",),
        seed=0,
    )
    refs = [{r.group for r in s.records} for s in (train, val)] + [{r.group for r in test}]
    assert all(refs) and not (refs[0] & refs[1] or refs[0] & refs[2] or refs[1] & refs[2])
    assert len(train) + len(val) + len(test) == 18 and len(train) % 3 == 0


def test_build_livec_spaq_and_csv(tmp_path: Path) -> None:
    live = tmp_path / "livec"
    (live / "Data").mkdir(parents=True)
    names = np.empty((5, 1), dtype=object)
    names[:, 0] = [f"{i}.bmp" for i in range(5)]
    savemat(live / "Data" / "AllImages_release.mat", {"AllImages_release": names})
    savemat(
        live / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([[10.0, 30, 50, 70, 90]])}
    )
    for i in range(5):
        _png(live / "Images" / f"{i}.bmp", seed=i)
    train, val, test = build_datasets(
        _data(source="livec", root=str(live)), _spec(), PRE, ("score",), 0
    )
    assert (len(train), len(val), len(test)) == (3, 1, 1)

    spaq = tmp_path / "spaq"
    (spaq / "Annotations").mkdir(parents=True)
    rows = ["Image name,MOS,Brightness"] + [f"{i:05d}.jpg,{20 * i + 5},50" for i in range(5)]
    (spaq / "Annotations" / "MOS and Image attribute scores.csv").write_text("\n".join(rows) + "\n")
    for i in range(5):
        _png(spaq / "TestImage" / f"{i:05d}.jpg", seed=i)
    built = build_datasets(_data(source="spaq", root=str(spaq)), _spec(), PRE, ("score_dist",), 0)
    every = [*built.train.records, *built.val.records, *built.test_records]
    assert sorted(r.raw for r in every) == [5, 25, 45, 65, 85] and len(built.train) == 3
    assert all(r.score == pytest.approx(r.raw / 100) for r in every)
    assert tuple(built.train[0]["score_dist"].shape) == (5,)

    (tmp_path / "g" / "img").mkdir(parents=True)
    lines = ["image,score,group"]
    for i in range(8):
        _png(tmp_path / "g" / "img" / f"{i}.png", seed=i)
        lines.append(f"{i}.png,{i},scene{i // 2}")
    (tmp_path / "g" / "s.csv").write_text("\n".join(lines) + "\n")
    csv_options = {"path": "s.csv", "score_min": 0, "score_max": 7, "image_dir": "img"}
    built = build_datasets(
        _data(source="csv", root=str(tmp_path / "g"), csv=csv_options), _spec(), PRE, ("score",), 0
    )
    groups = [
        {r.group for r in s} for s in (built.train.records, built.val.records, built.test_records)
    ]
    assert sum(len(g) for g in groups) == 4 and not (groups[0] & groups[1])
    (tmp_path / "g" / "meta.csv").write_text(
        "image_name,MOS\n" + "".join(f"img/{i}.png,{i}\n" for i in range(8))
    )
    pyiqa = {"path": "meta.csv", "score_min": 0, "score_max": 7, "format": "pyiqa"}
    built = build_datasets(
        _data(source="csv", root=str(tmp_path / "g"), csv=pyiqa), _spec(), PRE, ("score",), 0
    )
    assert len(built.train) + len(built.val) + len(built.test_records) == 8


def test_missing_data_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"needs data\.root.*--set data\.root"):
        build_datasets(_data(source="kadid"), _spec(), PRE, ("score",), 0)
    with pytest.raises(ConfigError, match="nowhere.*does not exist"):
        build_datasets(
            _data(source="spaq", root=str(tmp_path / "nowhere")), _spec(), PRE, ("score",), 0
        )
    _koniq(tmp_path, 4)
    (tmp_path / "1024x768" / "2.jpg").unlink()
    with pytest.raises(ConfigError, match=r"1 of 4 images not found.*2\.jpg"):
        build_datasets(_data(source="koniq", root=str(tmp_path)), _spec(), PRE, ("score",), 0)
    with pytest.raises(ConfigError, match=r"data\.csv\.path"):
        build_datasets(_data(source="csv"), _spec(), PRE, ("score",), 0)


def test_synthetic_source_and_sample_fallback(tmp_path: Path) -> None:
    missing = tmp_path / "no_scene"
    cfg = _data(scene_dir=str(missing), cache_dir=str(tmp_path / "cache"), val_photos=1)
    with pytest.raises(ConfigError, match=r"no_scene.*data\.scene_dir.*allow_sample_fallback=true"):
        build_datasets(cfg, _spec(), PRE, ("score",), 0)
    cfg.allow_sample_fallback = True
    cfg.sample_photos = False  # the explicit fallback uses the sample photos regardless
    with pytest.warns(UserWarning, match="sample photos"):
        built = build_datasets(cfg, _spec(("image", "prior")), PRE, ("score", "saliency"), 3)
    train, val, test = built
    assert isinstance(train, SyntheticTrainSet) and isinstance(val, SyntheticGridSet)
    assert len(val.items) == 1 and sum(len(v) for v in built.split.values()) == 8
    assert set(built.split["test"]) == {Path(i.path).name for i in test}
    assert set(train[0]) == {"image", "prior", "score", "saliency", *BOOKKEEPING_KEYS}
    with pytest.raises(ConfigError, match="data.crop"):
        cfg.crop = [64, 64]
        build_datasets(cfg, _spec(), PRE, ("score",), 0)
    cfg.crop, cfg.exclude_types = None, ["jpeg", "nonsense"]
    with pytest.raises(ConfigError, match="nonsense"):
        build_datasets(cfg, _spec(), PRE, ("score",), 0)


def test_split_records_rules() -> None:
    recs = [MosRecord(f"{i}.png", 0.5, 0.5, split=s) for i, s in enumerate(["train", None])]
    with pytest.raises(ConfigError, match="label every row or none"):
        split_records(recs)
    leak = [MosRecord("a.png", 0.5, 0.5, "train", "r1"), MosRecord("b.png", 0.5, 0.5, "test", "r1")]
    with pytest.raises(ConfigError, match="r1.*leak"):
        split_records(leak)
    with pytest.raises(ConfigError, match="holdout"):
        split_records([MosRecord("a.png", 0.5, 0.5, "holdout")])


def test_data_config_validation_and_shipped_configs() -> None:
    with pytest.raises(ConfigError, match="data.source='imagenet'"):
        DataConfig(source="imagenet")
    with pytest.raises(ConfigError, match="data.crop"):
        DataConfig(crop=[0, 32])
    with pytest.raises(ConfigError, match="unknown keys"):
        DataConfig(source="csv", csv={"pth": "x.csv"})
    assert DataConfig().dist_sigma == DIST_SIGMA and not DataConfig().allow_sample_fallback
    assert set(DataConfig.SOURCES) == {
        "synthetic",
        "native",
        "koniq",
        "kadid",
        "livec",
        "spaq",
        "csv",
    }
    # each one reachable: the two distortion sources have their own builders
    assert set(DataConfig.SOURCES) == {"synthetic", "native", *sources._LOADERS}
    for path in sorted((REPO / "configs").glob("*.yaml")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            data = load_config(path).data
        assert data.source in ("synthetic", "native") and data.crop is None


# ---------------------------------------------------------------- rotation, native targets

# Digests of items built with default settings, computed on the code before data.rotate_deg
# and the native saliency targets existed: the defaults must keep building these exact items.
BASELINE_DIGESTS = {
    "native_train": [
        "0ce755e5d5d9b57f",
        "4481a75b0c9e9117",
        "bdc0fd20df0cce12",
        "f0149ae616e16900",
        "fef0a3603726f86d",
        "891efb52332ab4b4",
    ],
    "native_grid": ["2e8cf9504dae7a9b", "aaf01e2edcb2a113", "93c41fe917ac0d44"],
    "synthetic": [
        "10bbca5646cd9e48",
        "8b51ad811a226216",
        "47033ed07899e474",
        "301062c6937943e6",
        "6025465fc082753b",
        "cc7d223dd1ac04f1",
    ],
    "mos": ["a2981fd70a20deeb", "d018bdaea5636087"],
}


# Keys added to native items after the baseline digests were taken (group ranking); the
# values of every key the baseline had must stay the same.
KEYS_ADDED_LATER = ("severity", "group_index")


def _digest(item: dict) -> str:
    import hashlib

    h = hashlib.sha256()
    for key in sorted(set(item) - set(KEYS_ADDED_LATER)):
        h.update(key.encode())
        h.update(np.round(item[key].numpy().astype(np.float64), 5).tobytes())
    return h.hexdigest()[:16]


def test_default_items_are_unchanged_by_rotation_and_native_targets(tmp_path: Path) -> None:
    from saliq.train.data.content import ContentItem
    from saliq.train.data.native import NativeGridSet, NativeTrainSet
    from saliq.views import ViewConfig

    rng = np.random.default_rng(0)
    items = []
    for i in range(2):
        small = rng.integers(0, 255, (24, 32, 3)).astype(np.uint8)
        photo = cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC)
        path = tmp_path / f"p{i}.png"
        cv2.imwrite(str(path), photo)
        fix = np.array([[100.0, 80.0], [500.0, 400.0], [320.0, 240.0]], np.float32)
        items.append(ContentItem(str(path), "test", fix if i == 0 else None, 640, 480))
    views = ViewConfig(detail_crops=3, crop_size=32, salient_crops=2)
    pre2 = Preprocessor(64, 64, version=2, views=views)
    native = NativeTrainSet(items, pre2, ("image", "crops", "crop_weights"), 3, seed=1)
    native.set_epoch(1)
    grid = NativeGridSet(items[:1], pre2, ("image", "crops"), types=["gaussian_noise"])
    synthetic = SyntheticTrainSet(
        items, PRE, (4, 4), copies_per_photo=3, seed=2, inputs=ALL_INPUTS, targets=ALL_TARGETS
    )
    records = [MosRecord(it.path, 0.5, None, None, None) for it in items]
    mos = MosDataset(records, PRE, (4, 4), crop=[200, 300], train=True, seed=3)
    got = {
        "native_train": [_digest(native[i]) for i in range(len(native))],
        "native_grid": [_digest(grid[i]) for i in range(3)],
        "synthetic": [_digest(synthetic[i]) for i in range(len(synthetic))],
        "mos": [_digest(mos[i]) for i in range(len(mos))],
    }
    assert got == BASELINE_DIGESTS


def _dot_frame(hw=(96, 128), xy=(80.0, 40.0)) -> np.ndarray:
    frame = np.full((*hw, 3), 10, np.uint8)
    cv2.circle(frame, (int(xy[0]), int(xy[1])), 5, (255, 255, 255), -1)
    return frame


def _bright_centre(frame: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(frame.mean(axis=2) > 128)
    return rows.mean(), cols.mean()


@pytest.mark.parametrize("flipped", [False, True])
@pytest.mark.parametrize("angle", [35.0, -60.0])
def test_rotated_frame_keeps_the_saliency_target_on_the_fixated_dot(flipped, angle) -> None:
    from saliq.train.data.crops import rotate_frame

    # Fixations on a 2x larger annotation image (stretched onto the frame), dot off-centre
    # but near enough to it that no reflected copy of the dot enters the rotated frame.
    fix = np.array([[2 * 80.0 + 0.5, 2 * 40.0 + 0.5]] * 4, np.float32)
    frame = _dot_frame()
    if flipped:
        frame = np.ascontiguousarray(frame[:, ::-1])
    rotated = rotate_frame(frame, angle)
    builder = ItemBuilder(Preprocessor(96, 128), (48, 64), targets=("saliency",))
    item = builder(
        rotated, score=0.5, fixations=fix, fixation_hw=(192, 256), flipped=flipped, rotation=angle
    )
    saliency = item["saliency"].numpy()[0]
    row, col = np.unravel_index(int(saliency.argmax()), saliency.shape)
    dot_row, dot_col = _bright_centre(rotated)  # the dot's new position, in frame pixels
    assert abs((row + 0.5) * 2 - dot_row) <= 2.0 and abs((col + 0.5) * 2 - dot_col) <= 2.0
    # ... and it moved: the unrotated target peaks elsewhere
    plain = builder(frame, score=0.5, fixations=fix, fixation_hw=(192, 256), flipped=flipped)
    assert np.unravel_index(int(plain["saliency"].numpy()[0].argmax()), (48, 64)) != (row, col)


def test_rotation_draws_are_seeded_and_off_means_identical() -> None:
    from saliq.train.data.crops import augment_photo, draw_rotation

    photo = _frame((60, 80))
    for seed in range(5):
        plain = crop_photo(photo, (40, 50), np.random.default_rng(seed))
        off = augment_photo(photo, (40, 50), np.random.default_rng(seed), rotate_deg=0.0)
        assert off[2] == 0.0 and off[1] == plain[1] and np.array_equal(off[0], plain[0])
        a = augment_photo(photo, (40, 50), np.random.default_rng(seed), rotate_deg=10.0)
        b = augment_photo(photo, (40, 50), np.random.default_rng(seed), rotate_deg=10.0)
        assert a[2] == b[2] and -10.0 <= a[2] <= 10.0 and a[2] != 0.0
        assert np.array_equal(a[0], b[0]) and a[0].dtype == np.uint8 and a[0].shape == (40, 50, 3)
    assert draw_rotation(None, 10.0) == 0.0  # validation/test: never rotated
    rng = np.random.default_rng(0)
    assert draw_rotation(rng, 0.0) == 0.0 and rng.random() == np.random.default_rng(0).random()


def test_rotate_deg_config_is_validated() -> None:
    assert DataConfig().rotate_deg == 0.0 and DataConfig(rotate_deg=10).rotate_deg == 10.0
    for bad in (-1.0, 181.0, True, "ten"):
        with pytest.raises(ConfigError, match="data.rotate_deg"):
            DataConfig(rotate_deg=bad)


def test_build_datasets_native_emits_the_losss_saliency_targets(tmp_path: Path) -> None:
    scene = tmp_path / "scene"
    rows = ["image,x,y"]
    for i in range(3):
        _png(scene / "images" / f"{i:03d}.jpg", (120, 160), seed=i)
        rows.append(f"{i:03d}.jpg,40,30")
    (scene / "fixations.csv").write_text("\n".join(rows) + "\n")
    spec = ModelSpec(
        name="t",
        architecture="sgdnet_views",
        backbone="efficientnet_lite0",
        input_height=64,
        input_width=64,
        inputs=("image", "crops", "crop_weights"),
        saliency_stride=16,
        preprocessing_version=2,
        view_config={"detail_crops": 2, "crop_size": 32, "salient_crops": 1},
    )
    config = DataConfig(
        source="native",
        scene_dir=str(scene),
        sample_photos=False,
        val_fraction=0.34,
        test_fraction=0.33,
        copies_per_photo=1,
        rotate_deg=5.0,
    )
    wanted = {"score", "crop_targets", "saliency", "saliency_high", "saliency_low"}
    train, val, _ = build_datasets(config, spec, Preprocessor.from_spec(spec), wanted, seed=0)
    assert train.rotate_deg == 5.0
    for item in (train[0], val[0]):
        assert wanted <= set(item)
        assert tuple(item["saliency_high"].shape) == (1, *spec.saliency_size)
    with pytest.raises(ConfigError, match="cannot make the targets"):
        build_datasets(config, spec, Preprocessor.from_spec(spec), {"score", "nope"}, seed=0)
