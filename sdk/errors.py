"""Typed exceptions. Every message names the problem and the fix in one line."""


class SaliqError(Exception):
    """Base class of every error saliq raises on purpose."""


class InvalidImageError(SaliqError, ValueError):
    """An input image is missing, unreadable, truncated, too small, or of a bad type/shape/value."""


class ModelFormatError(SaliqError, ValueError):
    """A model file is not a saliq model (wrong format, missing or corrupt spec)."""


class IncompatibleModelError(SaliqError):
    """A saliq model from a version (spec or preprocessing) this release does not implement."""


class BackendUnavailableError(SaliqError, ImportError):
    """An optional runtime (onnxruntime, torch, tensorrt, ...) is not installed or cannot run."""


class ConfigError(SaliqError, ValueError):
    """A training/export configuration is invalid."""


class UntrustedModelError(SaliqError):
    """A model file would run code embedded in it; refused unless the caller allows it."""


class BackendClosedError(SaliqError, RuntimeError):
    """A model was used after ``close()``."""
