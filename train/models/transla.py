"""TranSLA (Zhu et al., "Saliency-Guided Transformer Network combined with Local Embedding for
No-Reference Image Quality Assessment", ICCV workshops 2021), on TRIQ's shallow transformer.

backbone -> 1x1 conv to ``feature_dim`` (f_raw) -> 1x1 conv to ``embed_dim`` D: feature tokens
[cls_d, F_d1..F_dN] + learnable positions P_d (+ LFE) -> ``num_layers`` post-LN encoder layers
-> the class token -> MLP head -> ``bins`` logits -> score = expectation over the bin values.

Three switches, one per column of the paper's Table 3 (all off = its TRIQ baseline):

* ``sat`` (S, saliency-guided transformer): a saliency prediction net (SPN, a 1x1 conv + ReLU on
  f_raw) predicts the exported ``saliency`` map; its cells become the query tokens
  [cls_s, F_s1..F_sN] + P_s of every layer, whose keys/values are the feature tokens (the
  previous layer's output after the first). Off: plain self-attention over the feature tokens
  (TRIQ), no SPN, no saliency output.
* ``lfe`` (L, local feature embedding): the model reads the Sobel ``gradient`` input, area-pools
  it to the token grid and adds a learnt projection of each cell's (log) mean magnitude to that
  feature token (the image mean to the class token). Off: ``image`` only.
* ``bim`` (B, boosting interaction module): the class token of every layer but the last gets
  its own bin head (the last layer's is the score head) and ``layer_logits`` [N, L, bins] is
  returned for the ``bim`` loss term (:mod:`saliq.train.losses.transla`). Training-only: the
  exported graph (score, saliency) does not change.

Where the paper is silent or garbled, the choices are listed in docs/models.md (paper vs saliq).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from saliq.errors import ConfigError

from .backbones import build_backbone
from .blocks import MultiLevelFuse
from .contract import IQAModel
from .registry import register_model

SALIENCY_BIAS_INIT = 1.0  # start the ReLU SPN alive everywhere (uniform saliency), as SGDNet
NATIVE_SIZE = 224  # input size the default positional grid is laid out for (ImageNet's)
# Cell means of the v1 gradient span about 0.002 (flat sky) to 0.15 (dense texture) on photos;
# their log, centred on a typical 0.03, is O(1) for every content and blur level, and
# multiplicative changes (blur halving the detail) become additive shifts.
GRADIENT_EPS = 1e-3
LOG_GRADIENT_REF = math.log(0.03)
POS_INIT_STD = 0.02  # ViT/TRIQ positional-embedding initialisation


class Attention(nn.Module):
    """Multi-head scaled dot-product attention; queries from ``x``, keys/values from ``memory``.

    Written out (not ``nn.MultiheadAttention``) so the ONNX graph is plain MatMul/Softmax that
    every TensorRT version parses, with no fused kernel chosen at trace time.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        n, lq, dim = x.shape
        lk, hd = memory.shape[1], dim // self.heads
        q = self.q(x).reshape(n, lq, self.heads, hd).transpose(1, 2)
        k, v = self.kv(memory).reshape(n, lk, 2, self.heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        weights = self.drop(torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1))
        return self.proj((weights @ v).transpose(1, 2).reshape(n, lq, dim))


class EncoderLayer(nn.Module):
    """Post-LN transformer layer (the paper's Eqs. 5 and 7, as TRIQ):
    x' = LN(q + MHA(q, kv, kv)); out = LN(x' + MLP(x')), with kv = q for self-attention."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.attn = Attention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        kv = query if memory is None else memory
        x = self.norm1(query + self.drop(self.attn(query, kv)))
        return self.norm2(x + self.drop(self.ffn(x)))


class BinHead(nn.Sequential):
    """TRIQ's MLP head: class token -> ``hidden`` (GELU, dropout) -> one logit per score bin."""

    def __init__(self, dim: int, hidden: int, bins: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, bins)
        )


class TokenPositions(nn.Module):
    """Learnable positions for a class token + a ``grid`` of patch tokens, shape [1, 1+N, D].

    Another token grid (another input size) gets the patch positions resized bilinearly, as
    ViT does when fine-tuned at another resolution (TRIQ's adaptive positional embedding).
    """

    def __init__(self, grid: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.weight = nn.Parameter(torch.randn(1, 1 + grid[0] * grid[1], dim) * POS_INIT_STD)

    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        if tuple(grid) == self.grid:
            return self.weight
        cls, patches = self.weight[:, :1], self.weight[:, 1:]
        patches = patches.reshape(1, *self.grid, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=tuple(grid), mode="bilinear", align_corners=False)
        return torch.cat([cls, patches.flatten(2).transpose(1, 2)], dim=1)


def _grid(value: int | tuple[int, int] | list[int] | None, stride: int) -> tuple[int, int]:
    if value is None:
        return (NATIVE_SIZE // stride, NATIVE_SIZE // stride)
    sizes = (value, value) if isinstance(value, int) else tuple(value)
    if len(sizes) != 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise ConfigError(f"transla: pos_grid must be a positive int or [rows, cols], got {value}")
    return (int(sizes[0]), int(sizes[1]))


class TranSLA(IQAModel):
    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        pretrained: bool = False,
        backbone_weights: str | None = None,
        feature_strides: tuple[int, ...] = (32,),
        feature_dim: int = 512,
        embed_dim: int = 32,
        num_heads: int = 8,
        num_layers: int = 2,
        ffn_dim: int = 64,
        dropout: float = 0.1,
        bins: int = 5,
        pos_grid: int | tuple[int, int] | None = None,
        bim: bool = True,
        sat: bool = True,
        lfe: bool = True,
        frozen_prefixes: tuple[str, ...] = (),
        freeze_bn: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ConfigError(
                f"transla: embed_dim={embed_dim} must be a multiple of num_heads={num_heads}"
            )
        if num_layers < 1:
            raise ConfigError(f"transla: num_layers={num_layers} must be >= 1")
        if bim and num_layers < 2:
            raise ConfigError(
                "transla: bim weighs each layer's class token against the next layer's, so it "
                f"needs num_layers >= 2 (got {num_layers}); raise num_layers or set bim: false"
            )
        if bins < 2:
            raise ConfigError(f"transla: bins={bins} must be >= 2")
        weights = backbone_weights or ("imagenet" if pretrained else None)
        self.backbone = build_backbone(
            backbone, weights=weights, frozen=tuple(frozen_prefixes), freeze_bn=freeze_bn
        )
        strides = list(self.backbone.feature_strides)
        if not feature_strides or any(s not in strides for s in feature_strides):
            raise ConfigError(
                f"transla: feature_strides={list(feature_strides)} must be among the backbone's "
                f"strides {strides}"
            )
        self.levels = [strides.index(s) for s in feature_strides]
        self.token_stride = min(feature_strides)  # tokens (and saliency cells) on this grid
        self.bim, self.sat, self.lfe = bool(bim), bool(sat), bool(lfe)
        self.inputs = ("image", "gradient") if self.lfe else ("image",)
        self.outputs = ("score", "saliency") if self.sat else ("score",)
        self.aux_outputs = ("score_logits", "layer_logits") if self.bim else ("score_logits",)
        self.saliency_stride = self.token_stride if self.sat else None

        channels = [self.backbone.feature_channels[i] for i in self.levels]
        self.fuse = MultiLevelFuse(channels, feature_dim)  # f_raw (the paper's 512 channels)
        self.token_proj = nn.Conv2d(feature_dim, embed_dim, 1)  # TRIQ's patch embedding
        grid = _grid(pos_grid, self.token_stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos = TokenPositions(grid, embed_dim)  # P_d
        if self.sat:
            self.spn = nn.Conv2d(feature_dim, 1, 1)
            nn.init.constant_(self.spn.bias, SALIENCY_BIAS_INIT)
            self.saliency_embed = nn.Linear(1, embed_dim)  # F_s: one saliency cell -> D
            self.saliency_cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
            self.saliency_pos = TokenPositions(grid, embed_dim)  # P_s
        if self.lfe:
            self.gradient_embed = nn.Linear(1, embed_dim)  # G_d: one gradient cell -> D
            nn.init.normal_(self.gradient_embed.weight, std=0.1)
            nn.init.zeros_(self.gradient_embed.bias)
        self.layers = nn.ModuleList(
            EncoderLayer(embed_dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.head = BinHead(embed_dim, ffn_dim, bins, dropout)
        if self.bim:  # the last layer's class token is read by `head`
            self.bim_heads = nn.ModuleList(
                BinHead(embed_dim, ffn_dim, bins, dropout) for _ in range(num_layers - 1)
            )
        # Bin b of K stands for rating b+1 of a 1..K scale, mapped onto [0, 1] by (r - 1)/(K - 1)
        # as the MOS loaders map KonIQ's 1-5 MOS: the expectation of KonIQ's own c1..c5 is then
        # exactly its score label, and the score spans [0, 1].
        self.register_buffer("bin_values", torch.linspace(0.0, 1.0, bins), persistent=False)

    # ------------------------------------------------------------------ tokens
    def _tokens(
        self, grid_map: torch.Tensor, cls: torch.Tensor, pos: TokenPositions
    ) -> torch.Tensor:
        """[N, D, h, w] cells -> [N, 1+h*w, D] tokens: the class token first, positions added."""
        tokens = grid_map.flatten(2).transpose(1, 2)
        cls = cls.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + pos(tuple(grid_map.shape[-2:]))

    def _gradient_embedding(self, gradient: torch.Tensor) -> torch.Tensor:
        """The LFE term added to each feature token: [N, 1+h*w, D] (image mean for cls)."""
        cells = F.avg_pool2d(gradient, self.token_stride)  # exact: H, W are multiples of 32
        level = torch.log(cells + GRADIENT_EPS) - LOG_GRADIENT_REF
        per_token = level.flatten(2).transpose(1, 2)  # [N, h*w, 1]
        whole = torch.log(cells.mean((2, 3)) + GRADIENT_EPS) - LOG_GRADIENT_REF  # [N, 1]
        return self.gradient_embed(torch.cat([whole.unsqueeze(1), per_token], dim=1))

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats = self.backbone.forward_features(inputs["image"])
        f_raw = F.relu(self.fuse([feats[i] for i in self.levels]))
        memory = self._tokens(self.token_proj(f_raw), self.cls_token, self.pos)  # z_0
        if self.lfe:
            memory = memory + self._gradient_embedding(inputs["gradient"])
        out: dict[str, torch.Tensor] = {}
        query = None
        if self.sat:
            saliency = F.relu(self.spn(f_raw))
            out["saliency"] = saliency
            # Queries see each cell's saliency relative to the image's mean: the KL loss fixes
            # the map only up to scale, so its absolute level must not steer the attention.
            relative = saliency / (saliency.mean((2, 3), keepdim=True) + 1e-6)
            cells = self.saliency_embed(relative.flatten(2).transpose(1, 2))  # [N, h*w, D]
            cls = self.saliency_cls_token.expand(cells.shape[0], -1, -1)
            query = torch.cat([cls, cells], dim=1) + self.saliency_pos(tuple(saliency.shape[-2:]))
        class_tokens = []
        for layer in self.layers:
            # S: queries are the saliency tokens y_0 at every layer (Eq. 5 never updates y),
            # keys/values the feature stream, which each layer's output replaces. TRIQ:
            # self-attention over the feature stream.
            memory = layer(query, memory) if query is not None else layer(memory)
            class_tokens.append(memory[:, 0])
        logits = self.head(class_tokens[-1])
        out["score"] = (torch.softmax(logits, dim=-1) * self.bin_values).sum(-1)
        out["score_logits"] = logits
        if self.bim:
            per_layer = [h(t) for h, t in zip(self.bim_heads, class_tokens[:-1])]
            out["layer_logits"] = torch.stack([*per_layer, logits], dim=1)
        return out


@register_model
def transla(**cfg) -> TranSLA:
    return TranSLA(**cfg)
