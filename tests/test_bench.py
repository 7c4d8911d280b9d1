"""saliq.bench: the runner interface, the one comparator (on planted differences), the timer."""

from __future__ import annotations

import numpy as np
import pytest

import saliq
from saliq.backends.base import Backend
from saliq.bench import (
    BackendRunner,
    CallableRunner,
    OnnxRuntimeRunner,
    TorchRunner,
    compare_outputs,
    compare_runners,
    parity_report,
    run_batched,
    time_call,
)
from saliq.bench.compare import map_outputs, misranked_pairs, saliency_correlations
from saliq.bench.timer import time_interleaved, timing_from_ns
from saliq.errors import BackendClosedError, InvalidImageError
from saliq.spec import ModelSpec

from .fake_runtimes import tiny_onnx

RNG = np.random.default_rng(0)
SPEC = ModelSpec(name="tiny", architecture="test", backbone="none", input_height=32, input_width=32)


def _tiny_model(image: np.ndarray) -> dict[str, np.ndarray]:
    """score = sigmoid(mean(image)); saliency = 16x16 average pool of the channel mean."""
    score = 1.0 / (1.0 + np.exp(-image.mean(axis=(1, 2, 3))))
    grey = image.mean(axis=1, keepdims=True)
    saliency = grey.reshape(len(image), 1, 2, 16, 2, 16).mean(axis=(3, 5))
    return {"score": score.astype(np.float32), "saliency": saliency.astype(np.float32)}


def _images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


class _NumpyBackend(Backend):
    """A real Backend (the base class validates inputs) computing the tiny model in NumPy."""

    name = "numpy"

    def __init__(self) -> None:
        super().__init__(SPEC)
        self.batches: list[int] = []
        self.close_calls = 0

    def _infer(self, inputs):
        self.batches.append(len(inputs["image"]))
        return _tiny_model(inputs["image"])

    def _close(self) -> None:
        self.close_calls += 1


# --- runners -------------------------------------------------------------------------------


def test_runner_must_be_active_and_context_manager_activates():
    runner = CallableRunner(lambda feeds: _tiny_model(feeds["image"]), name="numpy")
    x = _images(2)
    with pytest.raises(BackendClosedError, match="not active"):
        runner.infer({"image": x})
    with runner as active:
        assert active is runner and runner.is_active
        out = runner.infer({"image": x})
        assert runner.last_inference_ms is not None and runner.last_inference_ms >= 0
    assert not runner.is_active
    np.testing.assert_array_equal(out["score"], _tiny_model(x)["score"])


def test_backend_runner_validates_closes_and_cannot_reopen_what_it_was_given():
    backend = _NumpyBackend()
    runner = BackendRunner(backend)
    assert runner.name == "numpy"
    with runner:
        assert runner.spec is SPEC
        with pytest.raises(InvalidImageError, match="expected"):
            runner.infer({"image": np.zeros((1, 3, 16, 16), np.float32)})  # the base checks
        assert set(runner.infer({"image": _images(3)})) == {"score", "saliency"}
    assert backend.closed and backend.close_calls == 1
    with pytest.raises(BackendClosedError, match="factory"):
        runner.activate()


def test_backend_runner_with_a_factory_reopens():
    opened: list[_NumpyBackend] = []

    def factory() -> Backend:
        opened.append(_NumpyBackend())
        return opened[-1]

    runner = BackendRunner(factory)
    for _ in range(2):
        with runner:
            runner.infer({"image": _images(1)})
    assert len(opened) == 2 and all(b.closed for b in opened)
    assert runner.name == "numpy"  # named by the backend it opened


def test_run_batched_chunks_and_concatenates_in_order():
    backend = _NumpyBackend()
    x = _images(11)
    out = run_batched(BackendRunner(backend), {"image": x}, max_batch=4)
    assert backend.batches == [4, 4, 3]
    assert backend.closed  # it was inactive before, so run_batched deactivated it again
    want = _tiny_model(x)
    for name in want:
        np.testing.assert_allclose(out[name], want[name], atol=1e-7)
    with pytest.raises(ValueError, match="one non-zero batch size"):
        run_batched(CallableRunner(lambda f: f), {"a": x, "b": x[:3]})
    with pytest.raises(ValueError, match="max_batch"):
        run_batched(CallableRunner(lambda f: f), {"a": x}, max_batch=0)


def test_onnxruntime_runner_reads_the_spec_and_matches_numpy(tmp_path):
    path = tiny_onnx(tmp_path / "tiny.onnx", SPEC)
    runner = OnnxRuntimeRunner(path)
    assert runner.spec is None  # nothing is loaded before activation
    x = _images(5)
    with runner:
        assert runner.spec == SPEC and runner.backend.provider == "CPUExecutionProvider"
        out = runner.infer({"image": x})
    for name, value in _tiny_model(x).items():
        np.testing.assert_allclose(out[name], value, atol=1e-6)


def test_torch_runner_on_an_in_memory_model():
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def forward(self, inputs):
            image = inputs["image"]
            return {
                "score": torch.sigmoid(image.mean(dim=(1, 2, 3))),
                "saliency": torch.nn.functional.avg_pool2d(image.mean(1, keepdim=True), 16),
                "aux": image.sum(),  # a training-only auxiliary: dropped, as export drops it
            }

    with pytest.raises(ValueError, match="spec"):
        TorchRunner(Tiny())
    x = _images(3)
    with TorchRunner(Tiny(), SPEC) as runner:
        out = runner.infer({"image": x})
    assert set(out) == {"score", "saliency"}
    for name, value in _tiny_model(x).items():
        np.testing.assert_allclose(out[name], value, atol=1e-6)


def test_compare_runners_onnxruntime_against_numpy(tmp_path):
    path = tiny_onnx(tmp_path / "tiny.onnx", SPEC)
    feeds = {"image": _images(24)}
    good = compare_runners(OnnxRuntimeRunner(path), BackendRunner(_NumpyBackend), feeds)
    assert good.passed and good.images == 24 and good.max_score_diff < 1e-6
    assert set(good.maps) == {"saliency"} and good.maps["saliency"]["min_cc"] > 0.999

    def shifted(feeds):
        out = _tiny_model(feeds["image"])
        out["score"] = out["score"] + 0.05
        return out

    bad = compare_runners(OnnxRuntimeRunner(path), CallableRunner(shifted), feeds, max_batch=5)
    assert not bad.passed and "score differs by 0.0500" in bad.reasons[0]


# --- the comparator, on planted differences ------------------------------------------------


def _outputs(n: int = 16):
    scores = np.linspace(0.1, 0.9, n).astype(np.float32)
    maps = RNG.random((n, 1, 4, 4)).astype(np.float32)
    return {"score": scores, "saliency": maps}


def _with(outputs, name, index, value):
    changed = {k: v.copy() for k, v in outputs.items()}
    changed[name][index] = value
    return changed


def test_identical_outputs_pass():
    ref = _outputs()
    report = compare_outputs(ref, {k: v.copy() for k, v in ref.items()})
    assert report.passed and report.reasons == []
    assert report.max_abs_diff == {"score": 0.0, "saliency": 0.0}
    assert report.compared_pairs == 16 * 15 // 2 and report.min_saliency_cc == pytest.approx(1.0)


def test_a_shifted_score_fails_and_names_the_image():
    ref = _outputs()
    report = compare_outputs(ref, _with(ref, "score", 3, ref["score"][3] + 0.02))
    assert not report.passed
    assert report.max_score_diff == pytest.approx(0.02, abs=1e-6)
    assert "score differs by 0.0200" in report.reasons[0] and "image 3" in report.reasons[0]


def test_a_reordered_pair_fails_even_within_the_score_tolerance():
    ref = {"score": np.array([0.50, 0.515, 0.80], np.float32)}
    test = {"score": np.array([0.509, 0.506, 0.80], np.float32)}  # each within 0.01, swapped
    report = compare_outputs(ref, test, tolerance=0.01)
    assert report.max_score_diff <= 0.01
    assert (report.misranked_pairs, report.compared_pairs) == (1, 3) and not report.passed
    assert "ranked the other way" in report.reasons[0]
    # a swap of a pair closer than the tolerance is a tie, not a misranking
    close = {"score": np.array([0.500, 0.505], np.float32)}
    assert compare_outputs(close, {"score": close["score"][::-1].copy()}).passed


def test_a_flat_map_against_a_structured_one_fails():
    ref = _outputs()
    report = compare_outputs(ref, _with(ref, "saliency", 5, 0.25))  # image 5's map is flat
    assert not report.passed and report.maps["saliency"]["min_cc"] == 0.0
    assert "saliency correlation 0.0000" in report.reasons[0] and "image 5" in report.reasons[0]
    flat = np.zeros((1, 1, 4, 4))
    assert saliency_correlations(flat, flat)[0] == 1.0  # flat on both sides: identical


@pytest.mark.parametrize("where", ["score", "saliency", "logits"])
def test_nan_anywhere_fails(where):
    ref = {**_outputs(), "logits": RNG.random((16, 5)).astype(np.float32)}
    index = (2, 0, 1, 1) if where == "saliency" else 2
    test = {k: v.copy() for k, v in ref.items()}
    test[where][index] = np.nan
    report = compare_outputs(ref, test)
    assert not report.passed and any("NaN" in r for r in report.reasons)


def test_every_map_shaped_output_is_gated_and_vectors_within_the_tolerance():
    spec = ModelSpec(
        name="m",
        architecture="test",
        backbone="none",
        input_height=32,
        input_width=32,
        outputs=("score", "saliency", "high_saliency", "distribution"),
        output_shapes={"high_saliency": [1, 2, 2], "distribution": [5]},
    )
    ref = _outputs(8)
    ref["saliency"] = RNG.random((8, 1, 2, 2)).astype(np.float32)
    ref["high_saliency"] = RNG.random((8, 1, 2, 2)).astype(np.float32)
    ref["distribution"] = RNG.random((8, 5)).astype(np.float32)
    assert map_outputs(ref, spec) == ["saliency", "high_saliency"]
    test = {k: v.copy() for k, v in ref.items()}
    test["distribution"] += 0.005  # within 0.01 x max(1, |ref|)
    passed = compare_outputs(ref, test, spec=spec)
    assert passed.passed and passed.max_abs_diff["distribution"] == pytest.approx(0.005, abs=1e-6)
    test["distribution"] += 0.3
    wrong = compare_outputs(ref, test, spec=spec)
    assert not wrong.passed and "distribution differs" in wrong.reasons[0]
    test["distribution"] -= 0.3
    test["high_saliency"][4] = RNG.random((1, 2, 2))  # uncorrelated second map
    failed = compare_outputs(ref, test, spec=spec)
    assert not failed.passed and "high_saliency correlation" in failed.reasons[0]
    assert failed.maps["saliency"]["min_cc"] == pytest.approx(1.0)


def test_comparator_refuses_mismatched_inputs():
    ref = _outputs(4)
    with pytest.raises(ValueError, match="different outputs"):
        compare_outputs(ref, {"score": ref["score"]})
    with pytest.raises(ValueError, match="one per score"):
        compare_outputs(ref, {"score": ref["score"], "saliency": ref["saliency"][:3]})
    with pytest.raises(ValueError, match="tolerance"):
        compare_outputs(ref, ref, tolerance=0)
    with pytest.raises(ValueError, match="both runtimes"):
        parity_report(ref["score"], ref["saliency"], ref["score"], None)


def test_parity_report_is_compare_outputs_for_score_and_saliency():
    ref = _outputs()
    test = _with(ref, "score", 0, ref["score"][0] + 0.004)
    old = parity_report(ref["score"], ref["saliency"], test["score"], test["saliency"])
    new = compare_outputs(ref, test)
    assert old.to_dict() == new.to_dict() and old.passed
    assert misranked_pairs(ref["score"], test["score"], 0.01) == (0, new.compared_pairs)


def test_export_parity_is_the_same_comparator():
    from saliq.export import parity

    assert parity.parity_report is parity_report and parity.ParityReport is type(
        parity_report(np.zeros(2), None, np.zeros(2), None)
    )


# --- the timer ------------------------------------------------------------------------------


class _Clock:
    """A fake perf_counter_ns: each fn() call advances it by the next planted duration."""

    def __init__(self, durations_ms):
        self.now = 0
        self.durations = [int(d * 1e6) for d in durations_ms]
        self.calls = 0

    def __call__(self) -> int:
        return self.now

    def work(self) -> None:
        self.now += self.durations[self.calls % len(self.durations)]
        self.calls += 1


def test_timer_statistics_on_planted_durations():
    durations = [5.0, 1.0, 2.0, 3.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0]  # warm-up takes the first
    clock = _Clock(durations)
    syncs = []
    timing = time_call(
        clock.work, runs=9, warmup=1, synchronize=lambda: syncs.append(1), clock=clock
    )
    timed = np.array(durations[1:])
    assert clock.calls == 10 and len(syncs) == 10  # after the warm-up, then after each run
    assert timing.runs == 9 and timing.warmup == 1
    assert timing.median_ms == pytest.approx(np.median(timed))  # 6.0
    assert timing.p90_ms == pytest.approx(np.percentile(timed, 90))
    assert (timing.min_ms, timing.max_ms) == (1.0, 10.0)
    assert timing.mean_ms == pytest.approx(timed.mean())
    assert "median 6.000 ms" in timing.summary()


def test_timer_with_the_real_clock_and_bad_arguments():
    timing = time_call(lambda: sum(range(1000)), runs=5, warmup=0)
    assert timing.runs == 5 and 0 < timing.min_ms <= timing.median_ms <= timing.max_ms
    with pytest.raises(ValueError, match="runs"):
        time_call(lambda: None, runs=0)
    with pytest.raises(ValueError, match="sample"):
        timing_from_ns([])


def test_interleaved_timing_alternates_calls():
    order = []
    result = time_interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, runs=3, warmup=1
    )
    assert order == ["a", "b"] * 4
    assert set(result) == {"a", "b"} and result["a"].runs == 3


def test_bench_package_imports_no_runtime():
    import subprocess
    import sys

    code = (
        "import sys, saliq.bench; "
        "bad = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'onnx') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert saliq.bench is not None


# --- the parity/benchmark frames -------------------------------------------------------------


def _sharpness(frame: np.ndarray) -> float:
    grey = frame.astype(np.float64).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def test_frames_are_deterministic_photo_like_and_sized():
    from saliq.frames import LEVELS, parity_frames, parity_plan, pristine_frames, scene

    frames = parity_frames(24, (64, 96), seed=3)
    assert all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for f in frames)
    again = parity_frames(24, (64, 96), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))  # same seed, same pixels
    assert not np.array_equal(parity_frames(1, (64, 96), seed=4)[0], frames[0])
    assert [level for _, _, level in parity_plan(24)] == [i % LEVELS for i in range(24)]
    assert len({f.tobytes() for f in frames}) == 24
    photo = scene(0, (224, 224))
    # photo-like: uses the range, has flat areas and edges, is not noise
    assert photo.std() > 25 and 5 < _sharpness(photo) < 40
    bgr = pristine_frames(2, (48, 64), order="BGR")
    assert np.array_equal(bgr[0][:, :, ::-1], scene(0, (48, 64)))
    with pytest.raises(ValueError, match="below"):
        scene(0, (8, 8))


def test_distortions_act_in_their_direction_and_grow_with_the_level():
    from saliq.frames import MAX_LEVEL, distort, scene

    photo = scene(1, (128, 128))
    blur = [_sharpness(distort(photo, "blur", lv)) for lv in range(MAX_LEVEL + 1)]
    noise = [_sharpness(distort(photo, "noise", lv, np.random.default_rng(0))) for lv in range(6)]
    dark = [distort(photo, "dark", lv).mean() for lv in range(MAX_LEVEL + 1)]
    bright = [distort(photo, "bright", lv).mean() for lv in range(MAX_LEVEL + 1)]
    jpeg = [np.abs(distort(photo, "jpeg", lv).astype(float) - photo).mean() for lv in range(6)]
    for series, sign in ((blur, -1), (noise, 1), (dark, -1), (bright, 1), (jpeg, 1)):
        steps = np.diff(series) * sign
        assert np.all(steps > 0), series
    assert np.array_equal(distort(photo, "jpeg", 0), photo)
    with pytest.raises(ValueError, match="unknown distortion"):
        distort(photo, "rain", 1)
    with pytest.raises(ValueError, match="level"):
        distort(photo, "blur", 6)


def test_frames_spread_the_default_model_scores_by_level():
    from saliq.frames import parity_frames, parity_plan

    assessor = saliq.load("default", backend="onnxruntime")
    count = 48
    scores = np.array(
        [r.score for r in assessor.assess(parity_frames(count, assessor.spec.input_size), "RGB")]
    )
    levels = np.array([level for _, _, level in parity_plan(count)])
    stats = pytest.importorskip("scipy.stats")
    srcc = stats.spearmanr(scores, -levels)[0]  # severity ranks, ties averaged
    assert scores.max() - scores.min() > 0.3 and srcc > 0.6, (srcc, scores)


# --- additions for saliq bench: p99, interval timers, the absolute gate, SRCC, torch runner ---


def test_percentiles_on_known_samples():
    from saliq.bench.timer import percentiles

    samples_ms = np.arange(1, 101, dtype=np.float64)  # 1..100 ms
    timing = timing_from_ns((samples_ms * 1e6).astype(np.int64))
    # linear interpolation between closest ranks: rank q/100 * (n - 1)
    assert timing.p50_ms == timing.median_ms == pytest.approx(50.5)
    assert timing.p90_ms == pytest.approx(90.1)
    assert timing.p99_ms == pytest.approx(99.01)
    assert percentiles([4.0, 1.0, 3.0, 2.0], (0, 50, 100)) == [1.0, 2.5, 4.0]
    assert percentiles([7.0], (50, 99)) == [7.0, 7.0]
    with pytest.raises(ValueError, match="0, 100"):
        percentiles([1.0], (101,))
    with pytest.raises(ValueError, match="at least one"):
        percentiles([], (50,))


class _FakeEvent:
    """A CUDA event on a fake device clock: record() stamps the device's time."""

    def __init__(self, device: dict) -> None:
        self.device, self.stamp, self.waited = device, None, False

    def record(self) -> None:
        self.stamp = self.device["now"]

    def synchronize(self) -> None:
        self.waited = True

    def elapsed_time(self, end: _FakeEvent) -> float:
        return end.stamp - self.stamp  # milliseconds, as torch.cuda.Event


def test_time_rounds_measures_each_call_with_its_own_timer():
    from saliq.bench.timer import CudaEventTimer, WallTimer, time_rounds

    device = {"now": 0.0}
    events: list[_FakeEvent] = []

    def new_event() -> _FakeEvent:
        events.append(_FakeEvent(device))
        return events[-1]

    gpu_ms = iter([99.0, 2.0, 4.0, 3.0])  # the warm-up's call first

    def gpu_call() -> None:  # queues device work that takes a planted time
        device["now"] += next(gpu_ms)

    wall = _Clock([1.0, 5.0, 6.0, 7.0])
    order: list[str] = []
    timings = time_rounds(
        {"gpu": lambda: (order.append("gpu"), gpu_call()), "cpu": lambda: order.append("cpu")},
        {
            "gpu": CudaEventTimer(new_event=new_event, synchronize=lambda: None),
            "cpu": WallTimer(clock=wall),
        },
        runs=3,
        warmup=1,
    )
    assert order == ["gpu", "cpu"] * 4  # interleaved: one call of each per round
    assert timings["gpu"].median_ms == pytest.approx(3.0)  # from the events: 2, 4, 3
    assert (timings["gpu"].min_ms, timings["gpu"].max_ms) == (2.0, 4.0)
    assert all(e.waited for e in events[1::2])  # each end event waited for (no overlap)
    assert timings["cpu"].runs == 3
    with pytest.raises(ValueError, match="no timer"):
        time_rounds({"a": lambda: None}, {"b": WallTimer()}, runs=1)


def test_absolute_parity_gates_differences_not_ranks():
    from saliq.bench.compare import absolute_parity

    ref = {
        "score": np.array([0.50001, 0.50002, 0.50003, 0.50004]),
        "saliency": np.full((4, 1, 2, 2), 0.25),
    }
    # random weights: scores crowd, so a reordering within 1e-4 is no failure here
    crowded = {"score": ref["score"][::-1].copy(), "saliency": ref["saliency"] + 1e-6}
    report = absolute_parity(ref, crowded, tolerance=1e-4)
    assert report.passed and report.gate == "absolute"
    assert report.max_score_diff == pytest.approx(3e-5)
    assert report.mean_abs_diff["saliency"] == pytest.approx(1e-6)
    assert np.isnan(report.min_saliency_cc)  # not measured
    far = {"score": ref["score"] + np.array([0, 0, 2e-4, 0]), "saliency": ref["saliency"]}
    failed = absolute_parity(ref, far, tolerance=1e-4)
    assert not failed.passed and "image 2" in failed.reasons[0]
    nan = {"score": ref["score"], "saliency": np.where(True, np.nan, ref["saliency"])}
    assert "NaN" in absolute_parity(ref, nan, tolerance=1e-4).reasons[0]
    full = compare_outputs(ref, crowded, tolerance=1e-6, min_map_cc=0.99)
    assert full.gate == "full" and not full.passed  # the full gate does rank them


def test_spearman_with_ties_against_hand_computed_ranks():
    from saliq.bench.compare import spearman

    # ranks of a: 1, 2.5, 2.5, 4; of b: 1, 3, 2, 4 -> Pearson of the ranks
    ra, rb = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4.0])
    want = np.corrcoef(ra, rb)[0, 1]
    assert spearman([0.1, 0.2, 0.2, 0.9], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(want)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant side ranks nothing
    assert np.isnan(spearman([1, 2, np.nan], [1, 2, 3]))


def test_torch_module_runner_precisions_and_prepared_calls():
    torch = pytest.importorskip("torch")
    from saliq.bench.runners import TorchModuleRunner

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

        def forward(self, inputs):
            x = self.conv(inputs["image"])
            saliency = torch.nn.functional.avg_pool2d(x, 16)
            return {"score": torch.sigmoid(x.mean(dim=(1, 2, 3))), "saliency": saliency}

    torch.manual_seed(0)
    net = Net().eval()
    x = _images(3)
    with torch.no_grad():
        want = net({"image": torch.from_numpy(x)})["score"].numpy()
    with TorchModuleRunner(net, SPEC) as runner:
        assert runner.name == "torch-fp32-cpu"
        out = runner.infer({"image": x})
        prepared = runner.prepare({"image": x})
        assert isinstance(prepared["image"], torch.Tensor)  # placed once, outside the timing
        again = runner.run_prepared(prepared)
    np.testing.assert_allclose(out["score"], want, atol=1e-7)
    assert out["score"].dtype == np.float32 and isinstance(again["score"], torch.Tensor)
    with TorchModuleRunner(net, SPEC, precision="bf16") as half:  # CPU autocast works too
        low = half.infer({"image": x})
    assert low["score"].dtype == np.float32
    assert 0 < np.abs(low["score"] - want).max() < 0.02  # rounded, but close
    with pytest.raises(ValueError, match="precision"):
        TorchModuleRunner(net, SPEC, precision="int4")
