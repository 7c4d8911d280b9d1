"""``saliq doctor`` always completes and says what this machine can and cannot run."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys

from saliq import doctor

CHECK_NAMES = [name for name, _ in doctor.CHECKS]


def test_report_has_every_check_with_a_status_and_detail():
    rows = doctor.report()
    assert [row[0] for row in rows] == CHECK_NAMES
    for check, status, detail in rows:
        assert status in (doctor.OK, doctor.NO, doctor.ERROR), (check, status)
        assert isinstance(detail, str) and detail, check
    by_name = {check: (status, detail) for check, status, detail in rows}
    assert by_name["python"][0] == doctor.OK
    assert by_name["onnxruntime"][0] == doctor.OK  # the SDK's required runtime
    assert "CPUExecutionProvider" in by_name["onnxruntime"][1]
    if importlib.util.find_spec("tensorrt") is None:
        status, detail = by_name["TensorRT"]
        assert status == doctor.NO and "tensorrt-cu12" in detail and "JetPack" in detail
    if importlib.util.find_spec("pycuda") is None:
        assert by_name["pycuda"][0] == doctor.NO


def test_no_gpu_rows_say_no_with_the_reason():
    rows = {check: (status, detail) for check, status, detail in doctor.report()}
    if rows["GPU"][0] == doctor.OK:
        return  # a GPU machine: nothing to check here
    for check in ("CUDA driver", "GPU"):
        status, detail = rows[check]
        assert status == doctor.NO
        assert "CUDA" in detail or "cuda-python" in detail


def test_a_broken_probe_becomes_an_error_row(monkeypatch):
    def broken():
        raise OSError("probe exploded")

    monkeypatch.setattr(doctor, "CHECKS", (("python", doctor._python), ("broken", broken)))
    rows = doctor.report()
    assert rows[1] == ("broken", doctor.ERROR, "OSError: probe exploded")


def test_register_table_and_json(capsys):
    parser = argparse.ArgumentParser(prog="saliq")
    doctor.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["doctor"])
    assert args.func(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["check", "status", "detail"]
    assert len(table) == 1 + len(CHECK_NAMES) + 1  # header, one row per check, the summary
    assert table[-1].startswith("this machine can run: ")
    args = parser.parse_args(["doctor", "--json"])
    assert args.func(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [row["check"] for row in payload] == CHECK_NAMES
    assert set(payload[0]) == {"check", "status", "detail"}


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "saliq.doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert {row["check"] for row in json.loads(done.stdout)} == set(CHECK_NAMES)


def _rows(**overrides: tuple[str, str]) -> list[doctor.Row]:
    """A CPU-only machine's report (onnxruntime, OpenCV, torch; no GPU), with ``overrides``."""
    base = {
        "python": (doctor.OK, "3.11"),
        "CUDA driver": (doctor.NO, "cuda-python not installed"),
        "GPU": (doctor.NO, "cuda-python not installed"),
        "TensorRT": (doctor.NO, "not importable"),
        "onnxruntime": (doctor.OK, "1.20; providers: AzureExecutionProvider, CPUExecutionProvider"),
        "opencv": (doctor.OK, "4.11"),
        "onnx": (doctor.OK, "1.17"),
        "preprocessing on GPU": (doctor.NO, "CPU twin only"),
        "cuda-python": (doctor.NO, "not importable"),
        "pycuda": (doctor.NO, "not importable"),
        "torch": (doctor.OK, "2.5, CUDA build none (CPU build), no usable GPU"),
    }
    base.update({name.replace("_", " "): row for name, row in overrides.items()})
    return [(name, *base[name]) for name in CHECK_NAMES]


def test_summary_says_what_runs_and_what_does_not():
    assert doctor.summary(_rows()) == (
        "this machine can run: ONNX Runtime on CPU, PyTorch on CPU, CPU preprocessing; "
        "not: ONNX Runtime on CUDA, TensorRT, PyTorch on CUDA, CUDA preprocessing"
    )
    gpu = _rows(
        CUDA_driver=(doctor.OK, "supports CUDA 12.4"),
        GPU=(doctor.OK, "1 device(s): #0: sm 9.0"),
        TensorRT=(doctor.OK, "10.3"),
        onnxruntime=(doctor.OK, "1.20; providers: CUDAExecutionProvider, CPUExecutionProvider"),
        preprocessing_on_GPU=(doctor.OK, "CUDA kernel usable"),
        pycuda=(doctor.OK, "2024.1 (importable)"),
        torch=(doctor.OK, "2.5, CUDA 12.4 usable"),
    )
    assert doctor.summary(gpu) == (
        "this machine can run: ONNX Runtime on CPU, ONNX Runtime on CUDA, TensorRT, "
        "PyTorch on CPU, PyTorch on CUDA, CPU preprocessing, CUDA preprocessing"
    )
    # TensorRT needs a CUDA binding to move buffers; a broken probe counts as "no".
    no_binding = _rows(
        CUDA_driver=(doctor.OK, "supports CUDA 12.4"),
        GPU=(doctor.OK, "1 device(s): #0: sm 8.7"),
        TensorRT=(doctor.OK, "10.3"),
    )
    assert doctor.summary(no_binding).endswith(
        "not: ONNX Runtime on CUDA, TensorRT, PyTorch on CUDA, CUDA preprocessing"
    )
    broken = _rows(onnxruntime=(doctor.ERROR, "OSError: probe exploded"), torch=(doctor.NO, "x"))
    assert doctor.summary(broken).startswith("this machine can run: CPU preprocessing; not: ")
    nothing = [(name, doctor.NO, "absent") for name in CHECK_NAMES]
    assert doctor.summary(nothing).startswith("this machine can run: nothing; not: ONNX Runtime")


def test_summary_line_matches_this_machine(capsys):
    assert doctor.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {check: (status, detail) for check, status, detail in doctor.report()}
    assert out[-1] == doctor.summary(doctor.report())
    can_run = out[-1].split("; not:")[0]
    assert ("ONNX Runtime on CPU" in can_run) == (rows["onnxruntime"][0] == doctor.OK)
    assert ("CPU preprocessing" in can_run) == (rows["opencv"][0] == doctor.OK)
