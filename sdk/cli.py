"""The ``saliq`` command line. Errors print one line (no traceback) and exit non-zero.

Each command's module is imported only when that command runs: ``saliq --help`` and ``saliq
score`` import neither the training code (``saliq.train``) nor the exporters
(``saliq.export``), so the runtime works where only the runtime is installed. The parser
lists every command from :data:`COMMANDS` (name and help) and fills in the arguments of the
one on the command line alone, from the module that owns it.

SIGTERM (``kill``, a container stop, torchrun ending its workers) becomes an exception in the
main thread, so ``finally`` blocks and ``with`` blocks run: a command interrupted while writing
leaves no hidden temporary file behind (:func:`saliq.atomic.atomic_path`). Exit status 143.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from .errors import SaliqError

if TYPE_CHECKING:
    from .assess import Assessor
    from .saliency_files import SaliencyWriter

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what a shell reports for a SIGTERM death

# name -> (one-line help, the function that adds the command's subparser: "module:function",
# or a bare name for one defined below; looked up when the command runs)
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("score images or folders of images", "register_score"),
    "train": ("train a model from a YAML config", "register_train"),
    "export": ("export a model: onnx, trt (TensorRT), triton", "register_export"),
    "evaluate": ("held-out synthetic + saliency evaluation", "register_evaluate"),
    "convert-weights": (
        "PyTorch .pth/.pt weights -> .safetensors (the only pickle saliq reads)",
        "register_convert_weights",
    ),
    "ablate": (
        "train every ablation row of a model family (configs/FAMILY/) and write one table",
        "saliq.train.ablate:register",
    ),
    "gate": (
        "keep good frames, drop bad ones: one JSON line per frame with the reasons",
        "saliq.gate_cli:register",
    ),
    "bench": (
        "latency and parity against PyTorch fp32 per backend, precision and batch size",
        "saliq.train.bench.cli:register",
    ),
    "explain": (
        "explain a score: saliency, HiResCAM/GradCAM, gradient maps, region scores (a PNG)",
        "saliq.train.explain.cli:register",
    ),
    "doctor": (
        "report CUDA, GPU, TensorRT, onnxruntime, OpenCV, onnx and torch availability",
        "saliq.doctor:register",
    ),
}
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "onnx": ("checkpoint -> verified ONNX", "register_export_onnx"),
    "trt": (
        "ONNX or checkpoint -> TensorRT engine, refused unless it matches ONNX Runtime",
        "saliq.export.cli_trt:register",
    ),
    "triton": (
        "ONNX model or TensorRT engine -> Triton model repository",
        "saliq.export.cli_triton:register",
    ),
}
ALL = None  # build_parser(None): every command's arguments (introspection, docs)
# Which extra brings a third-party module a command may import (setup.py's extras_require),
# for the one-line error when it is missing; otherwise the command's own extra.
MODULE_EXTRAS = {
    "onnx": "export",
    "onnxruntime": "cpu",
    "cv2": "cpu",
    **dict.fromkeys(
        ("torch", "yaml", "tqdm", "scipy", "skimage", "sklearn", "matplotlib", "brisque"), "train"
    ),
}
COMMAND_EXTRAS = {
    "score": "cpu",
    "export": "export",
    "train": "train",
    "evaluate": "train",
    "convert-weights": "train",
    "ablate": "train",
    "explain": "train",
    "bench": "cpu",
    "gate": "cpu",
}


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM; a SystemExit, so ``except Exception`` code does
    not swallow it while ``finally`` and ``with`` cleanups still run."""


# --- handlers ------------------------------------------------------------------------------


def train_overrides(args: argparse.Namespace) -> dict[str, object]:
    """``--set key=value`` items, then ``--device``/``--precision`` (the flags win)."""
    overrides = dict(_parse_override(item) for item in args.set or [])
    for key in ("device", "precision"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    from saliq.train.config import load_config
    from saliq.train.trainer import train

    best = train(load_config(args.config, train_overrides(args)), resume=args.resume)
    print(f"best checkpoint: {best}")
    return 0


def _parse_override(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SaliqError(f"--set expects key=value, got {item!r}")
    import yaml

    return key, yaml.safe_load(value)


DEFAULT_MODEL = "default"  # the model argument naming the shipped default model


def resolve_export_model(
    model: str, output: str | None, kind: str = "safetensors", output_suffix: str | None = None
) -> tuple[str, str | None]:
    """``(model path, output)`` for an export command's arguments.

    ``default`` is the shipped default model's ``.{kind}`` file (``.safetensors`` for
    ``saliq export onnx``; exporters that read ONNX take its shipped, verified export). Its
    default output is ``./<stem>{output_suffix}`` in the working folder: the exporter's own
    default (beside the model) would write into, or over, the installed package. Any other
    ``model`` and ``output`` come back unchanged.
    """
    if model != DEFAULT_MODEL:
        return model, output
    from .assess import default_model_path

    path = default_model_path(kind)
    if output is None and output_suffix is not None:
        output = path.stem + output_suffix
    return str(path), output


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from saliq.export.onnx import export_onnx

    checkpoint, output = resolve_export_model(args.checkpoint, args.output, "safetensors", ".onnx")
    report = export_onnx(checkpoint, output, opset=args.opset)
    print(
        f"wrote {report.path} (opset {report.opset}); verified on {report.images} frames: "
        f"max |score diff| {report.max_score_diff:.2e}, max |saliency diff| "
        f"{report.max_saliency_diff:.2e}"
    )
    if report.lint is not None:
        print(report.lint.summary())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from saliq.train.evaluate import main as evaluate_main

    return evaluate_main(args)


def cmd_convert_weights(args: argparse.Namespace) -> int:
    from saliq.train.convert_weights import convert_pth

    dst = convert_pth(args.src, args.dst, backbone=args.backbone)
    checked = f", keys and shapes checked against {args.backbone}" if args.backbone else ""
    print(f"wrote {dst}{checked}")
    return 0


# --- saliq score ---------------------------------------------------------------------------
# Rows are written as soon as their batch is scored (each row flushed), so a long folder shows
# progress as it goes and Ctrl-C keeps every row already written. Exit status for scripts:
# 0 every image scored (and, with --threshold, passed), 1 some scored below --threshold,
# 2 an error (an unreadable or missing image among several, or a fatal error), 130 Ctrl-C.

EXIT_BELOW_THRESHOLD = 1
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE, what a shell reports for `cmd | head` writers
SCORE_FORMATS = ("table", "json", "jsonl", "csv")
SORT_KEYS = ("name", "score")
SCORE_BATCH = 16  # the Assessor's default batch
# -o FILE picks the format from the file's suffix when --format/--json are not given.
_SUFFIX_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_DIGITS = 6  # decimals of scores in every format (the table shows 4)


def _decode_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def score_rows(
    assessor: Assessor,
    entries: Iterable[tuple[str, str | None]],
    batch_size: int = SCORE_BATCH,
    workers: int = 0,
    saliency: SaliencyWriter | None = None,
) -> Iterator[dict[str, object]]:
    """One row per ``(path, error)`` entry, in order, a batch at a time.

    Files are decoded (EXIF orientation applied) in a thread pool while the previous batch is
    preprocessed and run, at most two batches ahead so memory stays bounded; OpenCV's decoder
    releases the GIL, so the decoding really overlaps. An entry with an error (a missing
    path), or a file that cannot be read, becomes an error row; the others a row with
    ``score`` (and ``salient``/``background`` for models with region scores) and
    ``orientation`` (the EXIF orientation applied, 1 = as stored). ``entries`` may be a
    generator: it is read only as far as the look-ahead needs. With ``saliency``, each scored
    image's saliency map and overlay are written before its row, which names the overlay
    (``saliency``).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from .assess import REGION_SCORES
    from .imageio import read_image_oriented

    regions = REGION_SCORES in assessor.spec.outputs
    source = iter(entries)
    pool = ThreadPoolExecutor(workers or _decode_workers(), thread_name_prefix="saliq-decode")
    pending: deque = deque()

    def look_ahead() -> None:
        while len(pending) < 2 * batch_size:
            entry = next(source, None)
            if entry is None:
                return
            path, error = entry
            pending.append((path, error or pool.submit(read_image_oriented, path)))

    try:
        look_ahead()
        while pending:
            batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            look_ahead()  # the next batch decodes while this one runs
            rows, decoded = [], []
            for path, job in batch:
                if isinstance(job, str):
                    rows.append({"path": path, "error": job})
                    continue
                try:
                    pixels, fmt, orientation = job.result()
                except SaliqError as exc:
                    rows.append({"path": path, "error": str(exc)})
                    continue
                row: dict[str, object] = {"path": path}
                rows.append(row)
                decoded.append((row, pixels, fmt, orientation))
            if decoded:
                results = assessor.assess(
                    [pixels for _, pixels, _, _ in decoded], saliency_map=saliency is not None
                )
                for (row, pixels, fmt, orientation), result in zip(decoded, results):
                    row["score"] = round(result.score, _DIGITS)
                    if regions and result.region_scores is not None:
                        row["salient"], row["background"] = (
                            round(v, _DIGITS) for v in result.region_scores
                        )
                    if result.defect is not None:
                        row["defect"] = result.defect[0]
                        row["defect_confidence"] = round(result.defect[1], _DIGITS)
                    row["orientation"] = orientation
                    if saliency is not None:
                        row["saliency"] = saliency.write(str(row["path"]), pixels, fmt, result)
            yield from rows
    finally:
        # Ctrl-C or an error: queued decodes are dropped, running ones finish on their own.
        pool.shutdown(wait=False, cancel_futures=True)


def score_entries(paths: Sequence[str]) -> list[tuple[str, str | None]]:
    """``(file, None)`` for each image file given or found in a folder given; a path that is
    missing (or a folder without images) becomes ``(path, error)``: an error row, not an
    abort, like an unreadable file inside a folder."""
    from .imageio import expand_paths

    entries: list[tuple[str, str | None]] = []
    for given in paths:
        try:
            entries.extend((str(path), None) for path in expand_paths([given]))
        except SaliqError as exc:
            entries.append((given, str(exc)))
    return entries


class _ScoreWriter:
    """Writes rows of one format to a stream as they come; ``finish`` closes the document.

    Nothing is written before the first row, so an error before any row leaves no stray
    header (or, in the JSON formats, gives the error document alone)."""

    def __init__(
        self,
        stream,
        fmt: str,
        model: str,
        columns: list[str],
        width: int,
        files: Sequence[str] = (),
    ) -> None:
        self.stream, self.fmt, self.model = stream, fmt, model
        self.columns, self.width, self.count = columns, width, 0
        self.files = list(files)  # columns naming written files: CSV and JSON rows, no table
        self.started = False
        self._csv = None

    def _emit(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()  # streamed: a row is visible (and survives Ctrl-C) once written

    def _start(self) -> None:
        self.started = True
        if self.fmt == "json":
            self._emit(f'{{\n  "model": {json.dumps(self.model)},\n  "results": [')
        elif self.fmt == "csv":
            import csv

            self._csv = csv.DictWriter(
                self.stream,
                ["path", *self.columns, "orientation", *self.files, "error"],
                lineterminator="\n",
            )
            self._csv.writeheader()
        elif self.fmt == "table":
            extra = "".join(f"  {c:>10}" for c in self.columns[1:])
            self._emit(f"{'image':<{self.width}}  score{extra}\n")

    def row(self, row: dict[str, object]) -> None:
        if not self.started:
            self._start()
        if self.fmt == "json":
            self._emit(("," if self.count else "") + "\n    " + json.dumps(row))
        elif self.fmt == "jsonl":
            self._emit(json.dumps(row) + "\n")
        elif self.fmt == "csv":
            # JSON's spelling of booleans, not Python's, for spreadsheets and scripts alike
            self._csv.writerow(
                {k: str(v).lower() if isinstance(v, bool) else v for k, v in row.items()}
            )
            self.stream.flush()
        else:
            self._emit(f"{row['path']:<{self.width}}  {self._table_cells(row)}\n")
        self.count += 1

    def _table_cells(self, row: dict[str, object]) -> str:
        if "error" in row:
            return f"error: {row['error']}"
        cells = f"{row['score']:.4f}"
        for column in self.columns[1:]:
            value = row.get(column)
            if column == "pass":
                text = "pass" if value else "FAIL"
            elif isinstance(value, str):
                text = value
            else:
                text = "-" if value is None else f"{value:.4f}"
            cells += f"  {text:>10}"
        if row.get("orientation", 1) != 1:
            cells += f"  (EXIF orientation {row['orientation']} applied: scored upright)"
        return cells

    def finish(self, summary: dict[str, object], status: int, error: str | None) -> None:
        if not self.started:
            if error is not None:
                _fatal_json(self.fmt, error, self.stream)
                return
            self._start()
        if self.fmt == "json":
            tail = ("\n  " if self.count else "") + f'],\n  "summary": {json.dumps(summary)}'
            if error is not None:
                tail += f',\n  "error": {json.dumps(error)}'
            self._emit(tail + f',\n  "exit_code": {status}\n}}\n')
        elif self.fmt == "jsonl" and error is not None:
            self._emit(json.dumps({"error": error, "fatal": True}) + "\n")


def _score_format(args: argparse.Namespace) -> str:
    if args.json and args.format not in (None, "json"):
        raise SaliqError(f"--json and --format {args.format} disagree; pass one of them")
    if args.json:
        return "json"
    if args.format:
        return args.format
    if args.output:
        from pathlib import Path

        return _SUFFIX_FORMATS.get(Path(args.output).suffix.lower(), "table")
    return "table"


def _fatal_json(fmt: str, message: str, stream=None) -> None:
    """A fatal error as the JSON that was asked for, besides the one line on stderr."""
    stream = stream or sys.stdout
    if fmt == "json":
        stream.write(json.dumps({"error": message, "exit_code": EXIT_ERROR}, indent=2) + "\n")
    elif fmt == "jsonl":
        stream.write(json.dumps({"error": message, "fatal": True}) + "\n")
    stream.flush()


def cmd_score(args: argparse.Namespace) -> int:
    fmt = _score_format(args)
    try:
        return _score(args, fmt)
    except BrokenPipeError:
        # `saliq score ... | head`: the reader left; stop quietly, as Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except SaliqError as exc:
        _fatal_json(fmt, str(exc))  # the JSON asked for; main() prints the stderr line
        raise


def _score(args: argparse.Namespace, fmt: str) -> int:
    from contextlib import ExitStack

    from .assess import REGION_SCORES, load
    from .atomic import atomic_path

    threshold = args.threshold
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise SaliqError(f"--threshold must be in [0, 1] (scores are), got {threshold}")
    if args.batch_size < 1:
        raise SaliqError(f"--batch-size must be at least 1, got {args.batch_size}")
    entries = score_entries(args.paths)
    if len(entries) == 1 and entries[0][1] is not None:
        raise SaliqError(entries[0][1])  # the one input given is missing: a plain error
    assessor = load(
        args.model,
        backend=args.backend,
        threads=args.threads,
        allow_engine_host_code=args.allow_engine_host_code,
    )
    saliency = None
    if args.save_saliency is not None:
        if not assessor.spec.saliency:
            raise SaliqError(
                f"--save-saliency: model {assessor.spec.name!r} has no saliency output; drop "
                "the option or pass a model with one (--model default has)"
            )
        from .saliency_files import SaliencyWriter

        saliency = SaliencyWriter(args.save_saliency)  # after the checks: no stray empty DIR
    columns = ["score"]
    if REGION_SCORES in assessor.spec.outputs:  # crop-view models: where people look vs rest
        columns += ["salient", "background"]
    if assessor.spec.defect_classes:  # a defect-type head: the likely defect and its probability
        columns += ["defect", "defect_confidence"]
    if threshold is not None:
        columns.append("pass")
    counts = {"images": len(entries), "scored": 0, "errors": 0}
    if threshold is not None:
        counts["below_threshold"] = 0
    buffered: list[dict[str, object]] = []
    interrupted, error = False, None
    with ExitStack() as stack:
        stream = sys.stdout
        if args.output:
            # Written beside FILE and renamed over it at the end, so FILE is never
            # half-written: a fatal error or SIGTERM leaves it as it was.
            try:
                tmp = stack.enter_context(atomic_path(args.output))
                stream = stack.enter_context(tmp.open("w", encoding="utf-8", newline=""))
            except OSError as exc:  # before any image is read: a JSON error where JSON was asked
                raise SaliqError(
                    f"-o {args.output}: cannot write there ({exc.strerror or exc}); pass a "
                    "path in a folder you can write to"
                ) from None
        width = max(len(path) for path, _ in entries)
        files = ["saliency"] if saliency is not None else []
        writer = _ScoreWriter(stream, fmt, assessor.spec.name, columns, width, files)
        rows = score_rows(assessor, entries, args.batch_size, args.decode_workers, saliency)
        show_progress = args.output is not None or not sys.stdout.isatty()
        try:
            for done, row in enumerate(rows, start=1):
                if "error" in row:
                    if len(entries) == 1:  # one file given: its problem is the error
                        raise SaliqError(str(row["error"]))
                    counts["errors"] += 1
                else:
                    counts["scored"] += 1
                    if threshold is not None:
                        row["pass"] = bool(row["score"] >= threshold)
                        counts["below_threshold"] += not row["pass"]
                if args.sort:
                    buffered.append(row)  # sorting needs every row: nothing streams
                else:
                    writer.row(row)
                _progress(done, len(entries), show_progress)
        except KeyboardInterrupt:
            interrupted = True  # keep the rows so far; the document is closed below
        except SaliqError as exc:
            if args.output:
                raise  # FILE is not replaced; cmd_score reports the error
            error = str(exc)
        finally:
            rows.close()  # stops the decode pool now, not when the generator is collected
        for row in _sorted_rows(buffered, args.sort, args.reverse):
            writer.row(row)
        status = _score_status(counts, interrupted, error)
        writer.finish({**counts, "interrupted": interrupted}, status, error)
    if error is not None:
        print(f"saliq: error: {error}", file=sys.stderr)
    else:
        _score_summary(counts, threshold, interrupted, args.output, args.save_saliency)
    return status


def _sorted_rows(rows: list[dict[str, object]], key: str | None, reverse: bool) -> list:
    if key == "name":
        return sorted(rows, key=lambda r: str(r["path"]), reverse=reverse)
    if key == "score":  # lowest first (the images to look at); error rows always last
        scored = sorted((r for r in rows if "score" in r), key=lambda r: r["score"])
        return (scored[::-1] if reverse else scored) + [r for r in rows if "score" not in r]
    return rows


def _score_status(counts: dict[str, int], interrupted: bool, error: str | None) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    if error is not None or counts["errors"]:
        return EXIT_ERROR
    return EXIT_BELOW_THRESHOLD if counts.get("below_threshold") else 0


def _score_summary(
    counts: dict[str, int],
    threshold: float | None,
    interrupted: bool,
    output: str | None,
    saliency_dir: str | None = None,
) -> None:
    """One line on stderr (stdout holds only the rows): what was scored, where it went."""
    line = f"scored {counts['scored']} of {counts['images']} images"
    if counts["errors"]:
        line += f", {counts['errors']} with errors"
    if threshold is not None:
        line += f", {counts['below_threshold']} below the threshold {threshold:g}"
    if output:
        line += f"; wrote {output}"
    if saliency_dir:
        line += f"; saliency maps in {saliency_dir}"
    if interrupted:
        line = f"saliq: interrupted (Ctrl-C): {line}"
    shown = interrupted or output or saliency_dir or threshold is not None or counts["errors"]
    if shown or sys.stdout.isatty():
        print(line, file=sys.stderr)


def _progress(done: int, total: int, show: bool = True) -> None:
    # Rows on a terminal are their own progress; a counter there would interleave with them.
    if show and total > 1 and sys.stderr.isatty():
        sys.stderr.write(f"\rscoring {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


# --- registration (each called only for the command being run) -----------------------------


def register_score(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from .backends import BACKENDS

    score = sub.add_parser(
        "score",
        help=COMMANDS["score"][0],
        description="Score images (0 = unusable, 1 = pristine), one row per image as it is "
        "ready. Exit status: 0 all scored (and passed --threshold), 1 some below --threshold, "
        "2 an error (a missing or unreadable image, or a fatal error), 130 Ctrl-C.",
    )
    score.add_argument("paths", nargs="+", help="image files or folders")
    score.add_argument("--model", default="default", help="default | model.onnx | ckpt.safetensors")
    score.add_argument("--backend", default="auto", choices=BACKENDS)
    score.add_argument("--threads", type=int, default=0, help="CPU threads (0 = runtime default)")
    score.add_argument(
        "--format",
        choices=SCORE_FORMATS,
        default=None,
        help="output: table (default), json (one document), jsonl (a JSON object a line), csv; "
        "with -o, the default follows FILE's suffix (.json, .jsonl, .csv)",
    )
    score.add_argument("--json", action="store_true", help="same as --format json")
    score.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=None,
        help="write the rows to FILE (replaced only when done; Ctrl-C keeps the rows so far)",
    )
    score.add_argument(
        "--sort",
        choices=SORT_KEYS,
        default=None,
        help="order rows by path or by score (lowest first); rows are then held back and "
        "written at the end, not streamed",
    )
    score.add_argument("--reverse", action="store_true", help="reverse --sort")
    score.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help="pass if score >= T: adds a pass column and exits 1 when an image is below T",
    )
    score.add_argument(
        "--batch-size", type=int, default=SCORE_BATCH, help="images per model call (default 16)"
    )
    score.add_argument(
        "--decode-workers",
        type=int,
        default=0,
        help="threads decoding the next batch while one runs (0 = up to 4, one per core)",
    )
    score.add_argument(
        "--save-saliency",
        metavar="DIR",
        default=None,
        help="write DIR/<stem>_saliency.png (the saliency map, 8-bit gray, at the image's size) "
        "and DIR/<stem>_overlay.jpg (a heatmap over the image) per scored image; a repeated "
        "stem gets _2, _3...; rows gain a saliency field naming the overlay",
    )
    score.add_argument(
        "--allow-engine-host-code",
        action="store_true",
        help="load a version-compatible TensorRT engine (it runs host code embedded in the "
        "plan: only for engines you built or trust)",
    )
    score.set_defaults(func=cmd_score)
    return score


def register_train(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from saliq.train.config import DEVICES, PRECISIONS  # no torch: names and checks only

    train = sub.add_parser("train", help=COMMANDS["train"][0])
    train.add_argument("--config", required=True)
    train.add_argument("--resume", action="store_true", help="continue from last.safetensors")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.epochs=2",
    )
    train.add_argument(
        "--device",
        choices=DEVICES,
        default=None,
        help="overrides the config's device (auto: CUDA when available, else CPU)",
    )
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="overrides the config's precision (auto: bf16/fp16 autocast on a GPU, fp32 on CPU)",
    )
    train.set_defaults(func=cmd_train)
    return train


def register_export_onnx(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    onnx = sub.add_parser("onnx", help=EXPORT_FORMATS["onnx"][0])
    onnx.add_argument(
        "checkpoint",
        help=f"checkpoint.safetensors, or {DEFAULT_MODEL!r} for the shipped default model",
    )
    onnx.add_argument(
        "-o",
        "--output",
        default=None,
        help="ONNX path (default: <checkpoint>.onnx; ./<name>.onnx for the default model)",
    )
    onnx.add_argument("--opset", type=int, default=17)
    onnx.set_defaults(func=cmd_export_onnx)
    return onnx


def register_export(
    sub: argparse._SubParsersAction, argv: Sequence[str] | None = ALL
) -> argparse.ArgumentParser:
    """``saliq export FORMAT``: only the named format's module is imported."""
    export = sub.add_parser("export", help=COMMANDS["export"][0])
    formats = export.add_subparsers(dest="format", required=True, metavar="FORMAT")
    _add_commands(formats, EXPORT_FORMATS, argv)
    return export


def register_evaluate(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from saliq.train.evaluate import add_arguments  # argparse only: no torch import

    evaluate = sub.add_parser("evaluate", help=COMMANDS["evaluate"][0])
    add_arguments(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)
    return evaluate


def register_convert_weights(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    convert = sub.add_parser("convert-weights", help=COMMANDS["convert-weights"][0])
    convert.add_argument("src", help="state dict saved with torch.save (.pth/.pt)")
    convert.add_argument("dst", help="output .safetensors file")
    convert.add_argument(
        "--backbone",
        default=None,
        help="check keys and shapes against this backbone (e.g. resnet50, vgg16) first",
    )
    convert.set_defaults(func=cmd_convert_weights)
    return convert


# --- the parser ----------------------------------------------------------------------------


def _first_word(argv: Sequence[str]) -> str | None:
    """The first token that is not an option (the subcommand), if any."""
    return next((token for token in argv if not token.startswith("-")), None)


def _load(target: str) -> Callable[..., argparse.ArgumentParser]:
    module, _, function = target.rpartition(":")
    # Bare names resolve here, so ``python -m saliq.cli`` (this file as __main__) uses its own
    # functions instead of importing a second copy of the module.
    return getattr(importlib.import_module(module), function) if module else globals()[function]


def _add_commands(
    sub: argparse._SubParsersAction,
    table: dict[str, tuple[str, str]],
    argv: Sequence[str] | None,
) -> None:
    """Register every command of ``table``: in full the one ``argv`` names (or all when
    ``argv`` is ALL), and as a name with its help line otherwise."""
    chosen = _first_word(argv) if argv is not ALL else None
    for name, (help_text, target) in table.items():
        if argv is not ALL and name != chosen:
            sub.add_parser(name, help=help_text)
            continue
        register = _load(target)
        if target == "register_export":  # the one command with subcommands of its own
            rest = ALL if argv is ALL else list(argv)[list(argv).index(name) + 1 :]
            register(sub, rest)
        else:
            register(sub)


def version() -> str:
    """The installed distribution's version; the package's ``__version__`` when saliq runs
    from a source tree that was never installed (no distribution metadata)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("saliq")
    except PackageNotFoundError:
        from . import __version__

        return __version__


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for: every other run skips the metadata scan."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"saliq {version()}")
        parser.exit(0)


def build_parser(argv: Sequence[str] | None = ALL) -> argparse.ArgumentParser:
    """The parser for ``argv`` (only its command's module is imported); every command's
    arguments when ``argv`` is None."""
    parser = argparse.ArgumentParser(
        prog="saliq",
        description="Saliency-guided no-reference image quality assessment for the edge.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print 'saliq <version>' and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_commands(sub, COMMANDS, argv)
    return parser


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``, letting options sit between a command's paths (``saliq score a.jpg
    --sort score b.jpg``), which plain argparse refuses for a list positional."""
    args, extras = parser.parse_known_args(argv)
    command = getattr(args, "command", None)
    if extras and command in argv:
        sub = next(
            action.choices[command]
            for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
        )
        tail = argv[argv.index(command) + 1 :]
        try:
            intermixed = sub.parse_intermixed_args(tail)
        except TypeError:  # a command whose positionals argparse cannot intermix
            intermixed = None
        if intermixed is not None:
            return argparse.Namespace(**{**vars(args), **vars(intermixed)})
    return parser.parse_args(argv)  # the usual errors for anything else


# --- signals and main ----------------------------------------------------------------------


def _on_sigterm(signum: int, frame: object) -> None:
    # A second SIGTERM during the cleanups kills at once (the default action).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated(EXIT_TERMINATED)


def _install_sigterm() -> object | None:
    """Turn SIGTERM into :class:`Terminated`; returns the previous handler (None when not in
    the main thread, where Python cannot install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def missing_module_message(exc: ModuleNotFoundError, command: str | None) -> str:
    """One line naming the missing package and the extra that installs it."""
    module = (exc.name or "?").split(".")[0]
    extra = MODULE_EXTRAS.get(module) or COMMAND_EXTRAS.get(command or "", "cpu")
    if module == "torch":
        fix = f"pip install torch==2.13.0 (the CPU build; or a CUDA build), then 'saliq[{extra}]'"
    else:
        fix = f"pip install 'saliq[{extra}]'"
    return f"`saliq {command}` needs the {module!r} package, which is not installed: {fix}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    previous = _install_sigterm()
    try:
        args = parse_command_line(build_parser(argv), argv)
        return int(args.func(args))
    except SaliqError as exc:
        print(f"saliq: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # an output that cannot be written, a disk that fills up
        where = f": {exc.filename}" if exc.filename else ""
        print(
            f"saliq: error: {exc.strerror or exc}{where}; check the path, its permissions and "
            "the free space",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "saliq":
            raise  # a broken saliq install or a bug: keep the traceback
        print(f"saliq: error: {missing_module_message(exc, _first_word(argv))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("saliq: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("saliq: terminated (SIGTERM); partial outputs were removed", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
