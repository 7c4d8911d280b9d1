"""``saliq gate SOURCE``: one JSON line per frame on stdout, decisions with reasons.

Lines have a ``type``: ``frame`` (see :meth:`saliq.gate.Decision.to_dict`), ``source_error``
(reported, retried, never fatal to the command) and one final ``summary`` (also written on
Ctrl-C). A live summary line (fps, accept rate, p50/p99 latency) goes to stderr when stderr
is a terminal. ``--calibrate LABELLED`` scores a labelled set instead and prints the curve.

Exit codes: 0 every frame accepted; 1 some frames rejected; 2 an error before or instead of
frames (bad arguments, model, unopenable source, no frame read); 3 the source gave up
mid-stream (after its retries) though frames were processed; 130 Ctrl-C (summary written).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

HELP = "keep good frames, drop bad ones: one JSON line per frame with the reasons"
EXIT_ALL_ACCEPTED = 0
EXIT_SOME_REJECTED = 1
EXIT_ERROR = 2
EXIT_SOURCE_FAILED = 3
EXIT_INTERRUPTED = 130
LIVE_EVERY_S = 0.5
OVERLAY_CHARS = 90  # characters per line of the reasons written on saved frames


class Stats:
    """Running counts and latencies for the summary line."""

    def __init__(self, clock=time.perf_counter, runtime: dict[str, str] | None = None) -> None:
        self.clock = clock
        self.runtime = dict(runtime or {})  # what ran: backend, preprocessing
        self.start = clock()
        self.frames = self.accepted = self.late = self.errors = 0
        self.latencies: list[float] = []
        self.source_failed = False

    def add(self, decision: Any) -> None:
        self.frames += 1
        self.accepted += bool(decision.accept)
        self.late += bool(decision.late)
        if decision.latency_ms is not None:
            self.latencies.append(decision.latency_ms)

    def summary(self, interrupted: bool = False) -> dict[str, Any]:
        elapsed = max(self.clock() - self.start, 1e-9)
        lat = np.asarray(self.latencies) if self.latencies else None
        return {
            "type": "summary",
            "frames": self.frames,
            "accepted": self.accepted,
            "rejected": self.frames - self.accepted,
            "accept_rate": round(self.accepted / self.frames, 4) if self.frames else None,
            "late": self.late,
            "source_errors": self.errors,
            "source_failed": self.source_failed,
            "fps": round(self.frames / elapsed, 2),
            "latency_p50_ms": None if lat is None else round(float(np.percentile(lat, 50)), 2),
            "latency_p99_ms": None if lat is None else round(float(np.percentile(lat, 99)), 2),
            "interrupted": interrupted,
            **self.runtime,
        }

    def line(self) -> str:
        s = self.summary()
        rate = "-" if s["accept_rate"] is None else f"{s['accept_rate']:.0%}"
        p50 = "-" if s["latency_p50_ms"] is None else f"{s['latency_p50_ms']:.1f}"
        p99 = "-" if s["latency_p99_ms"] is None else f"{s['latency_p99_ms']:.1f}"
        return (
            f"{s['frames']} frames  {s['fps']:.1f} fps  accept {rate}  "
            f"p50 {p50} ms  p99 {p99} ms  errors {s['source_errors']}"
        )


def overlay(pixels: np.ndarray, fmt: str, saliency: np.ndarray | None, text: str) -> np.ndarray:
    """BGR frame with the saliency as a JET heat map blended in, and ``text`` on top."""
    import cv2

    if fmt == "NV12":
        bgr = cv2.cvtColor(pixels, cv2.COLOR_YUV2BGR_NV12)
    elif fmt == "GRAY" or pixels.ndim == 2:
        bgr = cv2.cvtColor(pixels.reshape(pixels.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif fmt.startswith("RGB"):
        bgr = np.ascontiguousarray(pixels[:, :, 2::-1])
    else:
        bgr = np.ascontiguousarray(pixels[:, :, :3])
    if bgr.dtype != np.uint8:
        bgr = (bgr // 257).astype(np.uint8)
    if saliency is not None:
        heat = cv2.resize(saliency.astype(np.float32), (bgr.shape[1], bgr.shape[0]))
        heat = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        bgr = cv2.addWeighted(bgr, 0.6, heat, 0.4, 0.0)
    lines = _wrap(text, OVERLAY_CHARS)
    if not lines:
        return bgr
    font = cv2.FONT_HERSHEY_SIMPLEX
    # The longest line spans at most 96 % of the width (readable from 320 px to 4K); white on
    # a darkened band, since outlined text smears where stroke widths differ between builds.
    (width, height), baseline = cv2.getTextSize(max(lines, key=len), font, 1.0, 1)
    scale = float(np.clip(0.96 * (bgr.shape[1] - 16) / max(width, 1), 0.3, 1.5))
    thickness = 2 if scale >= 1.0 else 1
    step = int(np.ceil((height + baseline) * scale * 1.35))
    band = min(bgr.shape[0], step * len(lines) + step // 3)
    bgr[:band] = (bgr[:band] * 0.3).astype(np.uint8)
    for y, chunk in enumerate(lines):
        org = (8, int(step * (y + 1) - baseline * scale))
        cv2.putText(bgr, chunk, org, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return bgr


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def _save(folder: Path, decision: Any, frame: Any, result: Any) -> None:
    import cv2

    verdict = "accept" if decision.accept else "reject"
    why = "; ".join(r.message for r in decision.reasons) or "ok"
    text = f"#{decision.index} {verdict} score {decision.score:.3f}: {why}"
    image = overlay(frame.pixels, frame.fmt, getattr(result, "saliency", None), text)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if ok:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{decision.index:06d}_{verdict}_{decision.score:.3f}.jpg").write_bytes(
            data.tobytes()
        )


def _emit(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()  # a consumer reading the pipe sees each frame as it is decided


def policy_from_args(args: argparse.Namespace):
    from .gate import ExposurePolicy, GatePolicy

    return GatePolicy(
        threshold=args.threshold,
        leave_threshold=args.leave_threshold,
        region=args.region,
        ema_alpha=args.ema,
        min_run=args.min_run,
        latency_budget_ms=args.budget_ms,
        exposure=None if args.no_exposure else ExposurePolicy(),
        exposure_rejects=not args.exposure_report_only,
    )


def cmd_gate(args: argparse.Namespace) -> int:
    from .assess import load
    from .atomic import output_folder
    from .errors import ConfigError
    from .gate import QualityGate
    from .sources import RetryPolicy, open_source

    policy = policy_from_args(args)  # bad settings fail before the model loads
    retry = RetryPolicy(retries=args.retries, backoff_s=args.backoff)
    if args.max_frames < 0:
        raise ConfigError(f"--max-frames must be >= 0 (0 = every frame), got {args.max_frames}")
    for option, folder in (
        ("--save-rejected", args.save_rejected),
        ("--save-accepted", args.save_accepted),
    ):
        if folder is not None:
            output_folder(folder, option)
    assessor = load(
        args.model, backend=args.backend, threads=args.threads, preprocessing=args.preprocessing
    )
    if args.calibrate:
        from .calibrate import calibrate

        result = calibrate(
            assessor, args.source, args.target_frr, region=args.region, synthetic=args.synthetic
        )
        print(json.dumps(result.to_dict()) if args.json else result.table())
        return 0
    source = open_source(int(args.source) if args.source.isdigit() else args.source, retry=retry)
    gate = QualityGate(assessor, policy)
    saving = args.save_rejected is not None or args.save_accepted is not None
    out = sys.stdout
    stats = Stats(runtime=runtime_summary(assessor))
    live = sys.stderr.isatty() and not args.quiet
    last_live = 0.0
    interrupted = False
    try:
        for item in source:
            if item.pixels is None:
                stats.errors += 1
                stats.source_failed |= item.fatal
                _emit(out, item.to_dict())
                continue
            decision = gate(
                item.pixels,
                item.fmt,
                index=item.index,
                timestamp=item.timestamp,
                saliency_map=False,
                name=item.name,
            )
            stats.add(decision)
            _emit(out, decision.to_dict())
            folder = args.save_accepted if decision.accept else args.save_rejected
            if saving and folder is not None:
                try:
                    _save(Path(folder), decision, item, gate.last_result)
                except OSError as exc:  # a full disk must not stop the gate itself
                    saving = False
                    print(
                        f"saliq gate: cannot save frame {item.index} to {folder} "
                        f"({exc.strerror or exc}); gating goes on without saving frames",
                        file=sys.stderr,
                    )
            if live and stats.clock() - last_live >= LIVE_EVERY_S:
                last_live = stats.clock()
                sys.stderr.write("\r" + stats.line())
                sys.stderr.flush()
            if args.max_frames and stats.frames >= args.max_frames:
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        source.close()
    summary = stats.summary(interrupted)
    _emit(out, summary)
    if live:
        sys.stderr.write("\r" + stats.line() + "\n")
    if interrupted:
        print("saliq gate: interrupted; summary written", file=sys.stderr)
        return EXIT_INTERRUPTED
    if stats.frames == 0:
        print(f"saliq: error: no frame could be read from {args.source}", file=sys.stderr)
        return EXIT_ERROR
    if stats.source_failed:
        return EXIT_SOURCE_FAILED
    return EXIT_ALL_ACCEPTED if stats.accepted == stats.frames else EXIT_SOME_REJECTED


def runtime_summary(assessor: Any) -> dict[str, str]:
    """Which backend and preprocessing run, and why not the GPU preprocessing (empty for an
    assessor that is not a saliq Assessor: the gate takes anything with ``assess``)."""
    used = getattr(assessor, "preprocessing_used", None)
    if used is None:
        return {}
    out = {"backend": assessor.backend.name, "preprocessing": used}
    if used != "cuda":
        out["preprocessing_note"] = assessor.preprocessing_note
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .assess import PREPROCESSING_CHOICES
    from .backends import BACKENDS

    parser.add_argument(
        "source",
        help="video file, image folder, camera index (0), rtsp:// or http:// URL, or a "
        "GStreamer pipeline ('... ! appsink'); with --calibrate: a good/ + bad/ folder or CSV",
    )
    parser.add_argument("--model", default="default", help="default | model.onnx | .engine")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = runtime default)")
    parser.add_argument(
        "--preprocessing",
        default="auto",
        choices=PREPROCESSING_CHOICES,
        help="auto: on the GPU straight into a TensorRT engine's inputs where saliq._preproc "
        "has CUDA, else on the host; cuda: insist; host: never the GPU",
    )
    policy = parser.add_argument_group("policy")
    policy.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="accept at or above (default 0.5; pick yours with --calibrate)",
    )
    policy.add_argument(
        "--leave-threshold",
        type=float,
        default=None,
        help="hysteresis: once accepting, reject only below this (default: --threshold)",
    )
    policy.add_argument(
        "--region",
        choices=("frame", "salient"),
        default="frame",
        help="threshold the whole frame or the salient region only",
    )
    policy.add_argument(
        "--ema",
        type=float,
        default=None,
        metavar="ALPHA",
        help="smooth scores: weight of the newest frame in (0, 1]",
    )
    policy.add_argument(
        "--min-run",
        type=int,
        default=1,
        help="consecutive frames needed before accept/reject changes",
    )
    policy.add_argument(
        "--budget-ms",
        type=float,
        default=None,
        help="per-frame latency budget; late decisions are flagged, not dropped",
    )
    policy.add_argument("--no-exposure", action="store_true", help="skip the histogram check")
    policy.add_argument(
        "--exposure-report-only",
        action="store_true",
        help="report exposure problems without rejecting the frame",
    )
    src = parser.add_argument_group("source")
    src.add_argument("--retries", type=int, default=3, help="retries after a source failure")
    src.add_argument("--backoff", type=float, default=0.5, help="first retry wait, seconds")
    src.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = all)")
    output = parser.add_argument_group("output")
    output.add_argument("--save-rejected", metavar="DIR", help="save rejected frames (overlay)")
    output.add_argument("--save-accepted", metavar="DIR", help="save accepted frames (overlay)")
    output.add_argument("--quiet", action="store_true", help="no live summary line on stderr")
    cal = parser.add_argument_group("calibration")
    cal.add_argument(
        "--calibrate",
        action="store_true",
        help="pick --threshold from SOURCE: a good/ + bad/ folder or path,label CSV",
    )
    cal.add_argument(
        "--synthetic",
        action="store_true",
        help="with --calibrate: SOURCE is a folder of your good frames; bad ones "
        "are made from them (blur, noise, JPEG, exposure at severities 3-5)",
    )
    cal.add_argument(
        "--target-frr",
        type=float,
        default=0.05,
        help="target false-reject rate (good frames rejected), default 0.05",
    )
    cal.add_argument("--json", action="store_true", help="calibration result as JSON")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "gate",
        help=HELP,
        description=HELP,
        epilog="exit codes: 0 all frames accepted, 1 some rejected, 2 error, 3 the source gave "
        "up mid-stream, 130 interrupted (summary written). docs/gate.md has the details.",
    )
    add_arguments(parser)
    parser.set_defaults(func=cmd_gate)
    return parser
