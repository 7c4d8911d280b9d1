"""The Scene photos held out from all training for the camera-resolution evaluation.

The list lives in ``configs/heldout_camera.json`` (committed, so the training side and the
evaluation read the same names). Two lists:

* ``quality``: the photos of the severity/gate evaluation (all at least 1920x1080);
* ``saliency``: the photos of the saliency-awareness test (human fixations; the ``quality``
  photos plus further ones with a long side of at least 1000 px).

:func:`heldout_photos` also returns ``all``, their union: what a training run must exclude.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from saliq.errors import ConfigError

HELDOUT_LISTS = ("quality", "saliency")
ALL_KEY = "all"


def heldout_photos(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """``{"quality": [...], "saliency": [...], "all": [...]}`` file names (e.g. ``"009.jpg"``).

    Raises ConfigError (one line naming the problem) for a missing or malformed file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"held-out photo list {path} not found; it is committed as "
            "configs/heldout_camera.json in the saliq repository"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); restore it from git") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object with keys {list(HELDOUT_LISTS)}")
    out: dict[str, list[str]] = {}
    for key in HELDOUT_LISTS:
        names = data.get(key)
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{path}: {key!r} must be a non-empty list of photo file names")
        bad = [n for n in names if not isinstance(n, str) or not n or "/" in n or "\\" in n]
        if bad:
            raise ConfigError(f"{path}: {key!r} holds entries that are not file names: {bad[:3]}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{path}: {key!r} lists {dupes} more than once; remove duplicates")
        out[key] = list(names)
    out[ALL_KEY] = sorted(set(out["quality"]) | set(out["saliency"]))
    return out
