"""The ablation table of ``saliq ablate``: per row, mean and spread over splits, and "helped".

Pure bookkeeping (no torch): per-run metric dicts in, one table out as JSON and markdown,
both written atomically. The rule (docs/ablation.md): a row's change *helped* on a metric
only where its mean gain over the baseline row exceeds the spread, the larger of the two
rows' standard deviations over splits; it *hurt* where the loss exceeds it; otherwise the
difference is within the spread and the table says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from saliq.atomic import write_text_atomic

TABLE_MD = "table.md"
TABLE_JSON = "table.json"
RULE = (
    "a row helped on a metric where its mean gain over the baseline exceeds the spread "
    "(the larger of the two rows' standard deviations over splits); hurt where its loss does"
)


@dataclass(frozen=True)
class Metric:
    key: str  # the flat key in each run's metrics
    label: str  # column header
    group: str  # grid | camera | saliency


# Every metric is higher-is-better (the helped rule relies on it).
METRICS: tuple[Metric, ...] = (
    Metric("grid_srcc", "grid SRCC", "grid"),
    Metric("grid_plcc", "grid PLCC", "grid"),
    Metric("grid_krcc", "grid KRCC", "grid"),
    Metric("grid_grouped_srcc", "grid grouped SRCC", "grid"),
    Metric("camera_srcc", "camera SRCC", "camera"),
    Metric("camera_plcc", "camera PLCC", "camera"),
    Metric("camera_krcc", "camera KRCC", "camera"),
    Metric("camera_within_srcc", "camera within-group SRCC", "camera"),
    Metric("camera_gate_auc", "camera gate-AUC", "camera"),
    Metric("nss", "NSS", "saliency"),
    Metric("cc", "CC", "saliency"),
    Metric("auc", "AUC-Judd", "saliency"),
)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def summarise(values: Sequence[float | None]) -> dict:
    """Mean, sample standard deviation (n - 1), min and max over splits; non-finite values
    (an undefined metric) are left out and ``n`` counts the rest. std is nan for n < 2."""
    good = _finite(values)
    n = len(good)
    nan = math.nan
    if not n:
        return {"mean": nan, "std": nan, "min": nan, "max": nan, "n": 0, "values": list(values)}
    mean = sum(good) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in good) / (n - 1)) if n > 1 else nan
    return {"mean": mean, "std": std, "min": min(good), "max": max(good), "n": n, "values": values}


def compare(row: Mapping[str, dict], baseline: Mapping[str, dict]) -> dict[str, dict]:
    """Per metric present in both: gain, spread and verdict (helped | hurt | within | n/a).

    ``row`` and ``baseline`` map metric keys to :func:`summarise` dicts. n/a: a metric with
    fewer than two splits on either side has no spread to compare against.
    """
    out: dict[str, dict] = {}
    for key, stats in row.items():
        base = baseline.get(key)
        if base is None or not stats["n"] or not base["n"]:
            continue
        gain = stats["mean"] - base["mean"]
        spread = max(stats["std"], base["std"])
        if not math.isfinite(spread):
            verdict = "n/a"
        elif gain > spread:
            verdict = "helped"
        elif -gain > spread:
            verdict = "hurt"
        else:
            verdict = "within"
        out[key] = {"gain": gain, "spread": spread, "verdict": verdict}
    return out


def helped_text(comparison: Mapping[str, dict], is_baseline: bool = False) -> str:
    """The markdown "helped" cell: which metrics gained (or lost) beyond the spread."""
    if is_baseline:
        return "baseline"
    labels = {m.key: m.label for m in METRICS}
    parts = []
    for verdict, word in (("helped", "helped"), ("hurt", "hurt")):
        items = [
            f"{labels.get(k, k)} {c['gain']:+.3f}"
            for k, c in comparison.items()
            if c["verdict"] == verdict
        ]
        if items:
            parts.append(f"{word}: " + ", ".join(items))
    if parts:
        return "; ".join(parts)
    if comparison and all(c["verdict"] == "n/a" for c in comparison.values()):
        return "n/a (one split)"
    return "within spread" if comparison else "n/a"


def build_table(
    family: str,
    rows: Sequence[dict],
    results: Mapping[str, Sequence[dict]],
    baseline: str,
    meta: Mapping,
) -> dict:
    """The table as a JSON-ready dict.

    ``rows``: per row ``{"name", "config", "same_as", "params", "trainable_params", "gflops",
    "input_hw"}`` in table order; ``results[name]``: that row's finished runs (each with
    ``"split"``, ``"metrics"`` and ``"images_seen"``); ``meta``: budget, splits, seed ...
    Rows without a finished run are left out; a row that is the same configuration as an
    earlier one (``same_as``) shows that row's runs.
    """
    table_rows = []
    stats_by_row: dict[str, dict[str, dict]] = {}
    for row in rows:
        runs = list(results.get(row.get("same_as") or row["name"], ()))
        if not runs:
            continue
        runs.sort(key=lambda r: r["split"])
        metrics = {
            m.key: summarise([r["metrics"].get(m.key) for r in runs])
            for m in METRICS
            if any(m.key in r["metrics"] for r in runs)
        }
        stats_by_row[row["name"]] = metrics
        table_rows.append(
            {
                **row,
                "splits": [r["split"] for r in runs],
                "images_seen": [r.get("images_seen") for r in runs],
                "metrics": metrics,
            }
        )
    base = stats_by_row.get(baseline)
    for entry in table_rows:
        is_base = entry["name"] == baseline
        comparison = {} if is_base or base is None else compare(entry["metrics"], base)
        entry["comparison"] = comparison
        entry["helped"] = [k for k, c in comparison.items() if c["verdict"] == "helped"]
        entry["hurt"] = [k for k, c in comparison.items() if c["verdict"] == "hurt"]
        if base is None and not is_base:
            entry["helped_text"] = f"n/a (baseline {baseline} has no finished run)"
        else:
            entry["helped_text"] = helped_text(comparison, is_base)
    return {
        "family": family,
        "baseline": baseline,
        "rule": RULE,
        **dict(meta),
        "metrics": [{"key": m.key, "label": m.label, "group": m.group} for m in METRICS],
        "rows": table_rows,
    }


def _cell(stats: Mapping | None) -> str:
    if not stats or not stats["n"]:
        return "n/a"
    if stats["n"] < 2:
        return f"{stats['mean']:.3f}"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def format_markdown(table: Mapping) -> str:
    """The table as markdown: mean ± std over splits per metric, params, GFLOPs, helped."""
    present = [m for m in METRICS if any(m.key in r["metrics"] for r in table["rows"])]
    header = ["row", "params (M)", "GFLOPs"] + [m.label for m in present] + ["helped"]
    lines = [
        f"Ablation: {table['family']} (baseline: {table['baseline']})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in table["rows"]:
        name = r["name"] + (f" (= {r['same_as']})" if r.get("same_as") else "")
        cells = [name, f"{r['params'] / 1e6:.2f}", f"{r['gflops']:.2f}"]
        cells += [_cell(r["metrics"].get(m.key)) for m in present]
        cells.append(r["helped_text"])
        lines.append("| " + " | ".join(cells) + " |")
    budget = table.get("budget", {})
    lines += ["", f"Values: mean ± standard deviation over {len(table.get('splits', []))} splits."]
    if budget:
        lines.append(
            f"Budget per run: {budget['images']} training images ({budget['epochs']} epochs x "
            f"{budget['steps_per_epoch']} steps x batch {budget['batch_size']}), seed "
            f"{table.get('seed')}."
        )
    lines.append(f"Helped: {RULE}.")
    return "\n".join(lines)


def json_safe(value):
    """JSON has no NaN: non-finite floats become null (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_table(out_dir: str | Path, table: Mapping) -> tuple[Path, Path]:
    """``table.md`` and ``table.json`` in ``out_dir``, each written atomically."""
    out = Path(out_dir)
    md, js = out / TABLE_MD, out / TABLE_JSON
    write_text_atomic(js, json.dumps(json_safe(table), indent=2, allow_nan=False) + "\n")
    write_text_atomic(md, format_markdown(table) + "\n")
    return md, js
