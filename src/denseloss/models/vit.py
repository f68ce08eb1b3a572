"""ViT-S/16 and ViT-B/16 under timm's parameter names, and the ViT segmenters (DFR's backbone).

:class:`VisionTransformer` has exactly the keys of timm's ``vit_small_patch16_224`` /
``vit_base_patch16_224`` (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.norm1``,
``blocks.N.attn.qkv``, ``blocks.N.attn.proj``, ``blocks.N.norm2``, ``blocks.N.mlp.fc1``,
``blocks.N.mlp.fc2``, ``norm``, and ``head`` when ``num_classes > 0``), so timm's ``.pth`` or
``.safetensors`` loads with ``strict=True``. The position embedding is stored for
``img_size / patch_size`` squared patches (plus the class token) and bicubically resampled to the
input's grid in the forward (and when a checkpoint for another grid is loaded), as timm's
``resample_abs_pos_embed`` does. As an encoder it returns the tokens of the blocks in
``out_indices`` as (N, D, H/16, W/16) maps (class token dropped, final ``norm`` applied to each),
the multi-level features a dense head reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from denseloss.models._checks import check_positive_int
from denseloss.models.composition import Segmenter
from denseloss.models.heads import conv_bn_relu

__all__ = [
    "VIT_CONFIGS",
    "Attention",
    "Block",
    "Mlp",
    "MultiLevelDecoder",
    "PatchEmbed",
    "VisionTransformer",
    "resample_pos_embed",
    "vit_b16",
    "vit_s16",
]

# timm's vit_small_patch16_224 / vit_base_patch16_224: (embed_dim, depth, num_heads)
VIT_CONFIGS = {"vit_s16": (384, 12, 6), "vit_b16": (768, 12, 12)}


class PatchEmbed(nn.Module):
    """Non-overlapping p×p patches → D channels (timm's ``patch_embed.proj``)."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, D, H/p, W/p)."""
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention with one ``qkv`` projection (timm's ``attn.qkv``/``attn.proj``)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, D) -> (N, L, D)."""
        n, length, d = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, heads, L, D/heads)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, length, d))


class Mlp(nn.Module):
    """fc1 → GELU → fc2 (timm's ``mlp.fc1``/``mlp.fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, D) -> (N, L, D)."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, D) -> (N, L, D)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def resample_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resample a (1, 1 + g·g, D) position embedding to (1, 1 + gh·gw, D).

    The class-token entry is kept; the g×g patch grid is resized bicubically (antialiased when
    shrinking), as timm's ``resample_abs_pos_embed``.

    Raises:
        ValueError: the patch entries do not form a square grid.
    """
    prefix, patches = pos_embed[:, :1], pos_embed[:, 1:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise ValueError(
            "resample_pos_embed: pos_embed must hold 1 + g² entries (class token + square grid); "
            f"got {pos_embed.shape[1]}."
        )
    if (side, side) == tuple(grid):
        return pos_embed
    d = patches.shape[-1]
    patches = patches.reshape(1, side, side, d).permute(0, 3, 1, 2)
    patches = F.interpolate(
        patches.float(), size=tuple(grid), mode="bicubic", align_corners=False, antialias=True
    ).to(pos_embed.dtype)
    return torch.cat([prefix, patches.permute(0, 2, 3, 1).reshape(1, -1, d)], dim=1)


class VisionTransformer(nn.Module):
    """ViT with a class token under timm's names; an encoder, or a classifier with ``head``.

    Args:
        img_size: side the position embedding is stored for (224 in the ImageNet checkpoints).
        patch_size: p (16), the output stride.
        embed_dim: D (384 for ViT-S, 768 for ViT-B).
        depth: blocks (12).
        num_heads: attention heads (6 / 12).
        mlp_ratio: MLP hidden width / D (4).
        num_classes: 0 for an encoder; > 0 adds timm's ``head`` (used by :meth:`classify`).
        out_indices: blocks whose tokens the forward returns (default: the end of each quarter,
            (2, 5, 8, 11) for depth 12).

    Returns (forward): one (N, D, H/p, W/p) map per entry of ``out_indices``.

    Example:
        >>> vit = VisionTransformer(embed_dim=32, depth=2, num_heads=2)
        >>> [tuple(f.shape) for f in vit(torch.rand(1, 3, 64, 96))]
        [(1, 32, 4, 6), (1, 32, 4, 6)]
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        sizes = {"img_size": img_size, "patch_size": patch_size, "embed_dim": embed_dim,
                 "depth": depth, "num_heads": num_heads}  # fmt: skip
        for name, v in sizes.items():
            check_positive_int("VisionTransformer", name, v)
        if embed_dim % num_heads:
            raise ValueError(
                f"VisionTransformer: embed_dim must be divisible by num_heads={num_heads}; "
                f"got {embed_dim}."
            )
        if out_indices is None:
            out_indices = sorted({max(0, depth * q // 4 - 1) for q in (1, 2, 3, 4)})
        if not out_indices or any(not 0 <= int(i) < depth for i in out_indices):
            raise ValueError(
                f"VisionTransformer: out_indices must be block indices in [0, {depth}); "
                f"got {list(out_indices)!r}."
            )
        self.out_indices = tuple(int(i) for i in out_indices)
        self.patch_size = patch_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        if num_classes:
            check_positive_int("VisionTransformer", "num_classes", num_classes)
            self.head = nn.Linear(embed_dim, num_classes)
        self.out_channels: tuple[int, ...] = (embed_dim,) * len(self.out_indices)
        self.output_stride = patch_size
        # timm's init: trunc-normal(0.02) position embedding and Linear weights, tiny class token
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def adapt_state_dict(self, state: dict[str, torch.Tensor], prefix: str = "") -> list[str]:
        """Resample ``state[prefix + "pos_embed"]`` in place to this network's grid.

        Returns:
            One note per resampled tensor (empty when nothing changed).
        """
        key = prefix + "pos_embed"
        src = state.get(key)
        if src is None or src.shape == self.pos_embed.shape or src.ndim != 3:
            return []
        side = math.isqrt(self.pos_embed.shape[1] - 1)
        state[key] = resample_pos_embed(src, (side, side))
        return [f"{key}: resampled {tuple(src.shape)} -> {tuple(state[key].shape)}"]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # a plain load_state_dict of a checkpoint for another image size resamples, as timm does
        self.adapt_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def tokens(self, x: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """(N, 3, H, W) normalised -> normed tokens (N, 1 + L, D) of ``out_indices``, grid."""
        x = self.patch_embed(x)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # (N, L, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + resample_pos_embed(self.pos_embed, grid)
        outs = []
        last = max(self.out_indices)
        for i, block in enumerate(self.blocks[: last + 1]):
            x = block(x)
            if i in self.out_indices:
                outs.append(self.norm(x))
        return outs, grid

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) normalised, H and W multiples of p -> [(N, D, H/p, W/p)] per out index."""
        outs, (gh, gw) = self.tokens(x)
        n, d = x.shape[0], self.pos_embed.shape[-1]
        return [t[:, 1:].transpose(1, 2).reshape(n, d, gh, gw) for t in outs]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised -> (N, num_classes) logits from the class token.

        Raises:
            ValueError: the network was built without a head, or the last block is not returned.
        """
        if not hasattr(self, "head") or self.out_indices[-1] != len(self.blocks) - 1:
            raise ValueError(
                "VisionTransformer.classify: num_classes must be > 0 and out_indices must end at "
                f"the last block; got num_classes=0 or out_indices={self.out_indices}."
            )
        return self.head(self.tokens(x)[0][-1][:, 0])


class MultiLevelDecoder(nn.Module):
    """Fuse same-resolution multi-level maps: concat → 1×1 conv-BN-ReLU → 3×3 conv-BN-ReLU.

    A light SETR-MLA-style dense head for a plain ViT; its output is ``features``.
    """

    def __init__(self, in_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.fuse = conv_bn_relu(sum(in_channels), channels, 1)
        self.refine = conv_bn_relu(channels, channels, 3)

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """[(N, D_i, h, w)] -> (N, channels, h, w)."""
        return self.refine(self.fuse(torch.cat(stages, dim=1)))


def _vit_segmenter(
    name: str,
    *,
    num_classes: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    img_size: int,
    out_indices: Sequence[int] | None,
    decoder_channels: int,
) -> Segmenter:
    check_positive_int(name, "num_classes", num_classes)
    check_positive_int(name, "decoder_channels", decoder_channels)
    encoder = VisionTransformer(
        img_size=img_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        out_indices=out_indices,
    )
    decoder = MultiLevelDecoder(encoder.out_channels, decoder_channels)
    head = nn.Conv2d(decoder_channels, num_classes, 1)
    return Segmenter(
        encoder,
        decoder,
        head,
        feature_channels=decoder_channels,
        num_classes=num_classes,
        name=name,
    )


def vit_b16(
    *,
    num_classes: int,
    img_size: int = 224,
    out_indices: Sequence[int] | None = None,
    decoder_channels: int = 256,
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
) -> Segmenter:
    """ViT-B/16 segmenter (DFR's backbone): blocks (2, 5, 8, 11) → :class:`MultiLevelDecoder`.

    ``features`` = the decoder output (``decoder_channels``, stride 16; DFR's feature-consistency
    head reads it); ``logits`` = 1×1 conv; ``aux_logits`` None. H and W must be multiples of 16.
    timm's ImageNet ViT-B/16 loads into ``encoder`` (``--model.weights``); ``embed_dim``,
    ``depth`` and ``num_heads`` exist to build reduced networks in tests.

    Example:
        >>> net = vit_b16(num_classes=5, embed_dim=32, depth=4, num_heads=2, decoder_channels=16)
        >>> out = net(torch.rand(1, 3, 64, 96))
        >>> tuple(out.logits.shape), tuple(out.features.shape), out.aux_logits
        ((1, 5, 4, 6), (1, 16, 4, 6), None)
    """
    return _vit_segmenter(
        "vit_b16",
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        img_size=img_size,
        out_indices=out_indices,
        decoder_channels=decoder_channels,
    )


def vit_s16(
    *,
    num_classes: int,
    img_size: int = 224,
    out_indices: Sequence[int] | None = None,
    decoder_channels: int = 256,
    embed_dim: int = 384,
    depth: int = 12,
    num_heads: int = 6,
) -> Segmenter:
    """ViT-S/16 segmenter; as :func:`vit_b16` with timm's ViT-S/16 (D = 384, 6 heads)."""
    return _vit_segmenter(
        "vit_s16",
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        img_size=img_size,
        out_indices=out_indices,
        decoder_channels=decoder_channels,
    )
