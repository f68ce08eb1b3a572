"""Encoders written in plain PyTorch: a small dilated ResNet, MobileNetV2, a small ViT, a U-Net.

Every encoder takes an ImageNet-normalised (N, 3, H, W) batch (see :class:`ImageNormalize`; the
segmenters and regressors apply it) and returns a list of stage feature maps, shallow to deep. It
exposes ``out_channels`` (channels of each stage) and ``output_stride`` (stride of the last stage).

``MobileNetV2`` and ``MobileNetV2Encoder`` use torchvision's exact module names, so torchvision's
ImageNet ``state_dict`` (``mobilenet_v2-b0353104.pth``) loads with ``strict=True``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from denseloss.models._checks import check_int_tuple, check_positive_int

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BasicBlock",
    "ImageNormalize",
    "InvertedResidual",
    "MobileNetV2",
    "MobileNetV2Encoder",
    "ResNetEncoder",
    "UNetEncoder",
    "ViTEncoder",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNormalize(nn.Module):
    """Map images in [0, 1] to ImageNet-normalised values, ``(x - mean) / std`` per channel.

    The statistics are non-persistent buffers: they move with ``.to()`` but are not saved in
    checkpoints (they are constants).

    Example:
        >>> ImageNormalize()(torch.zeros(1, 3, 2, 2))[0, :, 0, 0]
        tensor([-2.1179, -2.0357, -1.8044])
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W) normalised."""
        return (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)


# --------------------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 conv-BN, identity or 1×1 conv-BN shortcut, ReLU after the sum."""

    def __init__(
        self, in_channels: int, channels: int, *, stride: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C, H/stride, W/stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """Small ResNet of :class:`BasicBlock` s with DeepLab dilation.

    Stem: 7×7 stride-2 conv-BN-ReLU + 3×3 stride-2 max-pool (stride 4). ``layer1`` keeps the stride,
    ``layer2`` halves it (8). For ``output_stride=8`` (DeepLab-v2), ``layer3`` and ``layer4`` keep
    stride 8 and use dilation 2 and 4 instead; ``output_stride=16`` dilates ``layer4`` only (2);
    ``output_stride=32`` is the plain ResNet.

    Args:
        widths: channels of layer1..layer4.
        blocks: number of basic blocks in layer1..layer4.
        output_stride: 8, 16 or 32.

    Returns (forward): ``[layer1, layer2, layer3, layer4]`` feature maps.

    Example:
        >>> enc = ResNetEncoder(widths=(8, 8, 16, 16))
        >>> [tuple(f.shape) for f in enc(torch.rand(1, 3, 64, 64))]
        [(1, 8, 16, 16), (1, 8, 8, 8), (1, 16, 8, 8), (1, 16, 8, 8)]
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (16, 32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1, 1),
        output_stride: int = 8,
    ) -> None:
        super().__init__()
        widths = check_int_tuple("ResNetEncoder", "widths", widths, 4)
        blocks = check_int_tuple("ResNetEncoder", "blocks", blocks, 4)
        dilations = {8: (1, 1, 2, 4), 16: (1, 1, 1, 2), 32: (1, 1, 1, 1)}
        if output_stride not in dilations:
            raise ValueError(
                f"ResNetEncoder: output_stride must be one of [8, 16, 32]; got {output_stride!r}."
            )
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers = []
        in_ch = widths[0]
        for i, (w, n, d) in enumerate(zip(widths, blocks, dilations[output_stride])):
            stride = 2 if i > 0 and d == 1 else 1
            mods = [BasicBlock(in_ch, w, stride=stride, dilation=d)]
            mods += [BasicBlock(w, w, dilation=d) for _ in range(n - 1)]
            layers.append(nn.Sequential(*mods))
            in_ch = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_channels: tuple[int, ...] = widths
        self.output_stride = output_stride
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) normalised image -> four stage maps at strides 4, 8, and OS-dependent."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


# ---------------------------------------------------------------------------------- MobileNetV2


def _make_divisible(v: float, divisor: int = 8) -> int:
    # torchvision's rounding, so widths (and therefore weight shapes) match its checkpoints
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    """conv → BN → ReLU6, as torchvision's ``Conv2dNormActivation`` (children 0, 1, 2)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        dilation: int = 1,
    ) -> None:
        pad = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, pad, dilation, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block (expand 1×1, depthwise 3×3, linear 1×1) with torchvision's key names."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, expand_ratio: int, *, dilation: int = 1
    ) -> None:
        super().__init__()
        hidden = round(in_ch * expand_ratio)
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_ch, hidden, 1))
        layers += [
            ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden, dilation=dilation),
            nn.Conv2d(hidden, out_ch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H/stride, W/stride)."""
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# (expand ratio t, channels c, repeats n, stride s) of torchvision's MobileNetV2
_MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                  (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def _mobilenet_v2_features(
    width_mult: float, output_stride: int, *, last_conv: bool
) -> tuple[list[nn.Module], list[int], int]:
    """Build ``features`` children; return them, the index of the last stride-4 block, channels."""
    if output_stride not in (8, 16, 32):
        raise ValueError(
            f"MobileNetV2: output_stride must be one of [8, 16, 32]; got {output_stride!r}."
        )
    if not (isinstance(width_mult, (int, float)) and width_mult > 0):
        raise ValueError(f"MobileNetV2: width_mult must be > 0; got {width_mult!r}.")
    in_ch = _make_divisible(32 * width_mult)
    layers: list[nn.Module] = [ConvBNReLU6(3, in_ch, 3, 2)]
    stride, dilation, stride4_index = 2, 1, 0
    for t, c, n, s in _MBV2_SETTINGS:
        out_ch = _make_divisible(c * width_mult)
        if s > 1 and stride * s > output_stride:
            # DeepLab trick: trade the stride for dilation so the map stays at output_stride
            s, dilation = 1, dilation * s
        else:
            stride *= s
        for i in range(n):
            layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t, dilation=dilation))
            in_ch = out_ch
        if stride == 4:
            stride4_index = len(layers) - 1
    if last_conv:
        last = _make_divisible(1280 * max(1.0, width_mult))
        layers.append(ConvBNReLU6(in_ch, last, 1))
        in_ch = last
    return layers, [stride4_index], in_ch


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 classifier, same module names (``features``, ``classifier``).

    Input: ImageNet-normalised (N, 3, H, W); output: (N, num_classes) logits. Used to check that
    the ImageNet weights load (``strict=True``) and classify correctly; segmentation uses
    :class:`MobileNetV2Encoder`.

    Example:
        >>> model = MobileNetV2()
        >>> len(model.features), model.classifier[1].out_features
        (19, 1000)
    """

    def __init__(
        self, *, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2
    ) -> None:
        super().__init__()
        layers, _, ch = _mobilenet_v2_features(width_mult, 32, last_conv=True)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(ch, num_classes))
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised -> (N, num_classes) logits."""
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 ``features`` without the final 1×1 conv to 1280 (as DeepLab-v3 mobile uses).

    Keys are torchvision's ``features.0`` … ``features.17``; load ImageNet weights with
    :meth:`load_imagenet`. ``output_stride`` 8 or 16 replaces the last strides by dilation.

    Returns (forward): ``[stride-4 map (24·width ch), last map (320·width ch)]``.

    Example:
        >>> enc = MobileNetV2Encoder(width_mult=0.5)
        >>> [tuple(f.shape) for f in enc(torch.rand(2, 3, 64, 64))]
        [(2, 16, 16, 16), (2, 160, 4, 4)]
    """

    def __init__(self, *, width_mult: float = 1.0, output_stride: int = 16) -> None:
        super().__init__()
        layers, (self._low_index,), ch = _mobilenet_v2_features(
            width_mult, output_stride, last_conv=False
        )
        self.features = nn.Sequential(*layers)
        low = layers[self._low_index]
        low_ch = low.out_channels if isinstance(low, InvertedResidual) else ch
        self.out_channels: tuple[int, ...] = (low_ch, ch)
        self.output_stride = output_stride
        _init_conv_bn(self)

    def load_imagenet(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load torchvision's ImageNet ``state_dict``; every encoder key must be present.

        ``features.18`` (the 1×1 conv to 1280) and ``classifier`` are not part of the encoder and
        are skipped; everything else loads with ``strict=True``.
        """
        own = {k: v for k, v in state_dict.items() if k in self.state_dict()}
        self.load_state_dict(own, strict=True)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) normalised -> [(N, 24w, H/4, W/4), (N, 320w, H/OS, W/OS)]."""
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self._low_index:
                feats.append(x)
        feats.append(x)
        return feats


# ------------------------------------------------------------------------------------------ ViT


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + MSA(LN(x)); x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, D) -> (N, L, D)."""
        n, length, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(n, length, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, heads, L, D/heads)
        attn = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attn.transpose(1, 2).reshape(n, length, d))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Small ViT on non-overlapping patches; tokens come back as a (N, D, H/p, W/p) map.

    No class token (dense prediction). The learned position embedding is stored for an
    ``img_size`` × ``img_size`` grid and bicubically interpolated to other grids.

    Args:
        patch_size: patch side p (the output stride).
        dim: token width D (divisible by ``heads``).
        depth: number of transformer blocks.
        heads: attention heads.
        img_size: size the position embedding is stored for (a multiple of ``patch_size``).

    Example:
        >>> enc = ViTEncoder(dim=24, depth=1, heads=2)
        >>> [tuple(f.shape) for f in enc(torch.rand(1, 3, 96, 64))]
        [(1, 24, 12, 8)]
    """

    def __init__(
        self,
        *,
        patch_size: int = 8,
        dim: int = 96,
        depth: int = 4,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        img_size: int = 64,
    ) -> None:
        super().__init__()
        for name, v in (("patch_size", patch_size), ("dim", dim), ("depth", depth),
                        ("heads", heads), ("img_size", img_size)):  # fmt: skip
            check_positive_int("ViTEncoder", name, v)
        if dim % heads:
            raise ValueError(f"ViTEncoder: dim must be divisible by heads={heads}; got {dim}.")
        if img_size % patch_size:
            raise ValueError(
                f"ViTEncoder: img_size must be a multiple of patch_size={patch_size}; "
                f"got {img_size}."
            )
        grid = img_size // patch_size
        self.patch_embed = nn.Conv2d(3, dim, patch_size, patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, grid, grid))
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out_channels: tuple[int, ...] = (dim,)
        self.output_stride = patch_size
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) normalised -> [(N, D, H/p, W/p)]."""
        x = self.patch_embed(x)
        n, d, gh, gw = x.shape
        pos = self.pos_embed
        if pos.shape[-2:] != (gh, gw):
            pos = F.interpolate(pos, size=(gh, gw), mode="bicubic", align_corners=False)
        x = (x + pos).flatten(2).transpose(1, 2)  # (N, L, D)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return [x.transpose(1, 2).reshape(n, d, gh, gw)]


# ----------------------------------------------------------------------------------------- U-Net


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3×3 conv-BN-ReLU (U-Net's unit)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class UNetEncoder(nn.Module):
    """U-Net contracting path: a double conv per level, 2×2 max-pool between levels.

    Returns (forward): one map per level, strides 1, 2, 4, …; ``output_stride`` is the deepest
    level's stride, ``2 ** (len(widths) - 1)``.

    Example:
        >>> [tuple(f.shape) for f in UNetEncoder(widths=(4, 8, 16))(torch.rand(1, 3, 16, 16))]
        [(1, 4, 16, 16), (1, 8, 8, 8), (1, 16, 4, 4)]
    """

    def __init__(self, *, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        widths = check_int_tuple("UNetEncoder", "widths", widths)
        chans = (3, *widths)
        self.levels = nn.ModuleList(double_conv(a, b) for a, b in itertools.pairwise(chans))
        self.out_channels: tuple[int, ...] = widths
        self.output_stride = 2 ** (len(widths) - 1)
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) normalised -> maps of widths[i] channels at stride 2**i."""
        feats = []
        for i, level in enumerate(self.levels):
            x = level(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        return feats


def _init_conv_bn(module: nn.Module) -> None:
    # He init for convs (fan_out, as torchvision), unit/zero BN affine
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
