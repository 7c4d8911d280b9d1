"""The parity gate now lives in the runtime: :mod:`saliq.bench.compare` (one comparator for
``saliq export`` and the benchmarks). This module re-exports it for older imports."""

from saliq.bench.compare import (
    DEFAULT_MIN_MAP_CC,
    DEFAULT_MIN_SALIENCY_CC,
    DEFAULT_TOLERANCE,
    FLAT_STD,
    ParityReport,
    compare_outputs,
    misranked_pairs,
    parity_report,
    saliency_correlations,
)

__all__ = [
    "DEFAULT_MIN_MAP_CC",
    "DEFAULT_MIN_SALIENCY_CC",
    "DEFAULT_TOLERANCE",
    "FLAT_STD",
    "ParityReport",
    "compare_outputs",
    "misranked_pairs",
    "parity_report",
    "saliency_correlations",
]
