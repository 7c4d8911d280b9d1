"""Markdown tables of the measured results (benchmarks/results/cpu/*.json), for the docs.

python scripts/results_tables.py
"""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cpu"


def quality_table(report: dict) -> str:
    q = report["quality"]
    lines = [
        f"Held-out synthetic test set: {q['photos']} photos never seen in training, "
        f"{q['images']} images (11 types x 5 levels + pristine).",
        "",
        "| scorer | grouped SRCC (target >= 0.90) | lowest type (>= 0.80) "
        "| AUC levels 1-2 vs 4-5 (>= 0.90) |",
        "|---|---|---|---|",
    ]
    for name in ("model", "brisque", "variance_of_laplacian"):
        m = q[name]
        lines.append(
            f"| {name} | {m['grouped_srcc']:.3f} | {m['min_type_srcc']:.3f} | "
            f"{m['auc_mild_vs_severe']:.3f} |"
        )
    per_type = q["model"]["per_type_srcc"]
    lines += ["", "Per type (model): " + ", ".join(f"{t} {v:.3f}" for t, v in per_type.items())]
    return "\n".join(lines)


def saliency_table(report: dict) -> str:
    s = report["saliency"]
    lines = [
        f"Saliency on {s['photos']} held-out Scene photos against human fixations "
        f"(centre Gaussian width tuned on the training photos: {s['centre_sigma_fraction']}):",
        "",
        "| map | NSS | CC | AUC-Judd | shuffled AUC |",
        "|---|---|---|---|---|",
    ]
    for name in ("model", "prior", "centre_gaussian"):
        m = s[name]
        lines.append(
            f"| {name} | {m['nss']:.3f} | {m['cc']:.3f} | {m['auc_judd']:.3f} | "
            f"{m['shuffled_auc']:.3f} |"
        )
    return "\n".join(lines)


def loto_table() -> str:
    lines = [
        "| type left out of training | its SRCC (model) | AUC (model) | its SRCC (full model) |",
        "|---|---|---|---|",
    ]
    full = json.loads((RESULTS / "eval_default.json").read_text())["quality"]["model"]
    for path in sorted(RESULTS.glob("loto_*.json")):
        q = json.loads(path.read_text())["quality"]["model"]
        kind = path.stem[len("loto_") :]
        lines.append(
            f"| {kind} | {q['grouped_srcc']:.3f} | {q['auc_mild_vs_severe']:.3f} | "
            f"{full['per_type_srcc'][kind]:.3f} |"
        )
    return "\n".join(lines)


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
