"""QualityGate policies on hand-computed score sequences, exposure reasons, best_of,
calibration, and ``saliq gate`` end to end on a video written here (the shipped default model).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import saliq.gate_cli
from saliq import cli
from saliq.assess import REGION_SCORES, Result
from saliq.calibrate import calibrate, labelled_set, pick_threshold
from saliq.errors import ConfigError
from saliq.frames import distort, scene
from saliq.gate import (
    ExposurePolicy,
    GatePolicy,
    QualityGate,
    best_of,
    measure_exposure,
)

cv2 = pytest.importorskip("cv2")

# A sharp clip that blurs and recovers, and a score flickering around 0.5.
CLIP = [0.8, 0.8, 0.7, 0.4, 0.3, 0.35, 0.6, 0.8, 0.8]
FLICKER = [0.6, 0.48, 0.52, 0.49, 0.51, 0.3, 0.3, 0.6]
T, F = True, False


def _accepts(policy: GatePolicy, scores, salient=None) -> list[bool]:
    gate = QualityGate(policy=policy)
    salient = salient or [None] * len(scores)
    return [gate.decide(s, r, None if r is None else 0.0).accept for s, r in zip(scores, salient)]


def test_fixed_threshold_follows_each_frame():
    policy = GatePolicy(threshold=0.5)
    assert _accepts(policy, CLIP) == [T, T, T, F, F, F, T, T, T]
    assert _accepts(policy, FLICKER) == [T, F, T, F, T, F, F, T]


def test_hysteresis_holds_through_flicker_and_reenters_only_above_enter():
    policy = GatePolicy(threshold=0.5, leave_threshold=0.45)
    assert _accepts(policy, FLICKER) == [T, T, T, T, T, F, F, T]
    # Closed after 0.3: 0.48 (>= leave, < enter) must not reopen it.
    assert _accepts(policy, [0.6, 0.3, 0.48, 0.49, 0.5]) == [T, F, F, F, T]


def test_min_run_delays_both_state_changes_and_starts_closed():
    policy = GatePolicy(threshold=0.5, min_run=2)
    assert _accepts(policy, CLIP) == [F, T, T, T, F, F, F, T, T]
    assert _accepts(policy, FLICKER) == [F] * len(FLICKER)  # no two in a row either way
    gate = QualityGate(policy=policy)
    first = gate.decide(0.9)
    # A good frame rejected while the gate waits: the wait is the reason, not its score.
    assert [r.kind for r in first.reasons] == ["pending"] and first.reasons[0].value == 1.0
    assert first.reasons[0].message == "accept after 2 consecutive frames (1/2 so far)"
    assert gate.decide(0.9).state_changed
    low = QualityGate(policy=policy).decide(0.2)  # closed and below: the score is the reason
    assert [r.kind for r in low.reasons] == ["quality"]


def test_ema_smoothing_values_and_decisions():
    gate = QualityGate(policy=GatePolicy(threshold=0.5, ema_alpha=0.5))
    decisions = [gate.decide(s) for s in CLIP]
    expected = [0.8, 0.8, 0.75, 0.575, 0.4375, 0.39375, 0.496875, 0.6484375, 0.72421875]
    assert [d.gated for d in decisions] == pytest.approx(expected)
    assert [d.accept for d in decisions] == [T, T, T, T, F, F, F, T, T]


def test_salient_region_threshold_and_fallback_is_reported():
    policy = GatePolicy(threshold=0.5, region="salient")
    # The frame score is high but the salient region is poor: rejected on the region.
    assert _accepts(policy, [0.9, 0.9, 0.2], [0.3, 0.6, 0.7]) == [F, T, T]
    d = QualityGate(policy=policy).decide(0.9, 0.3, 0.95)
    assert d.region == "salient" and d.reasons[0].region == "salient" and not d.region_fallback
    fallback = QualityGate(policy=policy).decide(0.9)
    assert fallback.accept and fallback.region == "frame" and fallback.region_fallback
    assert fallback.to_dict()["region_fallback"] is True
    # Frame policy with region scores: the reason says where (the weaker region).
    where = QualityGate(policy=GatePolicy(threshold=0.5)).decide(0.4, 0.7, 0.2)
    assert where.reasons[0].region == "background"


def test_defect_head_reason_on_rejected_frames_only_when_sure():
    policy = GatePolicy(threshold=0.5, defect_min_confidence=0.5)
    gate = QualityGate(policy=policy)
    rejected = gate.decide(0.3, 0.2, 0.6, defect=("noise", 0.8))
    kinds = [r.kind for r in rejected.reasons]
    assert kinds == ["quality", "defect"]
    defect = rejected.reasons[1]
    assert (defect.detail, defect.region, defect.confidence) == ("noise", "salient", 0.8)
    assert "noise" in defect.message and rejected.to_dict()["reasons"][1]["detail"] == "noise"
    unsure = gate.decide(0.3, defect=("blur", 0.45))
    clean = gate.decide(0.3, defect=("none", 0.9))
    accepted = gate.decide(0.9, defect=("blur", 0.9))
    assert [r.kind for r in unsure.reasons] == ["quality"]
    assert [r.kind for r in clean.reasons] == ["quality"]
    assert accepted.accept and accepted.reasons == ()
    with pytest.raises(ConfigError, match="defect_min_confidence"):
        GatePolicy(defect_min_confidence=1.5)


def test_result_defect_names_the_top_class():
    probs = np.array([0.1, 0.7, 0.2], np.float32)
    result = Result(
        0.4, None, "f", outputs={"defect_probs": probs}, defect_classes=("none", "blur", "noise")
    )
    assert result.defect == ("blur", pytest.approx(0.7))
    assert result.to_dict()["defect"] == "blur"
    shown = repr(Result(0.4, np.zeros((14, 14), np.float32), "f.jpg"))
    assert shown == "Result(name='f.jpg', score=0.4000, saliency=14x14)"  # concise: no array
    assert "defect='blur' (0.70)" in repr(result)
    assert Result(0.4, None).defect is None and "defect" not in Result(0.4, None).to_dict()


def test_latency_budget_flags_but_never_drops():
    gate = QualityGate(policy=GatePolicy(threshold=0.5, latency_budget_ms=10))
    late = gate.decide(0.9, latency_ms=12.5)
    on_time = gate.decide(0.9, latency_ms=9.0)
    assert late.accept and late.late and late.reasons[-1].kind == "latency"
    assert late.reasons[-1].value == 12.5 and late.index == 0
    assert on_time.accept and not on_time.late and on_time.reasons == () and on_time.index == 1


def test_exposure_from_the_histogram_exactly():
    dark = np.full((40, 60, 3), 3, np.uint8)
    bright = np.full((40, 60, 3), 252, np.uint8)
    mid = np.full((40, 60, 3), 128, np.uint8)
    e = measure_exposure(dark)
    assert (e.median, e.shadows, e.highlights) == (3.0, 1.0, 0.0)
    # 30% of pixels at 255, the rest mid-grey: over by highlight clipping, median stays 128.
    mixed = mid.copy()
    mixed[:12] = 255
    e = measure_exposure(mixed)
    assert e.median == 128.0 and e.highlights == pytest.approx(0.3)
    policy = ExposurePolicy()
    assert [r.detail for r in measure_exposure(dark).reasons(policy)] == ["under"]
    assert [r.detail for r in measure_exposure(bright).reasons(policy)] == ["over"]
    assert [r.detail for r in e.reasons(policy)] == ["over"]
    assert measure_exposure(mid).reasons(policy) == []
    # NV12: the Y plane is the luma; the chroma rows are not counted.
    nv12 = np.concatenate([np.full((40, 60), 10, np.uint8), np.full((20, 60), 250, np.uint8)])
    assert measure_exposure(nv12, "NV12").median == 10.0


class MeanAssessor:
    """score = mean / 255; region scores = (top half, bottom half) means / 255."""

    def __init__(self):
        self.calls = 0

    def _one(self, image):
        if isinstance(image, str):
            image = cv2.imread(image)
        pixels = np.asarray(image, np.float64)
        h = pixels.shape[0] // 2
        regions = np.array([pixels[:h].mean() / 255, pixels[h:].mean() / 255], np.float32)
        return Result(pixels.mean() / 255, None, outputs={REGION_SCORES: regions})

    def assess(self, image, color="BGR", saliency_map=False):
        self.calls += 1
        if isinstance(image, (list, tuple)):
            return [self._one(i) for i in image]
        return self._one(image)


def test_gate_call_assesses_measures_exposure_and_latency():
    ticks = iter([0.0, 0.025])  # 25 ms between arrival and decision
    gate = QualityGate(
        MeanAssessor(), GatePolicy(threshold=0.3, latency_budget_ms=20), clock=lambda: next(ticks)
    )
    frame = np.full((20, 20, 3), 3, np.uint8)
    frame[:10] = 200  # salient half bright, rest black: mean ~0.4 but 50% black -> under
    d = gate(frame, index=7, timestamp=1.5)
    assert d.index == 7 and d.timestamp == 1.5 and d.latency_ms == pytest.approx(25.0)
    assert d.salient_score == pytest.approx(200 / 255) and d.late
    assert not d.accept and gate.accepting  # the exposure veto does not change the state
    assert {r.kind for r in d.reasons} == {"exposure", "latency"}
    report = QualityGate(MeanAssessor(), GatePolicy(threshold=0.3, exposure_rejects=False))
    assert report(frame).accept


def test_best_of_a_burst_with_known_order():
    burst = [np.full((16, 16, 3), v, np.uint8) for v in (100, 200, 50, 200, 150)]
    ranked = best_of(burst, 3, assessor=MeanAssessor())
    assert [r.index for r in ranked] == [1, 3, 4]  # the tie keeps the earlier frame first
    by_salient = [np.zeros((16, 16, 3), np.uint8) for _ in range(3)]
    by_salient[0][:8] = 90
    by_salient[1][8:] = 250  # best frame, worst salient (top) half
    by_salient[2][:8] = 60
    order = [r.index for r in best_of(by_salient, 3, MeanAssessor(), region="salient")]
    assert order == [0, 2, 1]
    with pytest.raises(ConfigError, match="k must"):
        best_of(burst, 0, MeanAssessor())


def test_best_of_with_the_default_model_prefers_the_sharp_frame():
    import saliq

    s = scene(0, (240, 320))
    burst = [distort(s, "blur", 5), s, distort(s, "blur", 2), distort(s, "noise", 5)]
    ranked = best_of(burst, 2, saliq.load("default", threads=1), color="RGB")
    assert [r.index for r in ranked] == [1, 2]


def test_bad_policies_are_one_line_config_errors():
    for kwargs, words in [
        ({"threshold": 1.5}, "threshold must"),
        ({"threshold": 0.5, "leave_threshold": 0.6}, "leave_threshold"),
        ({"region": "face"}, "region must"),
        ({"ema_alpha": 0.0}, "ema_alpha"),
        ({"min_run": 0}, "min_run"),
        ({"latency_budget_ms": -1}, "latency_budget_ms"),
    ]:
        with pytest.raises(ConfigError, match=words):
            GatePolicy(**kwargs)


# --- calibration -----------------------------------------------------------------------------

GOOD = [0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.65, 0.75, 0.85]
BAD = [0.2, 0.3, 0.52, 0.4]


def test_pick_threshold_matches_the_hand_computation():
    # 10% of 10 good frames may be rejected: 1, so the threshold is the 2nd lowest good (0.5).
    cal = pick_threshold(GOOD, BAD, 0.1)
    assert cal.threshold == 0.5 and cal.false_reject == 0.1 and cal.false_accept == 0.25
    assert pick_threshold(GOOD, BAD, 0.0).threshold == 0.45  # nothing rejected
    assert pick_threshold(GOOD, BAD, 0.25).threshold == 0.55  # floor(2.5) = 2 rejected
    point = next(p for p in cal.curve if p.threshold == 0.6)
    assert (point.false_reject, point.false_accept) == (0.3, 0.0)  # 0.45, 0.5, 0.55
    assert "<- chosen" in cal.table()


def _write_labelled(root, good_values, bad_values):
    for label, values in (("good", good_values), ("bad", bad_values)):
        (root / label).mkdir(parents=True)
        for i, v in enumerate(values):
            cv2.imwrite(str(root / label / f"{i}.png"), np.full((16, 16, 3), v, np.uint8))


def test_calibrate_folder_and_csv_layouts(tmp_path):
    good = [int(round(v * 255)) for v in GOOD]
    bad = [int(round(v * 255)) for v in BAD]
    _write_labelled(tmp_path / "set", good, bad)
    cal = calibrate(MeanAssessor(), tmp_path / "set", 0.1)
    assert cal.threshold == pytest.approx(sorted(good)[1] / 255) and (cal.good, cal.bad) == (10, 4)
    csv_file = tmp_path / "labels.csv"
    rows = [f"set/good/{i}.png,good" for i in range(10)] + [f"set/bad/{i}.png,0" for i in range(4)]
    csv_file.write_text("path,label\n" + "\n".join(rows) + "\n")
    assert [g for _, g in labelled_set(csv_file)].count(False) == 4
    assert calibrate(MeanAssessor(), csv_file, 0.1).threshold == cal.threshold
    csv_file.write_text("path,label\nx.png,maybe\n")
    with pytest.raises(ConfigError, match="label good or bad"):
        labelled_set(csv_file)


def test_synthetic_severity_grid_labels_levels(tmp_path):
    from saliq.calibrate import synthetic_grid

    folder = tmp_path / "mine"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.ascontiguousarray(scene(0, (48, 64))[:, :, ::-1]))
    grid = synthetic_grid(folder)
    # pristine + 5 distortions x levels 1 (good), 3, 4, 5 (bad); level 2 left out
    names = [name for _, _, name in grid]
    assert len(grid) == 21 and sum(good for _, good, _ in grid) == 6
    assert "a.png:blur1" in names and "a.png:blur2" not in names
    cal = calibrate(MeanAssessor(), folder, 0.0, synthetic=True)
    assert (cal.good, cal.bad) == (6, 15)


def _run_cli(monkeypatch, argv, assessor=None):
    import saliq.assess

    monkeypatch.setitem(cli.COMMANDS, "gate", ("gate", "saliq.gate_cli:register"))
    if assessor is not None:
        monkeypatch.setattr(saliq.assess, "load", lambda *a, **k: assessor)
    return cli.main(argv)


def test_cli_calibrate_prints_the_threshold(tmp_path, monkeypatch, capsys):
    _write_labelled(tmp_path / "set", [int(v * 255) for v in GOOD], [int(v * 255) for v in BAD])
    argv = ["gate", str(tmp_path / "set"), "--calibrate", "--target-frr", "0.1", "--json"]
    assert _run_cli(monkeypatch, argv, MeanAssessor()) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["threshold"] == pytest.approx(int(0.5 * 255) / 255, abs=1e-6)
    assert out["false_reject"] == 0.1 and out["good"] == 10


# --- saliq gate on a video -------------------------------------------------------------------


def _video(path, frames):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    s = scene(1, (96, 128))
    frames = [s, s, distort(s, "blur", 5), distort(s, "blur", 5), s, s]
    return _video(tmp_path_factory.mktemp("gate") / "clip.avi", frames)


def _lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_cli_gate_streams_json_lines_and_exit_codes(clip, tmp_path, monkeypatch, capsys):
    saved = tmp_path / "rejected"
    code = _run_cli(
        monkeypatch,
        ["gate", str(clip), "--threshold", "1.0", "--threads", "1", "--save-rejected", str(saved)],
    )
    lines = _lines(capsys.readouterr().out)
    frames = [x for x in lines if x["type"] == "frame"]
    assert code == 1 and len(frames) == 6 and lines[-1]["type"] == "summary"
    # What ran, and why not the GPU preprocessing (an ONNX model here).
    assert lines[-1]["backend"] == "onnxruntime" and lines[-1]["preprocessing"] == "host"
    assert lines[-1]["preprocessing_note"] == "the onnxruntime backend takes host inputs"
    assert [f["index"] for f in frames] == list(range(6))
    assert frames[1]["timestamp"] == pytest.approx(0.1, abs=1e-3)
    first = frames[0]
    for key in ("score", "accept", "decision", "reasons", "salient_score", "background_score"):
        assert key in first
    assert not first["accept"] and first["reasons"][0]["kind"] == "quality"
    assert first["reasons"][0]["region"] in ("salient", "background")  # the default has regions
    assert len(list(saved.glob("*_reject_*.jpg"))) == 6
    # The blurred frames score lower than the sharp ones around them.
    assert max(frames[2]["score"], frames[3]["score"]) < min(frames[0]["score"], frames[5]["score"])
    assert lines[-1]["frames"] == 6 and lines[-1]["rejected"] == 6
    code = _run_cli(monkeypatch, ["gate", str(clip), "--threshold", "0", "--threads", "1"])
    lines = _lines(capsys.readouterr().out)
    assert code == 0 and lines[-1]["accept_rate"] == 1.0


def test_cli_gate_truncated_video_reports_and_exits_3(clip, tmp_path, monkeypatch, capsys):
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 6 // 10])
    code = _run_cli(monkeypatch, ["gate", str(cut), "--threshold", "0", "--retries", "1"])
    lines = _lines(capsys.readouterr().out)
    errors = [x for x in lines if x["type"] == "source_error"]
    assert code == 3 and errors and errors[-1]["fatal"] and lines[-1]["source_failed"]
    assert 0 < lines[-1]["frames"] < 6


def test_cli_gate_ctrl_c_writes_the_summary(monkeypatch, capsys):
    import saliq.sources
    from saliq.sources import Frame

    class Interrupted(saliq.sources.FrameSource):
        def __iter__(self):
            for i in range(2):
                yield Frame(i, i * 0.1, np.full((32, 32, 3), 128, np.uint8))
            raise KeyboardInterrupt

    monkeypatch.setattr(saliq.sources, "open_source", lambda *a, **k: Interrupted())
    code = _run_cli(monkeypatch, ["gate", "cam", "--threshold", "0.2"], MeanAssessor())
    lines = _lines(capsys.readouterr().out)
    assert code == 130 and lines[-1]["interrupted"] and lines[-1]["frames"] == 2


def test_cli_gate_bad_settings_and_missing_source_are_one_line_errors(monkeypatch, capsys):
    assert _run_cli(monkeypatch, ["gate", "x.avi", "--threshold", "2"]) == 2
    assert "threshold must be in [0, 1]" in capsys.readouterr().err
    assert _run_cli(monkeypatch, ["gate", "/nonexistent/clip.avi"], MeanAssessor()) == 2
    assert "not found" in capsys.readouterr().err


def test_runtime_gate_modules_import_no_torch():
    code = (
        "import sys, saliq.gate, saliq.sources, saliq.calibrate, saliq.gate_cli; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('saliq.train')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_gate_checks_outputs_and_options_before_the_first_frame(
    clip, tmp_path, monkeypatch, capsys
):
    """A --save-rejected that is a file and a negative --max-frames fail at once (exit 2, one
    line); a save that fails mid-stream (disk full) stops the saving, not the gate."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = _run_cli(
        monkeypatch, ["gate", str(clip), "--save-rejected", str(blocker)], MeanAssessor()
    )
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and "is a file; pass a folder" in captured.err
    code = _run_cli(monkeypatch, ["gate", str(clip), "--max-frames", "-1"], MeanAssessor())
    assert code == 2 and "--max-frames must be >= 0" in capsys.readouterr().err

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(saliq.gate_cli, "_save", full_disk)
    saved = tmp_path / "rejected"
    argv = ["gate", str(clip), "--threshold", "1.0", "--save-rejected", str(saved)]
    code = _run_cli(monkeypatch, argv, MeanAssessor())
    captured = capsys.readouterr()
    lines = _lines(captured.out)
    assert code == 1 and lines[-1]["type"] == "summary" and lines[-1]["frames"] == 6
    assert captured.err.count("No space left on device") == 1  # said once, then gating goes on


def test_calibration_warns_when_the_good_set_is_too_small():
    few = pick_threshold([0.9, 0.92, 0.95, 0.97, 0.99], [0.1, 0.2], 0.05)
    assert few.threshold == pytest.approx(0.9)  # the lowest good score: at the edge
    assert "note: only 5 good frames" in few.table() and "warning" in few.to_dict()
    enough = pick_threshold(list(np.linspace(0.6, 0.99, 25)), [0.1, 0.2], 0.05)
    assert enough.warning() == "" and "note:" not in enough.table()
    assert "warning" not in enough.to_dict()
