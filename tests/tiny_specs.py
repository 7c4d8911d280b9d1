"""The spec of a tiny random-init model in tests: mid-grey normalisation, square input."""

from __future__ import annotations

from saliq.spec import ModelSpec
from saliq.train.models import model_spec


def tiny_spec(
    model,
    architecture: str,
    config: dict,
    size: int,
    name: str | None = None,
    backbone: str = "efficientnet_lite0",
) -> ModelSpec:
    return model_spec(
        model,
        name=name or f"test-{architecture}",
        architecture=architecture,
        backbone=backbone,
        input_height=size,
        input_width=size,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        model_config=config,
    )
