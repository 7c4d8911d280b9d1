"""Training loop: AdamW + warm-up/cosine schedule, checkpoints, resume, best-on-validation."""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from saliq.atomic import write_text_atomic
from saliq.preprocess import Preprocessor
from saliq.spec import ModelSpec

from .checkpoint import load_training_state, save_checkpoint
from .config import TrainConfig
from .data.content import ContentItem, sample_photo_items, scene_items, split_by_photo
from .data.distortions import quality_label
from .data.synthetic import SyntheticGridSet, SyntheticTrainSet
from .losses import SGDNetLoss
from .metrics import iqa_summary
from .models import create_model

BEST_NAME = "best.safetensors"
LAST_NAME = "last.safetensors"
LOG_NAME = "metrics.jsonl"
SELECTION_METRIC = "grouped_srcc"  # what "best on validation" means


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_spec(config: TrainConfig, model: torch.nn.Module) -> ModelSpec:
    from .models import backbone_normalisation

    mean, std = backbone_normalisation(config.model.backbone)
    model_config = {"backbone": config.model.backbone, **config.model.kwargs}
    direct = bool(config.model.kwargs.get("direct_saliency", False))
    return ModelSpec(
        name=config.name,
        architecture=config.model.architecture,
        backbone=config.model.backbone,
        input_height=config.model.input_height,
        input_width=config.model.input_width,
        mean=mean,
        std=std,
        inputs=("image", "prior") if direct else ("image",),
        saliency_stride=model.saliency_stride,
        model_config=model_config,
    )


def content_splits(config: TrainConfig) -> dict[str, list[ContentItem]]:
    items: list[ContentItem] = []
    if config.data.scene_dir:
        scene_dir = Path(config.data.scene_dir)
        if scene_dir.is_dir():
            items += scene_items(scene_dir)
        else:
            print(f"[saliq train] Scene data not found at {scene_dir}; using sample photos only")
    if config.data.sample_photos:
        items += sample_photo_items(config.data.cache_dir)
    if len(items) < 3:
        raise ValueError("need at least 3 content photos (train/val/test); set data.scene_dir")
    train_frac = 1.0 - config.data.val_fraction - config.data.test_fraction
    return split_by_photo(
        items,
        (train_frac, config.data.val_fraction, config.data.test_fraction),
        seed=config.data.split_seed,
    )


def photo_names(items: list[ContentItem]) -> list[str]:
    return [Path(i.path).name for i in items]


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, spec: ModelSpec) -> dict[str, np.ndarray]:
    model.eval()
    scores, saliency = [], []
    for batch in loader:
        extra = (batch["prior"],) if "prior" in spec.inputs else ()
        score, sal = model(batch["image"], *extra)
        scores.append(score.numpy())
        saliency.append(sal.numpy())
    return {"score": np.concatenate(scores), "saliency": np.concatenate(saliency)}


def evaluate_grid(model, grid: SyntheticGridSet, spec: ModelSpec, batch_size: int) -> dict:
    from .evaluate import severity_metrics

    loader = DataLoader(grid, batch_size=batch_size, shuffle=False, num_workers=0)
    scores = predict(model, loader, spec)["score"]
    photos, types, levels = zip(*grid.records)
    labels = np.array([quality_label(level) for level in levels], dtype=np.float64)
    metrics = iqa_summary(scores, labels)
    metrics[SELECTION_METRIC] = severity_metrics(scores, levels, photos, types)[SELECTION_METRIC]
    return metrics


def _init_worker(_: int) -> None:
    """One preprocessing thread per data worker: workers x threads must not exceed the cores."""
    from saliq.preprocess import set_native_threads

    set_native_threads(1)


def _param_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict]:
    backbone, head = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (backbone if name.startswith("backbone.") else head).append(param)
    return [
        {"params": backbone, "lr": config.optim.lr * config.optim.backbone_lr_scale},
        {"params": head, "lr": config.optim.lr},
    ]


def _schedule(total_steps: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train per ``config``; returns the path of the best checkpoint."""
    from tqdm import tqdm

    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    model = create_model(
        config.model.architecture,
        backbone=config.model.backbone,
        pretrained=config.model.pretrained,
        **config.model.kwargs,
    )
    if config.model.init_from:
        from safetensors.torch import load_file

        weights = load_file(config.model.init_from)
        model.load_state_dict(
            {k: v.float() for k, v in weights.items() if not k.startswith("optim.")}
        )
    spec = build_spec(config, model)
    pre = Preprocessor.from_spec(spec)
    splits = content_splits(config)
    types = None
    if config.data.exclude_types:
        from .data.distortions import DISTORTIONS

        types = [t for t in sorted(DISTORTIONS) if t not in config.data.exclude_types]
    train_set = SyntheticTrainSet(
        splits["train"],
        pre,
        spec.saliency_size,
        copies_per_photo=config.data.copies_per_photo,
        types=types,
        pristine_prob=config.data.pristine_prob,
        gray_prob=config.data.gray_prob,
        seed=config.seed,
    )
    val_items = splits["val"][: config.data.val_photos]
    val_set = SyntheticGridSet(val_items, pre, spec.saliency_size, types=types, seed=config.seed)
    run_config = config.to_dict()
    run_config["split"] = {k: photo_names(v) for k, v in splits.items()}

    optimizer = torch.optim.AdamW(
        _param_groups(model, config), weight_decay=config.optim.weight_decay
    )
    steps_per_epoch = math.ceil(len(train_set) / config.optim.batch_size)
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total_steps = steps_per_epoch * config.optim.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(total_steps, config.optim.warmup_steps)
    )
    criterion = SGDNetLoss(config.alpha)

    start_epoch, best_value, history = 0, -math.inf, []
    last_path, best_path = out_dir / LAST_NAME, out_dir / BEST_NAME
    if resume and last_path.is_file():
        state = load_training_state(last_path, model, optimizer)
        start_epoch, best_value, history = state["epoch"], state["best_value"], state["history"]
        with warnings.catch_warnings():  # fast-forwarding the schedule, no optimizer step
            warnings.simplefilter("ignore")
            for _ in range(start_epoch * steps_per_epoch):
                scheduler.step()
        print(f"[saliq train] resumed from {last_path} at epoch {start_epoch}")

    for epoch in range(start_epoch, config.optim.epochs):
        train_set.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        loader = DataLoader(
            train_set,
            batch_size=config.optim.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=config.num_workers,
            generator=generator,
            worker_init_fn=_init_worker,
            persistent_workers=False,
        )
        model.train()
        sums = {"loss": 0.0, "quality": 0.0, "saliency": 0.0}
        started = time.perf_counter()
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.optim.epochs}",
            disable=not progress,
            unit="step",
        )
        for step, batch in enumerate(loader):
            if step >= steps_per_epoch:
                break
            extra = (batch["prior"],) if "prior" in spec.inputs else ()
            score, saliency = model(batch["image"], *extra)
            losses = criterion(score, saliency, batch["score"], batch["saliency"])
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            scheduler.step()
            for key in sums:
                sums[key] += float(losses[key].detach())
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.4f}")
        bar.close()
        n_steps = max(1, min(steps_per_epoch, len(loader)))
        record = {"epoch": epoch + 1, **{f"train_{k}": v / n_steps for k, v in sums.items()}}
        record["train_seconds"] = time.perf_counter() - started
        record["images_per_second"] = n_steps * config.optim.batch_size / record["train_seconds"]
        record.update(
            {
                f"val_{k}": v
                for k, v in evaluate_grid(model, val_set, spec, config.optim.batch_size).items()
            }
        )
        history.append(record)
        print(
            "[saliq train] "
            + "  ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
            )
        )
        value = record[f"val_{SELECTION_METRIC}"]
        if value > best_value or not best_path.exists():
            best_value = max(best_value, value) if not math.isnan(value) else best_value
            save_checkpoint(best_path, model, spec, run_config, record)
        save_checkpoint(
            last_path,
            model,
            spec,
            run_config,
            record,
            optimizer=optimizer,
            state={"epoch": epoch + 1, "best_value": best_value, "history": history},
        )
        write_text_atomic(out_dir / LOG_NAME, "".join(json.dumps(h) + "\n" for h in history))
    return best_path
