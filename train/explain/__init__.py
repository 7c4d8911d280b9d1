"""Kirillov et al.'s explanation tools (paper 002): what an IQA model's score looks at.

* :mod:`.cam`: HiResCAM / GradCAM of the score on a model's last feature map, with rotation
  augmentation and first-SVD-component smoothing; :func:`explain_image` for one image;
* :mod:`.masking`: MoRF / LeRF masking curves with a random-region baseline
  (``benchmarks/morf_lerf.py`` runs them on the held-out Scene photos);
* :mod:`.fraccp`: FracCP, the fraction of correctly ordered pairs within a source image;
* :mod:`.figure` (matplotlib) and :mod:`.cli` (``saliq explain IMAGE``).

Usage and measured numbers: docs/explain.md.
"""

from .cam import (
    DEFAULT_ANGLES,
    METHODS,
    Explanation,
    FeatureTap,
    explain_image,
    feature_tap,
    load_explainable,
    score_cams,
)
from .fraccp import fraccp, fraccp_per_group
from .masking import masking_curves, summarise

__all__ = [
    "DEFAULT_ANGLES",
    "METHODS",
    "Explanation",
    "FeatureTap",
    "explain_image",
    "feature_tap",
    "fraccp",
    "fraccp_per_group",
    "load_explainable",
    "masking_curves",
    "score_cams",
    "summarise",
]
