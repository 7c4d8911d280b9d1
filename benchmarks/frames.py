"""1080p test frames for the benchmarks: large Scene photos, area-downscaled and cropped.

Falls back to saliq's procedural scenes (:func:`saliq.frames.pristine_frames`, the frames
every parity check uses) when the Scene data is absent; the JSON records which source was
used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FRAME_HW = (1080, 1920)
DEFAULT_SCENE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scene"


def _to_frame(bgr: np.ndarray) -> np.ndarray:
    import cv2

    h, w = FRAME_HW
    scale = max(h / bgr.shape[0], w / bgr.shape[1])
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(
        bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)), interpolation=interp
    )
    top, left = (resized.shape[0] - h) // 2, (resized.shape[1] - w) // 2
    return np.ascontiguousarray(resized[top : top + h, left : left + w])


def real_frames(count: int, scene_dir: str | Path = DEFAULT_SCENE_DIR) -> tuple[list, str]:
    """Up to ``count`` BGR uint8 1080x1920 frames and a description of their source."""
    import cv2

    frames = []
    images = sorted(Path(scene_dir, "images").glob("*.jpg")) if Path(scene_dir).is_dir() else []
    for path in images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None and bgr.shape[0] >= FRAME_HW[0] and bgr.shape[1] >= FRAME_HW[0]:
            frames.append(_to_frame(bgr))
        if len(frames) == count:
            return frames, f"Scene photos >= 1080 px, area-downscaled to {FRAME_HW}"
    if frames:
        return frames, f"{len(frames)} Scene photos >= 1080 px"
    from saliq.frames import pristine_frames

    frames = pristine_frames(count, FRAME_HW, order="BGR")
    return frames, f"saliq.frames procedural scenes at {FRAME_HW} (Scene data absent)"
