"""saliq: saliency-guided no-reference image quality assessment for the edge.

>>> import saliq
>>> assessor = saliq.load("default")          # ONNX Runtime on the shipped model
>>> result = assessor.assess("frame.jpg")     # Result(score in [0, 1], higher = better)
"""

from .assess import Assessor, Result, load
from .errors import (
    BackendClosedError,
    BackendUnavailableError,
    ConfigError,
    IncompatibleModelError,
    InvalidImageError,
    ModelFormatError,
    SaliqError,
    UntrustedModelError,
)
from .gate import Decision, GatePolicy, QualityGate, Reason, best_of
from .preprocess import PREPROCESSING_VERSION, Preprocessor
from .sources import Frame, RetryPolicy, SourceError, open_source
from .spec import ModelSpec

__version__ = "0.1.0"

__all__ = [
    "PREPROCESSING_VERSION",
    "Assessor",
    "BackendClosedError",
    "BackendUnavailableError",
    "ConfigError",
    "Decision",
    "Frame",
    "GatePolicy",
    "IncompatibleModelError",
    "InvalidImageError",
    "ModelFormatError",
    "ModelSpec",
    "Preprocessor",
    "QualityGate",
    "Reason",
    "Result",
    "RetryPolicy",
    "SaliqError",
    "SourceError",
    "UntrustedModelError",
    "best_of",
    "load",
    "open_source",
]
