"""Camera-resolution evaluation (issue 9): real held-out photos at the 1920x1080 class with
camera-like distortions applied at native resolution, and a saliency-awareness test.

``heldout`` (the committed list of held-out photos; training reads it to exclude them),
``distortions`` (the evaluation's own distortions, independent of train/data/distortions.py),
``evaluate`` (the measurement; CLI: ``python benchmarks/camera_eval.py``).
"""

from .heldout import heldout_photos

__all__ = ["heldout_photos"]
