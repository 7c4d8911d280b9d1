"""Compatibility shim: the backbone moved to :mod:`saliq.train.models.backbones.resnet`."""

from .backbones.resnet import *  # noqa: F403  (re-exports that module's __all__)
from .backbones.resnet import __all__  # noqa: F401
