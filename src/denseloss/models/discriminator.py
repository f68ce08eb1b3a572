"""Discriminators: AdvSemiSeg's fully convolutional D and a conditional patch D (cGAN baseline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from denseloss._validation import check_choice, check_float_tensor
from denseloss.models._checks import check_positive_int

__all__ = ["DISCRIMINATORS", "FCDiscriminator", "PatchDiscriminator", "build_discriminator"]


def _check_input(func: str, x: object, in_channels: int, min_size: int) -> torch.Tensor:
    check_float_tensor(func, "x", x, 4)
    if not isinstance(x, torch.Tensor):  # pragma: no cover - check_float_tensor raised
        raise TypeError(f"{func}: x must be a torch.Tensor; got {type(x).__name__}.")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{func}: x must have in_channels={in_channels} channels; got shape {tuple(x.shape)}."
        )
    h, w = x.shape[-2:]
    if h < min_size or w < min_size:
        raise ValueError(
            f"{func}: x height and width must be at least {min_size}; got {h}×{w}. Hint: pad or "
            f"upsample to {max(h, min_size)}×{max(w, min_size)}."
        )
    return x


class FCDiscriminator(nn.Module):
    """AdvSemiSeg's fully convolutional discriminator (Hung et al., BMVC 2018), as the reference.

    Five 4×4 stride-2 convs (padding 1, bias) C → ndf → 2ndf → 4ndf → 8ndf → 1, LeakyReLU(0.2)
    after the first four, no normalisation, **no sigmoid** (pair it with a BCE-with-logits loss).
    The output is at 1/32 of the input; with ``upsample=True`` it is bilinearly resized
    (``align_corners=True``, as the reference) to the input's (H, W), which may be non-square.

    Args:
        in_channels: C (classes): softmax probabilities or one-hot labels.
        ndf: width of the first conv (64 in the reference).
        upsample: return the confidence map at the input size.
        strides: stride of each of the five convs (reference: all 2, output at 1/32). On small
            crops a stride-1 tail keeps the confidence map spatial: at 64² the reference gives a
            2×2 map, ``(2, 2, 2, 1, 1)`` a 6×6 one (a stride-1 4×4 conv with padding 1 shrinks
            the map by one pixel).

    Raises (forward):
        ValueError: H or W < 32 (the fifth conv would have no output).

    Example:
        >>> d = FCDiscriminator(5, ndf=8, upsample=True)
        >>> d(torch.rand(2, 5, 64, 96)).shape
        torch.Size([2, 1, 64, 96])
    """

    MIN_SIZE = 32

    def __init__(
        self,
        in_channels: int,
        *,
        ndf: int = 64,
        upsample: bool = False,
        strides: tuple[int, ...] = (2, 2, 2, 2, 2),
    ) -> None:
        super().__init__()
        check_positive_int("FCDiscriminator", "in_channels", in_channels)
        check_positive_int("FCDiscriminator", "ndf", ndf)
        strides = tuple(int(v) for v in strides)
        if len(strides) != 5 or any(v not in (1, 2) for v in strides):
            raise ValueError(
                f"FCDiscriminator: strides must be five values in {{1, 2}}; got {strides}."
            )
        self.in_channels = in_channels
        self.upsample = bool(upsample)
        self.strides = strides
        s1, s2, s3, s4, s5 = strides
        self.conv1 = nn.Conv2d(in_channels, ndf, 4, s1, 1)
        self.conv2 = nn.Conv2d(ndf, ndf * 2, 4, s2, 1)
        self.conv3 = nn.Conv2d(ndf * 2, ndf * 4, 4, s3, 1)
        self.conv4 = nn.Conv2d(ndf * 4, ndf * 8, 4, s4, 1)
        self.classifier = nn.Conv2d(ndf * 8, 1, 4, s5, 1)
        self.leaky_relu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1, H/32, W/32) logits, or (N, 1, H, W) with ``upsample``."""
        x = _check_input("FCDiscriminator", x, self.in_channels, self.MIN_SIZE)
        size = x.shape[-2:]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = self.leaky_relu(conv(x))
        x = self.classifier(x)
        if self.upsample:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return x

    def extra_repr(self) -> str:
        """Show the flag and the strides."""
        return f"upsample={self.upsample}, strides={self.strides}"


class PatchDiscriminator(nn.Module):
    """Conditional pix2pix-style patch discriminator (the cGAN baseline of ASM).

    The caller concatenates image and prediction along channels (``in_channels`` = 3 + C). Layers:
    4×4 stride-2 conv (ndf) + LeakyReLU(0.2); ``n_layers - 1`` 4×4 stride-2 convs doubling the
    width (capped at 8·ndf) + norm + LeakyReLU; one 4×4 stride-1 conv + norm + LeakyReLU; a 4×4
    stride-1 conv to 1 channel (logits per patch, no sigmoid). pix2pix uses BatchNorm; we use
    GroupNorm (or none) so the module has no running buffers (no DDP buffer broadcast, no
    train/eval difference).

    Args:
        in_channels: channels of the concatenated input.
        ndf: width of the first conv.
        n_layers: number of stride-2 convs.
        norm: ``"group"`` (GroupNorm, up to 32 groups) or ``"none"``.

    Raises (forward):
        ValueError: input smaller than ``min_size`` = 2**n_layers · 3 (one output patch).

    Example:
        >>> d = PatchDiscriminator(3 + 5, ndf=8)
        >>> d(torch.rand(2, 8, 64, 96)).shape
        torch.Size([2, 1, 6, 10])
    """

    def __init__(
        self,
        in_channels: int,
        *,
        ndf: int = 64,
        n_layers: int = 3,
        norm: Literal["group", "none"] = "group",
    ) -> None:
        super().__init__()
        check_positive_int("PatchDiscriminator", "in_channels", in_channels)
        check_positive_int("PatchDiscriminator", "ndf", ndf)
        check_positive_int("PatchDiscriminator", "n_layers", n_layers)
        check_choice("PatchDiscriminator", "norm", norm, ("group", "none"))
        self.in_channels = in_channels

        def norm_layer(ch: int) -> nn.Module:
            return nn.GroupNorm(min(32, ch), ch) if norm == "group" else nn.Identity()

        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, n_layers):
            out = ndf * min(2**i, 8)
            layers += [nn.Conv2d(ch, out, 4, 2, 1), norm_layer(out), nn.LeakyReLU(0.2, True)]
            ch = out
        out = ndf * min(2**n_layers, 8)
        layers += [nn.Conv2d(ch, out, 4, 1, 1), norm_layer(out), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(out, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        # smallest input with a 1×1 output: the stride-1 4×4 convs each remove one pixel
        self.min_size = 2**n_layers * 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, 1, H/2^n - 2, W/2^n - 2) patch logits."""
        x = _check_input("PatchDiscriminator", x, self.in_channels, self.min_size)
        return self.model(x)


DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "fc": FCDiscriminator,
    "patch": PatchDiscriminator,
}


def build_discriminator(name: str, in_channels: int, **kwargs: object) -> nn.Module:
    """Build ``DISCRIMINATORS[name](in_channels, **kwargs)``.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).

    Example:
        >>> build_discriminator("fc", 4, ndf=8)(torch.rand(1, 4, 32, 32)).shape
        torch.Size([1, 1, 1, 1])
    """
    if name not in DISCRIMINATORS:
        raise ValueError(
            f"build_discriminator: name must be one of {sorted(DISCRIMINATORS)}; got {name!r}."
        )
    return DISCRIMINATORS[name](in_channels, **kwargs)
