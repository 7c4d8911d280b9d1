"""The `saliq gate` demo of the README (issue 11): a camera clip made from real photos.

python scripts/gate_demo.py [--scene ../shared/data/scene] [--work work_data/gate_demo]

1. Builds a 1280x720, 10 fps clip (113 frames, 11.3 s) from four held-out Scene photos
   (configs/heldout_camera.json "quality" list; MIT licence): a slow pan across each photo,
   with a defocus ramp in and out, a motion-blur burst, a low-light-with-noise stretch and an
   exposure change. Defects are made at the frame's native resolution with
   saliq.train.camera.distortions (the exposure change is a gain in linear light).
   The clip is written as MJPEG (quality 95, what many embedded cameras emit) to the work
   folder, which is git-ignored.
2. Policy: the threshold is calibrated, not guessed: `saliq gate --calibrate --synthetic
   --target-frr 0.05` on every other frame of the first clean stretch, read back from the
   clip (what the gate sees). Then plain per-frame decisions (no EMA, no hysteresis,
   min-run 1) so each frame's own score shows; exposure veto on (the default).
3. Runs `saliq gate CLIP --threshold T --quiet` in a subprocess, keeps its JSON lines
   (work folder: all; docs/gate_demo.jsonl: every 5th frame plus the summary) and draws
   docs/gate_demo.png: 12 sampled frames with decision, score and reasons, and the
   score-vs-time plot with the threshold and the segments.

Skips (exit 0, with a message) when the Scene photos are absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saliq.train.camera.distortions import distort, group_seed, linear_to_srgb, srgb_to_linear

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "configs" / "heldout_camera.json"
WIDTH, HEIGHT, FPS = 1280, 720, 10
# Photos are first resized (down) so the 1280x720 window covers 80 % of the limiting side:
# room to pan, and no upscaling softness that the gate would rightly call blur.
PAN_MARGIN = 1.25
CALIBRATION_STEP = 2  # every other frame of the first clean stretch is a "good" frame
JSONL_EVERY = 5  # docs/gate_demo.jsonl keeps every 5th frame line (< 30 KB)
PNG_LIMIT = 400 * 1024

# Which held-out photos play which part, by content: a building (defocus on a facade), an
# airport apron (a shaken camera), a garden (noise shows in foliage), a house under a bright
# sky (the sky clips first when the exposure overshoots).
PHOTOS = ("089.jpg", "169.jpg", "444.jpg", "196.jpg")


@dataclass(frozen=True)
class Segment:
    """A stretch of the clip: ``levels`` has one entry per frame (0 = clean)."""

    name: str  # distortion kind: clean, defocus_blur, motion_blur, low_light, exposure
    photo: int  # index into PHOTOS
    levels: tuple[float, ...]
    label: str = ""  # how the plot names it (distorted stretches only)


def timeline() -> list[Segment]:
    """The clip, 113 frames (11.3 s) at 10 fps. Exposure levels are in EV (stops), others 1..5."""
    ramp = (1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1)
    return [
        Segment("clean", 0, (0,) * 15),
        Segment("defocus_blur", 0, ramp, "defocus ramp"),
        Segment("clean", 0, (0,) * 5),
        Segment("clean", 1, (0,) * 8),
        Segment("motion_blur", 1, (3, 4, 5, 5, 4, 5, 3, 2), "motion burst"),
        Segment("clean", 1, (0,) * 7),
        Segment("clean", 2, (0,) * 5),
        Segment("low_light", 2, (1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 4, 3, 2, 1), "low light + noise"),
        Segment("clean", 2, (0,) * 5),
        Segment("clean", 3, (0,) * 5),
        Segment(
            "exposure",
            3,
            (0.7, 1.3, 2, 2.5, 2.5, 2.5, 2, 1.3, 0.7, 0, -1, -2, -2.5, -2, -1),
            "exposure +2.5 / -2.5 EV",
        ),
        Segment("clean", 3, (0,) * 5),
    ]


# (segment number in timeline(), frame within it): the 12 frames of the strip.
STRIP = (
    (0, 7),
    (1, 3),
    (1, 9),
    (4, 2),
    (4, 7),
    (5, 3),
    (7, 4),
    (7, 8),
    (8, 3),
    (10, 3),
    (10, 12),
    (11, 3),
)


def load_photos(scene: Path) -> list[np.ndarray]:
    import cv2

    names = set(json.loads(HELDOUT.read_text())["quality"])
    out = []
    for name in PHOTOS:
        if name not in names:  # the demo must only use photos no model was trained on
            raise SystemExit(f"gate_demo: {name} is not in {HELDOUT.name} 'quality'; fix PHOTOS")
        image = cv2.imread(str(scene / "images" / name), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"gate_demo: cannot read {scene / 'images' / name}")
        h, w = image.shape[:2]
        s = max(PAN_MARGIN * WIDTH / w, PAN_MARGIN * HEIGHT / h)
        if s > 1:
            raise SystemExit(f"gate_demo: {name} ({w}x{h}) is too small for a 720p pan")
        size = (round(w * s), round(h * s))
        out.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    return out


def crop(photo: np.ndarray, u: float) -> np.ndarray:
    """The 1280x720 window at pan position ``u`` in [0, 1] (left-top to right-lower)."""
    h, w = photo.shape[:2]
    e = u * u * (3 - 2 * u)  # smoothstep: the pan eases in and out like a hand-held move
    x = round((w - WIDTH) * e)
    y = round((h - HEIGHT) * (0.2 + 0.5 * e))
    return photo[y : y + HEIGHT, x : x + WIDTH].copy()


def exposure(frame: np.ndarray, ev: float) -> np.ndarray:
    """A gain of 2**ev in linear light (sRGB decoded), clipped: an auto-exposure overshoot."""
    linear = srgb_to_linear(frame.astype(np.float32) / 255.0) * (2.0**ev)
    out = linear_to_srgb(np.clip(linear, 0.0, 1.0)) * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render(photos: list[np.ndarray]) -> tuple[list[np.ndarray], list[dict]]:
    """All frames of the clip (BGR) and, per frame, what was done to it."""
    segments = timeline()
    per_photo: dict[int, int] = {}
    for seg in segments:
        per_photo[seg.photo] = per_photo.get(seg.photo, 0) + len(seg.levels)
    seen: dict[int, int] = {}
    frames, truth = [], []
    for number, seg in enumerate(segments):
        name = PHOTOS[seg.photo]
        for level in seg.levels:
            k = seen.get(seg.photo, 0)
            seen[seg.photo] = k + 1
            frame = crop(photos[seg.photo], k / max(per_photo[seg.photo] - 1, 1))
            index = len(frames)
            if seg.name == "exposure":
                frame = exposure(frame, level) if level else frame
            elif level:
                # One seed per frame: sensor noise and hand-shake direction change every frame.
                seed = group_seed(name, f"{seg.name}:{index}")
                frame = distort(frame, seg.name, int(level), seed)
            frames.append(frame)
            truth.append({"segment": number, "kind": seg.name, "level": level, "photo": name})
    return frames, truth


def write_clip(frames: list[np.ndarray], path: Path) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise SystemExit(f"gate_demo: OpenCV cannot write MJPEG to {path}")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for frame in frames:
        writer.write(frame)
    writer.release()


def calibration_frames(clip: Path, count: int, folder: Path) -> None:
    """Every CALIBRATION_STEP-th of the first ``count`` frames, decoded from the clip, as PNG."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    cap = cv2.VideoCapture(str(clip))
    for i in range(count):
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"gate_demo: {clip} ended at frame {i} while reading clean frames")
        if i % CALIBRATION_STEP == 0:
            cv2.imwrite(str(folder / f"{i:04d}.png"), frame)
    cap.release()


def saliq(*args: str) -> subprocess.CompletedProcess:
    # Run from the project root with project-relative paths: the JSON lines name the source,
    # and the committed excerpt must not carry this machine's absolute paths.
    cmd = [sys.executable, "-m", "saliq.cli", *args]
    print("$ saliq " + " ".join(args), file=sys.stderr)
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)


def shown(path: Path) -> str:
    """``path`` relative to the project root when it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path.resolve())


def short_reasons(record: dict) -> str:
    """One line per reason for a thumbnail label, e.g. 'low quality (salient)'."""
    out = []
    for r in record["reasons"]:
        kind, detail = r["kind"], r["detail"]
        if kind == "quality":
            out.append(f"low quality ({r['region']})")
        elif kind == "exposure":
            out.append(f"{detail}-exposed")
        elif kind == "pending":
            out.append(f"pending {detail.replace('_', ' ')}")
        else:
            out.append(f"{kind}/{detail}")
    return "\n".join(out) if out else "no reasons"


def draw(
    frames: list[np.ndarray],
    records: list[dict],
    truth: list[dict],
    threshold: float,
    path: Path,
) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    segments = timeline()
    starts = np.cumsum([0] + [len(s.levels) for s in segments])
    picks = [int(starts[s] + k) for s, k in STRIP]
    fig = plt.figure(figsize=(16, 8.2), dpi=100)
    grid = fig.add_gridspec(3, 6, height_ratios=[1.5, 1.5, 2.4], hspace=0.62, wspace=0.06)
    for n, i in enumerate(picks):
        ax = fig.add_subplot(grid[n // 6, n % 6])
        rec = records[i]
        ax.imshow(frames[i][::4, ::4, ::-1], interpolation="antialiased")  # 320x180 thumbnail
        colour = "#1a9850" if rec["accept"] else "#d73027"
        for side in ax.spines.values():
            side.set_edgecolor(colour)
            side.set_linewidth(4)
        ax.set_xticks([])
        ax.set_yticks([])
        t = truth[i]
        made = "clean" if t["kind"] == "clean" else f"{t['kind']} {t['level']:g}"
        ax.set_title(f"#{i}  t={rec['timestamp']:.1f}s  ({made})", fontsize=8.5)
        ax.set_xlabel(
            f"{rec['decision'].upper()}  score {rec['score']:.3f}\n{short_reasons(rec)}",
            fontsize=9,
            color=colour,
            fontweight="bold",
        )
    ax = fig.add_subplot(grid[2, :])
    t = np.array([r["timestamp"] for r in records])
    score = np.array([r["score"] for r in records])
    accept = np.array([r["accept"] for r in records])
    for number, seg in enumerate(segments):
        if seg.label:
            a, b = t[starts[number]], t[starts[number + 1] - 1] + 1.0 / FPS
            ax.axvspan(a, b, color="#fee08b", alpha=0.55, lw=0)
            ax.text(
                (a + b) / 2,
                1.02,
                seg.label,
                ha="center",
                va="bottom",
                fontsize=9,
                transform=ax.get_xaxis_transform(),
            )
    ax.plot(t, score, color="#333333", lw=1.2, label="frame score")
    if all("salient_score" in r for r in records):
        sal = np.array([r["salient_score"] for r in records])
        ax.plot(t, sal, color="#4575b4", lw=0.9, ls="--", label="salient-region score")
    ax.scatter(t[accept], score[accept], s=14, color="#1a9850", zorder=3, label="accept")
    ax.scatter(
        t[~accept], score[~accept], s=18, marker="x", color="#d73027", zorder=3, label="reject"
    )
    ax.axhline(threshold, color="#d73027", lw=1, ls=":", label=f"threshold {threshold:.3f}")
    for i in picks:
        ax.annotate(
            f"#{i}",
            (t[i], score[i]),
            xytext=(0, 7),
            textcoords="offset points",
            ha="center",
            fontsize=7.5,
        )
    ax.set_xlim(t[0] - 0.1, t[-1] + 0.2)
    # The band below 0 holds the legend, clear of the dips.
    ax.set_ylim(-0.14, max(1.0, float(score.max()) * 1.08))
    ax.set_xlabel("time (s), 10 fps")
    ax.set_ylabel("quality score")
    ax.legend(loc="lower center", fontsize=8, ncol=6, framealpha=0.9)
    fig.suptitle(
        "saliq gate on a 1280x720 clip of held-out Scene photos (MIT) with simulated camera "
        "problems: green = accepted, red = rejected",
        fontsize=11,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=100)
    plt.close(fig)
    # An adaptive 256-colour palette keeps the photo strip under the 400 KB budget.
    image = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(path, format="PNG", optimize=True)
    if path.stat().st_size > PNG_LIMIT:
        print(f"gate_demo: warning: {path} is {path.stat().st_size // 1024} KB", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default=str(ROOT.parent / "shared" / "data" / "scene"))
    parser.add_argument("--work", default=str(ROOT / "work_data" / "gate_demo"))
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    parser.add_argument("--model", default="default")
    args = parser.parse_args(argv)
    scene, work, docs = Path(args.scene), Path(args.work), Path(args.docs)
    missing = [p for p in PHOTOS if not (scene / "images" / p).is_file()]
    if missing:
        print(
            f"gate_demo: skipped: the Scene photos {', '.join(missing)} are not in "
            f"{scene / 'images'} (pass --scene DIR; the data lives beside the project)",
            file=sys.stderr,
        )
        return 0

    frames, truth = render(load_photos(scene))
    clip = work / "demo.avi"
    write_clip(frames, clip)
    print(
        f"gate_demo: wrote {clip} ({len(frames)} frames, {len(frames) / FPS:.1f} s)",
        file=sys.stderr,
    )

    first_clean = len(timeline()[0].levels)
    calibration_frames(clip, first_clean, work / "calibration")
    cal = saliq(
        "gate",
        shown(work / "calibration"),
        "--calibrate",
        "--synthetic",
        "--target-frr",
        "0.05",
        "--json",
        "--model",
        args.model,
    )
    if cal.returncode != 0:
        raise SystemExit(f"gate_demo: calibration failed: {cal.stderr.strip()}")
    calibration = json.loads(cal.stdout)
    (work / "calibration.json").write_text(json.dumps(calibration, indent=1) + "\n")
    # Rounded down as `saliq gate --calibrate` suggests, so the clean frames it saw still pass.
    threshold = float(np.floor(calibration["threshold"] * 1e4) / 1e4)

    run = saliq(
        "gate", shown(clip), "--threshold", f"{threshold:.4f}", "--quiet", "--model", args.model
    )
    if run.returncode not in (0, 1):
        raise SystemExit(f"gate_demo: saliq gate exited {run.returncode}: {run.stderr.strip()}")
    lines = run.stdout.splitlines()
    (work / "gate.jsonl").write_text(run.stdout)
    records = [json.loads(line) for line in lines]
    frame_records = [r for r in records if r["type"] == "frame"]
    if len(frame_records) != len(frames):
        raise SystemExit(
            f"gate_demo: the gate decided {len(frame_records)} frames of {len(frames)}"
        )
    kept = [
        line
        for line, r in zip(lines, records)
        if r["type"] != "frame" or r["index"] % JSONL_EVERY == 0
    ]
    (docs / "gate_demo.jsonl").write_text("\n".join(kept) + "\n")
    draw(frames, frame_records, truth, threshold, docs / "gate_demo.png")

    # Per stretch: how many frames the gate rejected, for the README's honest sentence.
    by_kind: dict[str, list[int]] = {}
    for r, t in zip(frame_records, truth):
        key = t["kind"] if t["kind"] in ("clean", "exposure") else f"{t['kind']} L{t['level']:g}"
        by_kind.setdefault(key, [0, 0])[0] += not r["accept"]
        by_kind[key][1] += 1
    summary = records[-1]
    print(
        f"threshold {threshold:.4f} (calibrated: {calibration['good']} good, "
        f"{calibration['bad']} bad synthetic frames, false-reject {calibration['false_reject']}"
        f", false-accept {calibration['false_accept']})"
    )
    for key in sorted(by_kind):
        print(f"  {key:18s} rejected {by_kind[key][0]} of {by_kind[key][1]}")
    print(json.dumps(summary))
    print(
        f"wrote {docs / 'gate_demo.png'} ({(docs / 'gate_demo.png').stat().st_size // 1024} KB)"
        f", {docs / 'gate_demo.jsonl'} ({(docs / 'gate_demo.jsonl').stat().st_size // 1024} KB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
