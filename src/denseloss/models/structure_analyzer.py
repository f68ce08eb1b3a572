"""ASM's structure analyzer (Hwang et al., ECCV 2018): a small U-Net-like auto-encoder.

PyTorch port of ``stanford_scenes/models/analyzer.py`` (TensorFlow 1). See METHODS.md §1.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from denseloss._validation import check_float_tensor
from denseloss.models._checks import check_int_tuple, check_positive_int
from denseloss.models.heads import upsample_to
from denseloss.models.outputs import AnalyzerOutput

__all__ = ["ANALYZERS", "StructureAnalyzer", "build_analyzer"]


class StructureAnalyzer(nn.Module):
    """Encoder-decoder whose masked pre-activation features define ASM's structure distance.

    **Encoder.** One 3×3 stride-2 conv per width (bias, no BN, ReLU after). The reference uses
    VALID padding (64 → 31 → 15 → 7 → 3 → 1); we use padding 1 so sizes halve exactly
    (64 → 32 → 16 → 8 → 4 → 2) and the masks below align with the features. When
    ``modality_channels`` is given (e.g. ``(C, 1, 3)`` for segmentation + depth + normals
    concatenated along channels), stage 1 is one conv per modality with ``widths[0] // 2``
    channels each, concatenated (the reference: two modalities × 16 = 32 channels).

    **Decoder.** For each skip (deepest first): 3×3 stride-1 conv (bias, no BN, ReLU) to the skip's
    channel count, bilinear resize to the skip's size, concatenation with the skip.
    **Head.** 1×1 conv back to ``in_channels``, bilinear resize to the input = ``reconstruction``.

    **Features.** Every conv's *pre-ReLU* output multiplied by its not-ignore mask, in order:
    the ``len(widths)`` encoder convs (index 0 = first stride-2 layer; ASM matches indices 0 and
    1), then the ``len(widths) - 1`` decoder convs, deepest first. The ignore mask (True where
    the input is invalid) is max-pooled 3×3 with each encoder layer's stride (2, padding 1,
    chained), so a feature is zeroed as soon as its 3×3 window touched an invalid pixel; a
    decoder conv uses the mask of its input level max-pooled 3×3 with stride 1.

    Args:
        in_channels: channels of the input (probabilities / one-hot, log-depth, unit normals).
        widths: output channels of the encoder convs.
        modality_channels: channel split of the input into modalities (must sum to
            ``in_channels``), or None for a single stage-1 conv.

    Example:
        >>> sa = StructureAnalyzer(5)
        >>> out = sa(torch.rand(2, 5, 64, 48))
        >>> [tuple(f.shape[1:]) for f in out.features[:2]], tuple(out.reconstruction.shape)
        ([(32, 32, 24), (64, 16, 12)], (2, 5, 64, 48))
    """

    def __init__(
        self,
        in_channels: int,
        *,
        widths: Sequence[int] = (32, 64, 128, 128, 128),
        modality_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("StructureAnalyzer", "in_channels", in_channels)
        widths = check_int_tuple("StructureAnalyzer", "widths", widths)
        if len(widths) < 2:
            raise ValueError(
                f"StructureAnalyzer: widths must have at least 2 entries; got {widths}."
            )
        self.in_channels = in_channels
        self.modality_channels: tuple[int, ...] | None = None
        if modality_channels is not None:
            mods = check_int_tuple("StructureAnalyzer", "modality_channels", modality_channels)
            if sum(mods) != in_channels:
                raise ValueError(
                    f"StructureAnalyzer: modality_channels must sum to in_channels={in_channels}; "
                    f"got {mods} (sum {sum(mods)})."
                )
            if widths[0] < 2:
                raise ValueError(f"StructureAnalyzer: widths[0] must be >= 2; got {widths[0]}.")
            self.modality_channels = mods
            self.stem = nn.ModuleList(nn.Conv2d(c, widths[0] // 2, 3, 2, 1) for c in mods)
            enc_channels = [widths[0] // 2 * len(mods), *widths[1:]]
        else:
            self.stem = nn.ModuleList([nn.Conv2d(in_channels, widths[0], 3, 2, 1)])
            enc_channels = list(widths)
        self.encoder = nn.ModuleList(
            nn.Conv2d(a, b, 3, 2, 1) for a, b in itertools.pairwise(enc_channels)
        )
        decoder = []
        ch = enc_channels[-1]
        for skip in reversed(enc_channels[:-1]):
            decoder.append(nn.Conv2d(ch, skip, 3, 1, 1))
            ch = 2 * skip
        self.decoder = nn.ModuleList(decoder)
        self.head = nn.Conv2d(ch, in_channels, 1)
        self.feature_channels: tuple[int, ...] = (*enc_channels, *reversed(enc_channels[:-1]))

    def _stage1(self, x: torch.Tensor) -> torch.Tensor:
        if self.modality_channels is None:
            return self.stem[0](x)
        parts = torch.split(x, self.modality_channels, dim=1)
        return torch.cat([conv(p) for conv, p in zip(self.stem, parts)], dim=1)

    def forward(self, x: torch.Tensor, valid_mask: torch.Tensor | None = None) -> AnalyzerOutput:
        """Encode, decode and reconstruct ``x``, returning the masked pre-activation features.

        Args:
            x: (N, in_channels, H, W) float.
            valid_mask: (N, H, W) bool, True where the input is valid (e.g. measured depth);
                None = all valid.

        Returns:
            :class:`AnalyzerOutput`: ``features`` (list of (N, F_l, h_l, w_l)),
            ``reconstruction`` (N, in_channels, H, W).

        Raises:
            TypeError / ValueError: ``x`` not (N, in_channels, H, W) float; ``valid_mask`` not a
                bool (N, H, W) tensor matching ``x``.
        """
        check_float_tensor("StructureAnalyzer", "x", x, 4)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"StructureAnalyzer: x must have in_channels={self.in_channels} channels; got "
                f"shape {tuple(x.shape)}."
            )
        if valid_mask is None:
            ignore = torch.zeros_like(x[:, :1])
        else:
            _check_valid_mask(valid_mask, x)
            ignore = (~valid_mask).unsqueeze(1).to(x.dtype)
        size = x.shape[-2:]
        feats: list[torch.Tensor] = []
        skips: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        for i in range(len(self.encoder) + 1):
            ignore = F.max_pool2d(ignore, 3, 2, 1)
            pre = self._stage1(x) if i == 0 else self.encoder[i - 1](x)
            feats.append(pre * (1 - ignore))
            x = F.relu(pre)
            skips.append(x)
            masks.append(ignore)
        for conv, skip, level_mask in zip(self.decoder, reversed(skips[:-1]), reversed(masks)):
            pre = conv(x)  # runs at the resolution of level_mask (the deeper level)
            feats.append(pre * (1 - F.max_pool2d(level_mask, 3, 1, 1)))
            x = torch.cat([upsample_to(F.relu(pre), skip.shape[-2:]), skip], dim=1)
        return AnalyzerOutput(feats, upsample_to(self.head(x), size))


def _check_valid_mask(valid_mask: object, x: torch.Tensor) -> None:
    if not isinstance(valid_mask, torch.Tensor):
        raise TypeError(
            "StructureAnalyzer: valid_mask must be a torch.Tensor; got "
            f"{type(valid_mask).__name__}."
        )
    if valid_mask.dtype != torch.bool:
        raise TypeError(
            f"StructureAnalyzer: valid_mask must be a bool tensor; got {valid_mask.dtype}."
        )
    want = (x.shape[0], *x.shape[-2:])
    if tuple(valid_mask.shape) != want:
        raise ValueError(
            f"StructureAnalyzer: valid_mask must have shape {want}; got {tuple(valid_mask.shape)}."
        )


ANALYZERS: dict[str, Callable[..., StructureAnalyzer]] = {"asm": StructureAnalyzer}


def build_analyzer(name: str, in_channels: int, **kwargs: object) -> StructureAnalyzer:
    """Build ``ANALYZERS[name](in_channels, **kwargs)``.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).

    Example:
        >>> len(build_analyzer("asm", 3)(torch.rand(1, 3, 32, 32)).features)
        9
    """
    if name not in ANALYZERS:
        raise ValueError(f"build_analyzer: name must be one of {sorted(ANALYZERS)}; got {name!r}.")
    return ANALYZERS[name](in_channels, **kwargs)
