"""Markdown tables of the measured results (benchmarks/results/cpu/*.json), for the docs.

python scripts/results_tables.py
"""

import json
from pathlib import Path

from saliq.train.evaluate import scorers

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cpu"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _metric_rows(section: dict, keys: list[str]) -> list[list[str]]:
    return [[name, *(f"{section[name][k]:.3f}" for k in keys)] for name in scorers(section)]


def quality_table(report: dict) -> str:
    q = report["quality"]
    header = [
        "scorer",
        "grouped SRCC (target >= 0.90)",
        "lowest type (>= 0.80)",
        "AUC levels 1-2 vs 4-5 (>= 0.90)",
    ]
    keys = ["grouped_srcc", "min_type_srcc", "auc_mild_vs_severe"]
    per_type = q["model"]["per_type_srcc"]
    return "\n".join(
        [
            f"Held-out synthetic test set: {q['photos']} photos never seen in training, "
            f"{q['images']} images (11 types x 5 levels + pristine).",
            "",
            *markdown_table(header, _metric_rows(q, keys)),
            "",
            "Per type (model): " + ", ".join(f"{t} {v:.3f}" for t, v in per_type.items()),
        ]
    )


def saliency_table(report: dict) -> str:
    s = report["saliency"]
    header = ["map", "NSS", "CC", "AUC-Judd", "shuffled AUC"]
    keys = ["nss", "cc", "auc_judd", "shuffled_auc"]
    return "\n".join(
        [
            f"Saliency on {s['photos']} held-out Scene photos against human fixations "
            f"(centre Gaussian width tuned on the training photos: {s['centre_sigma_fraction']}):",
            "",
            *markdown_table(header, _metric_rows(s, keys)),
        ]
    )


def loto_table() -> str:
    full = json.loads((RESULTS / "eval_default.json").read_text())["quality"]["model"]
    rows = []
    for path in sorted(RESULTS.glob("loto_*.json")):
        q = json.loads(path.read_text())["quality"]["model"]
        kind = path.stem[len("loto_") :]
        rows.append(
            [
                kind,
                f"{q['grouped_srcc']:.3f}",
                f"{q['auc_mild_vs_severe']:.3f}",
                f"{full['per_type_srcc'][kind]:.3f}",
            ]
        )
    header = [
        "type left out of training",
        "its SRCC (model)",
        "AUC (model)",
        "its SRCC (full model)",
    ]
    return "\n".join(markdown_table(header, rows))


def latency_table() -> str:
    r = json.loads((RESULTS / "latency_cpu.json").read_text())
    m = r["median_ms"]
    return "\n".join(
        [
            f"`saliq score` path on one {r['frame']}, {r['machine']['cpu_count']}-core CPU "
            f"(medians of {r['rounds']} interleaved rounds x {r['repeats_per_round']}):",
            "",
            "| step | median ms |",
            "|---|---|",
            f"| `assess(path)`, ONNX Runtime | {m['ort_path']:.1f} |",
            f"| `assess(path)`, PyTorch | {m['torch_path']:.1f} |",
            f"| of which JPEG decode | {m['decode']:.1f} |",
            f"| of which preprocessing (native) | {m['preprocess']:.1f} |",
            f"| network only, ONNX Runtime | {m['ort_infer']:.1f} |",
            f"| network only, PyTorch | {m['torch_infer']:.1f} |",
            "",
            f"PyTorch / ONNX Runtime ratio, same run: {r['torch_over_onnxruntime_assess']} for "
            f"`assess`, {r['torch_over_onnxruntime_infer']} for the network alone.",
        ]
    )


def main() -> None:
    report = json.loads((RESULTS / "eval_default.json").read_text())
    for part in (quality_table(report), saliency_table(report), loto_table(), latency_table()):
        print(part + "\n")


if __name__ == "__main__":
    main()
