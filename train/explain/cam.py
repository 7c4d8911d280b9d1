"""HiResCAM and GradCAM of the quality score, as Kirillov et al. extract saliency from IQA models.

For a feature map A ([C, h, w]) and the score y:

* GradCAM (Selvaraju et al.): ReLU(sum_k a_k A^k), a_k = mean_ij dy/dA^k_ij;
* HiResCAM (Draelos and Carin): ReLU(sum_k dy/dA^k * A^k), element-wise, which provably shows
  the cells the score was computed from; the paper uses it.

Smoothing, as the paper does after pytorch-grad-cam (its reference [36]):

* rotation augmentation: the whole-frame inputs are rotated by six small angles
  (:data:`DEFAULT_ANGLES`, one batch), each pass's map is upsampled to the input size, rotated
  back and max-normalised, and the six are averaged;
* first-SVD-component ("eigen") smoothing: instead of the channel sum, the per-cell channel
  vectors of the weighted map (dy/dA * A for HiResCAM, a * A for GradCAM) are centred and
  projected on their first right singular vector. The SVD's sign is arbitrary (pytorch-grad-cam
  leaves it so, which can invert a map); here it is chosen so that the projection correlates
  positively with the plain channel sum.

Which feature map A is explained depends on the architecture (:func:`feature_tap`):

* ``sgdnet``: ``fuse`` + ReLU, f_raw (stride 16 and 32 fused, 14x14 at 224 px), the map the
  saliency head and the pooled head read;
* ``sgdnet_views`` (the default): ``whole.fuse`` + ReLU, f_raw of the whole-frame SGDNet; the
  crop branch is not explained spatially (the figure shows each crop with its own score);
* ``transla``: ``fuse`` + ReLU, f_raw, the map its feature tokens are cut from;
* ``dualtask``: ``feature_map()``, the map its head pools (GradCAM-Loss's A).

Other architectures are refused with a ConfigError; in Python, pass ``tap=FeatureTap(...)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from saliq.errors import ConfigError
from saliq.spec import DEFECT_PROBS, ModelSpec

METHODS = ("hirescam", "gradcam")
# Six passes (the paper's count) with small rotations, symmetric so the average is not tilted;
# 5 degrees moves a 224 px view's corner pixels by about 14 px, less than one stride-16 cell.
DEFAULT_ANGLES = (-5.0, -3.0, -1.0, 1.0, 3.0, 5.0)
# Inputs that are images of the whole frame (rotated with it); crops and weights are not.
WHOLE_FRAME_INPUTS = ("image", "gradient", "prior")
RELU_LIFT = 1e-30  # see FeatureTap


# --------------------------------------------------------------------------------------------
# Rotation
# --------------------------------------------------------------------------------------------


def rotate(x: torch.Tensor, degrees: torch.Tensor | float, padding: str = "reflection"):
    """Rotate [N, C, H, W] maps about their centre by ``degrees`` (per sample or one value),
    counter-clockwise as displayed (rows grow downwards), keeping the size.

    Bilinear sampling with half-pixel centres; ``padding`` fills what comes from outside the
    frame ("reflection" for images, so the network sees no artificial border; "border" for
    maps rotated back; "zeros").
    """
    n, _, h, w = x.shape
    angle = torch.as_tensor(degrees, dtype=x.dtype, device=x.device).reshape(-1)
    angle = angle.expand(n) if angle.numel() == 1 else angle
    rad = angle * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    # Output pixel p samples the input at R^-1 p (R: the displayed counter-clockwise rotation,
    # in pixels), written in affine_grid's [-1, 1] coordinates, which scale x and y apart.
    theta = torch.stack(
        [
            torch.stack([cos, -sin * h / w, zero], dim=1),
            torch.stack([sin * w / h, cos, zero], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


# --------------------------------------------------------------------------------------------
# Which feature map
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureTap:
    """Where A comes from: the output of ``owner.<attribute>`` (a submodule or a method).

    ``relu``: A is ReLU of that output. The model applies its own F.relu after the module,
    whose backward would zero dy/dA wherever A = 0, and GradCAM's channel means need it there
    too (dy/dA is defined at those cells: the pool and head after A do not care that A came
    from a ReLU); so zeros are lifted to ``RELU_LIFT``, which the model's ReLU passes with
    gradient 1 and which moves the score by far less than a float32 ulp.

    A is a fresh leaf of the graph (detached from the backbone): the CAMs need dy/dA only,
    and the backward stops there instead of running through the backbone.
    """

    description: str
    owner: nn.Module
    attribute: str
    relu: bool = False

    @contextmanager
    def capture(self) -> Iterator[list[torch.Tensor]]:
        """While active, each forward appends A (part of the autograd graph) to the list."""
        store: list[torch.Tensor] = []

        def keep(value: torch.Tensor) -> torch.Tensor:
            a = F.relu(value).clamp(min=RELU_LIFT) if self.relu else value
            a = a.detach().requires_grad_(True)
            store.append(a)
            return a

        target = getattr(self.owner, self.attribute)
        if isinstance(target, nn.Module):
            handle = target.register_forward_hook(lambda _m, _args, out: keep(out))
            try:
                yield store
            finally:
                handle.remove()
        else:  # a bound method: shadow it on the instance for the duration
            setattr(self.owner, self.attribute, lambda *a, **k: keep(target(*a, **k)))
            try:
                yield store
            finally:
                delattr(self.owner, self.attribute)


def _fused(model: nn.Module, what: str) -> FeatureTap:
    return FeatureTap(f"{what}fuse + ReLU (f_raw)", model, "fuse", relu=True)


_TAPS: dict[str, Callable[[nn.Module], FeatureTap]] = {
    "SGDNet": lambda m: _fused(m, ""),
    "SGDNetViews": lambda m: _fused(m.whole, "whole."),
    "TranSLA": lambda m: _fused(m, ""),
    "DualTask": lambda m: FeatureTap("feature_map() (the pooled map A)", m, "feature_map"),
}


def feature_tap(model: nn.Module) -> FeatureTap:
    """The feature map explained for this architecture (module docstring's table)."""
    build = _TAPS.get(type(model).__name__)
    if build is None:
        raise ConfigError(
            f"saliq explain: no feature map is defined for {type(model).__name__}; it explains "
            f"{', '.join(sorted(_TAPS))} models (or pass tap=FeatureTap(...) in Python)"
        )
    return build(model)


# --------------------------------------------------------------------------------------------
# CAMs
# --------------------------------------------------------------------------------------------


def activations_and_gradients(
    model: nn.Module, inputs: dict[str, torch.Tensor], tap: FeatureTap | None = None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(A, dy/dA, outputs) for a batch; y = each sample's ``score`` (samples are independent
    in eval mode, so the gradient of the batch sum is each score's own)."""
    tap = tap or feature_tap(model)
    with torch.enable_grad(), tap.capture() as store:
        outputs = model(inputs)
    if len(store) != 1:
        raise RuntimeError(f"{tap.description} ran {len(store)} times in one forward, not once")
    (grad,) = torch.autograd.grad(outputs["score"].sum(), store[0])
    return store[0].detach(), grad.detach(), {k: v.detach() for k, v in outputs.items()}


def first_component(weighted: torch.Tensor) -> torch.Tensor:
    """[N, C, h, w] -> [N, 1, h, w]: the cells' channel vectors, centred, projected on their
    first right singular vector; sign chosen to agree with the channel sum.

    Computed from the smaller Gram matrix's top eigenvector (M v1 = s1 u1), which gives the
    SVD's projection exactly and costs a fraction of a batched SVD on a CPU.
    """
    n, c, h, w = weighted.shape
    cells = weighted.flatten(2).transpose(1, 2).double()  # M: [N, hw, C]
    centred = cells - cells.mean(1, keepdim=True)
    if h * w <= c:
        values, vectors = torch.linalg.eigh(centred @ centred.transpose(1, 2))  # M M^T: [hw, hw]
        proj = vectors[..., -1] * values[..., -1:].clamp(min=0.0).sqrt()  # s1 u1
    else:
        _, vectors = torch.linalg.eigh(centred.transpose(1, 2) @ centred)  # M^T M: [C, C]
        proj = (centred @ vectors[..., -1:]).squeeze(2)  # M v1
    plain = cells.sum(2)
    agree = ((plain - plain.mean(1, keepdim=True)) * proj).sum(1, keepdim=True)
    proj = proj * torch.where(agree < 0, -1.0, 1.0)
    return proj.to(weighted.dtype).view(n, 1, h, w)


def cam(
    activations: torch.Tensor,
    gradients: torch.Tensor,
    method: str = "hirescam",
    eigen_smooth: bool = False,
) -> torch.Tensor:
    """One pass's map [N, 1, h, w] (ReLU applied, not normalised)."""
    if method == "hirescam":
        weighted = gradients * activations
    elif method == "gradcam":
        weighted = gradients.mean((2, 3), keepdim=True) * activations
    else:
        raise ConfigError(f"unknown CAM method {method!r}; use one of {', '.join(METHODS)}")
    summed = first_component(weighted) if eigen_smooth else weighted.sum(1, keepdim=True)
    return F.relu(summed)


def _max_normalise(maps: torch.Tensor) -> torch.Tensor:
    peak = maps.flatten(1).amax(1).clamp(min=1e-12)
    return maps / peak[:, None, None, None]


def score_cams(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    methods: Sequence[str] = METHODS,
    angles: Sequence[float] = DEFAULT_ANGLES,
    eigen_smooth: bool = True,
    tap: FeatureTap | None = None,
) -> dict[str, torch.Tensor]:
    """``{method: [N, 1, H, W]}`` maps in [0, 1] at the ``image`` input's size, averaged over
    the rotated passes (``angles=()`` or ``(0,)``: one plain pass)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown CAM methods {unknown}; use {', '.join(METHODS)}")
    angles = tuple(float(a) for a in angles) or (0.0,)
    n, reps = inputs["image"].shape[0], len(angles)
    per_sample = torch.tensor(angles, dtype=inputs["image"].dtype).repeat(n)  # sample-major
    batch = {}
    for key, value in inputs.items():
        value = value.repeat_interleave(reps, dim=0)
        rotated = key in WHOLE_FRAME_INPUTS and any(angles)
        batch[key] = rotate(value, per_sample) if rotated else value
    acts, grads, _ = activations_and_gradients(model, batch, tap)
    size = inputs["image"].shape[-2:]
    out = {}
    for method in methods:
        maps = cam(acts, grads, method, eigen_smooth)
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        if any(angles):
            maps = rotate(maps, -per_sample, padding="border")
        maps = _max_normalise(maps.clamp(min=0.0))  # each pass counts the same
        out[method] = _max_normalise(maps.view(n, reps, 1, *size).mean(1))
    return out


def input_gradient(model: nn.Module, inputs: dict[str, torch.Tensor], key: str = "image"):
    """|d score / d input| ([N, 1, H, W], max over channels): the plain gradient map."""
    probe = inputs[key].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        score = model({**inputs, key: probe})["score"]
        (grad,) = torch.autograd.grad(score.sum(), probe)
    return grad.abs().amax(1, keepdim=True)


# --------------------------------------------------------------------------------------------
# One image, everything the figure shows
# --------------------------------------------------------------------------------------------


@dataclass
class Explanation:
    """What ``saliq explain`` draws for one image. Maps are [H, W] float32 at the model's
    input size (the whole frame stretched, as the preprocessing stretches it)."""

    name: str
    model: str
    architecture: str
    feature_map: str
    score: float
    rgb: np.ndarray  # uint8 [h, w, 3], the decoded frame
    maps: dict[str, np.ndarray]  # saliency (if any), hirescam, gradcam, sobel, input_gradient
    region_scores: tuple[float, float] | None = None
    crop_boxes: np.ndarray | None = None  # [K, 4] normalised (x0, y0, x1, y1)
    crop_scores: np.ndarray | None = None  # [K]
    defect: tuple[str, float] | None = None  # the defect head's likeliest class, probability
    settings: dict = field(default_factory=dict)


def load_explainable(model: str | Path = "default") -> tuple[nn.Module, ModelSpec]:
    """A PyTorch model + spec from "default" or a ``.safetensors`` checkpoint; refuses artifacts
    without gradients and architectures without a defined feature map."""
    from saliq.assess import default_model_path

    from ..checkpoint import load_checkpoint

    path = default_model_path("safetensors") if str(model) == "default" else Path(model)
    if path.suffix != ".safetensors":
        raise ConfigError(
            f"{path}: explaining needs gradients, which only the PyTorch checkpoint gives; pass "
            "the model's .safetensors (the shipped default: --model default)"
        )
    net, spec, _, _ = load_checkpoint(path)
    feature_tap(net)  # refuse early, before any work
    return net.eval(), spec


def explain_image(
    model: nn.Module,
    spec: ModelSpec,
    image: str | Path | np.ndarray,
    color: str = "BGR",
    angles: Sequence[float] = DEFAULT_ANGLES,
    eigen_smooth: bool = True,
) -> Explanation:
    """Score, saliency, CAMs, Sobel and input-gradient maps and region scores of one image."""
    from saliq.imageio import load_inputs
    from saliq.preprocess import Preprocessor, decode_to_rgb

    frames, names, is_batch = load_inputs(image, color=color)
    if is_batch or len(frames) != 1:
        raise ConfigError("explain_image takes one image; call it once per image")
    pixels, fmt = frames[0]
    prep = Preprocessor.from_spec(spec)(pixels, fmt=fmt)
    inputs = {k: torch.from_numpy(np.ascontiguousarray(prep[k])) for k in spec.inputs}
    model = model.eval()
    with torch.no_grad():
        outputs = model(inputs)
    cams = score_cams(model, inputs, METHODS, angles, eigen_smooth)
    size = tuple(inputs["image"].shape[-2:])
    maps = {m: cams[m][0, 0].numpy() for m in METHODS}
    if "saliency" in outputs:
        sal = F.interpolate(outputs["saliency"], size=size, mode="bilinear", align_corners=False)
        maps["saliency"] = _max_normalise(sal.clamp(min=0.0))[0, 0].numpy()
    maps["sobel"] = np.asarray(prep["gradient"][0, 0], np.float32)
    maps["input_gradient"] = input_gradient(model, inputs)[0, 0].numpy()
    regions = outputs.get("region_scores")
    crops = outputs.get("crop_scores")
    defect = None
    if DEFECT_PROBS in outputs and spec.defect_classes:
        probs = outputs[DEFECT_PROBS][0]
        best = int(probs.argmax())
        defect = (spec.defect_classes[best], float(probs[best]))
    return Explanation(
        name=names[0],
        model=spec.name,
        architecture=spec.architecture,
        feature_map=feature_tap(model).description,
        score=float(outputs["score"][0]),
        rgb=np.clip(decode_to_rgb(pixels, fmt), 0, 255).astype(np.uint8),
        maps={k: v.astype(np.float32) for k, v in maps.items()},
        region_scores=None if regions is None else tuple(float(v) for v in regions[0]),
        crop_boxes=None if "crop_boxes" not in prep else np.asarray(prep["crop_boxes"][0]),
        crop_scores=None if crops is None else crops[0].numpy(),
        defect=defect,
        settings={"angles": list(angles), "eigen_smooth": eigen_smooth},
    )
