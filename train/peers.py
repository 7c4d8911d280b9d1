"""Classical no-reference IQA peers, for comparison tables.

Every peer is ``score(rgb_uint8) -> float`` on an ``[H, W, 3]`` uint8 RGB image, in saliq's
convention **higher = better**, so that SRCC/PLCC against MOS have the same sign for all models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from saliq.errors import BackendUnavailableError, InvalidImageError

PeerFn = Callable[[np.ndarray], float]


def _check_rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidImageError(
            f"peers take an [H, W, 3] uint8 RGB image, got {arr.dtype} {arr.shape}; "
            "convert with saliq.preprocess.decode_to_rgb(...).astype(np.uint8)"
        )
    return arr


def variance_of_laplacian(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grayscale image: a sharpness proxy (higher = sharper).

    Not scale-free: compare images of the same size, as it grows with fine detail per pixel.
    """
    import cv2

    gray = cv2.cvtColor(_check_rgb_uint8(rgb), cv2.COLOR_RGB2GRAY)
    # 64-bit output: an 8-bit Laplacian would saturate and clip exactly the edges we measure.
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


@functools.lru_cache(maxsize=1)
def _brisque_model():
    # Loading the SVR model takes ~1 s, so build it once per process.
    try:
        from brisque import BRISQUE
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the BRISQUE peer needs the 'brisque' package ({exc}): pip install brisque==0.2.0"
        ) from None

    class _Brisque(BRISQUE):
        def calculate_brisque_features(self, image, kernel_size=7, sigma=7 / 6):
            # brisque 0.2.0 returns some features as 1-element arrays, which its own float()
            # conversion rejects under NumPy >= 2.x; flatten them to plain floats here.
            feats = super().calculate_brisque_features(image, kernel_size, sigma)
            return np.array([float(np.ravel(f)[0]) for f in feats], dtype=np.float64)

    return _Brisque(url=False)


def brisque_quality(rgb: np.ndarray) -> float:
    """Negated BRISQUE score (``brisque`` package, default LIVE-trained SVR): higher = better.

    BRISQUE itself is lower = better on a nominal 0-100 scale that the SVR can leave (clean
    photos go slightly negative), so the score is negated rather than subtracted from 100.
    Mild noise can *improve* BRISQUE on smooth photos; it is a weak peer by design. A flat
    image has no texture statistics to fit and gives nan. ~40 ms per 224x224 image on CPU.
    """
    return -float(_brisque_model().score(_check_rgb_uint8(rgb)))


PEERS: dict[str, PeerFn] = {
    "variance_of_laplacian": variance_of_laplacian,
    "brisque": brisque_quality,
}
