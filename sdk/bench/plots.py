"""PNG plots of a ``saliq bench`` report: latency vs batch, throughput, parity.

matplotlib is imported when a plot is drawn (the Agg backend: no display needed), never at
import, and its absence is a one-line error naming the extra that brings it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..errors import BackendUnavailableError
from .report import FAILED, BenchReport

MISSING_MATPLOTLIB = (
    "PNG plots need matplotlib, which is not installed: pip install 'saliq[train]' (or "
    "pip install matplotlib); the table and the JSON do not need it (--no-plots)"
)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise BackendUnavailableError(MISSING_MATPLOTLIB) from None
    matplotlib.use("Agg", force=False)  # files only; keeps a user's interactive backend
    import matplotlib.pyplot as plt

    return plt


def plot_report(report: BenchReport, path: str | Path) -> Path:
    """One PNG, three panels: p50 latency vs batch per backend (p90 as the bar), throughput
    vs batch, and each backend's max |score difference| against the reference with its
    tolerance (FAILED in red). Returns the path; written atomically."""
    plt = _pyplot()
    fig, (lat_ax, thr_ax, par_ax) = plt.subplots(1, 3, figsize=(16, 4.8))
    names = [b.name for b in report.backends if b.timeable]
    for name in names:
        rows = sorted((r for r in report.latency if r.backend == name), key=lambda r: r.batch)
        if not rows:
            continue
        batches = [r.batch for r in rows]
        p50 = [r.p50_ms for r in rows]
        above = [max(0.0, r.p90_ms - r.p50_ms) for r in rows]
        lat_ax.errorbar(
            batches, p50, yerr=[[0.0] * len(rows), above], marker="o", label=name, capsize=3
        )
        thr_ax.plot(batches, [r.throughput_ips for r in rows], marker="o", label=name)
    batches = sorted({r.batch for r in report.latency})
    for ax, label in ((lat_ax, "latency p50 (ms; bar to p90)"), (thr_ax, "images / s")):
        ax.set_xscale("log", base=2)
        if batches:
            ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    lat_ax.set_title("latency vs batch")
    thr_ax.set_title("throughput vs batch")
    if names:
        lat_ax.legend(fontsize=7)

    compared = [b for b in report.backends if b.parity and b.name != report.reference]
    labels, diffs, colours, tolerances = [], [], [], []
    for b in compared:
        value = b.parity.get("max_score_diff") if b.parity else None
        finite = value is not None and math.isfinite(value)
        labels.append(b.name)
        diffs.append(max(value, 1e-9) if finite else 1.0)  # log axis: zero drawn at 1e-9
        colours.append("tab:red" if b.status == FAILED or not finite else "tab:green")
        tolerances.append(b.parity.get("tolerance") if b.parity else None)
    if labels:
        positions = range(len(labels))
        par_ax.bar(positions, diffs, color=colours)
        for x, tol in zip(positions, tolerances):
            if tol:
                par_ax.hlines(tol, x - 0.4, x + 0.4, colors="black", linestyles="dashed")
        par_ax.set_xticks(list(positions))
        par_ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
        par_ax.set_yscale("log")
    par_ax.set_ylabel(f"max |score - {report.reference}|")
    par_ax.set_title("parity (dashed: tolerance; red: FAILED)")
    fig.suptitle(f"saliq bench {report.model.get('name')} on {report.machine.get('slug')}")
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return target


__all__ = ["MISSING_MATPLOTLIB", "plot_report"]
