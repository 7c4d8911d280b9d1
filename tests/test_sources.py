"""Frame sources: a real video written here with OpenCV, a truncated one, files that vanish or
are corrupt, a live source that drops and is reopened per the retry policy, NV12 buffers."""

from __future__ import annotations

import numpy as np
import pytest

from saliq.errors import ConfigError, InvalidImageError
from saliq.gate import GatePolicy, QualityGate
from saliq.sources import (
    BufferSource,
    Frame,
    ImageFiles,
    RetryPolicy,
    SourceError,
    VideoSource,
    jetson_csi_pipeline,
    open_source,
)

cv2 = pytest.importorskip("cv2")
FRAMES = 20


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "ramp.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(FRAMES):
        writer.write(np.full((48, 64, 3), i * 10, np.uint8))
    writer.release()
    return path


def _split(items):
    return [i for i in items if isinstance(i, Frame)], [
        i for i in items if isinstance(i, SourceError)
    ]


def test_a_video_file_yields_every_frame_with_its_timestamp(video):
    frames, errors = _split(list(open_source(str(video))))
    assert not errors and len(frames) == FRAMES
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [f.timestamp for f in frames] == pytest.approx([i / 10 for i in range(FRAMES)], abs=1e-3)
    assert [round(f.pixels.mean() / 10) for f in frames] == list(range(FRAMES))
    assert frames[0].fmt == "BGR" and frames[0].pixels.shape == (48, 64, 3)


def test_a_truncated_video_is_reported_not_fatal(video, tmp_path):
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size * 6 // 10])
    items = list(VideoSource(cut, retry=RetryPolicy(retries=2)))  # must not raise
    frames, errors = _split(items)
    assert 0 < len(frames) < FRAMES
    assert errors[-1].fatal and f"of the {FRAMES} it announces" in errors[-1].message
    assert items[-1] is errors[-1]  # nothing after the source gave up
    assert [e.fatal for e in errors[:-1]] == [False] * (len(errors) - 1) and len(errors) <= 3


def test_an_unopenable_video_is_one_fatal_event(tmp_path):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all" * 10)
    (event,) = list(VideoSource(junk))
    assert isinstance(event, SourceError) and event.fatal and "cannot open" in event.message


def _images(folder, n):
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((16, 16, 3), 40 * i, np.uint8))
    return folder


def test_a_vanishing_file_is_retried_then_reported_and_the_rest_still_come(tmp_path):
    folder = _images(tmp_path / "frames", 3)
    waits = []
    source = ImageFiles([folder], retry=RetryPolicy(retries=3, backoff_s=0.5), sleep=waits.append)
    (folder / "1.png").unlink()  # after the listing, before the read
    items = list(source)
    assert [type(i).__name__ for i in items] == ["Frame", "SourceError", "Frame"]
    assert items[1].index == 1 and not items[1].fatal and "vanished" in items[1].message
    assert waits == [0.5, 1.0, 2.0] and items[1].attempt == 3
    assert items[2].index == 2 and items[2].pixels.mean() == 80
    assert items[0].timestamp == pytest.approx((folder / "0.png").stat().st_mtime)


def test_a_corrupt_file_is_reported_at_once(tmp_path):
    folder = _images(tmp_path / "frames", 2)
    (folder / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    waits = []
    items = list(ImageFiles([folder], sleep=waits.append))
    assert isinstance(items[0], SourceError) and "could not be read" in items[0].message
    assert waits == [] and isinstance(items[1], Frame)


class FakeCapture:
    """A camera that delivers ``good`` frames, then fails every read (unplugged)."""

    def __init__(self, good, opens=True):
        self.good, self.opens, self.released = good, opens, False

    def isOpened(self):
        return self.opens

    def read(self):
        if self.good:
            self.good -= 1
            return True, np.zeros((8, 8, 3), np.uint8)
        return False, None

    def get(self, prop):
        return 0.0

    def release(self):
        self.released = True


def test_a_live_source_is_reopened_per_the_policy_then_gives_up():
    plan = [FakeCapture(2), FakeCapture(0, opens=False), FakeCapture(1), FakeCapture(0)]
    opened = []

    def factory(target, api):
        opened.append((target, api))
        return plan[len(opened) - 1] if len(opened) <= len(plan) else FakeCapture(0, False)

    waits = []
    ticks = iter(range(100))
    source = VideoSource(
        "0",
        capture_factory=factory,
        retry=RetryPolicy(retries=2, backoff_s=1),
        sleep=waits.append,
        clock=lambda: float(next(ticks)),
    )
    items = list(source)
    kinds = ["F" if isinstance(i, Frame) else ("X" if i.fatal else "e") for i in items]
    # 2 frames, drop, reopen fails, reopen ok: 1 frame (the retry count resets), drop, drop, drop
    assert kinds == ["F", "F", "e", "e", "F", "e", "e", "X"]
    assert [i.index for i in items if isinstance(i, Frame)] == [0, 1, 2]
    assert waits == [1, 2, 1, 2] and opened[0] == (0, None)
    assert plan[0].released and "giving up" in items[-1].message


def test_nv12_buffers_from_a_capture_api_through_the_gate():
    import saliq
    from saliq.frames import scene

    bgr = np.ascontiguousarray(scene(2, (96, 128))[:, :, ::-1])
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    h, w = 96, 128
    u = i420[h : h + h // 4].reshape(-1)
    v = i420[h + h // 4 :].reshape(-1)
    nv12 = np.concatenate([i420[:h], np.stack([u, v], 1).reshape(h // 2, w)])
    calls = iter([nv12, np.zeros((5, 7), np.uint8), RuntimeError("usb reset"), (nv12, 4.25), None])

    def grab():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    items = list(BufferSource(grab, sleep=lambda s: None))
    frames, errors = _split(items)
    assert [f.index for f in frames] == [0, 2] and frames[1].timestamp == 4.25
    assert "NV12 buffers are" in errors[0].message and "usb reset" in errors[1].message
    assert not any(e.fatal for e in errors)
    assessor = saliq.load("default", threads=1)
    gate = QualityGate(assessor, GatePolicy(threshold=0.0))
    decisions = list(gate.run(items))
    assert len(decisions) == 4 and decisions[1] is errors[0]  # events pass through in order
    # The same pixels as OpenCV decodes the buffer (NV12 is assessed without converting it here).
    decoded = cv2.cvtColor(nv12, cv2.COLOR_YUV2BGR_NV12)
    assert decisions[0].score == pytest.approx(assessor.assess(decoded).score, abs=0.02)


def test_buffer_capture_that_keeps_failing_gives_up():
    def grab():
        raise OSError("device gone")

    items = list(BufferSource(grab, retry=RetryPolicy(retries=1), sleep=lambda s: None))
    assert [e.fatal for e in items] == [False, True]


def test_open_source_dispatch_and_errors(tmp_path, video):
    assert isinstance(open_source(str(video)), VideoSource)
    cam = open_source("0")
    assert cam.live and cam.target == 0
    url = open_source("rtsp://10.0.0.2/stream")
    assert url.live and url.api == cv2.CAP_FFMPEG
    pipe = open_source(jetson_csi_pipeline())
    assert pipe.live and pipe.api == cv2.CAP_GSTREAMER
    assert "nvarguscamerasrc" in pipe.target and "appsink" in pipe.target
    assert isinstance(open_source(_images(tmp_path / "f", 1)), ImageFiles)
    with pytest.raises(InvalidImageError, match="not found"):
        open_source(tmp_path / "missing.mp4")
    with pytest.raises(ConfigError, match="retries"):
        RetryPolicy(retries=-1)
    assert [RetryPolicy(backoff_s=1, max_backoff_s=3).delay(n) for n in (1, 2, 3)] == [1, 2, 3]
