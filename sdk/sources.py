"""Frame sources behind one iterator: image files and folders, video files, cameras, RTSP/HTTP
streams, GStreamer pipelines (all through OpenCV), and raw buffers (NV12) from a capture API.

Every source yields :class:`Frame` (index, timestamp, pixels, fmt, name) and, when something
goes wrong, :class:`SourceError` in the same stream instead of raising: an unplugged camera, a
corrupt packet, a truncated video or a file that vanished between listing and reading is
reported, retried per :class:`RetryPolicy` where a retry can help, and never ends the
consumer's loop with an exception. ``SourceError.fatal`` says the source gave up (no more
frames will come).

Timestamps are seconds: the file's position for videos (``CAP_PROP_POS_MSEC``), the file's
modification time for images, and time since the source was opened for live sources
(cameras, streams, pipelines, buffers without their own timestamp).

Indices count positions in the source: a frame that failed still uses its index, so decision
``i`` is always file ``i`` of a folder or frame ``i`` of a video.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InvalidImageError

# Words that start the GStreamer pipelines people pass (a pipeline always has " ! ").
_GST_MARK = " ! "
_URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
# The Jetson CSI camera through nvarguscamerasrc into BGR frames OpenCV can read (docs/gate.md).
JETSON_CSI_PIPELINE = (
    "nvarguscamerasrc sensor-id={sensor} ! "
    "video/x-raw(memory:NVMM), width={width}, height={height}, framerate={fps}/1, format=NV12 ! "
    "nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
    "appsink drop=true max-buffers=1"
)


def jetson_csi_pipeline(
    sensor: int = 0, width: int = 1920, height: int = 1080, fps: int = 30
) -> str:
    """The GStreamer pipeline string for a Jetson CSI camera (pass it as the SOURCE)."""
    return JETSON_CSI_PIPELINE.format(sensor=sensor, width=width, height=height, fps=fps)


@dataclass(frozen=True)
class Frame:
    """One frame: ``pixels`` in ``fmt`` ("BGR", "RGB", "GRAY" or "NV12")."""

    index: int
    timestamp: float | None
    pixels: np.ndarray
    fmt: str = "BGR"
    name: str = ""


@dataclass(frozen=True)
class SourceError:
    """A failure inside a source, reported in the stream. ``fatal``: the source gave up."""

    index: int
    timestamp: float | None
    source: str
    message: str
    fatal: bool = False
    attempt: int = 0

    pixels = None  # lets consumers tell events from frames with getattr(item, "pixels")

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "source_error",
            "index": self.index,
            "timestamp": None if self.timestamp is None else round(self.timestamp, 4),
            "source": self.source,
            "message": self.message,
            "fatal": self.fatal,
            "attempt": self.attempt,
        }


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` further attempts after a failure, waiting ``backoff_s * factor**(n-1)``
    seconds (capped at ``max_backoff_s``) before attempt ``n``."""

    retries: int = 3
    backoff_s: float = 0.5
    factor: float = 2.0
    max_backoff_s: float = 10.0

    def __post_init__(self) -> None:
        if int(self.retries) != self.retries or self.retries < 0:
            raise ConfigError(f"retries must be an integer >= 0, got {self.retries}")
        if self.backoff_s < 0 or self.factor < 1 or self.max_backoff_s < 0:
            raise ConfigError(
                "backoff_s and max_backoff_s must be >= 0 and factor >= 1, got "
                f"{self.backoff_s}, {self.max_backoff_s}, {self.factor}"
            )

    def delay(self, attempt: int) -> float:
        return min(self.backoff_s * self.factor ** max(attempt - 1, 0), self.max_backoff_s)


class FrameSource:
    """Base class: iterate for Frames and SourceErrors; ``close()`` (or ``with``) releases."""

    name = "source"

    def __init__(
        self, retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep
    ):
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    def __iter__(self) -> Iterator[Frame | SourceError]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file (a no-op for sources that hold none)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageFiles(FrameSource):
    """Image files in order (a folder is expanded and sorted, as ``saliq score`` does).

    A file that vanished is retried per the policy (it may be being replaced) and then
    reported; a corrupt file is reported at once (reading the same bytes again cannot help).
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from .imageio import expand_paths

        self.paths = expand_paths(list(paths))
        self.name = str(paths[0]) if len(paths) == 1 else f"{len(self.paths)} files"

    def __iter__(self) -> Iterator[Frame | SourceError]:
        from .imageio import read_image

        for index, path in enumerate(self.paths):
            attempt = 0
            while True:
                try:
                    stamp = path.stat().st_mtime
                    pixels, fmt = read_image(path)
                except (InvalidImageError, OSError) as exc:
                    missing = not path.exists()
                    if missing and attempt < self.retry.retries:
                        attempt += 1
                        self._sleep(self.retry.delay(attempt))
                        continue
                    why = "vanished before it was read" if missing else "could not be read"
                    yield SourceError(
                        index, None, str(path), f"{path} {why}: {exc}; skipped", False, attempt
                    )
                    break
                yield Frame(index, stamp, pixels, fmt, str(path))
                break


def _capture_target(target: str | int) -> tuple[str | int, int | None, bool]:
    """(what to open, OpenCV API preference or None, live?) for a source string."""
    import cv2

    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target), None, True
    if _GST_MARK in target:
        return target, cv2.CAP_GSTREAMER, True
    if target.lower().startswith(_URL_SCHEMES):
        return target, cv2.CAP_FFMPEG, True
    return target, None, False


class VideoSource(FrameSource):
    """A video file, camera index, RTSP/HTTP URL or GStreamer pipeline through OpenCV.

    Files: a frame that fails to decode before the end the container announces is reported;
    up to ``retry.retries`` further reads try to get past it, then the source reports that
    it ended early (fatal). Live sources: a failed read is reported, the device or stream is
    reopened after the policy's backoff, and after ``retries`` consecutive failures the
    source gives up (fatal). ``capture_factory(target, api)`` replaces ``cv2.VideoCapture``
    (tests, or a capture object of your own with ``read``/``isOpened``/``release``/``get``).
    """

    def __init__(
        self,
        target: str | int | os.PathLike[str],
        capture_factory: Callable[[Any, int | None], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        target = os.fspath(target) if isinstance(target, os.PathLike) else target
        self.target, self.api, self.live = _capture_target(target)
        self.name = str(target)
        self._factory = capture_factory or _open_capture
        self._clock = clock
        self._cap: Any = None

    def _open(self) -> bool:
        self.close()
        try:
            self._cap = self._factory(self.target, self.api)
            return bool(self._cap is not None and self._cap.isOpened())
        except Exception:  # a driver or backend error while opening: reported as a failure
            return False

    def _read(self) -> np.ndarray | None:
        try:
            ok, frame = self._cap.read()
        except Exception:  # cv2.error on a corrupt packet: the same as a failed read
            return None
        return frame if ok and frame is not None and frame.size else None

    def close(self) -> None:
        if self._cap is not None:
            try:
                self._cap.release()
            except Exception:  # releasing an unplugged device may fail; nothing left to do
                pass
            self._cap = None

    def __iter__(self) -> Iterator[Frame | SourceError]:
        try:
            yield from (self._live() if self.live else self._file())
        finally:
            self.close()

    def _fmt(self, frame: np.ndarray) -> str:
        return "GRAY" if frame.ndim == 2 or frame.shape[2] == 1 else "BGR"

    def _file(self) -> Iterator[Frame | SourceError]:
        import cv2

        if not self._open():
            yield SourceError(
                0,
                None,
                self.name,
                f"{self.name}: OpenCV cannot open this video (unsupported codec, not a "
                "video, or a truncated file: a recording cut off before its index was "
                "written); convert or repair it with ffmpeg, or pass an image folder",
                True,
            )
            return
        expected = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        index = 0
        while True:
            frame = self._read()
            failures = 0
            while frame is None and index < expected and failures < self.retry.retries:
                failures += 1
                yield SourceError(
                    index,
                    index / fps if fps else None,
                    self.name,
                    f"frame {index} of {expected} could not be decoded (corrupt or truncated); "
                    "skipping",
                    False,
                    failures,
                )
                index += 1
                frame = self._read()
            if frame is None:
                if index < expected:
                    yield SourceError(
                        index,
                        index / fps if fps else None,
                        self.name,
                        f"{self.name} ended after frame {index} of the {expected} it announces "
                        "(truncated or corrupt file)",
                        True,
                        failures,
                    )
                return
            position = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            stamp = index / fps if fps and (position <= 0 and index > 0) else position
            yield Frame(index, stamp, frame, self._fmt(frame), self.name)
            index += 1

    def _live(self) -> Iterator[Frame | SourceError]:
        start = self._clock()
        index, attempt = 0, 0
        opened = self._open()
        while True:
            frame = self._read() if opened else None
            if frame is not None:
                attempt = 0
                yield Frame(index, self._clock() - start, frame, self._fmt(frame), self.name)
                index += 1
                continue
            what = "read failed" if opened else "cannot open"
            give_up = attempt >= self.retry.retries
            tail = "giving up" if give_up else f"reopening in {self.retry.delay(attempt + 1):g} s"
            yield SourceError(
                index,
                self._clock() - start,
                self.name,
                f"{self.name}: {what} (disconnected, busy or no signal); {tail}",
                give_up,
                attempt,
            )
            if give_up:
                return
            attempt += 1
            self._sleep(self.retry.delay(attempt))
            opened = self._open()


def _open_capture(target: str | int, api: int | None) -> Any:
    import cv2

    return cv2.VideoCapture(target) if api is None else cv2.VideoCapture(target, api)


class BufferSource(FrameSource):
    """Raw buffers from a capture API: ``grab()`` returns pixels, ``(pixels, timestamp)`` or
    None at the end; or an iterable of the same. NV12 buffers are (H*3/2)xW uint8 arrays.

    An exception from ``grab`` is reported and retried per the policy; a buffer of the wrong
    shape is reported and skipped (it would fail the preprocessing otherwise).
    """

    def __init__(
        self,
        grab: Callable[[], Any] | Iterable[Any],
        fmt: str = "NV12",
        name: str = "buffers",
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if fmt not in ("NV12", "BGR", "RGB", "GRAY"):
            raise ConfigError(f"buffer fmt must be NV12, BGR, RGB or GRAY, got {fmt!r}")
        if callable(grab):
            self._grab = grab
        else:
            iterator = iter(grab)
            self._grab = lambda: next(iterator, None)
        self.fmt, self.name, self._clock = fmt, name, clock

    def _problem(self, pixels: Any) -> str | None:
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
            return f"expected a uint8 numpy array, got {type(pixels).__name__}"
        if self.fmt == "NV12":
            if pixels.ndim != 2 or pixels.shape[0] % 3 or (pixels.shape[0] * 2 // 3) % 2:
                return f"NV12 buffers are (H*3/2)xW with even H, got shape {pixels.shape}"
            if pixels.shape[1] % 2:
                return f"NV12 needs an even width, got {pixels.shape[1]}"
        return None

    def __iter__(self) -> Iterator[Frame | SourceError]:
        start = self._clock()
        index, attempt = 0, 0
        while True:
            try:
                item = self._grab()
            except Exception as exc:  # the capture API's own error: report, back off, retry
                give_up = attempt >= self.retry.retries
                yield SourceError(
                    index,
                    self._clock() - start,
                    self.name,
                    f"{self.name}: capture failed ({type(exc).__name__}: {exc}); "
                    + ("giving up" if give_up else "retrying"),
                    give_up,
                    attempt,
                )
                if give_up:
                    return
                attempt += 1
                self._sleep(self.retry.delay(attempt))
                continue
            attempt = 0
            if item is None:
                return
            pixels, stamp = item if isinstance(item, tuple) else (item, self._clock() - start)
            problem = self._problem(pixels)
            if problem:
                yield SourceError(index, stamp, self.name, f"buffer {index}: {problem}; skipped")
            else:
                yield Frame(index, stamp, pixels, self.fmt, self.name)
            index += 1


def open_source(
    source: str | int | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    retry: RetryPolicy | None = None,
    **kwargs: Any,
) -> FrameSource:
    """The right source for ``source``: a digit string or int is a camera index; a string
    with " ! " a GStreamer pipeline; rtsp/http/... a stream URL; a folder, an image file or a
    list of them image files; any other existing file a video."""
    from .imageio import IMAGE_EXTENSIONS

    if isinstance(source, (list, tuple)):
        return ImageFiles(source, retry=retry, **kwargs)
    if isinstance(source, int) or (
        isinstance(source, str)
        and (source.isdigit() or _GST_MARK in source or source.lower().startswith(_URL_SCHEMES))
    ):
        return VideoSource(source, retry=retry, **kwargs)
    path = Path(os.fspath(source))
    if path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS:
        if not path.exists():
            raise InvalidImageError(f"{path}: file or folder not found; check the path")
        return ImageFiles([path], retry=retry, **kwargs)
    if not path.is_file():
        raise InvalidImageError(
            f"{path}: not found; pass a video file, an image folder, a camera index (0), an "
            "rtsp:// or http:// URL, or a GStreamer pipeline (with ' ! ')"
        )
    return VideoSource(path, retry=retry, **kwargs)


__all__ = [
    "JETSON_CSI_PIPELINE",
    "BufferSource",
    "Frame",
    "FrameSource",
    "ImageFiles",
    "RetryPolicy",
    "SourceError",
    "VideoSource",
    "jetson_csi_pipeline",
    "open_source",
]
