"""Stage 2 of a crop-view model: fit its 4-parameter fusion with the branches frozen.

    python -m saliq.train.fit_fusion runs/views/best.safetensors -o runs/views/fused.safetensors

Why a separate stage: the fusion starts as "the whole-frame score alone" (so an untrained
model is the previous default) and, trained jointly at the branches' learning rate, moves too
slowly to hand pixel-level defects to the crops within a CPU-sized run. With the branches
fixed, the fusion is a 3-input logistic model: its inputs (the logits of the whole-frame score,
the saliency-weighted crop score and the worst crop score) are computed once on fresh draws of
the training data (never the validation or test photos), and the 4 parameters are fitted by
full-batch Adam on the same L1 loss the trainer used. The result is reported on the
validation grid before and after, and written with the fit's record in the checkpoint config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from saliq.preprocess import Preprocessor

FIT_STEPS = 2000
FIT_LR = 0.05
FRESH_EPOCH = 1000  # draws no training epoch used


def fresh_draws(train_set, epoch: int, items: int, seed: int) -> Subset:
    """``items`` random items (seeded) of ``train_set``'s epoch ``epoch``: draws of the
    training photos that no training epoch used, for the stages fitted after training."""
    train_set.set_epoch(epoch)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(train_set), size=min(items, len(train_set)), replace=False)
    return Subset(train_set, chosen.tolist())


def _evidence(model, loader, spec) -> tuple[torch.Tensor, torch.Tensor]:
    rows, labels = [], []
    model.eval()
    with torch.no_grad():
        for batch in loader:
            out = model({name: batch[name] for name in spec.inputs})
            evidence, _ = model.evidence(
                out["global_score"], out["crop_scores"], batch["crop_weights"]
            )
            rows.append(evidence)
            labels.append(batch["score"])
    return torch.cat(rows), torch.cat(labels)


def _grouped(model, val, spec, batch_size: int) -> float:
    from .trainer import evaluate_validation

    return float(evaluate_validation(model, val, spec, batch_size)["grouped_srcc"])


def fit_fusion(
    checkpoint: str | Path, output: str | Path, items: int = 1500, seed: int = 7
) -> dict:
    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import TrainConfig
    from .data.sources import build_datasets

    model, spec, config, metrics = load_checkpoint(checkpoint)
    if not hasattr(model, "evidence"):
        raise SystemExit(f"{checkpoint}: {spec.architecture} has no crop-view fusion to fit")
    run = TrainConfig.from_run_record(config)
    data = build_datasets(run.data, spec, Preprocessor.from_spec(spec), {"score"}, seed)
    draws = fresh_draws(data.train, FRESH_EPOCH, items, seed)
    loader = DataLoader(draws, batch_size=16, num_workers=1)
    evidence, labels = _evidence(model, loader, spec)

    before = _grouped(model, data.val, spec, 16)
    fusion = model.fusion
    start = (fusion.weight.detach().clone(), fusion.bias.detach().clone())
    optimizer = torch.optim.Adam(fusion.parameters(), lr=FIT_LR)
    for _ in range(FIT_STEPS):
        optimizer.zero_grad()
        loss = (torch.sigmoid(fusion(evidence)).squeeze(1) - labels).abs().mean()
        loss.backward()
        optimizer.step()
    after = _grouped(model, data.val, spec, 16)
    record = {
        "items": len(draws),
        "seed": seed,
        "steps": FIT_STEPS,
        "l1": float(loss.detach()),
        "weights_before": start[0].tolist()[0] + start[1].tolist(),
        "weights_after": fusion.weight.detach().tolist()[0] + fusion.bias.detach().tolist(),
        "val_grouped_srcc_before": before,
        "val_grouped_srcc_after": after,
    }
    config = {**config, "fusion_fit": record}
    save_checkpoint(output, model, spec, config, {**metrics, "val_grouped_srcc": after})
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    record = fit_fusion(args.checkpoint, args.output, args.items, args.seed)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
