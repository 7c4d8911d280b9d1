"""Figures: the ``saliq explain`` panel and MoRF/LeRF curves (matplotlib, the ``train`` extra).

matplotlib is used through its object API (``Figure`` + the Agg canvas), never pyplot, so no
global state or display backend is touched and the figure is the same on any machine.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from saliq.atomic import atomic_path
from saliq.errors import BackendUnavailableError

from .cam import Explanation

DISPLAY_LONG_SIDE = 480  # px of the photo in each panel: enough to see, small to commit
MAP_TITLES = {
    "saliency": "predicted saliency",
    "hirescam": "HiResCAM of the score",
    "gradcam": "GradCAM of the score",
    "sobel": "Sobel gradient (preprocessing)",
    "input_gradient": "|d score / d pixel|",
}


def require_matplotlib() -> Any:
    """The ``matplotlib.figure.Figure`` class, or a one-line error naming the extra."""
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        raise BackendUnavailableError(
            "saliq explain draws its figures with matplotlib, which is not installed: "
            "pip install 'saliq[train]' (or pip install matplotlib)"
        ) from None
    return Figure


def _save(fig: Any, path: str | Path, dpi: int, palette: bool) -> Path:
    """Write a PNG atomically; ``palette``: 256 adaptive colours (a third of the bytes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    data = buffer.getvalue()
    if palette:
        from PIL import Image  # matplotlib depends on Pillow

        image = Image.open(io.BytesIO(data)).convert("RGB").quantize(256)
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
        data = out.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def _display(rgb: np.ndarray) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, DISPLAY_LONG_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1 else rgb


def _fit(m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import cv2

    return cv2.resize(m.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _overlay(ax: Any, rgb: np.ndarray, m: np.ndarray, title: str) -> None:
    ax.imshow(rgb, alpha=1.0)
    ax.imshow(_fit(m, rgb.shape), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
    ax.set_title(title, fontsize=9)


def explanation_figure(
    explanation: Explanation, path: str | Path, dpi: int = 100, palette: bool = False
) -> Path:
    """One PNG: the image (crops and their scores), saliency, HiResCAM, GradCAM, the Sobel and
    score-gradient maps, and the region scores."""
    Figure = require_matplotlib()
    e = explanation
    rgb = _display(e.rgb)
    fig = Figure(figsize=(13.0, 6.6), layout="constrained")
    axes = fig.subplots(2, 4)
    for ax in axes.ravel():
        ax.set_axis_off()

    ax = axes[0, 0]
    ax.imshow(rgb)
    title = f"{Path(e.name).name}: score {e.score:.3f}"
    if e.defect is not None:
        title += f"; defect: {e.defect[0]} ({e.defect[1]:.2f})"
    ax.set_title(title, fontsize=9)
    if e.crop_boxes is not None:
        h, w = rgb.shape[:2]
        for k, (x0, y0, x1, y1) in enumerate(e.crop_boxes):
            box = (x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h)
            ax.add_patch(_rectangle(box))
            if e.crop_scores is not None:
                ax.text(box[0], box[1], f"{e.crop_scores[k]:.2f}", color="yellow", fontsize=7,
                        va="bottom", ha="left", backgroundcolor=(0, 0, 0, 0.5))  # fmt: skip
    for ax, key in zip(axes[0, 1:], ("saliency", "hirescam", "gradcam")):
        if key in e.maps:
            _overlay(ax, rgb, e.maps[key], MAP_TITLES[key])
        else:
            ax.text(0.5, 0.5, "the model has no\nsaliency output", ha="center", va="center")
    sobel = e.maps["sobel"]
    axes[1, 0].imshow(_fit(sobel, rgb.shape), cmap="gray", vmin=0.0, vmax=max(1e-6, sobel.max()))
    axes[1, 0].set_title(MAP_TITLES["sobel"], fontsize=9)
    grad = e.maps["input_gradient"]
    top = float(np.percentile(grad, 99.5)) or 1e-12  # a few pixels would flatten the rest
    axes[1, 1].imshow(_fit(np.clip(grad / top, 0, 1), rgb.shape), cmap="inferno")
    axes[1, 1].set_title(MAP_TITLES["input_gradient"], fontsize=9)

    ax = axes[1, 2]
    ax.set_axis_on()
    labels, values = ["score"], [e.score]
    if e.region_scores is not None:
        labels += ["salient", "background"]
        values += list(e.region_scores)
    bars = ax.bar(labels, values, color=["#4c72b0", "#dd8452", "#55a868"][: len(values)])
    for bar, value in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.3f}", ha="center",
                va="bottom", fontsize=8)  # fmt: skip
    ax.set_ylim(0, 1.08)
    ax.set_box_aspect(rgb.shape[0] / rgb.shape[1])  # as tall as the photo panels
    ax.set_title("region scores" if e.region_scores is not None else "score", fontsize=9)

    angles = e.settings.get("angles", [])
    lines = [
        f"model: {e.model} ({e.architecture})",
        f"explained map A: {e.feature_map}",
        f"rotations: {len(angles)} passes, {', '.join(f'{a:g}' for a in angles)} deg",
        f"first-SVD-component smoothing: {'on' if e.settings.get('eigen_smooth') else 'off'}",
        "overlays: 0 (blue) .. 1 (red), max-normalised",
        "HiResCAM: ReLU(sum_k dy/dA^k * A^k)",
        "GradCAM: ReLU(sum_k mean(dy/dA^k) A^k)",
    ]
    axes[1, 3].text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=7.5, wrap=True)
    return _save(fig, path, dpi, palette)


def _rectangle(box: tuple[float, float, float, float]) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(box[:2], box[2], box[3], fill=False, edgecolor="yellow", linewidth=1.2)


MAP_STYLES = {
    "saliency": "#dd8452",
    "hirescam": "#c44e52",
    "gradcam": "#8172b3",
    "fixations": "#55a868",
}


def masking_figure(
    fractions: Sequence[float],
    curves_by_fill: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    path: str | Path,
    title: str = "",
    dpi: int = 100,
) -> Path:
    """Mean score vs masked fraction, one panel per fill: MoRF solid, LeRF dashed, random grey."""
    Figure = require_matplotlib()
    fig = Figure(figsize=(5.2 * len(curves_by_fill), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(curves_by_fill)))
    for ax, (fill, curves) in zip(axes, curves_by_fill.items()):
        for name, modes in curves.items():
            if name == "random":
                ax.plot(
                    fractions, modes["random"], color="grey", ls=":", marker=".", label="random"
                )
                continue
            colour = MAP_STYLES.get(name)
            ax.plot(fractions, modes["morf"], color=colour, marker="o", ms=3, label=f"{name} MoRF")
            ax.plot(fractions, modes["lerf"], color=colour, ls="--", marker="s", ms=3,
                    label=f"{name} LeRF")  # fmt: skip
        ax.set_xlabel("masked fraction of the frame")
        ax.set_ylabel("mean score")
        ax.set_title(f"fill: {fill}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi, palette=False)
