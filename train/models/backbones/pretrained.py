"""What a backbone's weights expect: one dataclass per backbone, defined beside its code.

A :class:`BackboneConfig` records everything about a backbone that is not the network itself:
the input normalisation its ImageNet weights were trained with, their native input size, where
the weights come from and under which licence, and the feature pyramid (channels, stride and
source module of each of the four stages) that heads such as SGDNet read.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "USER_SAFETENSORS",
    "BackboneConfig",
    "FeatureInfo",
]

# torchvision's ImageNet normalisation (ResNet, VGG); RGB in [0, 1] first.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

USER_SAFETENSORS = "user safetensors"


@dataclass(frozen=True)
class FeatureInfo:
    """One stage of the feature pyramid returned by ``forward_features``.

    ``module`` names the submodule whose output the stage is (e.g. ``"stages.1"``,
    ``"layer1"``, ``"features.9"``), so hooks and docs can point at it.
    """

    channels: int
    stride: int
    module: str


@dataclass(frozen=True)
class BackboneConfig:
    """A backbone's pretrained configuration (what ``backbone_config(name)`` returns).

    ``weight_source`` is the pip distribution shipping the ImageNet weights, or
    :data:`USER_SAFETENSORS` when the user supplies them (``weights_layout`` says which key
    names such a file must use). ``input_size`` is the square size the weights were trained at.
    """

    name: str
    architecture: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    weight_source: str
    weights_layout: str
    licence: str
    feature_info: tuple[FeatureInfo, ...]

    @property
    def has_packaged_weights(self) -> bool:
        return self.weight_source != USER_SAFETENSORS

    @property
    def feature_channels(self) -> tuple[int, ...]:
        return tuple(f.channels for f in self.feature_info)

    @property
    def feature_strides(self) -> tuple[int, ...]:
        return tuple(f.stride for f in self.feature_info)


def torchvision_config(
    name: str, architecture: str, layout: str, feature_info: tuple[FeatureInfo, ...]
) -> BackboneConfig:
    """A torchvision-family backbone: ImageNet normalisation, 224 px, the user's weights."""
    return BackboneConfig(
        name=name,
        architecture=architecture,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=224,
        weight_source=USER_SAFETENSORS,
        weights_layout=f"torchvision ({layout})",
        licence="that of the user's weights (not shipped)",
        feature_info=feature_info,
    )
