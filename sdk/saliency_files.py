"""``saliq score --save-saliency DIR``: each scored image's saliency map and overlay as files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SaliqError

if TYPE_CHECKING:
    import numpy as np

    from .assess import Result


class SaliencyWriter:
    """``saliq score --save-saliency DIR``: per image, ``DIR/<stem>_saliency.png`` (the map at
    the image's size, 8-bit gray) and ``DIR/<stem>_overlay.jpg`` (a JET heatmap blended 50/50
    over the image), each written atomically.

    Stems repeat across folders (``a/1.jpg``, ``b/1.jpg``) and formats (``1.jpg``, ``1.png``):
    a repeat gets ``_2``, ``_3``... in input order, so no image's maps replace another's.
    Names are compared case-folded, as case-insensitive file systems (macOS, Windows) do.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from .atomic import output_folder

        self.folder = output_folder(folder, "--save-saliency")
        self._taken: set[str] = set()

    def _stem(self, path: str) -> str:
        stem = Path(path).stem
        candidate, n = stem, 1
        while candidate.casefold() in self._taken:
            n += 1
            candidate = f"{stem}_{n}"
        self._taken.add(candidate.casefold())
        return candidate

    def write(self, path: str, pixels: np.ndarray, fmt: str, result: Result) -> str:
        """Write the two files for one scored image (decoded ``pixels`` in ``fmt``, as
        :func:`saliq.imageio.read_image` gives them); returns the overlay's path."""
        import cv2
        import numpy as np

        from .preprocess import decode_to_rgb

        if result.saliency_full is None:
            raise SaliqError(f"{path}: the model returned no saliency map; drop --save-saliency")
        stem = self._stem(path)
        gray = np.clip(np.rint(result.saliency_full * 255.0), 0, 255).astype(np.uint8)
        # Any decoded format (gray, alpha, 16-bit) -> 8-bit BGR, as the model saw it.
        rgb = decode_to_rgb(pixels, fmt)
        image = np.clip(np.rint(rgb[:, :, ::-1]), 0, 255).astype(np.uint8)
        overlay = cv2.addWeighted(image, 0.5, cv2.applyColorMap(gray, cv2.COLORMAP_JET), 0.5, 0)
        overlay_path = self.folder / f"{stem}_overlay.jpg"
        _write_encoded(self.folder / f"{stem}_saliency.png", ".png", gray)
        _write_encoded(overlay_path, ".jpg", overlay)
        return str(overlay_path)


def _write_encoded(target: Path, ext: str, pixels: np.ndarray) -> None:
    import cv2

    from .atomic import atomic_path

    ok, data = cv2.imencode(ext, pixels)
    if not ok:
        raise SaliqError(f"cannot encode {target} as {ext[1:].upper()}; this OpenCV lacks it")
    try:
        # Encoded in memory, then written beside the target and renamed: a reader (or a
        # Ctrl-C) never sees half a file, and the temporary name needs no image suffix.
        with atomic_path(target) as tmp:
            tmp.write_bytes(data.tobytes())
    except OSError as exc:
        raise SaliqError(
            f"cannot write {target} ({exc.strerror or exc}); check --save-saliency's folder"
        ) from None
