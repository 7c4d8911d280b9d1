"""torchrun data parallelism: 2 gloo processes train exactly what 1 process trains.

Both runs use the same global batch (4 = 2 x 2 per process), dropout off and frozen BN, so
averaging the two processes' gradients equals the one process's gradient up to float
summation order; parameters after the same steps must agree within 1e-5.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3


def _overrides(out_dir: Path, cache: Path) -> list[str]:
    settings = {
        "output_dir": str(out_dir),
        "seed": 3,
        "threads": 1,
        "num_workers": 0,
        "max_steps_per_epoch": STEPS,
        "device": "cpu",
        "precision": "fp32",
        "model.input_height": 64,
        "model.input_width": 64,
        "model.kwargs": (
            "{frozen_prefixes: [stem., stages.0., stages.1.], dropout: 0.0, drop_connect: false}"
        ),
        "optim.lr": 1e-4,
        "data.cache_dir": str(cache),
        "data.val_photos": 1,
        "optim.epochs": 1,
        "optim.batch_size": 4,
        "optim.warmup_steps": 1,
    }
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    config = str(ROOT / "configs" / "smoke.yaml")
    cache = tmp_path / "samples"
    single, double = tmp_path / "one", tmp_path / "two"
    _run(
        [sys.executable, "-m", "saliq.cli", "train", "--config", config, *_overrides(single, cache)]
    )
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "saliq.cli",
            "train",
            "--config",
            config,
            *_overrides(double, cache),
        ]
    )
    one = load_file(str(single / "last.safetensors"))
    two = load_file(str(double / "last.safetensors"))
    weights = [k for k in one if not k.startswith("optim.")]
    assert weights and set(weights) == {k for k in two if not k.startswith("optim.")}
    start = create_start_weights()
    moved = max(float((one[k].float() - start[k].float()).abs().max()) for k in start)
    assert moved > 1e-4, "training did not change the weights: the comparison would be vacuous"
    worst = max(float((one[k].float() - two[k].float()).abs().max()) for k in weights)
    assert worst <= 1e-5, f"1 vs 2 processes differ by {worst:.2e}"


def create_start_weights() -> dict:
    """The trainable head's initial weights (same seed) to prove that training moved them."""
    from saliq.train.config import load_config
    from saliq.train.trainer import build_model, seed_everything

    config = load_config(
        ROOT / "configs" / "smoke.yaml",
        {"seed": 3, "model.input_height": 64, "model.input_width": 64},
    )
    config.model.kwargs = {
        "frozen_prefixes": ["stem.", "stages.0.", "stages.1."],
        "dropout": 0.0,
        "drop_connect": False,
    }
    seed_everything(config.seed)
    model = build_model(config)
    return {k: v for k, v in model.state_dict().items() if k.startswith("head.")}
