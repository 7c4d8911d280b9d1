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
    assert len(table) == 1 + len(CHECK_NAMES)
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
