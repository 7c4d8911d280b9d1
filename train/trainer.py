"""Training loop for every architecture: one device or many (torchrun), losses from config.

The loop knows no model by name: inputs come from the model's spec, outputs are a dict, the
loss is a weighted list of terms (``saliq.train.losses``). Checkpoints (rank 0 only) are
written after every epoch, so a killed run resumes losing at most one epoch.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from saliq.atomic import write_text_atomic
from saliq.errors import ConfigError
from saliq.preprocess import Preprocessor
from saliq.spec import ModelSpec

from .checkpoint import load_training_state, save_checkpoint
from .config import TrainConfig
from .data.native import NativeGridSet
from .data.samplers import GroupBatchSampler, RankingBatchSampler
from .data.sources import build_datasets
from .data.synthetic import SyntheticGridSet
from .engine.distributed import Runtime, setup_runtime, teardown_runtime, unwrap
from .engine.optim import Schedule, build_optimizer
from .losses import LossContext, build_loss
from .metrics import iqa_summary
from .models import create_model, model_spec

BEST_NAME = "best.safetensors"
LAST_NAME = "last.safetensors"
LOG_NAME = "metrics.jsonl"
GROUPED = "grouped_srcc"  # mean SRCC(score, -level) over (photo, type) severity series
SEVERITY_GRIDS = (SyntheticGridSet, NativeGridSet)  # validation sets of severity series
RANKING_TERM = "tres_ranking"  # needs batches without tied extreme labels
GROUP_RANKING_TERM = "group_ranking"  # needs batches of whole content groups


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(config: TrainConfig) -> torch.nn.Module:
    model = create_model(
        config.model.architecture,
        backbone=config.model.backbone,
        pretrained=config.model.pretrained,
        **config.model.kwargs,
    )
    if config.model.init_from:
        from saliq.checkpoint import load_spec

        from .models import model_from_spec

        source = config.model.init_from
        if config.model.init_prefix:
            # weights of another architecture (its own spec) for one submodule, strictly
            start = model_from_spec(load_spec(source), weights_path=source)
            try:
                target = model.get_submodule(config.model.init_prefix.rstrip("."))
            except AttributeError:
                raise ConfigError(
                    f"model.init_prefix={config.model.init_prefix!r}: {type(model).__name__} "
                    "has no such submodule"
                ) from None
            target.load_state_dict(start.state_dict())
        else:
            # a second stage: same architecture, weights of an earlier run (strictly checked)
            start = model_from_spec(build_spec(config, model), weights_path=source)
            model.load_state_dict(start.state_dict())
    return model


def build_spec(config: TrainConfig, model: torch.nn.Module) -> ModelSpec:
    from .models import backbone_normalisation

    mean, std = backbone_normalisation(config.model.backbone)
    return model_spec(
        model,
        name=config.name,
        architecture=config.model.architecture,
        backbone=config.model.backbone,
        input_height=config.model.input_height,
        input_width=config.model.input_width,
        mean=mean,
        std=std,
        model_config={"backbone": config.model.backbone, **config.model.kwargs},
    )


def _model_inputs(batch: dict, spec: ModelSpec, device: torch.device) -> dict[str, torch.Tensor]:
    return {name: batch[name].to(device, non_blocking=True) for name in spec.inputs}


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    loader: DataLoader,
    spec: ModelSpec,
    device: torch.device | str = "cpu",
) -> dict[str, np.ndarray]:
    """Every exported output of the model over a loader, concatenated (eval mode)."""
    model.eval()
    collected: dict[str, list[np.ndarray]] = {name: [] for name in spec.outputs}
    for batch in loader:
        out = model(_model_inputs(batch, spec, torch.device(device)))
        for name in spec.outputs:
            collected[name].append(out[name].float().cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in collected.items()}


def evaluate_validation(model, val_set, spec: ModelSpec, batch_size: int, device="cpu") -> dict:
    """SRCC/PLCC/KRCC/RMSE against the labels, plus on the synthetic grid the mean SRCC per
    (photo, type) severity series; ``selection_metric`` picks the best checkpoint."""
    from .evaluate import severity_metrics

    loader = DataLoader(val_set, batch_size=batch_size, shuffle=False, num_workers=0)
    scores = predict(model, loader, spec, device)["score"]
    metrics = iqa_summary(scores, val_set.labels())
    if isinstance(val_set, SEVERITY_GRIDS):
        photos, types, levels = zip(*val_set.records)
        metrics[GROUPED] = severity_metrics(scores, levels, photos, types)[GROUPED]
    return metrics


def selection_metric(val_set) -> str:
    """What "best on validation" means: severity ordering on the synthetic grid, else SRCC."""
    return GROUPED if isinstance(val_set, SEVERITY_GRIDS) else "srcc"


def _init_worker(_: int) -> None:
    """One preprocessing thread per data worker: workers x threads must not exceed the cores."""
    from saliq.preprocess import set_native_threads

    set_native_threads(1)


def _datasets(config: TrainConfig, spec: ModelSpec, required_targets):
    data = build_datasets(
        config.data, spec, Preprocessor.from_spec(spec), required_targets, config.seed
    )
    return data.train, data.val, data.split


def _produced(model: torch.nn.Module) -> set[str]:
    """Every tensor name the model returns: exported outputs and training auxiliaries."""
    return set(getattr(model, "outputs", ())) | set(getattr(model, "aux_outputs", ()))


def _check_loss_reads_model(criterion, model: torch.nn.Module) -> None:
    """Every output a loss term reads must be one the model produces (before any data work)."""
    produced = _produced(model)
    missing = sorted(set(criterion.required_outputs) - produced)
    if missing:
        raise ConfigError(
            f"loss terms read {missing}, which {type(model).__name__} does not produce (it "
            f"returns {sorted(produced)}); fix `on:` in the config's loss"
        )


def _per_rank_batch(config: TrainConfig, runtime: Runtime) -> int:
    if config.optim.batch_size % runtime.world_size:
        raise ConfigError(
            f"optim.batch_size={config.optim.batch_size} (global) must divide evenly over "
            f"{runtime.world_size} processes"
        )
    return config.optim.batch_size // runtime.world_size


def _loader(
    train_set, config: TrainConfig, runtime: Runtime, epoch: int, ranking: bool
) -> DataLoader:
    per_rank = _per_rank_batch(config, runtime)
    common = {
        "num_workers": config.num_workers,
        "worker_init_fn": _init_worker,
        "persistent_workers": False,
        "pin_memory": runtime.device.type == "cuda",
    }
    placement = {"seed": config.seed, "rank": runtime.rank, "world_size": runtime.world_size}
    group_size = getattr(train_set, "group_size", 1)
    if group_size > 1:
        if ranking:
            raise ConfigError(
                "tres_ranking composes its own batches; it cannot run with data.group_size > 1"
            )
        composed = GroupBatchSampler(len(train_set), group_size, per_rank, **placement)
    elif ranking:
        # The relative-ranking loss needs a unique best and worst label in every batch;
        # synthetic labels tie often, so batches are composed to avoid tied extremes.
        composed = RankingBatchSampler(train_set.labels(), per_rank, **placement)
    if group_size > 1 or ranking:
        composed.set_epoch(epoch)
        return DataLoader(train_set, batch_sampler=composed, **common)
    # One sampler for 1 and N processes: the same seeded permutation, rank r taking every
    # world_size-th index, so N processes see exactly one process's global batches.
    sampler = DistributedSampler(
        train_set,
        num_replicas=runtime.world_size,
        rank=runtime.rank,
        shuffle=True,
        seed=config.seed,
        drop_last=True,
    )
    sampler.set_epoch(epoch)
    return DataLoader(train_set, batch_size=per_rank, sampler=sampler, drop_last=True, **common)


def _steps_per_epoch(n_items: int, config: TrainConfig) -> int:
    steps = n_items // config.optim.batch_size
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    if steps < 1:
        raise ConfigError(
            f"{n_items} training items make no full batch of {config.optim.batch_size}; "
            "lower optim.batch_size or add data"
        )
    return steps


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train per ``config``; returns the path of the best checkpoint."""
    runtime = setup_runtime(config.device, config.precision)
    try:
        return _train(config, runtime, resume, progress)
    finally:
        teardown_runtime(runtime)


def _train(config: TrainConfig, runtime: Runtime, resume: bool, progress: bool) -> Path:
    from tqdm import tqdm

    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    out_dir = Path(config.output_dir)
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    log = print if runtime.is_main else (lambda *a, **k: None)

    model = build_model(config)
    spec = build_spec(config, model)
    criterion = build_loss(config.loss)
    _check_loss_reads_model(criterion, model)
    ranking = any(term.name == RANKING_TERM for term in criterion.terms)
    grouped = [t.label for t in criterion.terms if t.name == GROUP_RANKING_TERM]
    if grouped and config.data.group_size < 2:
        # each item would be its own group: the term would add 0 without a word
        raise ConfigError(
            f"loss terms {grouped} compare frames of one content: set data.group_size >= 2 "
            "(data.source=native) or remove them"
        )
    train_set, val_set, split = _datasets(config, spec, criterion.required_targets)
    selected = selection_metric(val_set)
    run_config = config.to_dict()
    run_config["split"] = split

    model.to(runtime.device)
    optimizer = build_optimizer(model, config.optim)
    steps_per_epoch = _steps_per_epoch(len(train_set), config)
    if ranking or getattr(train_set, "group_size", 1) > 1:
        first = _loader(train_set, config, runtime, 0, ranking)
        steps_per_epoch = min(steps_per_epoch, len(first))
    schedule = Schedule(optimizer, config.optim, steps_per_epoch)
    scaler = runtime.grad_scaler()

    start_epoch, best_value, history, stale = 0, -math.inf, [], 0
    last_path, best_path = out_dir / LAST_NAME, out_dir / BEST_NAME
    if resume and last_path.is_file():
        state = load_training_state(last_path, model, optimizer)
        start_epoch, best_value, history = state["epoch"], state["best_value"], state["history"]
        stale = state.get("epochs_since_best", 0)
        if "schedule" in state:
            schedule.load_state_dict(state["schedule"])
        log(f"[saliq train] resumed from {last_path} at epoch {start_epoch}")
    elif resume:
        log(f"[saliq train] no {last_path} to resume from; starting at epoch 1")

    net = model
    if runtime.distributed:
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        # Parameters that feed only outputs no loss term reads get no gradient; DDP must
        # then look for them each step instead of waiting for their reduction forever.
        produced = _produced(model)
        unused = bool(produced - set(criterion.required_outputs))
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=unused
        )

    def forward(module, inputs: dict) -> dict[str, torch.Tensor]:
        with runtime.autocast():
            out = module(inputs)
        return {k: v.float() for k, v in out.items()}  # losses in float32 whatever the autocast

    def extra_pass(inputs: dict) -> dict[str, torch.Tensor]:
        # Extra passes (flip consistency) use the inner module: DDP expects one forward of
        # its wrapper per backward; the gradients still reach the same parameters.
        return forward(unwrap(net), inputs)

    patience = config.optim.early_stopping_patience
    for epoch in range(start_epoch, config.optim.epochs):
        if patience is not None and stale >= patience:
            log(f"[saliq train] early stop: no better validation for {stale} epochs")
            break
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        loader = _loader(train_set, config, runtime, epoch, ranking)
        net.train()
        sums: dict[str, float] = {}
        started = time.perf_counter()
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.optim.epochs}",
            disable=not (progress and runtime.is_main),
            unit="step",
        )
        n_steps = 0
        for batch in loader:
            if n_steps >= steps_per_epoch:
                break
            inputs = _model_inputs(batch, spec, runtime.device)
            targets = {
                k: v.to(runtime.device, non_blocking=True)
                for k, v in batch.items()
                if k not in spec.inputs
            }
            outputs = forward(net, inputs)
            ctx = LossContext(extra_pass, inputs, outputs, targets)
            losses = criterion(ctx)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(losses["loss"]).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                losses["loss"].backward()
                optimizer.step()
            schedule.after_step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            n_steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / n_steps:.4f}")
        bar.close()
        sums = _mean_over_ranks(sums, runtime)
        seconds = time.perf_counter() - started
        record: dict = {"epoch": epoch + 1}
        record.update({f"train_{k}": v / max(1, n_steps) for k, v in sums.items()})
        record["train_seconds"] = seconds
        record["images_per_second"] = n_steps * config.optim.batch_size / max(seconds, 1e-9)
        value = math.nan
        if runtime.is_main:
            metrics = evaluate_validation(
                model, val_set, spec, _per_rank_batch(config, runtime), runtime.device
            )
            record.update({f"val_{k}": v for k, v in metrics.items()})
            value = record[f"val_{selected}"]
        value = _broadcast(value, runtime)
        schedule.after_epoch(value)
        improved = math.isfinite(value) and value > best_value
        stale = 0 if improved else stale + 1
        history.append(record)
        log("[saliq train] " + "  ".join(_fmt(k, v) for k, v in record.items()))
        if runtime.is_main:
            if improved or not best_path.exists():
                best_value = max(best_value, value) if math.isfinite(value) else best_value
                save_checkpoint(best_path, model, spec, run_config, record)
            state = {
                "epoch": epoch + 1,
                "best_value": best_value,
                "history": history,
                "epochs_since_best": stale,
                "schedule": schedule.state_dict(),
            }
            save_checkpoint(
                last_path, model, spec, run_config, record, optimizer=optimizer, state=state
            )
            write_text_atomic(out_dir / LOG_NAME, "".join(json.dumps(h) + "\n" for h in history))
        best_value = _broadcast(best_value, runtime)
        runtime.barrier()
    return best_path


def _mean_over_ranks(sums: dict[str, float], runtime: Runtime) -> dict[str, float]:
    """Logged training losses over the global batch, not rank 0's shard."""
    if not runtime.distributed or not sums:
        return sums
    keys = sorted(sums)
    values = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=runtime.device)
    torch.distributed.all_reduce(values)
    return {k: float(v) / runtime.world_size for k, v in zip(keys, values.tolist())}


def _broadcast(value: float, runtime: Runtime) -> float:
    """Rank 0's number on every rank (the validation metric drives every rank's schedule)."""
    if not runtime.distributed:
        return value
    holder = torch.tensor([value], dtype=torch.float64, device=runtime.device)
    torch.distributed.broadcast(holder, src=0)
    return float(holder.item())


def _fmt(key: str, value) -> str:
    return f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}"
