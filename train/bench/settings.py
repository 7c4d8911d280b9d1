"""What one ``saliq bench`` run depends on: :class:`BenchSettings` and the defaults behind it.

The lowest layer of the command (every other module of it reads the settings; this one
imports none of them), so the defaults are written once, here, for both the command line's
help text and the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_BATCHES = (1, 4, 16, 64)
QUICK_BATCHES = (1, 16)
DEFAULT_RUNS, QUICK_RUNS = 30, 8
DEFAULT_WARMUP, QUICK_WARMUP = 5, 2
DEFAULT_PARITY_IMAGES, QUICK_PARITY_IMAGES = 32, 12
DEFAULT_ROW_SECONDS, QUICK_ROW_SECONDS = 20.0, 6.0
MIN_RUNS = 5  # a row never gets fewer timed runs than this, whatever the time budget


@dataclass
class BenchSettings:
    """Everything a run depends on (the CLI's arguments, resolved)."""

    model: str
    batches: tuple[int, ...] = DEFAULT_BATCHES
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP
    threads: int = 0  # 0: every CPU this process may use
    parity_images: int = DEFAULT_PARITY_IMAGES
    images: str | None = None  # a folder of the user's photos for parity
    device: str = "auto"  # auto | cpu | cuda
    backends: tuple[str, ...] = ()  # name prefixes to keep (empty: all)
    engines: tuple[str, ...] = ()
    reference: str | None = None  # checkpoint or ONNX to compare against
    output_dir: str | None = None
    plots: bool = True
    stages: bool = True  # preprocessing and end-to-end rows
    time_failed: bool = False
    row_seconds: float = DEFAULT_ROW_SECONDS
    model_config: dict = field(default_factory=dict)
    input_size: tuple[int, int] | None = None
    config: str | None = None
    configs_dir: str = "configs"
    allow_engine_host_code: bool = False
    quick: bool = False
    command: str = ""

    def runs_within_budget(self, round_ms: float, calls: int) -> int:
        """Timed runs for one interleaved set of ``calls`` calls whose round takes
        ``round_ms``: ``runs``, fewer when they would exceed ``row_seconds`` per call, never
        fewer than :data:`MIN_RUNS`."""
        if round_ms <= 0:
            return self.runs
        affordable = int(self.row_seconds * 1000.0 * calls / round_ms)
        return max(min(self.runs, MIN_RUNS), min(self.runs, affordable))


__all__ = [
    "DEFAULT_BATCHES",
    "DEFAULT_PARITY_IMAGES",
    "DEFAULT_ROW_SECONDS",
    "DEFAULT_RUNS",
    "DEFAULT_WARMUP",
    "MIN_RUNS",
    "QUICK_BATCHES",
    "QUICK_PARITY_IMAGES",
    "QUICK_ROW_SECONDS",
    "QUICK_RUNS",
    "QUICK_WARMUP",
    "BenchSettings",
]
