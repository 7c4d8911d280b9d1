"""The base class every backbone derives from, and the one checked state-dict loader.

Backbones are subclasses (not wrappers) so that their state-dict keys stay the network's own
(``stem.*``, ``stages.N.*``, ``layer1.*``, ``features.N.*``): a model that holds a backbone as
``self.backbone`` then saves ``backbone.stem.*``, exactly as the shipped checkpoints do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor, nn

from saliq.errors import ModelFormatError

from ..blocks import freeze_batchnorm
from .pretrained import BackboneConfig, FeatureInfo

__all__ = ["Backbone", "format_keys", "load_checked"]

# Older torchvision checkpoints omit BN's counter; it does not affect inference.
_OPTIONAL_SUFFIX = "num_batches_tracked"
_MAX_LISTED = 8  # keep error messages one readable line


class Backbone(nn.Module):
    """A feature extractor with a four-stage pyramid at strides 4, 8, 16 and 32.

    Subclasses set ``feature_info`` in ``__init__`` and implement ``forward_features``.
    ``num_classes == 0`` builds the network without its ImageNet head (``head_prefixes``);
    ``forward`` then returns the feature list. With ``freeze_bn`` set, every BatchNorm layer
    stays in eval mode with frozen affine parameters, also after ``.train()``, so a model
    using the backbone never has to re-freeze it.
    """

    feature_info: tuple[FeatureInfo, ...] = ()
    pretrained_cfg: BackboneConfig | None = None
    # Parameter-name prefixes of the ImageNet classification head (absent when headless).
    head_prefixes: tuple[str, ...] = ()
    freeze_bn: bool = False
    num_classes: int = 0

    @property
    def feature_channels(self) -> tuple[int, ...]:
        return tuple(f.channels for f in self.feature_info)

    @property
    def feature_strides(self) -> tuple[int, ...]:
        return tuple(f.stride for f in self.feature_info)

    @property
    def has_head(self) -> bool:
        return self.num_classes > 0

    def forward_features(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if self.freeze_bn:
            freeze_batchnorm(self)
        return self

    def set_freeze_bn(self, freeze: bool = True) -> None:
        """Freeze (or stop re-freezing) BatchNorm; frozen affine params stay frozen on False."""
        self.freeze_bn = freeze
        if freeze:
            freeze_batchnorm(self)

    def absent_prefixes(self) -> tuple[str, ...]:
        """Key prefixes a weights file may carry that this module has no place for."""
        return () if self.has_head else self.head_prefixes

    def load_weights(self, state: Mapping[str, Tensor], source: str) -> None:
        """Load a state dict in this network's own (torchvision-style) layout, checked."""
        load_checked(self, state, source, ignore_prefixes=self.absent_prefixes())


def format_keys(keys: Iterable[str]) -> str:
    """``['a', 'b', ... +N more]``: every key for short lists, the first few for long ones."""
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:_MAX_LISTED])
    more = f", ... +{len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def load_checked(
    model: nn.Module,
    state: Mapping[str, Tensor],
    source: str,
    ignore_prefixes: tuple[str, ...] = (),
) -> None:
    """Load ``state`` into ``model``: every key and shape must match, else ModelFormatError.

    Keys under ``ignore_prefixes`` (e.g. the ImageNet classifier of a headless backbone) are
    neither required nor loaded. Missing ``num_batches_tracked`` buffers are tolerated.
    """
    wanted = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(ignore_prefixes)}
    missing = [k for k in own if k not in wanted and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in wanted if k not in own]
    name = type(model).__name__
    if missing or unexpected:
        raise ModelFormatError(
            f"{source}: weights do not match {name}: missing keys {format_keys(missing)}, "
            f"unexpected keys {format_keys(unexpected)}; pass weights saved from this "
            "backbone (see docs/backbones.md for each backbone's key layout)"
        )
    bad = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in wanted.items()
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    if bad:
        shown = "; ".join(bad[:_MAX_LISTED]) + (
            f"; +{len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        )
        raise ModelFormatError(
            f"{source}: weight shape mismatch with {name} (file vs model): {shown}; "
            "the file is for a different variant"
        )
    # strict=False only for the tolerated gaps checked above (num_batches_tracked).
    model.load_state_dict(wanted, strict=False)
