"""``saliq bench``: the parity gate, the report (JSON schema, table), the machine description,
the command line, and two short real runs (an ONNX model alone; a tiny random-weight
architecture through PyTorch and an ONNX export).

The real runs are kept to seconds: tiny models, --quick, few runs, one CPU thread (this CI
machine is shared, so nothing here asserts a speed, only what a run must contain).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from saliq.bench import machine
from saliq.bench.report import (
    FAILED,
    PASSED,
    REFERENCE,
    BackendResult,
    BenchReport,
    LatencyRow,
    StageRow,
    evaluate_parity,
    one_line_error,
    tolerance_for,
    validate_report,
)
from saliq.bench.runners import CallableRunner
from saliq.bench.timer import timing_from_ns
from saliq.errors import BackendUnavailableError, ConfigError
from saliq.spec import ModelSpec
from saliq.train.bench.cli import register, settings_from_args
from saliq.train.bench.latency import time_latency
from saliq.train.bench.memory import measure_peak_memory
from saliq.train.bench.parity import run_parity
from saliq.train.bench.plans import Plan
from saliq.train.bench.settings import MIN_RUNS, QUICK_BATCHES, QUICK_RUNS, BenchSettings

from .conftest import require

SPEC = ModelSpec(name="tiny", architecture="test", backbone="none", input_height=32, input_width=32)


def _model(feeds) -> dict[str, np.ndarray]:
    """score = sigmoid(mean(image)); saliency = 16x16 average pool of the channel mean."""
    image = feeds["image"]
    grey = image.mean(axis=1, keepdims=True)
    return {
        "score": (1.0 / (1.0 + np.exp(-image.mean(axis=(1, 2, 3))))).astype(np.float32),
        "saliency": grey.reshape(len(image), 1, 2, 16, 2, 16).mean(axis=(3, 5)),
    }


def _feeds(n: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shift = np.linspace(-2, 2, n, dtype=np.float32)[:, None, None, None]  # spread the scores
    return {"image": rng.standard_normal((n, 3, 32, 32)).astype(np.float32) * 0.3 + shift}


def _plan(name: str, fn, status: str = PASSED, precision: str = "fp32") -> Plan:
    result = BackendResult(name, "numpy", "cpu", precision, status)
    return Plan(result, lambda: CallableRunner(fn, name=name))


def _slow(feeds):
    time.sleep(0.003)
    return _model(feeds)


def _perturbed(feeds):  # fast, and wrong by 0.05 on every score
    out = _model(feeds)
    return {**out, "score": out["score"] + np.float32(0.05)}


# --- the parity gate ---------------------------------------------------------------------------


@pytest.mark.parametrize("time_failed", [False, True])
def test_a_perturbed_backend_is_failed_and_never_the_fastest(time_failed):
    reference = _plan("reference", _slow, status=REFERENCE)
    good = _plan("good", _slow)
    bad = _plan("perturbed", _perturbed)
    plans = [reference, good, bad]
    feeds = _feeds()
    run_parity(plans, reference, feeds, trained=True, spec=SPEC)
    assert good.result.status == PASSED and good.result.parity["srcc"] == pytest.approx(1.0)
    assert bad.result.status == FAILED and "score differs by 0.0500" in bad.result.reason
    settings = BenchSettings(model="test", batches=(1, 4), runs=5, warmup=1, row_seconds=5)
    timed = [p for p in plans if p.result.timeable or time_failed]
    rows = time_latency(timed, feeds, settings, log=lambda message: None)
    assert {r.backend for r in rows} == {p.result.name for p in timed}
    report = BenchReport(
        model={"name": "tiny", "kind": "onnx", "source": "t", "architecture": "t", "input": "32"},
        machine=machine.describe({"requested": 1}),
        settings={"parity_images": 12, "parity_source": "random"},
        reference="reference",
        backends=[p.result for p in plans],
        latency=rows,
    )
    if time_failed:  # the perturbed backend really is the fastest here ...
        fastest_row = min(rows, key=lambda r: r.p50_ms)
        assert fastest_row.backend == "perturbed"
    # ... and is still never reported as the fastest, nor as faster than anything
    assert set(report.fastest().values()) <= {"reference", "good"}
    assert all(report.speedup(r) is None for r in rows if r.backend == "perturbed")
    data = report.to_dict()
    assert validate_report(data) == []
    table = report.format_table()
    assert "perturbed  fp32       FAILED" in table
    assert "perturbed: FAILED: score differs by 0.0500" in table
    bad_row = next(
        line
        for line in table.splitlines()
        if line.startswith("perturbed") and ("  1  " in line or " all " in line)
    )
    assert "FAILED" in bad_row and "ms" not in bad_row
    for name, plan in (("good", good), ("reference", reference)):
        assert plan.runner is not None, name
        plan.runner.deactivate()


def test_untrained_models_are_gated_on_absolute_differences_only():
    feeds = _feeds()
    ref = _model(feeds)
    crowded = {**ref, "score": ref["score"][::-1].copy()}  # all ranks flipped
    # scores crowd within 1e-4: the untrained gate passes what the trained gate fails
    ref = {**ref, "score": np.full(12, 0.5, np.float32) + np.arange(12) * 1e-6}
    crowded = {**crowded, "score": ref["score"][::-1].copy()}
    untrained = evaluate_parity(ref, crowded, tolerance_for("fp32"), trained=False)
    trained = evaluate_parity(ref, crowded, 1e-6, trained=True)
    assert untrained["passed"] and untrained["gate"] == "absolute"
    assert untrained["srcc"] is None and untrained["saliency_cc_min"] is None
    assert not trained["passed"] and trained["srcc"] == pytest.approx(-1.0)
    assert tolerance_for("fp16") == 0.01 and tolerance_for("fp32") == 1e-4
    with pytest.raises(ValueError, match="no tolerance"):
        tolerance_for("fp8")


# --- the report ----------------------------------------------------------------------------------


def _report() -> BenchReport:
    timing = timing_from_ns(np.array([2.0, 3.0, 4.0]) * 1e6, warmup=1)
    slow = timing_from_ns(np.array([8.0, 9.0, 10.0]) * 1e6, warmup=1)
    parity = {"tolerance": 1e-4, "max_score_diff": 2e-7, "mean_score_diff": float("nan")}
    return BenchReport(
        model={
            "name": "m",
            "kind": "checkpoint",
            "source": "m.safetensors",
            "architecture": "sgdnet",
            "input": "224x224",
            "trained": False,
        },
        machine=machine.describe({"requested": 2}),
        settings={"parity_images": 4, "parity_source": "photos"},
        reference="torch-fp32-cpu",
        backends=[
            BackendResult("torch-fp32-cpu", "torch", "cpu", "fp32", REFERENCE, parity=parity),
            BackendResult("onnxruntime-cpu", "onnxruntime", "cpu", "fp32", parity=parity),
            BackendResult(
                "onnxruntime-cuda",
                "onnxruntime",
                "cuda",
                "tf32",
                FAILED,
                reason="score differs by 0.0200",
            ),
        ],
        latency=[
            LatencyRow.from_timing(
                "torch-fp32-cpu",
                1,
                slow,
                "wall",
                "host",
                50.0,
                {"kind": "rss", "bytes": 300 << 20, "above_idle_bytes": 0},
            ),
            LatencyRow.from_timing("onnxruntime-cpu", 1, timing, "wall", "host"),
        ],
        preprocessing=[
            StageRow.from_timing("native-cpu", "1080p", "host in, host out", timing, "wall")
        ],
        end_to_end=[
            StageRow(
                "onnxruntime-cpu",
                "JPEG 1080p",
                "decode",
                0,
                float("nan"),
                float("nan"),
                float("nan"),
                "wall",
                error="broken",
            )
        ],
        notes=["untrained model"],
        created="2025-01-01T00:00:00+00:00",
        command="saliq bench m.safetensors",
    )


def test_report_json_schema_types_and_atomic_write(tmp_path):
    report = _report()
    path = report.write_json(tmp_path / "out" / "bench_m.json")
    assert sorted(p.name for p in path.parent.iterdir()) == ["bench_m.json"]  # no temp left
    data = json.loads(path.read_text())  # strict JSON: NaN became null
    assert validate_report(data) == []
    assert data["schema"] == "saliq.bench" and data["schema_version"] == 1
    assert data["backends"][1]["parity"]["mean_score_diff"] is None
    row = data["latency"][1]
    assert row["p50_ms"] == pytest.approx(3.0) and row["throughput_ips"] == pytest.approx(1000 / 3)
    assert row["speedup_vs_torch_fp32"] == pytest.approx(3.0) and row["status"] == "passed"
    assert data["fastest"] == {"1": "onnxruntime-cpu"}
    for key in machine.MACHINE_KEYS:
        assert key in data["machine"]

    broken = json.loads(path.read_text())
    del broken["latency"][0]["p99_ms"]
    broken["latency"][1]["batch"] = "1"
    broken["fastest"]["1"] = "onnxruntime-cuda"
    broken["backends"][2]["status"] = "maybe"
    problems = validate_report(broken)
    assert "latency[0]: missing 'p99_ms'" in problems
    assert "latency[1].batch: not int" in problems
    assert any("fastest[1]" in p for p in problems)
    assert any("'maybe' is unknown" in p for p in problems)
    assert validate_report({"schema": "x"})[0].startswith("report: missing")


def test_table_text():
    table = _report().format_table()
    lines = table.splitlines()
    assert lines[0].startswith("saliq bench: m (checkpoint: m.safetensors; sgdnet, input 224x224,")
    assert "untrained" in lines[0]
    assert "only absolute differences are gated" in table
    assert "SRCC" not in table.split("latency")[0]  # no rank columns for random weights
    header = next(line for line in lines if line.startswith("backend") and "p50" in line)
    assert header.split() == [
        "backend",
        "batch",
        "p50",
        "p90",
        "p99",
        "img/s",
        "x",
        "torch",
        "fp32",
        "peak",
        "memory",
        "runs",
        "clock",
        "io",
    ]
    onnx = next(line for line in lines if line.startswith("onnxruntime-cpu ") and "wall" in line)
    assert onnx.split()[1:7] == ["1", "3.00", "3.80", "3.98", "333.3", "3.00"]
    torch_row = next(line for line in lines if line.startswith("torch-fp32-cpu ") and "MiB" in line)
    assert "300 MiB rss (+0)" in torch_row
    assert ["onnxruntime-cuda", "all", "FAILED"] in [line.split() for line in lines]
    assert "onnxruntime-cuda: FAILED: score differs by 0.0200" in table
    assert "fastest that passed parity: batch 1: onnxruntime-cpu" in table
    assert "onnxruntime-cpu @ JPEG 1080p: error: broken" in table
    assert "note: untrained model" in table


# --- the machine ---------------------------------------------------------------------------------


def test_machine_description_keys_and_parsers():
    description = machine.describe({"requested": 3})
    assert set(machine.MACHINE_KEYS) <= set(description)
    assert description["threads"] == {"requested": 3}
    assert isinstance(description["cpu_model"], str) and description["cpu_model"]
    assert description["libraries"]["numpy"] == np.__version__
    assert description["slug"] == machine.device_slug(description["gpus"], description["jetson"])
    json.dumps(description)  # serialisable as it is

    x86 = (
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nphysical id\t: 0\ncore id\t: 0\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nphysical id\t: 0\ncore id\t: 0\n\n"
        "processor\t: 2\nmodel name\t: AMD EPYC 7B13\nphysical id\t: 0\ncore id\t: 1\n"
    )
    assert machine.cpu_model(x86) == "AMD EPYC 7B13"
    assert machine.physical_cores(x86) == 2  # two hyper-threads share core 0
    arm = "processor\t: 0\nBogoMIPS\t: 62.50\n\nModel\t: NVIDIA Jetson AGX Orin\n"
    assert machine.cpu_model(arm) == "NVIDIA Jetson AGX Orin"
    gpus, driver = machine.parse_nvidia_smi("NVIDIA H200, 9.0, 143771, 570.86.15\n")
    assert driver == "570.86.15"
    assert gpus == [
        {"index": 0, "name": "NVIDIA H200", "compute_capability": "9.0", "memory_mib": 143771}
    ]
    assert machine.device_slug(gpus) == "h200"
    assert machine.device_slug([{"name": "NVIDIA GeForce RTX 4090"}]) == "rtx-4090"
    assert machine.device_slug([{"name": "Orin"}], jetson=True) == "jetson-orin"
    assert machine.device_slug([]) == "cpu"
    assert "2 threads pinned" in machine.summary({**description, "threads": {"requested": 2}})


def test_peak_memory_sees_what_a_call_allocates():
    plan = _plan("numpy", _model)

    def allocate():
        block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, touched
        return int(block[::4096].sum())

    peak = measure_peak_memory(plan, allocate)
    assert peak["kind"] == "rss" and peak["python_peak_bytes"] >= 64 << 20
    # The RSS high-water mark is only a lower bound: in a long process the allocator may hand
    # the block pages that are already resident (it did in the full suite), so no RSS growth
    # is asserted, only that the figure is a measurement.
    assert peak["above_idle_bytes"] is None or peak["above_idle_bytes"] >= 0


def test_run_budget_caps_slow_rows_but_never_below_min_runs():
    settings = BenchSettings(model="m", runs=30, row_seconds=1.0)
    assert settings.runs_within_budget(round_ms=0.0, calls=2) == 30  # unmeasured: all runs
    assert settings.runs_within_budget(round_ms=20.0, calls=2) == 30  # 100 affordable
    assert settings.runs_within_budget(round_ms=200.0, calls=2) == 10  # 2 s over 200 ms
    assert settings.runs_within_budget(round_ms=1e6, calls=1) == MIN_RUNS
    assert BenchSettings(model="m", runs=3).runs_within_budget(1e6, 1) == 3  # asked for fewer


def test_a_row_records_an_exception_as_one_short_line():
    assert one_line_error(ValueError("bad shape\nTraceback ...")) == "ValueError: bad shape"
    assert one_line_error(RuntimeError()) == "RuntimeError: "
    assert len(one_line_error(OSError("x" * 1000))) == 300


# --- the command line ----------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="saliq")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", *argv])


def test_cli_parsing_defaults_quick_and_errors(capsys):
    full = settings_from_args(_parse("default"), ["default"])
    assert full.batches == (1, 4, 16, 64) and full.runs == 30 and full.plots and full.stages
    quick = settings_from_args(_parse("default", "--quick"), ["default", "--quick"])
    assert quick.batches == QUICK_BATCHES and quick.runs == QUICK_RUNS and quick.quick
    assert quick.command == "saliq bench default --quick"
    args = _parse(
        "sgdnet",
        "--batch",
        "64,1,4,4",
        "--runs",
        "7",
        "--input-size",
        "64",
        "--model-config",
        '{"feature_dim": 32}',
        "--backends",
        "torch, onnxruntime-cpu",
        "--engine",
        "a.engine",
        "--engine",
        "b.engine",
        "--device",
        "cpu",
        "--no-plots",
    )
    settings = settings_from_args(args)
    assert settings.batches == (1, 4, 64) and settings.runs == 7
    assert settings.input_size == (64, 64) and settings.model_config == {"feature_dim": 32}
    assert settings.backends == ("torch", "onnxruntime-cpu")
    assert settings.engines == ("a.engine", "b.engine") and not settings.plots
    for bad in (
        ["--batch", "0"],
        ["--batch", "1,x"],
        ["--input-size", "65"],
        ["--runs", "0"],
        ["--device", "tpu"],
    ):
        with pytest.raises(SystemExit):
            _parse("default", *bad)
    assert "batch sizes must be in 1..256" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not JSON"):
        settings_from_args(_parse("sgdnet", "--model-config", "{feature_dim: 32}"))
    with pytest.raises(ConfigError, match="--threads"):
        settings_from_args(_parse("default", "--threads", "-1"))


def test_names_moved_out_of_the_cli_module_stay_importable_from_it():
    from saliq.train.bench import cli, latency, memory, models, parity, plans, run, settings, stages

    homes = {
        settings: ["DEFAULT_BATCHES", "QUICK_BATCHES", "BenchSettings"],
        models: ["ModelArtifacts", "resolve_model"],
        plans: ["Plan", "build_plans"],
        parity: ["parity_frames", "preprocess_frames", "run_parity"],
        latency: ["time_latency"],
        memory: ["measure_peak_memory"],
        stages: ["time_stages"],
        run: ["run_bench", "write_outputs"],
        machine: ["pin_threads"],
    }
    for module, names in homes.items():
        for name in names:
            assert getattr(cli, name) is getattr(module, name), name
            assert name in cli.__all__, name


def test_bench_modules_import_no_runtime_training_code_or_matplotlib():
    code = (
        "import sys, saliq.train.bench.cli, saliq.bench.report, saliq.bench.plots, "
        "saliq.bench.machine, saliq.train.bench.models, saliq.train.bench.plans, "
        "saliq.train.bench.parity, saliq.train.bench.latency, saliq.train.bench.memory, "
        "saliq.train.bench.stages, saliq.train.bench.run\n"
        "bad = [m for m in ('torch', 'saliq.train.models', 'saliq.export', 'matplotlib', "
        "'onnxruntime', 'cv2', 'skimage') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_plots_name_the_extra_when_matplotlib_is_missing(monkeypatch, tmp_path):
    from saliq.bench.plots import plot_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(BackendUnavailableError, match=r"saliq\[train\]"):
        plot_report(_report(), tmp_path / "x.png")


def test_unknown_models_and_files_are_one_line_errors(tmp_path):
    from saliq.train.bench.cli import main

    assert main(["no-such-architecture", "--quick"]) == 2
    assert main([str(tmp_path / "missing.onnx"), "--quick"]) == 2


# --- short real runs -----------------------------------------------------------------------------


def test_bench_an_onnx_model_alone(tmp_path, capsys):
    """No checkpoint beside it: ONNX Runtime CPU is the reference, training status unknown."""
    require("onnx", "the ONNX stand-in model is written with onnx")
    require("onnxruntime", "runs the model")
    require("cv2", "preprocessing and the JPEG row")
    from saliq.train.bench.cli import main

    from .fake_runtimes import tiny_onnx

    model = tiny_onnx(tmp_path / "tiny.onnx", SPEC)
    out = tmp_path / "results"
    argv = [
        str(model),
        "--quick",
        "--runs",
        "5",
        "--warmup",
        "1",
        "--parity-images",
        "6",
        "--threads",
        "1",
        "--output-dir",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "parity against onnxruntime-cpu on 6 images" in printed
    assert (
        "fastest that passed parity: batch 1: onnxruntime-cpu, batch 16: onnxruntime-cpu" in printed
    )
    data = json.loads((out / "bench_tiny.json").read_text())
    assert validate_report(data) == []
    assert data["reference"] == "onnxruntime-cpu" and data["model"]["trained"] is None
    assert [(r["backend"], r["batch"]) for r in data["latency"]] == [
        ("onnxruntime-cpu", 1),
        ("onnxruntime-cpu", 16),
    ]
    assert data["machine"]["threads"]["requested"] == 1
    assert {r["input"] for r in data["preprocessing"]} == {"1080p", "4K"}
    assert {r["name"] for r in data["preprocessing"]} >= {"opencv-reference"}
    assert {r["input"] for r in data["end_to_end"]} == {"uint8 1080p", "uint8 4K", "JPEG 1080p"}
    assert all(r["error"] is None and r["p50_ms"] > 0 for r in data["end_to_end"])
    assert any("training status unknown" in n for n in data["notes"])
    png = out / "bench_tiny.png"
    if png.exists():  # matplotlib installed
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_a_tiny_architecture_through_torch_and_onnx(tmp_path):
    """An architecture name: random weights, a checkpoint, an ONNX export, then the gate."""
    require("torch", "builds the architecture")
    require("onnx", "exports it")
    require("onnxruntime", "runs the export")
    from saliq.train.bench.run import run_bench

    settings = BenchSettings(
        model="sgdnet",
        batches=(1, 2),
        runs=5,
        warmup=1,
        threads=1,
        parity_images=4,
        stages=False,
        plots=False,
        model_config={"feature_dim": 32, "hidden": [16]},
        input_size=(64, 64),
    )
    report = run_bench(settings)
    data = report.to_dict()
    assert validate_report(data) == []
    assert data["model"]["kind"] == "architecture" and data["model"]["trained"] is False
    assert data["model"]["input"] == "64x64" and data["reference"] == "torch-fp32-cpu"
    onnx = report.backend("onnxruntime-cpu")
    assert onnx is not None and onnx.status == PASSED, onnx
    assert onnx.parity["gate"] == "absolute" and onnx.parity["max_score_diff"] <= 1e-4
    assert {(r.backend, r.batch) for r in report.latency} == {
        (b, n) for b in ("torch-fp32-cpu", "onnxruntime-cpu") for n in (1, 2)
    }
    assert all(r.runs >= 5 and r.peak_memory for r in report.latency)
    assert report.speedup(report.latency[0]) is not None


def test_summary_markdown_names_the_machine_and_hides_failed_numbers():
    from saliq.bench.report import summary_markdown

    text = summary_markdown([_report().to_dict()])
    lines = text.splitlines()
    assert lines[0].startswith("| model | machine | backend |")
    onnx = next(line for line in lines if "| onnxruntime-cpu |" in line)
    assert "passed (2.0e-07)" in onnx and "| 3.00 |" in onnx and "3.00 (batch 1)" in onnx
    assert f"{_report().machine['slug']}: " in onnx
    failed = next(line for line in lines if "| onnxruntime-cuda |" in line)
    assert "| FAILED | - | - | - | - |" in failed
    with pytest.raises(ValueError, match="not a saliq bench report"):
        summary_markdown([{"schema": "other"}])


def test_the_command_registers_in_the_saliq_cli(monkeypatch):
    from saliq import cli
    from saliq.train.bench.cli import HELP, cmd_bench

    monkeypatch.setitem(cli.COMMANDS, "bench", (HELP, "saliq.train.bench.cli:register"))
    args = cli.build_parser(["bench", "default", "--quick"]).parse_args(
        ["bench", "default", "--quick"]
    )
    assert args.func is cmd_bench and args.quick and args.model == "default"


def test_device_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    require("onnx", "writes the stand-in model")
    require("onnxruntime", "reads it")
    from saliq.train.bench.run import run_bench

    from .fake_runtimes import tiny_onnx

    model = tiny_onnx(tmp_path / "tiny.onnx", SPEC)
    import onnxruntime

    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(
        onnxruntime.get_available_providers()
    ):
        pytest.skip("this machine has a CUDA provider")
    with pytest.raises(BackendUnavailableError, match="--device cuda: no CUDA backend"):
        run_bench(BenchSettings(model=str(model), device="cuda", parity_images=2))


def test_resolve_model_finds_siblings_and_refuses_a_foreign_reference(tmp_path):
    require("onnxruntime", "reads the ONNX specs")
    require("onnx", "writes the stand-in model")
    from saliq.assess import default_model_path
    from saliq.train.bench.models import resolve_model

    from .fake_runtimes import tiny_onnx

    onnx_path = default_model_path("onnx")
    artifacts = resolve_model(BenchSettings(model=str(onnx_path)), tmp_path)
    assert artifacts.kind == "onnx" and artifacts.onnx == onnx_path
    assert artifacts.checkpoint == default_model_path("safetensors")  # the sibling
    assert artifacts.trained is True  # the shipped checkpoint carries training metrics
    foreign = tiny_onnx(tmp_path / "tiny.onnx", SPEC)
    with pytest.raises(ConfigError, match="not the same model"):
        resolve_model(BenchSettings(model="default", reference=str(foreign)), tmp_path)
    (tmp_path / "x.txt").write_text("not a model")
    with pytest.raises(ConfigError, match="unknown model file type"):
        resolve_model(BenchSettings(model=str(tmp_path / "x.txt")), tmp_path)
