"""Heads: DeepLab classifiers (v2 ASPP-sum, v3 ASPP, FCN aux), PNE projection, DFR consistency.

All heads map (N, C_in, h, w) to (N, C_out, h, w) without changing the spatial size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from denseloss.models._checks import check_positive_int

__all__ = [
    "ASPP",
    "ASPPSumClassifier",
    "FCNHead",
    "FeatureConsistencyHead",
    "ProjectionHead",
    "conv_bn_relu",
    "upsample_to",
]


def upsample_to(x: torch.Tensor, size: Sequence[int] | torch.Size) -> torch.Tensor:
    """Bilinearly resize a (N, C, h, w) map to ``size = (H, W)`` (``align_corners=False``).

    Example:
        >>> upsample_to(torch.zeros(2, 5, 8, 8), (64, 48)).shape
        torch.Size([2, 5, 64, 48])
    """
    size = tuple(int(s) for s in size)[-2:]
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 1, *, dilation: int = 1) -> nn.Sequential:
    """conv (no bias, 'same' padding) → BN → ReLU."""
    pad = (kernel - 1) // 2 * dilation
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, 1, pad, dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def _check_rates(func: str, rates: Sequence[int], *, allow_empty: bool) -> tuple[int, ...]:
    if not isinstance(rates, (tuple, list)) or (not rates and not allow_empty):
        raise ValueError(f"{func}: rates must be a non-empty tuple of ints; got {rates!r}.")
    for r in rates:
        check_positive_int(func, "rates", r)
    return tuple(rates)


class ASPPSumClassifier(nn.Module):
    """DeepLab-v2 classifier: the **sum** of parallel dilated 3×3 convs, each to ``num_classes``.

    .. math:: \\mathrm{logits} = \\sum_{r \\in \\text{rates}} W_r *_r x + b_r

    The reference (ResNet-101, 321² crops → 41² maps at stride 8) uses rates (6, 12, 18, 24). Our
    default (1, 2, 3, 4) scales them to the 8² maps of 64² inputs, where a rate of 6+ would sample
    mostly zero padding; pass ``rates=(6, 12, 18, 24)`` for full-size crops. Weights are drawn from
    N(0, 0.01²) as in the reference.

    ``branches_used=2`` reproduces the authors' released ``Classifier_Module`` (AdvSemiSeg,
    AdaptSegNet, MaxSquare), whose ``return`` sits inside the summation loop, so only the first
    two of its four convs reach the output. The other branches are still built (their weights are
    in the released checkpoints) but frozen (``requires_grad=False``): they keep the loaded
    values, and DDP sees no trainable parameter without a gradient.

    Example:
        >>> ASPPSumClassifier(16, 5)(torch.rand(2, 16, 8, 8)).shape
        torch.Size([2, 5, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        rates: Sequence[int] = (1, 2, 3, 4),
        branches_used: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("ASPPSumClassifier", "in_channels", in_channels)
        check_positive_int("ASPPSumClassifier", "num_classes", num_classes)
        rates = _check_rates("ASPPSumClassifier", rates, allow_empty=False)
        used = len(rates) if branches_used is None else branches_used
        check_positive_int("ASPPSumClassifier", "branches_used", used)
        if used > len(rates):
            raise ValueError(
                f"ASPPSumClassifier: branches_used must be <= len(rates)={len(rates)}; got {used}."
            )
        self.branches_used = used
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, 1, r, r, bias=True) for r in rates
        )
        for conv in self.convs:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)
        for conv in self.convs[used:]:
            conv.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, h, w) -> (N, num_classes, h, w)."""
        out = self.convs[0](x)
        for conv in self.convs[1 : self.branches_used]:
            out = out + conv(x)
        return out


class ASPP(nn.Module):
    """DeepLab-v3 atrous spatial pyramid pooling → bottleneck features.

    Branches: 1×1 conv-BN-ReLU; one 3×3 conv-BN-ReLU per rate; image pooling (global average →
    1×1 conv → ReLU → broadcast). Their concatenation is projected by a 1×1 conv-BN-ReLU to
    ``channels``. ``rates=()`` gives the "lite" head of MobileNetV2's DeepLab-v3 (1×1 + pooling).

    Two deliberate choices: (i) the pooling branch has a bias and **no BN** — BN on a 1×1 pooled
    map fails for batch size 1 in training, which the reference recipes (MaxSquare, ASM) use;
    (ii) default rates (1, 2, 3) scale the reference (12, 24, 36) at stride 8 to 64² inputs.

    Example:
        >>> ASPP(32, 16)(torch.rand(2, 32, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(
        self, in_channels: int, channels: int = 64, *, rates: Sequence[int] = (1, 2, 3)
    ) -> None:
        super().__init__()
        check_positive_int("ASPP", "in_channels", in_channels)
        check_positive_int("ASPP", "channels", channels)
        rates = _check_rates("ASPP", rates, allow_empty=True)
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, channels, 1)]
            + [conv_bn_relu(in_channels, channels, 3, dilation=r) for r in rates]
        )
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True)
        )
        self.project = conv_bn_relu(channels * (len(rates) + 2), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, h, w) -> (N, channels, h, w)."""
        outs = [branch(x) for branch in self.branches]
        outs.append(self.image_pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


class FCNHead(nn.Sequential):
    """FCN head (DeepLab-v3's auxiliary classifier): 3×3 conv-BN-ReLU → dropout → 1×1 conv.

    Example:
        >>> FCNHead(64, 5)(torch.rand(2, 64, 8, 8)).shape
        torch.Size([2, 5, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        check_positive_int("FCNHead", "in_channels", in_channels)
        check_positive_int("FCNHead", "num_classes", num_classes)
        channels = max(in_channels // 4, 8) if channels is None else channels
        super().__init__(
            conv_bn_relu(in_channels, channels, 3),
            nn.Dropout2d(dropout),
            nn.Conv2d(channels, num_classes, 1),
        )


class ProjectionHead(nn.Sequential):
    """PNE / pixel-contrast projection head: 1×1 conv → BN → ReLU → 1×1 conv.

    As in PNE's ``aspp_head.py`` (512 → 512 → 256) and ContrastiveSeg's 'convmlp'. The output is
    **not** L2-normalised here: the contrastive loss computes cosines.

    Args:
        in_channels: channels of the segmenter's ``features``.
        hidden: width of the hidden layer; ``None`` = ``in_channels``.
        out_channels: embedding width D.

    Example:
        >>> ProjectionHead(64)(torch.rand(2, 64, 8, 8)).shape
        torch.Size([2, 256, 8, 8])
    """

    def __init__(
        self, in_channels: int, *, hidden: int | None = None, out_channels: int = 256
    ) -> None:
        check_positive_int("ProjectionHead", "in_channels", in_channels)
        check_positive_int("ProjectionHead", "out_channels", out_channels)
        hidden = (
            in_channels
            if hidden is None
            else check_positive_int("ProjectionHead", "hidden", hidden)
        )
        super().__init__(conv_bn_relu(in_channels, hidden, 1), nn.Conv2d(hidden, out_channels, 1))


class FeatureConsistencyHead(nn.Sequential):
    """DFR's feature-consistency head: the "deep feature" modality of the DFR pairwise kernel.

    Design (DFR released no code; this follows the same author's A2GNN affinity head, which maps
    backbone features with 1×1 convs to a compact embedding compared pixel-to-pixel):
    1×1 conv (C_in → ``hidden``) → BN → ReLU → 1×1 conv (``hidden`` → ``out_channels``).
    The output f is compared over local windows by the DFR kernel
    :math:`\\exp(-\\lVert \\hat f_i - \\hat f_j \\rVert^2 / 2\\sigma^2)` where the loss/method
    L2-normalises f (:math:`\\hat f`). The head is trained by the method on pairwise relations of
    scribble pixels (same label → close, different labels → apart, METHODS.md §3); whether its
    input is detached from the backbone is the method's decision, not the head's.

    Args:
        in_channels: channels of the segmenter's ``features``.
        hidden: width of the hidden 1×1 layer.
        out_channels: width of the deep feature.

    Example:
        >>> FeatureConsistencyHead(96)(torch.rand(2, 96, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self, in_channels: int, *, hidden: int = 128, out_channels: int = 64) -> None:
        check_positive_int("FeatureConsistencyHead", "in_channels", in_channels)
        check_positive_int("FeatureConsistencyHead", "hidden", hidden)
        check_positive_int("FeatureConsistencyHead", "out_channels", out_channels)
        super().__init__(conv_bn_relu(in_channels, hidden, 1), nn.Conv2d(hidden, out_channels, 1))
