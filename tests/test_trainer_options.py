"""The trainer beyond the default recipe: a MOS CSV source with TReS's losses, optimisers,
schedules, early stopping and device/precision choices."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from saliq.errors import ConfigError  # noqa: E402
from saliq.train.config import OptimConfig, TrainConfig  # noqa: E402
from saliq.train.engine.distributed import setup_runtime  # noqa: E402
from saliq.train.engine.optim import Schedule, build_optimizer  # noqa: E402
from saliq.train.trainer import LOG_NAME, train  # noqa: E402

TINY_SGDNET = {"feature_dim": 32, "hidden": [16], "frozen_prefixes": ["stem.", "stages.0."]}


def _mos_folder(root, n=16):
    """Photo-like frames whose label falls with blur strength (a real, learnable relation)."""
    rng = np.random.default_rng(0)
    rows = ["image,score"]
    for i in range(n):
        base = rng.integers(0, 255, (12, 16, 3)).astype(np.uint8)
        frame = cv2.resize(base, (128, 96), interpolation=cv2.INTER_NEAREST)
        blur = i % 4
        if blur:
            frame = cv2.GaussianBlur(frame, (0, 0), 1.5 * blur)
        cv2.imwrite(str(root / f"img{i:02d}.png"), frame)
        rows.append(f"img{i:02d}.png,{100 - 25 * blur}")
    (root / "mos.csv").write_text("\n".join(rows) + "\n")


def _config(tmp_path, **overrides) -> TrainConfig:
    raw = {
        "name": "test-mos",
        "output_dir": str(tmp_path / "run"),
        "threads": 1,
        "num_workers": 0,
        "device": "cpu",
        "max_steps_per_epoch": 2,
        "loss": [
            {"name": "l1"},
            {"name": "tres_ranking", "weight": 0.05},
            {"name": "flip_consistency", "weight": 1.0},
        ],
        "model": {
            "architecture": "sgdnet",
            "pretrained": True,  # a random backbone scores all frames alike: SRCC undefined
            "input_height": 64,
            "input_width": 64,
            "kwargs": TINY_SGDNET,
        },
        "data": {
            "source": "csv",
            "root": str(tmp_path),
            "csv": {"path": "mos.csv", "score_min": 0, "score_max": 100},
            "val_fraction": 0.25,
            "test_fraction": 0.25,
        },
        "optim": {"epochs": 2, "batch_size": 4, "optimizer": "adam", "schedule": "step"},
    }
    raw.update(overrides)
    return TrainConfig.from_dict(raw)


@pytest.mark.slow
def test_mos_csv_source_with_tres_losses(tmp_path):
    _mos_folder(tmp_path)
    # bf16 autocast on the CPU: the mixed-precision path a GPU run takes (losses in float32)
    best = train(_config(tmp_path, precision="bf16"), progress=False)
    assert best.is_file()
    history = [json.loads(line) for line in (best.parent / LOG_NAME).read_text().splitlines()]
    assert len(history) == 2
    for record in history:
        # every configured term was computed, including the flipped extra pass
        for key in ("train_l1", "train_tres_ranking", "train_flip_consistency", "val_srcc"):
            assert key in record and np.isfinite(record[key]), (key, record)
        assert "val_grouped_srcc" not in record  # a MOS set has no severity series


def test_optimisers_and_schedules():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    adam = build_optimizer(model, OptimConfig(optimizer="adam", lr=1.0, warmup_steps=1))
    assert type(adam) is torch.optim.Adam
    steps_per_epoch = 3
    step = Schedule(
        adam,
        OptimConfig(lr=1.0, schedule="step", step_epochs=2, gamma=0.5, warmup_steps=1),
        steps_per_epoch,
    )
    lrs = []
    for _ in range(4 * steps_per_epoch):
        lrs.append(adam.param_groups[0]["lr"])
        adam.step()
        step.after_step()
    # epochs 0-1 at lr, epochs 2-3 at lr * gamma
    assert lrs[0] == pytest.approx(1.0) and lrs[5] == pytest.approx(1.0)
    assert lrs[6] == pytest.approx(0.5) and lrs[-1] == pytest.approx(0.5)

    plateau_opt = build_optimizer(model, OptimConfig(lr=1.0))
    plateau = Schedule(
        plateau_opt, OptimConfig(lr=1.0, schedule="plateau", plateau_patience=1, gamma=0.1), 3
    )
    for metric in (0.5, 0.6, 0.6, 0.6):
        plateau.after_step()  # per-step calls leave a plateau schedule alone
        plateau.after_epoch(metric)
    assert plateau_opt.param_groups[0]["lr"] == pytest.approx(0.1)
    restored = Schedule(plateau_opt, OptimConfig(lr=1.0, schedule="plateau"), 3)
    restored.load_state_dict(json.loads(json.dumps(plateau.state_dict())))  # resume path


@pytest.mark.slow
def test_early_stopping_stops_and_resume_keeps_the_count(tmp_path):
    _mos_folder(tmp_path)
    config = _config(
        tmp_path,
        loss=[{"name": "l1"}],
        optim={"epochs": 6, "batch_size": 4, "early_stopping_patience": 1, "lr": 1e-9},
    )
    train(config, progress=False)
    history = (config_out := tmp_path / "run" / LOG_NAME).read_text().splitlines()
    # at lr 1e-9 validation never improves after epoch 1: epoch 2 is stale, then it stops
    # (after epoch 1 already when the tiny validation split gives an undefined SRCC)
    assert 1 <= len(history) <= 2, history
    train(config, resume=True, progress=False)
    assert len(config_out.read_text().splitlines()) == len(history)


def test_device_and_precision_choices(monkeypatch):
    assert setup_runtime("cpu", "auto").amp_dtype is None
    assert setup_runtime("cpu", "bf16").amp_dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        setup_runtime("cpu", "fp16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        setup_runtime("cuda", "auto")
    assert setup_runtime("auto", "auto").device.type == "cpu"
    with pytest.raises(ConfigError, match="choose one of"):
        TrainConfig.from_dict({"device": "tpu"})
    with pytest.raises(ConfigError, match="alpha"):
        TrainConfig.from_dict({"alpha": 0.25})


@pytest.mark.slow
def test_trainer_feeds_every_input_the_model_reads(tmp_path, monkeypatch):
    """A model reading `gradient` trains: the data layer emits what the spec asks for."""
    from tests.test_contract import GradientReader  # noqa: F401  (registers the test models)

    seen: list[tuple[str, ...]] = []
    original = GradientReader.forward

    def spy(self, inputs):
        seen.append(tuple(sorted(inputs)))
        return original(self, inputs)

    monkeypatch.setattr(GradientReader, "forward", spy)
    _mos_folder(tmp_path)
    config = _config(
        tmp_path,
        loss=[{"name": "l1"}, {"name": "kl", "on": "saliency", "weight": 0.1}],
        model={
            "architecture": "contract_gradient_reader",
            "backbone": "efficientnet_lite0",
            "input_height": 64,
            "input_width": 64,
        },
    )
    best = train(config, progress=False)
    assert seen and set(seen) == {("gradient", "image")}
    from saliq.checkpoint import load_spec

    assert load_spec(best).inputs == ("image", "gradient")


def test_config_values_are_checked_before_anything_runs(tmp_path):
    from saliq.train.config import load_config

    smoke = "configs/smoke.yaml"
    assert load_config(smoke, {"optim.lr": "1e-4"}).optim.lr == pytest.approx(1e-4)  # YAML 1.1
    for override, message in (
        ({"optim.early_stopping_patience": 0}, "early_stopping_patience"),
        ({"optim.gamma": -1}, "gamma"),
        ({"threads": 0}, "threads"),
        ({"num_workers": -1}, "num_workers"),
        ({"data.val_photos": 0}, "val_photos"),
        ({"optim.epochs": "abc"}, "integer"),
        ({"loss": []}, "at least one term"),
        ({"name.x": 1}, "not a section"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(smoke, override)
    form = {"terms": [{"name": "l1"}, {True: "saliency", "name": "tv"}], "normalise": True}
    loss = load_config(smoke, {"loss": form}).loss
    assert loss["normalise"] is True and loss["terms"][1]["on"] == "saliency"
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listed)


def test_loss_reading_an_output_the_model_lacks_fails_before_data(tmp_path):
    config = _config(
        tmp_path,
        loss=[{"name": "l1"}, {"name": "tv", "on": "heatmap"}],
        data={"source": "csv", "root": str(tmp_path / "absent")},
    )
    with pytest.raises(ConfigError, match="heatmap"):
        train(config, progress=False)


def test_group_ranking_without_groups_fails_before_data(tmp_path):
    # group_size 1: every item its own group, the term would silently add 0
    config = _config(
        tmp_path,
        loss=[{"name": "l1"}, {"name": "group_ranking"}],
        data={"source": "csv", "root": str(tmp_path / "absent")},
    )
    with pytest.raises(ConfigError, match="group_size"):
        train(config, progress=False)
