"""Loss terms: each reads named model outputs and batch targets and returns a scalar to minimise.

A term is configured by a dict (see ``build_loss``): ``name``, ``weight``, ``on`` (the model output
it reads), ``target`` (the batch key it compares against), ``label`` (its key in the returned
dict), ``flip`` (evaluate it on the horizontally flipped pass) and its own options. The registry
``TERMS`` lists every term explicitly; docs/losses.md gives each formula.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from saliq.errors import ConfigError

from . import functional as LF
from .context import LossContext

COMMON_KEYS = ("name", "weight", "on", "target", "label", "flip")


class LossTerm:
    """Base class. Subclasses set the class attributes and implement :meth:`compute`."""

    name: ClassVar[str]
    kind: ClassVar[str]  # quality | saliency | ranking | consistency
    default_on: ClassVar[str | tuple[str, ...]]
    default_target: ClassVar[str | None]
    options: ClassVar[dict[str, Any]] = {}  # extra keyword options and their defaults
    takes_target: ClassVar[bool] = True
    takes_flip: ClassVar[bool] = True

    def __init__(
        self,
        *,
        weight: float = 1.0,
        on: str | Sequence[str] | None = None,
        target: str | None = None,
        label: str | None = None,
        flip: bool = False,
        **options: Any,
    ) -> None:
        where = f"loss term {self.name!r}"
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = [*COMMON_KEYS, *self.options]
            raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {allowed}")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ConfigError(f"{where}: weight must be a number, got {weight!r}")
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(
                f"{where}: weight must be finite and >= 0, got {weight}; every term is a quantity "
                "to minimise (cc and sim already are 1 - CC and 1 - SIM)"
            )
        if target is not None and not self.takes_target:
            raise ConfigError(f"{where} compares two model passes and takes no `target`; drop it")
        if flip and not self.takes_flip:
            raise ConfigError(f"{where} already uses the flipped pass; drop `flip`")
        if not isinstance(flip, bool):
            raise ConfigError(f"{where}: flip must be true or false, got {flip!r}")
        self.weight = float(weight)
        self.on = self._check_on(on if on is not None else self.default_on)
        self.target = target if target is not None else self.default_target
        if self.target is not None and not isinstance(self.target, str):
            raise ConfigError(f"{where}: target must be a batch key (a string), got {target!r}")
        self.flip = flip
        self.label = label if label is not None else self.name + ("_flip" if flip else "")
        if not isinstance(self.label, str) or not self.label:
            raise ConfigError(f"{where}: label must be a non-empty string, got {label!r}")
        values = dict(self.options)
        for key, value in options.items():
            values[key] = _coerce(where, key, value, self.options[key])
        self.opts = values
        self._validate()

    # ---------------------------------------------------------------- configuration
    def _check_on(self, on: Any) -> Any:
        if not isinstance(on, str) or not on:
            raise ConfigError(f"loss term {self.name!r}: on must be an output name, got {on!r}")
        return on

    def _validate(self) -> None:
        """Range checks of the options; raise ConfigError."""

    def bind(self, terms: Sequence[LossTerm]) -> None:
        """Called once by CompositeLoss with all its terms (for terms that depend on others)."""

    @property
    def required_outputs(self) -> set[str]:
        return {self.on}

    @property
    def needs_model(self) -> bool:
        """Whether the term runs the model again (on the flipped inputs)."""
        return self.flip

    @property
    def required_targets(self) -> set[str]:
        return {self.target} if self.target is not None else set()

    def config(self) -> dict[str, Any]:
        """The term's full configuration entry, defaults filled in (round-trips build_loss)."""
        entry: dict[str, Any] = {"name": self.name, "weight": self.weight}
        entry["on"] = list(self.on) if isinstance(self.on, tuple) else self.on
        if self.takes_target:
            entry["target"] = self.target
        entry["label"] = self.label
        if self.takes_flip:
            entry["flip"] = self.flip
        for key, value in self.opts.items():
            entry[key] = list(value) if isinstance(value, tuple) else value
        return entry

    # ---------------------------------------------------------------- evaluation
    def __call__(self, ctx: LossContext) -> torch.Tensor:
        outputs = ctx.flipped_outputs() if self.flip else ctx.outputs
        batch = ctx.flipped_batch() if self.flip else ctx.batch
        pred = _fetch_output(self, outputs, self.on)
        target = _fetch_target(self, batch, self.target) if self.target is not None else None
        return self.compute(pred, target)

    def compute(self, pred: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


def _coerce(where: str, key: str, value: Any, default: Any) -> Any:
    # Options are typed by their default: floats accept ints, lists of names become tuples.
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be finite, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{where}: {key} must be a list of output names, got {value!r}")
        return tuple(items)
    return value


def _fetch_output(term: LossTerm, outputs: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in outputs:
        raise ConfigError(
            f"loss term {term.label!r} reads model output {key!r}, but the model returned "
            f"{sorted(outputs)}; set `on:` to one of those or drop the term"
        )
    return outputs[key]


def _fetch_target(term: LossTerm, batch: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in batch:
        raise ConfigError(
            f"loss term {term.label!r} needs batch key {key!r} (its `target`), but the batch has "
            f"{sorted(batch)}; make the data layer emit it (CompositeLoss.required_targets) or "
            "set `target:`"
        )
    return batch[key]


def _same_shape(term: LossTerm, pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ConfigError(
            f"loss term {term.label!r}: output {term.on!r} has shape {list(pred.shape)} but "
            f"target {term.target!r} has {list(target.shape)}; they must match (scores are [N])"
        )


# -------------------------------------------------------------------------------- quality


class _ScoreError(LossTerm):
    """Mean |score - label| ** power (power 1: L1, 2: L2)."""

    kind = "quality"
    default_on = "score"
    default_target = "score"
    power: ClassVar[int]

    def compute(self, pred: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        _same_shape(self, pred, target)
        return (pred - target.to(pred.dtype)).abs().pow(self.power).mean()


class L1(_ScoreError):
    """Mean absolute error between the score and its label."""

    name = "l1"
    power = 1


class L2(_ScoreError):
    """Mean squared error between the score and its label."""

    name = "l2"
    power = 2


class CrossEntropy(LossTerm):
    """Cross-entropy of 5-bin (K-bin) score logits against the rating distribution."""

    name = "cross_entropy"
    kind = "quality"
    default_on = "score_logits"
    default_target = "score_dist"

    def compute(self, pred: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        _same_shape(self, pred, target)
        if pred.dim() != 2:
            raise ConfigError(
                f"loss term {self.label!r}: {self.on!r} must be [N, bins] logits, "
                f"got {list(pred.shape)}"
            )
        return LF.soft_cross_entropy(pred, target.to(pred.dtype))


# -------------------------------------------------------------------------------- saliency


class SaliencyTerm(LossTerm):
    """A map-against-map term: the target is resized to the prediction's grid first."""

    kind = "saliency"
    default_on = "saliency"
    default_target = "saliency"
    needs_non_negative: ClassVar[bool] = False

    def compute(self, pred: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        where = f"loss term {self.label!r}"
        if pred.dim() != 4 or target.dim() != 4:
            raise ConfigError(
                f"{where}: maps must be [N, C, H, W]; output {self.on!r} is {list(pred.shape)}, "
                f"target {self.target!r} is {list(target.shape)}"
            )
        if pred.shape[:2] != target.shape[:2]:
            raise ConfigError(
                f"{where}: output {self.on!r} is {list(pred.shape)} but target {self.target!r} is "
                f"{list(target.shape)}; batch and channel sizes must match"
            )
        target = LF.match_size(target.to(pred.dtype), pred)
        if self.needs_non_negative and bool((pred < 0).any()):
            raise ValueError(
                f"{where}: output {self.on!r} has negative values; KL needs a non-negative map "
                "(end the saliency head with ReLU, softplus or sigmoid)"
            )
        return self.map_loss(pred, target)

    def map_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class TV(SaliencyTerm):
    """Total-variation distance 0.5 * sum |p - q| of the sum-normalised maps (SGDNet)."""

    name = "tv"

    def map_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.tv_distance(pred, target)


class _EpsTerm(SaliencyTerm):
    def _validate(self) -> None:
        if not 0 < self.opts["eps"] < 1:
            eps = self.opts["eps"]
            raise ConfigError(f"loss term {self.name!r}: eps must be in (0, 1), got {eps}")


class KL(_EpsTerm):
    """KL(target || pred) of the sum-normalised maps, as ``metrics.kld``."""

    name = "kl"
    options = {"eps": LF.KLD_EPS}
    needs_non_negative = True

    def map_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.kl_divergence(pred, target, self.opts["eps"])


class CC(SaliencyTerm):
    """1 - CC (Pearson correlation of the maps): 0 for a perfect map, 2 for an inverted one."""

    name = "cc"

    def map_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1.0 - LF.correlation(pred, target)


class SIM(SaliencyTerm):
    """1 - SIM (histogram intersection of the maps): 0 for a perfect map, 1 for disjoint maps."""

    name = "sim"

    def map_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1.0 - LF.similarity(pred, target)


class KldCcSim(_EpsTerm):
    """BioSIQNet: kld * KLD + cc * CC + sim * SIM (raw CC and SIM; defaults 5, -1, -1)."""

    name = "kld_cc_sim"
    options = {"kld": 5.0, "cc": -1.0, "sim": -1.0, "eps": LF.KLD_EPS}
    needs_non_negative = True

    def map_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        o = self.opts
        return LF.kld_cc_sim(pred, target, o["kld"], o["cc"], o["sim"], o["eps"])


# -------------------------------------------------------------------------------- ranking


class TResRanking(LossTerm):
    """TReS relative-ranking triplet loss on the batch extremes, margins from the labels."""

    name = "tres_ranking"
    kind = "ranking"
    default_on = "score"
    default_target = "score"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._warned = False

    def compute(self, pred: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        _same_shape(self, pred, target)
        if pred.shape[0] < 4 and not self._warned:
            # Not an error: a last, short batch of an epoch is legitimate; but a configured
            # batch size below 4 would silently disable the term, so say it once.
            warnings.warn(
                f"loss term {self.label!r}: batch of {pred.shape[0]} < 4 samples has no "
                "second extremes; the ranking loss is 0 for it (use batch_size >= 4)",
                stacklevel=2,
            )
            self._warned = True
        return LF.relative_ranking(pred, target)


class GroupRanking(LossTerm):
    """Pairwise hinge within each content group of the batch (``group_index``), margins from
    the labels (functional.group_pairwise_hinge). A 2-D output (per-crop scores) is averaged
    over its second axis first. Needs batches of whole groups (data.group_size > 1)."""

    name = "group_ranking"
    kind = "ranking"
    default_on = "score"
    default_target = "score"
    options: ClassVar[dict[str, Any]] = {"margin": 1.0}
    group_key: ClassVar[str] = "group_index"

    def _validate(self) -> None:
        if not self.opts["margin"] >= 0:
            raise ConfigError(f"loss term {self.label!r}: margin must be >= 0")

    def __call__(self, ctx: LossContext) -> torch.Tensor:
        outputs = ctx.flipped_outputs() if self.flip else ctx.outputs
        batch = ctx.flipped_batch() if self.flip else ctx.batch
        pred = _fetch_output(self, outputs, self.on)
        if pred.dim() == 2:
            pred = pred.mean(1)
        target = _fetch_target(self, batch, self.target)
        if self.group_key not in batch:
            raise ConfigError(
                f"loss term {self.label!r} needs {self.group_key!r} in the batch: use "
                "data.source=native with data.group_size > 1"
            )
        _same_shape(self, pred, target)
        return LF.group_pairwise_hinge(pred, target, batch[self.group_key], self.opts["margin"])


# -------------------------------------------------------------------------------- consistency


class FlipConsistency(LossTerm):
    """TReS self-consistency between the model's pass on the inputs and on their h-flip.

    sum over compared outputs o of mean |o(I) - o(flip(I))| (spatial outputs, 3+ dims, are
    flipped back first when ``flip_back``) + lambda_1 * |RR(I) - RR(flip(I))| with RR the batch's
    ``tres_ranking`` loss when such a term is configured. ``stop_gradient`` detaches the flipped
    pass (only the original pass learns from the term). Formula and reading: docs/losses.md.
    """

    name = "flip_consistency"
    kind = "consistency"
    default_on = ("score",)
    default_target = None
    options = {
        "optional_outputs": ("features",),
        "lambda_1": 0.5,
        "stop_gradient": False,
        "flip_back": True,
    }
    takes_target = False
    takes_flip = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ranking: TResRanking | None = None

    def _check_on(self, on: Any) -> Any:
        names = (on,) if isinstance(on, str) else on
        if not isinstance(names, list | tuple) or not names:
            raise ConfigError(f"loss term {self.name!r}: on must name outputs, got {on!r}")
        if not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"loss term {self.name!r}: on must name outputs, got {on!r}")
        return tuple(names)

    def _validate(self) -> None:
        if self.opts["lambda_1"] < 0:
            raise ConfigError(f"loss term {self.name!r}: lambda_1 must be >= 0")

    @property
    def required_outputs(self) -> set[str]:
        return set(self.on)

    @property
    def needs_model(self) -> bool:
        return True

    def bind(self, terms: Sequence[LossTerm]) -> None:
        # The ranking difference uses the batch's own ranking term (the first on the plain pass).
        ranking = [t for t in terms if isinstance(t, TResRanking) and not t.flip]
        self.ranking = ranking[0] if ranking else None

    def __call__(self, ctx: LossContext) -> torch.Tensor:
        flipped = ctx.flipped_outputs()
        stop, back = self.opts["stop_gradient"], self.opts["flip_back"]
        names = list(self.on) + [
            n for n in self.opts["optional_outputs"] if n in ctx.outputs and n not in self.on
        ]
        total: torch.Tensor | None = None
        for name in names:
            a = _fetch_output(self, ctx.outputs, name)
            b = _fetch_output(self, flipped, name)
            if back and b.dim() >= 3:
                b = b.flip(-1)  # the flipped image's map, put back on the original's grid
            if stop:
                b = b.detach()
            term = (a - b).abs().mean()
            total = term if total is None else total + term
        assert total is not None  # `on` is never empty
        lam = self.opts["lambda_1"]
        if self.ranking is not None and lam > 0:
            r = self.ranking
            labels = _fetch_target(r, ctx.batch, r.target)  # type: ignore[arg-type]
            rr = LF.relative_ranking(_fetch_output(r, ctx.outputs, r.on), labels)
            rr_flip = LF.relative_ranking(_fetch_output(r, flipped, r.on), labels)
            if stop:
                rr_flip = rr_flip.detach()
            total = total + lam * (rr - rr_flip).abs()
        return total


TERMS: dict[str, type[LossTerm]] = {
    t.name: t
    for t in (
        L1,
        L2,
        CrossEntropy,
        TV,
        KL,
        CC,
        SIM,
        KldCcSim,
        TResRanking,
        GroupRanking,
        FlipConsistency,
    )
}
