"""``saliq ablate FAMILY``: train every ablation row of a model family on equal terms, one table.

Rows are the YAML files of ``configs/FAMILY/`` (a row's name is its file stem; a row that is
the same configuration as another, typically ``default.yaml``, is trained once and shown as
"= that row"). Every row trains with the same data section (the family's ``default.yaml``),
seed and budget of training images, over several splits (``data.split_seed`` = the family's
+ 0, 1, 2, ...). Each (row, split) run is one trainer run in ``OUT/ROW/splitK/``; a run
whose ``result.json`` matches its configuration is skipped on a rerun.

Evaluation per run, on photos of the run's own test split that no other split tests on (so
the splits' evaluation photos are content-disjoint, docs/ablation.md):

* the synthetic test grid through ``saliq.load(checkpoint)`` (as ``saliq evaluate``): SRCC,
  PLCC after the 4-parameter logistic, KRCC against the grid's labels, and the mean
  within-(photo, type) severity SRCC;
* the camera-resolution set (``configs/heldout_camera.json``, saliq.train.camera.evaluate):
  the same three against -level, within-group SRCC and gate-AUC;
* for models with a saliency output: NSS, CC, AUC-Judd against human fixations of Scene
  photos (saliq.train.evaluate.evaluate_saliency).

The table (saliq.train.ablate_table) gives mean and spread per metric, parameters, GFLOPs
and whether each row's change helped beyond the spread. Before training, 2 timed steps per
row give an estimate of the whole job's wall time.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from saliq.errors import ConfigError, SaliqError

HELP = "train every ablation row of a model family (configs/FAMILY/) and write one table"
DEFAULT_SPLITS = 3
# Sized so that 8 rows x 3 splits of an EfficientNet-Lite0 224 x 224 model (about 9 training
# images/s on a 2-core CPU) train and evaluate in under 3 hours (docs/ablation.md).
DEFAULT_BUDGET = 2400
DEFAULT_EPOCHS = 2  # validation (best checkpoint) after each; the budget is split over them
DEFAULT_VAL_PHOTOS = 6  # validation grid photos (x 56 images each, every epoch)
DEFAULT_EVAL_PHOTOS = 12  # held-out photos per split for the grid and for saliency
DEFAULT_CAMERA_PHOTOS = 6  # camera-resolution photos (x 31 frames each)
SALIENCY_TUNE_PHOTOS = 20  # training photos that tune evaluate_saliency's centre-Gaussian
CAMERA_FRAMES_PER_PHOTO = 31  # pristine + 5 levels x 6 types
CAMERA_FRAME_COST = 3.0  # a 1920 px frame (distortion + resize) ~ this many model-size images
GRID_LEVELS = 5
CONTENT_SOURCES = ("synthetic", "native")
RESULT_NAME = "result.json"
PLAN_NAME = "plan.json"
DEFAULT_ROW = "default"
LOG = "[saliq ablate]"
# Keys that name or place a run, or only change its speed: not part of what it learns.
_NOT_FINGERPRINTED = ("name", "output_dir", "threads", "num_workers")


@dataclass
class AblateOptions:
    """Everything ``saliq ablate`` takes (the CLI's flags, one to one)."""

    family: str
    configs_dir: str = "configs"
    splits: int = DEFAULT_SPLITS
    budget_images: int = DEFAULT_BUDGET
    seed: int = 0
    output_dir: str | None = None  # default runs/ablate/FAMILY
    only: list[str] | None = None
    dry_run: bool = False
    resume: bool = True
    epochs: int = DEFAULT_EPOCHS
    val_photos: int | None = DEFAULT_VAL_PHOTOS  # None: the family's data.val_photos
    eval_photos: int = DEFAULT_EVAL_PHOTOS
    camera_photos: int = DEFAULT_CAMERA_PHOTOS
    heldout: str = "configs/heldout_camera.json"
    baseline: str | None = None
    timing: bool = True
    progress: bool = False  # the trainer's per-step bars (its per-epoch lines always print)

    def __post_init__(self) -> None:
        positive = {
            "--splits": self.splits,
            "--budget-images": self.budget_images,
            "--epochs": self.epochs,
            "--eval-photos": self.eval_photos,
        }
        for flag, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{flag}={value!r} must be an integer >= 1")
        if self.camera_photos < 0:
            raise ConfigError(f"--camera-photos={self.camera_photos} must be >= 0 (0: skip)")
        if self.val_photos is not None and self.val_photos < 1:
            raise ConfigError(f"--val-photos={self.val_photos} must be >= 1")

    @property
    def out_dir(self) -> Path:
        return Path(self.output_dir or Path("runs") / "ablate" / self.family)


@dataclass
class Row:
    name: str
    path: Path
    raw: dict
    same_as: str | None = None  # an earlier row with the identical configuration


@dataclass(frozen=True)
class Budget:
    """Training images per run = epochs x steps_per_epoch x batch_size (>= requested)."""

    images: int
    epochs: int
    steps_per_epoch: int
    batch_size: int
    requested: int


@dataclass
class Split:
    index: int
    split_seed: int
    eval_items: list  # ContentItems: held out here and tested by no other split
    saliency_items: list  # the eval photos' with fixations, up to --eval-photos
    tune_items: list  # training photos with fixations (centre-Gaussian reference)
    train_names: set[str]
    test_names: set[str]
    exclusive: int  # how many of this split's test photos no other split tests on


@dataclass
class Run:
    row: Row
    split: Split
    config: object  # TrainConfig
    budget: Budget
    out_dir: Path
    fingerprint: str

    @property
    def label(self) -> str:
        return f"{self.row.name}/split{self.split.index}"


@dataclass
class Plan:
    family: str
    out_dir: Path
    rows: list[Row]
    baseline: str
    budget: Budget
    splits: list[Split]
    runs: list[Run]  # canonical rows only (aliases share their twin's runs), --only applied
    all_runs: list[Run]  # every canonical row's runs (the table reads them all)
    types: list[str] | None
    data_overrides: dict[str, list[str]] = field(default_factory=dict)
    eval_fingerprint: str = ""
    scene_dir: str | None = None
    camera_names: list[str] = field(default_factory=list)  # held-out camera photos scored
    camera_skipped: str | None = None  # why the camera set is not scored


# --------------------------------------------------------------------------------------------
# Rows, budget, splits
# --------------------------------------------------------------------------------------------


def discover_rows(configs_dir: str | Path, family: str) -> list[Row]:
    """The family's rows: every ``*.yaml`` of ``configs_dir/family`` (not its subfolders, which
    are families of their own), sorted by name with ``default`` last."""
    import yaml

    root = Path(configs_dir)
    folder = root / family
    if not folder.is_dir():
        families = sorted(
            p.relative_to(root).as_posix()
            for p in root.glob("**/")
            if p != root and any(p.glob("*.yaml"))
        )
        raise ConfigError(
            f"{folder}: no such family folder; families under {root}: {', '.join(families)}"
        )
    paths = sorted(folder.glob("*.yaml"), key=lambda p: (p.stem == DEFAULT_ROW, p.stem))
    if not paths:
        raise ConfigError(f"{folder} holds no .yaml rows; add one config per ablation row")
    rows = []
    for path in paths:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config is a mapping of keys to values")
        rows.append(Row(path.stem, path, raw))
    return rows


def resolve_baseline(names: list[str], requested: str | None = None) -> str:
    """The row every other is compared with: ``requested``; else a row named ``baseline``,
    ``*baseline*`` or ``none`` (the paper tables' bare model); else the first row."""
    if requested is not None:
        if requested not in names:
            raise ConfigError(f"--baseline {requested!r} is not a row; rows: {', '.join(names)}")
        return requested
    for name in names:
        if name == "none" or "baseline" in name:
            return name
    return names[0]


def plan_budget(requested: int, batch_size: int, epochs: int, steps_available: int) -> Budget:
    """Whole steps for ``requested`` images, split evenly over ``epochs`` (more epochs when one
    epoch of data holds fewer steps than that)."""
    if requested < batch_size:
        raise ConfigError(
            f"--budget-images {requested} is less than one batch ({batch_size}); raise it"
        )
    if steps_available < 1:
        raise ConfigError(
            f"one epoch of training data makes no full batch of {batch_size}; add photos or "
            "data.copies_per_photo"
        )
    steps = math.ceil(requested / batch_size)
    epochs = max(min(epochs, steps), math.ceil(steps / steps_available))
    per_epoch = math.ceil(steps / epochs)
    return Budget(epochs * per_epoch * batch_size, epochs, per_epoch, batch_size, requested)


def fingerprint(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_fingerprint(config) -> str:
    """What a run learns from: its config without name, folder and thread counts."""
    return _training_fingerprint(config.to_dict())


def _training_fingerprint(config: dict) -> str:
    # Section keys at their default value are left out, so an option added to saliq later (at
    # a default that changes nothing) does not turn finished runs into "another configuration".
    from .config import DataConfig, ModelConfig, OptimConfig

    d = {k: v for k, v in config.items() if k not in _NOT_FINGERPRINTED}
    for section, cls in (("model", ModelConfig), ("data", DataConfig), ("optim", OptimConfig)):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        d[section] = {
            k: v
            for k, v in (d.get(section) or {}).items()
            if k not in fields or v != _default(fields[k])
        }
    return fingerprint(d)


def stored_fingerprint(run_dir: Path, recorded: str | None) -> str | None:
    """A finished run's training fingerprint by today's rule, from the config it recorded."""
    plan = _read_json(run_dir / PLAN_NAME)
    if plan and isinstance(plan.get("config"), dict):
        return _training_fingerprint(plan["config"])
    return recorded


def _default(field: dataclasses.Field) -> object:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _row_raw(row: Row, base_data: dict, split_seed: int, seed: int, budget: Budget, out: Path):
    # deepcopy, not a JSON round trip: YAML reads a bare `on:` key as True, which the config
    # turns back into "on"; JSON would make it the string "true"
    raw = copy.deepcopy(row.raw)
    raw["data"] = {**base_data, "split_seed": split_seed}
    raw["seed"] = seed
    raw["output_dir"] = str(out)
    raw["max_steps_per_epoch"] = budget.steps_per_epoch
    optim = dict(raw.get("optim") or {})
    # The same number of images for every row: no early stop, a fixed step count per epoch.
    optim.update(epochs=budget.epochs, early_stopping_patience=None)
    raw["optim"] = optim
    return raw


def _train_config(row: Row, raw: dict):
    from .config import TrainConfig

    try:
        return TrainConfig.from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{row.path}: {exc}") from None


def _data_config(base_data: dict, split_seed: int, where: Path):
    from .config import TrainConfig

    try:
        return TrainConfig.from_dict({"data": {**base_data, "split_seed": split_seed}}).data
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _excluded(data) -> set[str]:
    # The trainer's own reading of data.exclude_photos_file (native source only).
    from .data.sources import excluded_photos

    return excluded_photos(data) if data.source == "native" else set()


def _types(data) -> list[str] | None:
    from .data.distortions import DISTORTIONS

    if not data.exclude_types:
        return None
    return [t for t in sorted(DISTORTIONS) if t not in data.exclude_types]


def build_splits(base_data: dict, options: AblateOptions, where: Path) -> tuple[list, list[int]]:
    """Per split: held-out evaluation photos no other split tests on, and the training count.

    The trainer's splitter draws each split's test photos at random by ``data.split_seed``, so
    test sets of different seeds overlap; the photos of that overlap are left out of every
    split's evaluation, which makes the splits' evaluation sets pairwise disjoint while each
    stays unseen by its own run's training (as in k-fold cross-validation).
    """
    import numpy as np

    from .data.sources import content_splits

    seeds = [_data_config(base_data, 0, where).split_seed + k for k in range(options.splits)]
    parts, train_counts = [], []
    for seed in seeds:
        data = _data_config(base_data, seed, where)
        split = content_splits(data)
        excluded = _excluded(data)
        parts.append(split)
        train_counts.append(len([i for i in split["train"] if i.name not in excluded]))
    tests = [{item.name for item in p["test"]} for p in parts]
    splits = []
    for k, (seed, part) in enumerate(zip(seeds, parts)):
        others = set().union(*(t for j, t in enumerate(tests) if j != k))
        exclusive = [item for item in part["test"] if item.name not in others]
        if not exclusive:
            raise ConfigError(
                f"split {k} (data.split_seed={seed}) shares every test photo with another split; "
                "add content photos, raise data.test_fraction or lower --splits"
            )
        order = np.random.default_rng([options.seed, k]).permutation(len(exclusive))
        shuffled = [exclusive[i] for i in order]
        with_fixations = [i for i in shuffled if i.fixations is not None and len(i.fixations)]
        tune = [i for i in part["train"] if i.fixations is not None and len(i.fixations)]
        splits.append(
            Split(
                index=k,
                split_seed=seed,
                eval_items=shuffled[: options.eval_photos],
                saliency_items=with_fixations[: options.eval_photos],
                tune_items=tune[:SALIENCY_TUNE_PHOTOS],
                train_names={i.name for i in part["train"]},
                test_names=tests[k],
                exclusive=len(exclusive),
            )
        )
    return splits, train_counts


def build_plan(options: AblateOptions) -> Plan:
    """Rows, budget, splits and one Run per (canonical row, split); nothing is trained."""
    rows = discover_rows(options.configs_dir, options.family)
    names = [r.name for r in rows]
    base = next((r for r in rows if r.name == DEFAULT_ROW), rows[0])
    base_data = dict(base.raw.get("data") or {})
    if options.val_photos is not None:
        base_data["val_photos"] = options.val_photos
    data0 = _data_config(base_data, 0, base.path)
    if data0.source not in CONTENT_SOURCES:
        raise ConfigError(
            f"{base.path}: data.source={data0.source}; saliq ablate evaluates on held-out "
            f"content photos, so the family must train on {' or '.join(CONTENT_SOURCES)}"
        )
    splits, train_counts = build_splits(base_data, options, base.path)
    out = options.out_dir

    # Budget from the baseline data: items per epoch = training photos x copies per photo.
    items = min(train_counts) * data0.copies_per_photo
    budgets: dict[int, Budget] = {}

    def budget_for(batch_size: int) -> Budget:
        if batch_size not in budgets:
            budgets[batch_size] = plan_budget(
                options.budget_images, batch_size, options.epochs, items // batch_size
            )
        return budgets[batch_size]

    overrides: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    runs: list[Run] = []
    canonical_rows = []
    for row in rows:
        row_data = _data_config(dict(row.raw.get("data") or {}), 0, row.path)
        base_cmp = _data_config({**base_data, "split_seed": 0}, 0, row.path)
        differs = [
            k for k, v in vars(base_cmp).items() if k != "val_photos" and getattr(row_data, k) != v
        ]
        if differs:
            overrides[row.name] = differs
        first = _train_config(row, row.raw)
        budget = budget_for(first.optim.batch_size)
        probe = _train_config(
            row, _row_raw(row, base_data, splits[0].split_seed, options.seed, budget, out)
        )
        key = config_fingerprint(probe)
        if key in seen:
            row.same_as = seen[key]
            continue
        seen[key] = row.name
        canonical_rows.append((row, budget))
    for row, budget in canonical_rows:
        for split in splits:
            run_dir = out / row.name / f"split{split.index}"
            raw = _row_raw(row, base_data, split.split_seed, options.seed, budget, run_dir)
            config = _train_config(row, raw)
            runs.append(Run(row, split, config, budget, run_dir, config_fingerprint(config)))
    wanted = _only(options.only, rows)
    camera_names, camera_skipped = _camera_plan(options, data0.scene_dir)
    evaluation = {
        "splits": [[i.name for i in s.eval_items] for s in splits],
        "saliency": [[i.name for i in s.saliency_items] for s in splits],
        "camera": camera_names,
        "types": _types(data0),
    }
    return Plan(
        family=options.family,
        out_dir=out,
        rows=rows,
        baseline=resolve_baseline(names, options.baseline),
        budget=budget_for(_train_config(base, base.raw).optim.batch_size),
        splits=splits,
        runs=[r for r in runs if wanted is None or r.row.name in wanted],
        all_runs=runs,
        types=_types(data0),
        data_overrides=overrides,
        eval_fingerprint=fingerprint(evaluation),
        scene_dir=data0.scene_dir,
        camera_names=camera_names,
        camera_skipped=camera_skipped,
    )


def _camera_plan(options: AblateOptions, scene_dir: str | None) -> tuple[list[str], str | None]:
    """The camera-resolution photos to score (the held-out list's first N), or why none."""
    from .camera.heldout import heldout_photos

    if options.camera_photos == 0:
        return [], "--camera-photos 0"
    if not scene_dir or not (Path(scene_dir) / "images").is_dir():
        return [], f"Scene data not found at {scene_dir} (data.scene_dir)"
    return heldout_photos(options.heldout)["quality"][: options.camera_photos], None


def _only(only: list[str] | None, rows: list[Row]) -> set[str] | None:
    """--only names -> the canonical rows to train (an alias trains its twin)."""
    if not only:
        return None
    by_name = {r.name: r for r in rows}
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise ConfigError(f"--only {unknown}: not rows of this family; rows: {', '.join(by_name)}")
    return {by_name[n].same_as or n for n in only}


# --------------------------------------------------------------------------------------------
# Estimate
# --------------------------------------------------------------------------------------------


def time_row(config, steps: int = 2) -> dict[str, float]:
    """Images/s of ``steps`` real training steps of one row (after one untimed warm-up step),
    of an eval forward, and of the data pipeline, on the batch size the row trains with."""
    import torch
    from torch.utils.data import DataLoader

    from saliq.preprocess import Preprocessor

    from .data.samplers import RankingBatchSampler
    from .data.sources import build_datasets
    from .engine.optim import build_optimizer
    from .losses import LossContext, build_loss
    from .trainer import RANKING_TERM, build_model, build_spec, seed_everything

    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    cuda = config.device != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    start = time.perf_counter()
    model = build_model(config)
    spec = build_spec(config, model)
    criterion = build_loss(config.loss)
    data = build_datasets(
        config.data, spec, Preprocessor.from_spec(spec), criterion.required_targets, config.seed
    )
    setup_s = time.perf_counter() - start
    bs = config.optim.batch_size
    if any(term.name == RANKING_TERM for term in criterion.terms):
        sampler = RankingBatchSampler(data.train.labels(), bs, seed=config.seed)
        loader = DataLoader(data.train, batch_sampler=sampler)
    else:
        loader = DataLoader(data.train, batch_size=bs, shuffle=True)

    def sync() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    start = time.perf_counter()
    batch = next(iter(loader))
    data_s = time.perf_counter() - start
    inputs = {n: batch[n].to(device) for n in spec.inputs}
    targets = {k: v.to(device) for k, v in batch.items() if k not in spec.inputs}
    model.to(device).train()
    optimizer = build_optimizer(model, config.optim)
    times = []
    for step in range(steps + 1):
        start = sync()
        outputs = {k: v.float() for k, v in model(inputs).items()}
        losses = criterion(LossContext(model, inputs, outputs, targets))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        if step:  # the first step pays one-off allocations: not timed
            times.append(sync() - start)
    model.eval()
    with torch.no_grad():
        model(inputs)
        start = sync()
        model(inputs)
        eval_s = sync() - start
    step_s = sum(times) / len(times)
    # On a CPU the data workers and the step share the same cores: their times add up.
    train_s = max(step_s, data_s) if cuda else step_s + data_s
    return {
        "train_ips": bs / train_s,
        "eval_ips": bs / (eval_s + data_s),
        "step_ips": bs / step_s,
        "data_ips": bs / data_s,
        "setup_s": setup_s,
    }


def eval_images(plan: Plan, run: Run) -> float:
    """Model-size images one run scores outside training (validation, grid, camera, saliency),
    camera frames weighted by their extra cost."""
    n_types = len(plan.types) if plan.types is not None else _all_types()
    per_photo = 1 + n_types * GRID_LEVELS
    val = run.config.optim.epochs * run.config.data.val_photos * per_photo
    grid = len(run.split.eval_items) * per_photo
    camera = len(plan.camera_names) * CAMERA_FRAMES_PER_PHOTO * CAMERA_FRAME_COST
    return val + grid + camera + len(run.split.saliency_items)


def _all_types() -> int:
    from .data.distortions import DISTORTIONS

    return len(DISTORTIONS)


def estimate(plan: Plan, pending: list[Run], log=print) -> dict:
    """Time 2 steps of each pending row; the whole job's wall time, printed as "~2.6 h"."""
    per_row: dict[str, dict] = {}
    total_train = total_eval = 0.0
    for run in pending:
        name = run.row.name
        if name not in per_row:
            rates = time_row(run.config)
            per_row[name] = {**rates, "runs": 0, "seconds": 0.0}
            log(
                f"{LOG} timing {name}: {rates['train_ips']:.1f} training img/s "
                f"(step {rates['step_ips']:.1f}, data {rates['data_ips']:.1f}), "
                f"{rates['eval_ips']:.1f} eval img/s"
            )
        rates = per_row[name]
        train_s = run.budget.images / rates["train_ips"]
        # + building the model and data twice (training, evaluation): a fixed cost per run
        eval_s = eval_images(plan, run) / rates["eval_ips"] + 2 * rates["setup_s"]
        rates["runs"] += 1
        rates["seconds"] += train_s + eval_s
        total_train += train_s
        total_eval += eval_s
    total = total_train + total_eval
    n_rows = len({r.row.name for r in pending})
    log(
        f"{LOG} estimate: {len(pending)} runs ({n_rows} rows x {len(plan.splits)} splits) x "
        f"{plan.budget.images} images: training {duration(total_train)} + evaluation "
        f"{duration(total_eval)} = {duration(total)}"
    )
    return {"rows": per_row, "train_s": total_train, "eval_s": total_eval, "total_s": total}


def duration(seconds: float) -> str:
    """Rounded wall time: "~40 s", "~12 min", "~2.6 h"."""
    if seconds >= 3600:
        return f"~{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds:.0f} s"


# --------------------------------------------------------------------------------------------
# Evaluation of one run
# --------------------------------------------------------------------------------------------


def grid_metrics(assessor, items: list, types: list[str] | None) -> dict[str, float]:
    """SRCC, PLCC (4-parameter logistic), KRCC against the labels of the synthetic test grid,
    and the mean within-(photo, type) severity SRCC; scored as ``saliq evaluate`` does."""
    from saliq.preprocess import Preprocessor

    from .data.synthetic import SyntheticGridSet
    from .evaluate import severity_metrics
    from .metrics import krcc, plcc_logistic, srcc

    spec = assessor.spec
    grid = SyntheticGridSet(items, Preprocessor.from_spec(spec), spec.saliency_size, types=types)
    scores: list[float] = []
    for start in range(0, len(grid), assessor.batch_size):
        frames = [grid.frame(i) for i in range(start, min(start + assessor.batch_size, len(grid)))]
        scores += [r.score for r in assessor.assess(frames, color="RGB")]
    labels = grid.labels()
    photos, kinds, levels = zip(*grid.records)
    return {
        "srcc": srcc(scores, labels),
        "plcc": plcc_logistic(scores, labels),
        "krcc": krcc(scores, labels),
        "grouped_srcc": severity_metrics(scores, levels, photos, kinds)["grouped_srcc"],
        "images": len(grid),
    }


def camera_metrics(checkpoint: Path, photos: list) -> dict[str, float]:
    """The camera-resolution set: SRCC/PLCC/KRCC of the score against -level over all frames,
    plus the camera evaluation's own within-group SRCC and gate-AUC."""
    import numpy as np

    from .camera.evaluate import evaluate_severity, model_scorer
    from .metrics import krcc, plcc_logistic, srcc

    scorer = model_scorer(str(checkpoint), backend="torch")
    report = evaluate_severity(photos, [scorer], progress=False)
    name = scorer.name
    scores = np.asarray(report["scores"][name], np.float64)
    target = -np.asarray(report["scores"]["level"], np.float64)
    ok = np.isfinite(scores)
    own = report["scorers"][name]
    return {
        "srcc": srcc(scores[ok], target[ok]),
        "plcc": plcc_logistic(scores[ok], target[ok]),
        "krcc": krcc(scores[ok], target[ok]),
        "within_srcc": own["within_group_srcc"],
        "gate_auc": own["gate_auc"],
        "frames": report["frames"],
    }


def evaluate_run(run: Run, checkpoint: Path, plan: Plan, camera_photos: list) -> dict:
    """Flat metrics (ablate_table.METRICS keys) + details (what was skipped and why)."""
    import saliq

    from .evaluate import evaluate_saliency

    metrics: dict[str, float] = {}
    details: dict[str, object] = {}
    assessor = saliq.load(checkpoint, backend="torch", threads=run.config.threads)
    grid = grid_metrics(assessor, run.split.eval_items, plan.types)
    metrics.update({f"grid_{k}": v for k, v in grid.items() if k != "images"})
    details["grid"] = {"photos": [i.name for i in run.split.eval_items], "images": grid["images"]}
    if camera_photos:
        camera = camera_metrics(checkpoint, camera_photos)
        metrics.update({f"camera_{k}": v for k, v in camera.items() if k != "frames"})
        seen = sorted(set(plan.camera_names) & run.split.train_names)
        details["camera"] = {"frames": camera["frames"], "photos_seen_in_training": seen}
    else:
        details["camera"] = {"skipped": plan.camera_skipped}
    if not assessor.spec.saliency:
        details["saliency"] = {"skipped": "the model has no saliency output"}
    elif not run.split.saliency_items or not run.split.tune_items:
        details["saliency"] = {"skipped": "no held-out photos with fixations (Scene data?)"}
    else:
        report = evaluate_saliency(
            assessor, run.split.saliency_items, run.split.tune_items, progress=False
        )
        model = report["model"]
        metrics.update(nss=model["nss"], cc=model["cc"], auc=model["auc_judd"])
        details["saliency"] = {"photos": report["photos"], "prior": report.get("prior")}
    assessor.close()
    return {"metrics": metrics, "details": details}


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def images_seen(run_dir: Path) -> int:
    """Training images the trainer logged (steps x batch per epoch, summed)."""
    from .trainer import LOG_NAME

    total = 0
    path = run_dir / LOG_NAME
    if path.is_file():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            total += round(record["images_per_second"] * record["train_seconds"])
    return total


def finished(run: Run, plan: Plan) -> dict | None:
    """The run's result when it matches the current training and evaluation configuration."""
    result = _read_json(run.out_dir / RESULT_NAME)
    if (
        result
        and stored_fingerprint(run.out_dir, result.get("train_fingerprint")) == run.fingerprint
        and result.get("eval_fingerprint") == plan.eval_fingerprint
    ):
        return result
    return None


def _check_held_out(checkpoint: Path, run: Run) -> None:
    """The trainer's recorded test split must hold every photo this run is evaluated on."""
    from saliq.checkpoint import CONFIG_KEY, read_metadata

    recorded = set(json.loads(read_metadata(checkpoint)[CONFIG_KEY]).get("split", {}).get("test"))
    leaked = sorted(i.name for i in run.split.eval_items if i.name not in recorded)
    if leaked:
        raise ConfigError(
            f"{checkpoint}: evaluation photos {leaked[:3]} are not in the test split the trainer "
            "recorded; the content splitter changed since the plan was made: rerun"
        )


def execute(run: Run, plan: Plan, options: AblateOptions, camera_photos: list) -> dict:
    """Train (or resume) one run, evaluate it, write ``result.json`` atomically."""
    from saliq.atomic import write_text_atomic

    from .ablate_table import json_safe
    from .trainer import train

    out = run.out_dir
    previous = _read_json(out / PLAN_NAME)
    stored = stored_fingerprint(out, previous.get("train_fingerprint")) if previous else None
    if previous and stored != run.fingerprint and options.resume:
        raise ConfigError(
            f"{out} holds a run of another configuration (budget, data or row changed); pass "
            "--no-resume to retrain it, or --output-dir for a new table"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        out / PLAN_NAME,
        json.dumps({"train_fingerprint": run.fingerprint, "config": run.config.to_dict()}) + "\n",
    )
    started = time.perf_counter()
    checkpoint = train(run.config, resume=options.resume, progress=options.progress)
    trained_s = time.perf_counter() - started
    _check_held_out(checkpoint, run)
    started = time.perf_counter()
    evaluation = evaluate_run(run, checkpoint, plan, camera_photos)
    result = {
        "row": run.row.name,
        "split": run.split.index,
        "split_seed": run.split.split_seed,
        "train_fingerprint": run.fingerprint,
        "eval_fingerprint": plan.eval_fingerprint,
        "checkpoint": checkpoint.name,
        "planned_images": run.budget.images,
        "images_seen": images_seen(out),
        "train_seconds": trained_s,
        "eval_seconds": time.perf_counter() - started,
        **evaluation,
    }
    write_text_atomic(out / RESULT_NAME, json.dumps(json_safe(result), indent=2) + "\n")
    return result


def _row_info(run_config) -> dict:
    """Parameters and GFLOPs of a row's model at its input size (random weights)."""
    from .model_table import build_from_config, measure

    model, spec = build_from_config(run_config)
    m = measure(model, spec, spec.name, "")
    return {
        "params": m.params,
        "trainable_params": m.trainable_params,
        "gflops": m.gflops,
        "input_hw": list(m.input_hw),
    }


def collect_table(plan: Plan, options: AblateOptions, info_cache: dict[str, dict]) -> dict:
    """The table from every finished run on disk (all rows, not only those trained now)."""
    from .ablate_table import build_table

    results: dict[str, list[dict]] = {}
    configs: dict[str, object] = {}
    for run in plan.all_runs:
        result = finished(run, plan)
        if result is not None:
            results.setdefault(run.row.name, []).append(result)
            configs.setdefault(run.row.name, run.config)
    infos = []
    for row in plan.rows:
        owner = row.same_as or row.name
        if owner not in results:
            continue
        if owner not in info_cache:  # an alias has its twin's model
            info_cache[owner] = _row_info(configs[owner])
        infos.append(
            {
                **info_cache[owner],
                "name": row.name,
                "config": row.path.as_posix(),
                "same_as": row.same_as,
            }
        )
    meta = {
        "configs_dir": options.configs_dir,
        "seed": options.seed,
        "budget": vars(plan.budget),
        "splits": [
            {
                "index": s.index,
                "split_seed": s.split_seed,
                "eval_photos": [i.name for i in s.eval_items],
                "saliency_photos": [i.name for i in s.saliency_items],
                "exclusive_test_photos": s.exclusive,
            }
            for s in plan.splits
        ],
        "camera_photos": plan.camera_names,
        "camera_skipped": plan.camera_skipped,
        "types": plan.types,
        "data_overrides": plan.data_overrides,
    }
    return build_table(plan.family, infos, results, plan.baseline, meta)


def _load_camera_photos(plan: Plan) -> list:
    if not plan.camera_names:
        return []
    from .camera.evaluate import load_photos

    return load_photos(plan.scene_dir, plan.camera_names)


def _headline(metrics: dict) -> str:
    shown = [("grid_srcc", "grid SRCC"), ("camera_srcc", "camera SRCC"), ("nss", "NSS")]
    parts = [
        f"{label} {metrics[key]:.3f}"
        for key, label in shown
        if isinstance(metrics.get(key), float) and math.isfinite(metrics[key])
    ]
    return ", ".join(parts) or "no finite metric"


def _print_plan(plan: Plan, options: AblateOptions, log) -> None:
    b = plan.budget
    log(
        f"{LOG} {plan.family}: {len(plan.rows)} rows from {Path(options.configs_dir) / plan.family}"
        f", baseline {plan.baseline}, {len(plan.splits)} splits, seed {options.seed}"
    )
    for row in plan.rows:
        note = f" (= {row.same_as}: trained once)" if row.same_as else ""
        if row.name in plan.data_overrides:
            note += f"; data keys replaced by the family's: {plan.data_overrides[row.name]}"
        log(f"{LOG}   row {row.name}: {row.path.as_posix()}{note}")
    log(
        f"{LOG} budget: {b.images} training images per run = {b.epochs} epochs x "
        f"{b.steps_per_epoch} steps x batch {b.batch_size} (asked {b.requested})"
    )
    for s in plan.splits:
        log(
            f"{LOG} split {s.index}: data.split_seed={s.split_seed}, {len(s.test_names)} test "
            f"photos, {s.exclusive} tested by no other split; evaluating {len(s.eval_items)} "
            f"(saliency {len(s.saliency_items)})"
        )
    if plan.camera_skipped:
        log(f"{LOG} camera set skipped: {plan.camera_skipped}")
    else:
        log(f"{LOG} camera set: {len(plan.camera_names)} photos x {CAMERA_FRAMES_PER_PHOTO}")


def run_ablation(options: AblateOptions, log=print) -> dict:
    """Plan, estimate, train and evaluate every pending run, write the table; a summary."""
    from .ablate_table import format_markdown, write_table

    plan = build_plan(options)
    _print_plan(plan, options, log)
    if not options.resume:
        pending = list(plan.runs)
    else:
        pending = [run for run in plan.runs if finished(run, plan) is None]
    summary: dict = {"plan": plan, "trained": [], "skipped": [], "estimate": None}
    if options.timing and pending:
        summary["estimate"] = estimate(plan, pending, log)
    if options.dry_run:
        log(f"{LOG} dry run: {len(pending)} of {len(plan.runs)} runs would train")
        return summary
    camera_photos = _load_camera_photos(plan) if pending else []
    todo = {run.label for run in pending}
    info_cache: dict[str, dict] = {}
    spent: list[float] = []
    for number, run in enumerate(plan.runs, 1):
        head = f"{LOG} run {number}/{len(plan.runs)} {run.label}:"
        if run.label not in todo:
            summary["skipped"].append(run.label)
            log(f"{head} finished earlier, skipped")
            continue
        result = execute(run, plan, options, camera_photos)
        summary["trained"].append(run.label)
        spent.append(result["train_seconds"] + result["eval_seconds"])
        left = len(pending) - len(summary["trained"])
        short = ""
        if result["images_seen"] != run.budget.images:
            short = f" (planned {run.budget.images}: the data ran out of steps)"
        log(
            f"{head} {result['images_seen']} images{short} trained in "
            f"{duration(result['train_seconds'])}, evaluated in "
            f"{duration(result['eval_seconds'])}; {_headline(result['metrics'])}"
            + (f"; {duration(left * sum(spent) / len(spent))} left" if left else "")
        )
        write_table(plan.out_dir, collect_table(plan, options, info_cache))
    table = collect_table(plan, options, info_cache)
    md, js = write_table(plan.out_dir, table)
    log(format_markdown(table))
    log(f"{LOG} table written to {md} and {js}")
    summary.update(table=table, markdown=md, json=js)
    return summary


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("family", help="a folder of --configs-dir holding one YAML per row")
    parser.add_argument("--configs-dir", default="configs")
    parser.add_argument("--splits", type=int, default=DEFAULT_SPLITS, help="content splits")
    parser.add_argument(
        "--budget-images",
        type=int,
        default=DEFAULT_BUDGET,
        help="training images every run sees (rounded up to whole steps)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the training seed of every run")
    parser.add_argument("--output-dir", default=None, help="default: runs/ablate/FAMILY")
    parser.add_argument("--only", nargs="+", default=None, metavar="ROW", help="train only these")
    parser.add_argument("--dry-run", action="store_true", help="plan and estimate; train nothing")
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip finished runs, continue interrupted ones (default); --no-resume retrains",
    )
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="budget split over")
    parser.add_argument(
        "--val-photos", type=int, default=DEFAULT_VAL_PHOTOS, help="validation grid photos"
    )
    parser.add_argument(
        "--eval-photos", type=int, default=DEFAULT_EVAL_PHOTOS, help="held-out photos per split"
    )
    parser.add_argument(
        "--camera-photos",
        type=int,
        default=DEFAULT_CAMERA_PHOTOS,
        help="camera-resolution photos (0: skip that set)",
    )
    parser.add_argument("--heldout", default="configs/heldout_camera.json")
    parser.add_argument("--baseline", default=None, help="row to compare with (default: auto)")
    parser.add_argument("--no-timing", action="store_true", help="skip the 2-step estimate")


def options_from_args(args: argparse.Namespace) -> AblateOptions:
    return AblateOptions(
        family=args.family,
        configs_dir=args.configs_dir,
        splits=args.splits,
        budget_images=args.budget_images,
        seed=args.seed,
        output_dir=args.output_dir,
        only=args.only,
        dry_run=args.dry_run,
        resume=args.resume,
        epochs=args.epochs,
        val_photos=args.val_photos,
        eval_photos=args.eval_photos,
        camera_photos=args.camera_photos,
        heldout=args.heldout,
        baseline=args.baseline,
        timing=not args.no_timing,
    )


def cmd_ablate(args: argparse.Namespace) -> int:
    run_ablation(options_from_args(args))
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``saliq ablate`` to the CLI's subcommands."""
    parser = subparsers.add_parser("ablate", help=HELP, description=HELP)
    add_arguments(parser)
    parser.set_defaults(func=cmd_ablate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saliq.train.ablate", description=HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_ablate(args)
    except SaliqError as exc:
        print(f"saliq: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
