"""Compatibility shim: EfficientNet-Lite moved to the backbones package."""

from .backbones.efficientnet_lite import *  # noqa: F403  (re-exports that module's __all__)
from .backbones.efficientnet_lite import __all__  # noqa: F401
