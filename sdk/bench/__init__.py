"""Running, comparing and timing models: the pieces ``saliq export`` and the benchmarks share.

* :mod:`saliq.bench.runners`: one runner interface (ONNX Runtime, TensorRT, PyTorch, ...);
* :mod:`saliq.bench.compare`: the one comparator (the parity gate);
* :mod:`saliq.bench.timer`: the one latency timer;
* ``saliq bench``: :mod:`saliq.train.bench.cli` (the command line) and the modules its docstring
  lists, one per step of a run (:mod:`saliq.train.bench.run` runs them in order).

Importing this package imports no runtime (onnxruntime, torch, tensorrt): runners import
theirs when activated.
"""

from .compare import (
    DEFAULT_MIN_MAP_CC,
    DEFAULT_MIN_SALIENCY_CC,
    DEFAULT_TOLERANCE,
    ParityReport,
    compare_outputs,
    compare_runners,
    misranked_pairs,
    parity_report,
    saliency_correlations,
)
from .runners import (
    BackendRunner,
    CallableRunner,
    OnnxRuntimeRunner,
    Runner,
    TorchRunner,
    run_batched,
)
from .timer import Timing, time_call, time_interleaved

__all__ = [
    "DEFAULT_MIN_MAP_CC",
    "DEFAULT_MIN_SALIENCY_CC",
    "DEFAULT_TOLERANCE",
    "BackendRunner",
    "CallableRunner",
    "OnnxRuntimeRunner",
    "ParityReport",
    "Runner",
    "Timing",
    "TorchRunner",
    "compare_outputs",
    "compare_runners",
    "misranked_pairs",
    "parity_report",
    "run_batched",
    "saliency_correlations",
    "time_call",
    "time_interleaved",
]
