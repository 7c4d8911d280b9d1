"""A weighted sum of loss terms, built from configuration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from saliq.errors import ConfigError

from .context import LossContext
from .terms import TERMS, LossTerm


class CompositeLoss:
    """``total = sum_i w_i * term_i`` (divided by ``sum_i w_i`` when ``normalise``).

    Called once per training step with a :class:`LossContext`; returns ``{"loss": total}`` plus
    each term's *unweighted* value, detached, under its label (for logging).
    """

    def __init__(self, terms: Sequence[LossTerm], normalise: bool = False) -> None:
        if not terms:
            raise ConfigError(f"loss: no terms configured; choose from {sorted(TERMS)}")
        labels = [t.label for t in terms]
        duplicated = sorted({x for x in labels if labels.count(x) > 1})
        if duplicated:
            raise ConfigError(
                f"loss: several terms are labelled {duplicated}; give each a distinct `label:`"
            )
        if "loss" in labels:
            raise ConfigError("loss: `label: loss` is reserved for the total; choose another")
        if not isinstance(normalise, bool):
            raise ConfigError(f"loss: normalise must be true or false, got {normalise!r}")
        if normalise and sum(t.weight for t in terms) <= 0:
            raise ConfigError("loss: normalise needs a positive sum of weights")
        self.terms: tuple[LossTerm, ...] = tuple(terms)
        self.normalise = normalise
        for term in self.terms:
            term.bind(self.terms)

    @property
    def required_targets(self) -> frozenset[str]:
        """Batch keys the terms read: the data layer need emit only these."""
        return frozenset().union(*(t.required_targets for t in self.terms))

    @property
    def required_outputs(self) -> frozenset[str]:
        """Model outputs the terms read (optional ones, such as ``features``, excluded)."""
        return frozenset().union(*(t.required_outputs for t in self.terms))

    @property
    def needs_model(self) -> bool:
        """Whether a term runs the model again (so LossContext must carry it)."""
        return any(t.needs_model for t in self.terms)

    def config(self) -> dict[str, Any]:
        """The full configuration, defaults filled in: ``build_loss(c.config())`` rebuilds it."""
        return {"normalise": self.normalise, "terms": [t.config() for t in self.terms]}

    def __call__(self, ctx: LossContext) -> dict[str, torch.Tensor]:
        result: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for term in self.terms:
            value = term(ctx)
            result[term.label] = value.detach()
            weighted = term.weight * value
            total = weighted if total is None else total + weighted
        assert total is not None
        if self.normalise:
            total = total / sum(t.weight for t in self.terms)
        return {"loss": total, **result}

    def __repr__(self) -> str:
        parts = ", ".join(f"{t.weight:g}*{t.label}" for t in self.terms)
        return f"CompositeLoss({parts}{', normalised' if self.normalise else ''})"


def build_term(entry: Mapping[str, Any]) -> LossTerm:
    """One term from its configuration entry ``{name: ..., weight: ..., on: ..., ...}``."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"loss: each term must be a mapping with a `name`, got {entry!r}")
    if "name" not in entry:
        raise ConfigError(f"loss: term {dict(entry)} has no `name`; choose from {sorted(TERMS)}")
    name = entry["name"]
    if name not in TERMS:
        raise ConfigError(f"loss: unknown term {name!r}; choose from {sorted(TERMS)}")
    kwargs: dict[str, Any] = {}
    for key, value in entry.items():
        if key is True:
            # PyYAML (YAML 1.1) reads a bare `on:` key as the boolean true; it means `on`.
            key = "on"
        if not isinstance(key, str):
            raise ConfigError(f"loss: term {name!r} has a non-text key {key!r}; keys are names")
        if key in kwargs:
            raise ConfigError(f"loss: term {name!r} gives {key!r} twice")
        if key != "name":
            kwargs[key] = value
    return TERMS[name](**kwargs)


def build_loss(
    spec: Sequence[Mapping[str, Any]] | Mapping[str, Any], *, normalise: bool | None = None
) -> CompositeLoss:
    """A :class:`CompositeLoss` from configuration.

    ``spec`` is a list of term entries, e.g.
    ``[{"name": "l1", "weight": 1.0}, {"name": "tv", "on": "saliency", "weight": 0.25}]``, or a
    mapping ``{"terms": [...], "normalise": true}``. ``normalise`` (argument or key) divides the
    total by the sum of the weights. Unknown names or keys raise ConfigError listing the choices.
    """
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"terms", "normalise"})
        if unknown:
            raise ConfigError(f"loss: unknown keys {unknown}; allowed: ['normalise', 'terms']")
        if "terms" not in spec:
            raise ConfigError("loss: a mapping needs `terms:` (a list of term entries)")
        terms, from_spec = spec["terms"], spec.get("normalise", False)
        normalise = from_spec if normalise is None else normalise
    else:
        terms = spec
    if isinstance(terms, str | bytes) or not isinstance(terms, Sequence):
        raise ConfigError(f"loss: expected a list of term entries, got {terms!r}")
    return CompositeLoss([build_term(e) for e in terms], normalise=bool(normalise or False))
