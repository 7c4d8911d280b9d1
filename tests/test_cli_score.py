"""``saliq score`` as people use it: streamed rows, formats, -o, --sort, --threshold exit codes,
fatal errors in the JSON asked for, EXIF orientation reported and applied, --save-saliency,
GIFs in folders.

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
from .test_imageio import write_gif, write_oriented_jpeg

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


# ---------------------------------------------------------------- --save-saliency


def _two_tone(height: int, width: int, vertical: bool) -> np.ndarray:
    """Bright and dark halves: the tiny model's 2x2 saliency grid is not flat on it."""
    img = np.full((height, width, 3), 40, np.uint8)
    if vertical:
        img[:, : width // 2] = 220
    else:
        img[: height // 2] = 220
    return img


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_save_saliency_writes_map_and_overlay_per_image(capsys, tmp_path, model) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    images = {
        tmp_path / "a" / "1.jpg": _two_tone(48, 36, vertical=True),
        tmp_path / "a" / "1.png": _two_tone(40, 56, vertical=False),
        tmp_path / "b" / "1.png": _two_tone(33, 45, vertical=True),
        # 16-bit gray: the overlay is drawn on it as 8-bit BGR, as the model saw it
        tmp_path / "b" / "deep.png": _two_tone(30, 40, vertical=False)[:, :, 0].astype(np.uint16)
        * 257,
    }
    for path, pixels in images.items():
        assert cv2.imwrite(str(path), pixels)
    out = tmp_path / "maps" / "nested"  # created, parents too
    run = score(
        capsys,
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        "--model",
        str(model),
        "--format",
        "jsonl",
        "--save-saliency",
        str(out),
        "--batch-size",
        "3",
    )
    assert run.code == 0, run.err
    assert f"saliency maps in {out}" in run.err
    rows = [json.loads(line) for line in run.out.splitlines()]
    # Input order; a stem already used gets _2, _3: no image's files replace another's.
    stems = ["1", "1_2", "1_3", "deep"]
    assert [Path(r["path"]) for r in rows] == list(images)
    assert [r["saliency"] for r in rows] == [str(out / f"{s}_overlay.jpg") for s in stems]
    assert _files(out) == sorted(
        f"{s}_{kind}" for s in stems for kind in ("overlay.jpg", "saliency.png")
    )
    assessor = saliq.assess.load(model)
    for row, stem in zip(rows, stems):
        image, _ = saliq.imageio.read_image(row["path"])
        full = assessor.assess(row["path"], saliency_map=True).saliency_full
        gray = cv2.imread(str(out / f"{stem}_saliency.png"), cv2.IMREAD_UNCHANGED)
        assert gray.dtype == np.uint8 and gray.shape == image.shape[:2]  # the image's size
        np.testing.assert_allclose(gray, np.clip(np.rint(full * 255), 0, 255), atol=1)
        assert gray.max() == 255 and gray.min() < 200  # max-normalised, not flat
        overlay = cv2.imread(row["saliency"])
        assert overlay.shape == (*image.shape[:2], 3)
        bgr = (
            image
            if image.ndim == 3
            else cv2.cvtColor((image // 257).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        )
        blend = 0.5 * bgr + 0.5 * cv2.applyColorMap(gray, cv2.COLORMAP_JET)
        assert np.abs(overlay - blend).mean() < 6  # JPEG-close to the 50/50 blend
    # A rerun replaces its own files (same names, nothing added); CSV gains the column.
    run = score(
        capsys,
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        "--model",
        str(model),
        "--format",
        "csv",
        "--save-saliency",
        str(out),
    )
    lines = list(csv.DictReader(io.StringIO(run.out)))
    assert run.code == 0 and [line["saliency"] for line in lines] == [r["saliency"] for r in rows]
    assert len(_files(out)) == 8  # and no temporary file left behind
    # The table stays narrow: the paths are in the files' names, not in a column.
    table = score(capsys, str(tmp_path / "a"), "--model", str(model), "--save-saliency", str(out))
    assert table.code == 0 and table.out.splitlines()[0].split() == ["image", "score"]


def _score_only_onnx(path: Path) -> Path:
    """The tiny model without its saliency output."""
    import onnx
    from onnx import TensorProto, helper

    from saliq.spec import METADATA_KEY

    spec = ModelSpec(
        name="plain",
        architecture="test",
        backbone="none",
        input_height=32,
        input_width=32,
        outputs=("score",),
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Sigmoid", ["m"], ["score"]),
        ],
        "plain",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    helper.set_model_props(proto, {METADATA_KEY: spec.to_json()})
    onnx.save(proto, str(path))
    return path


def test_save_saliency_needs_a_saliency_output(capsys, folder, model, tmp_path) -> None:
    plain = _score_only_onnx(tmp_path / "plain.onnx")
    out = tmp_path / "maps"
    run = score(capsys, str(folder), "--model", str(plain), "--save-saliency", str(out))
    assert run.code == cli.EXIT_ERROR and run.out == ""
    assert len(run.err.splitlines()) == 1 and run.err.startswith("saliq: error: --save-saliency")
    assert "'plain' has no saliency output" in run.err
    assert not out.exists()  # refused before anything was created
    doc = json.loads(
        score(capsys, str(folder), "--model", str(plain), "--json", "--save-saliency", str(out)).out
    )
    assert doc["exit_code"] == 2 and "no saliency output" in doc["error"]
    # Without the option the same model scores as before.
    assert score(capsys, str(folder), "--model", str(plain)).code == 0
    # A file where the folder should be is refused the same way.
    (tmp_path / "taken").write_text("a file")
    run = score(
        capsys, str(folder), "--model", str(model), "--save-saliency", str(tmp_path / "taken")
    )
    assert run.code == 2 and "is a file; pass a folder" in run.err


# ---------------------------------------------------------------- GIF


def test_gif_in_a_folder_is_scored_like_a_gif_given_by_name(capsys, folder, model) -> None:
    write_gif(folder / "moving.gif")
    run = score(capsys, str(folder), "--model", str(model), "--format", "jsonl")
    rows = {Path(r["path"]).name: r for r in map(json.loads, run.out.splitlines())}
    assert run.code == 0 and len(rows) == 7 and "error" not in rows["moving.gif"]
    alone = score(capsys, str(folder / "moving.gif"), "--model", str(model), "--json")
    assert json.loads(alone.out)["results"][0]["score"] == rows["moving.gif"]["score"]


def test_options_between_paths_and_unwritable_outputs(capsys, tmp_path, folder, model) -> None:
    """``score a --sort score b`` takes both paths (argparse alone refuses the second); an
    output that cannot be written is one line and exit 2, never a traceback."""
    a, b = str(folder / "0.png"), str(folder / "5.png")
    run = score(capsys, a, "--sort", "score", b, "--model", str(model), "--format", "jsonl")
    assert run.code == 0, run.err
    rows = [json.loads(line) for line in run.out.splitlines() if line.startswith("{")]
    assert sorted(r["path"] for r in rows if "score" in r) == sorted([a, b])
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    run = score(capsys, a, "--model", str(model), "-o", str(blocker / "out.json"))
    assert run.code == 2 and "Traceback" not in run.err
    assert run.err.startswith("saliq: error: -o ") and "cannot write there" in run.err
    assert json.loads(run.out)["exit_code"] == 2  # JSON asked (by the suffix): JSON error
