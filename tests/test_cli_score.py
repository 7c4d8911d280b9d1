"""``saliq score`` as people use it: streamed rows, formats, -o, --sort, --threshold exit codes,
fatal errors in the JSON asked for, EXIF orientation reported and applied.

The model is the tests' tiny ONNX graph (score = sigmoid(mean(image))), run in-process
through ``saliq.cli.main`` so a wrapped backend can see what was written before each batch.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import saliq.assess
from saliq import cli
from saliq.errors import SaliqError
from saliq.spec import ModelSpec

from .conftest import require
from .fake_runtimes import tiny_onnx
from .test_imageio import write_oriented_jpeg

SPEC = ModelSpec(name="tiny", architecture="test", backbone="none", input_height=32, input_width=32)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    require("onnx", "the tiny test model is built with onnx")
    require("onnxruntime", "saliq score runs ONNX models with onnxruntime")
    return tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", SPEC)


def _image(seed: int, height: int = 40, width: int = 56) -> np.ndarray:
    """Flat images of different brightness: distinct, well-separated tiny-model scores."""
    return np.full((height, width, 3), 20 + 30 * seed, np.uint8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(6):
        assert cv2.imwrite(str(images / f"{i}.png"), _image(i))
    return images


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def score(capsys, *args: str) -> Run:
    code = cli.main(["score", *args])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


@pytest.fixture
def watch(monkeypatch, model):
    """Wraps the loaded model's backend: ``calls`` lists, per inference call, the batch size
    and how many characters stdout held when it started; ``fail_on`` makes call k raise."""
    state = {"calls": [], "fail_on": {}, "stdout": None}
    real_load = saliq.assess.load

    def load(*args, **kwargs):
        assessor = real_load(model)
        infer = assessor.backend.infer

        def watched(inputs):
            k = len(state["calls"])
            stdout = state["stdout"] or sys.stdout
            state["calls"].append((len(next(iter(inputs.values()))), stdout.getvalue()))
            if k in state["fail_on"]:
                raise state["fail_on"][k]
            return infer(inputs)

        assessor.backend.infer = watched
        return assessor

    monkeypatch.setattr(saliq.assess, "load", load)
    return state


# ---------------------------------------------------------------- streaming


def test_rows_stream_before_the_last_batch_runs(capsys, folder, watch) -> None:
    run = score(capsys, str(folder), "--format", "jsonl", "--batch-size", "2")
    assert run.code == 0, run.err
    assert [size for size, _ in watch["calls"]] == [2, 2, 2]
    # When batch k starts, the rows of batches 0..k-1 are already written (and flushed).
    for k, (_, written) in enumerate(watch["calls"]):
        rows = [json.loads(line) for line in written.splitlines()]
        assert [Path(r["path"]).name for r in rows] == [f"{i}.png" for i in range(2 * k)]
    assert len(run.out.splitlines()) == 6


def test_json_document_streams_and_parses(capsys, folder, watch) -> None:
    run = score(capsys, str(folder), "--json", "--batch-size", "4")
    doc = json.loads(run.out)
    assert doc["model"] == "tiny" and len(doc["results"]) == 6 and doc["exit_code"] == 0
    assert doc["summary"] == {"images": 6, "scored": 6, "errors": 0, "interrupted": False}
    # The first four rows were on stdout before the second batch ran.
    assert watch["calls"][1][1].count('"path"') == 4


def test_generator_source_is_read_lazily(model, folder) -> None:
    pulled: list[str] = []

    def source():
        for path in sorted(folder.iterdir()):
            pulled.append(path.name)
            yield str(path), None

    rows = cli.score_rows(saliq.assess.load(model), source(), batch_size=1, workers=1)
    first = next(rows)
    assert first["path"].endswith("0.png") and 0 < first["score"] < 1
    assert len(pulled) <= 3  # one batch running, at most two decoding ahead; not all six
    assert len(list(rows)) == 5 and len(pulled) == 6


def test_ctrl_c_keeps_the_rows_already_written(capsys, folder, watch, tmp_path) -> None:
    watch["fail_on"][2] = KeyboardInterrupt()
    run = score(capsys, str(folder), "--json", "--batch-size", "2")
    assert run.code == cli.EXIT_INTERRUPTED
    doc = json.loads(run.out)  # still one valid document
    assert len(doc["results"]) == 4 and doc["summary"]["interrupted"] is True
    assert "interrupted" in run.err and "scored 4 of 6" in run.err
    # -o FILE: the file is written (whole, parseable) with the rows so far.
    watch["calls"].clear()
    out = tmp_path / "partial.csv"
    run = score(capsys, str(folder), "-o", str(out), "--batch-size", "2")
    assert run.code == cli.EXIT_INTERRUPTED
    assert len(list(csv.DictReader(out.open()))) == 4


# ---------------------------------------------------------------- formats, -o, --sort


def test_every_format_parses(capsys, folder, model) -> None:
    table = score(capsys, str(folder), "--model", str(model))
    lines = table.out.splitlines()
    assert lines[0].split() == ["image", "score"] and len(lines) == 7
    scores = {Path(line.split()[0]).name: float(line.split()[1]) for line in lines[1:]}
    jsonl = score(capsys, str(folder), "--model", str(model), "--format", "jsonl")
    rows = [json.loads(line) for line in jsonl.out.splitlines()]
    as_csv = list(
        csv.DictReader(
            io.StringIO(score(capsys, str(folder), "--model", str(model), "--format", "csv").out)
        )
    )
    doc = json.loads(score(capsys, str(folder), "--model", str(model), "--format", "json").out)
    assert len(rows) == len(as_csv) == len(doc["results"]) == 6
    for row, line, item in zip(rows, as_csv, doc["results"]):
        name = Path(row["path"]).name
        assert row == item and line["path"] == row["path"]
        assert float(line["score"]) == pytest.approx(row["score"], abs=1e-9)
        assert scores[name] == pytest.approx(row["score"], abs=5e-5)
        assert row["orientation"] == 1 and line["orientation"] == "1" and line["error"] == ""
    # brighter flat images score higher (sigmoid of the mean): the scores are the model's
    assert [r["score"] for r in rows] == sorted(r["score"] for r in rows)


def test_output_file_is_atomic_and_follows_the_suffix(capsys, folder, model, watch) -> None:
    target = folder.parent / "scores.json"
    run = score(capsys, str(folder), "-o", str(target))
    assert run.code == 0 and run.out == "" and f"wrote {target}" in run.err
    assert len(json.loads(target.read_text())["results"]) == 6
    # A fatal error mid-run leaves the previous file as it was and no temporary file.
    before = target.read_text()
    watch["calls"].clear()
    watch["fail_on"][1] = SaliqError("backend failed: out of memory")
    run = score(capsys, str(folder), "-o", str(target), "--batch-size", "2")
    assert run.code == cli.EXIT_ERROR
    assert target.read_text() == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["imgs", "scores.json"]
    assert json.loads(run.out) == {"error": "backend failed: out of memory", "exit_code": 2}
    assert run.err.strip() == "saliq: error: backend failed: out of memory"


def test_sort_by_score_and_name(capsys, folder, model) -> None:
    (folder / "broken.png").write_text("not an image")
    run = score(
        capsys,
        str(folder),
        "--model",
        str(model),
        "--format",
        "jsonl",
        "--sort",
        "score",
        "--reverse",
    )
    rows = [json.loads(line) for line in run.out.splitlines()]
    scored = [r["score"] for r in rows if "score" in r]
    assert scored == sorted(scored, reverse=True) and "error" in rows[-1]  # errors last
    run = score(capsys, str(folder), "--model", str(model), "--format", "jsonl", "--sort", "name")
    names = [Path(json.loads(line)["path"]).name for line in run.out.splitlines()]
    assert names == sorted(names)


def test_sort_holds_rows_back(capsys, folder, watch) -> None:
    run = score(capsys, str(folder), "--format", "jsonl", "--batch-size", "2", "--sort", "name")
    assert run.code == 0 and all(written == "" for _, written in watch["calls"])


# ---------------------------------------------------------------- exit codes


def test_exit_codes_without_and_with_threshold(capsys, folder, model) -> None:
    base = [str(folder), "--model", str(model), "--format", "jsonl"]
    assert score(capsys, *base).code == 0
    scores = [json.loads(line)["score"] for line in score(capsys, *base).out.splitlines()]
    middle = sorted(scores)[3]  # 3 of 6 below it
    run = score(capsys, *base, "--threshold", str(middle))
    rows = [json.loads(line) for line in run.out.splitlines()]
    assert run.code == cli.EXIT_BELOW_THRESHOLD == 1
    assert [r["pass"] for r in rows] == [s >= middle for s in scores]
    assert "3 below the threshold" in run.err
    assert score(capsys, *base, "--threshold", "0").code == 0
    table = score(capsys, str(folder), "--model", str(model), "--threshold", "0.99")
    assert table.code == 1 and table.out.splitlines()[0].split() == ["image", "score", "pass"]
    assert all(line.split()[2] == "FAIL" for line in table.out.splitlines()[1:])
    # An unreadable image is an error (2) whatever the threshold says.
    (folder / "broken.png").write_text("not an image")
    assert score(capsys, *base, "--threshold", "0").code == cli.EXIT_ERROR
    bad = score(capsys, *base, "--threshold", "1.5")
    assert bad.code == 2 and json.loads(bad.out)["fatal"] is True
    assert "--threshold must be in [0, 1]" in bad.err


def test_missing_path_among_several_is_an_error_row(capsys, folder, model) -> None:
    missing = str(folder / "gone.jpg")
    run = score(
        capsys,
        str(folder / "0.png"),
        missing,
        str(folder / "1.png"),
        "--model",
        str(model),
        "--format",
        "jsonl",
    )
    rows = [json.loads(line) for line in run.out.splitlines()]
    assert run.code == 2 and [("error" in r) for r in rows] == [False, True, False]
    assert rows[1]["path"] == missing and "not found" in rows[1]["error"]


# ---------------------------------------------------------------- fatal errors as JSON


def test_fatal_errors_in_the_json_asked_for(capsys, folder, tmp_path, watch) -> None:
    for fmt, check in (
        ("json", lambda out: json.loads(out)["exit_code"] == 2),
        ("jsonl", lambda out: json.loads(out)["fatal"] is True),
        ("table", lambda out: out == ""),
        ("csv", lambda out: out == ""),
    ):
        run = score(capsys, str(tmp_path / "none.jpg"), "--format", fmt)
        assert run.code == 2 and check(run.out), (fmt, run.out)
        assert run.err.startswith("saliq: error:") and len(run.err.splitlines()) == 1
    # Mid-stream on stdout: the document is closed with the error, rows so far kept.
    watch["fail_on"][1] = SaliqError("backend failed")
    run = score(capsys, str(folder), "--json", "--batch-size", "2")
    doc = json.loads(run.out)
    assert run.code == 2 and doc["error"] == "backend failed" and len(doc["results"]) == 2
    watch["calls"].clear()
    run = score(capsys, str(folder), "--format", "jsonl", "--batch-size", "2")
    last = json.loads(run.out.splitlines()[-1])
    assert last == {"error": "backend failed", "fatal": True} and run.code == 2


def test_model_that_cannot_be_opened_is_a_json_error(capsys, folder, tmp_path) -> None:
    run = score(capsys, str(folder), "--model", str(tmp_path / "nope.onnx"), "--json")
    doc = json.loads(run.out)
    assert run.code == 2 and doc["exit_code"] == 2 and "model file not found" in doc["error"]
    assert run.err == f"saliq: error: {doc['error']}\n"


def test_json_flag_and_format_must_agree(capsys, folder) -> None:
    run = score(capsys, str(folder), "--json", "--format", "csv")
    assert run.code == 2 and "disagree" in run.err


# ---------------------------------------------------------------- EXIF orientation


def test_portrait_jpeg_is_scored_upright_and_says_so(capsys, tmp_path, model) -> None:
    upright = np.zeros((64, 40, 3), np.uint8)
    upright[:32] = 230  # bright top half: a transposed read would split it left/right
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # what the camera stored
    path = write_oriented_jpeg(tmp_path / "portrait.jpg", stored, 6)
    assessor = saliq.assess.load(model)
    result = assessor.assess(str(path), saliency_map=True)
    assert result.saliency_full.shape == (64, 40)  # upright, not transposed
    assert result.score == pytest.approx(assessor.assess(cv2.imread(str(path))).score, abs=1e-6)
    run = score(capsys, str(path), str(path), "--model", str(model))
    assert "EXIF orientation 6 applied" in run.out.splitlines()[1]
    rows = json.loads(score(capsys, str(path), "--model", str(model), "--json").out)["results"]
    assert rows[0]["orientation"] == 6


def test_cli_subprocess_streams_jsonl(folder, model) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "saliq.cli",
            "score",
            str(folder),
            "--model",
            str(model),
            "--format",
            "jsonl",
            "--threshold",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len([json.loads(line) for line in done.stdout.splitlines()]) == 6
