"""Where training runs: device choice, mixed precision, and torchrun data parallelism.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; with WORLD_SIZE > 1 every process joins one
process group (NCCL on CUDA, gloo on CPU), trains on its shard of each global batch, and
DistributedDataParallel averages the gradients. Rank 0 alone writes checkpoints, logs and
evaluations.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch

from saliq.errors import ConfigError

COLLECTIVE_TIMEOUT_S = 1800  # rank 0's validation + checkpoint must finish within this


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None  # autocast dtype; None = float32 throughout

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 needs loss scaling (its range underflows small gradients); bf16 does not."""
        if self.amp_dtype == torch.float16:
            return torch.amp.GradScaler(self.device.type)
        return None

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        raise ConfigError(
            f"environment {name}={raw!r} is not an integer (set by torchrun)"
        ) from None


def _device(requested: str, local_rank: int) -> torch.device:
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise ConfigError(
            "device=cuda but PyTorch sees no CUDA GPU (torch.cuda.is_available() is False); "
            "install a CUDA build of torch or use --device cpu"
        )
    if requested == "cuda" or (requested == "auto" and has_cuda):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if device.type == "cpu":
        if precision == "fp16":
            raise ConfigError("precision=fp16 needs a GPU; on a CPU use bf16 or fp32")
        return torch.bfloat16 if precision == "bf16" else None
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU has no bf16; use precision=fp16 (with loss scaling) or fp32")
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def setup_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """Pick the device and precision; join the torchrun process group when there is one."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = _device(device, local_rank)
    if dev.type == "cuda" and local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} GPUs; "
            "start at most one process per GPU (torchrun --nproc_per_node)"
        )
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        # A rank that fails (or a long rank-0 evaluation) must not leave the others waiting
        # forever: collectives give up after this long.
        torch.distributed.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S),
        )
    return Runtime(dev, rank, world_size, local_rank, _amp_dtype(precision, dev))


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (what checkpoints and losses see)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
