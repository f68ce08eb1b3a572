"""Return types of the networks: the same type in train and eval, never a mode switch."""

from __future__ import annotations

from typing import NamedTuple

import torch


class SegmenterOutput(NamedTuple):
    """What every segmenter returns.

    Attributes:
        logits: (N, C, h, w) raw class scores at the network's output stride (not upsampled;
            methods upsample to the label size with ``denseloss.models.upsample_to``).
        features: (N, F, h_f, w_f) decoder/backbone features that feed PNE's projection head and
            DFR's feature-consistency head (for most networks h_f, w_f = h, w).
        aux_logits: (N, C, h_a, w_a) scores of an intermediate-stage classifier (MaxSquare's
            multi-level guidance, PNE's FCN auxiliary head), or None when the network has none.
    """

    logits: torch.Tensor
    features: torch.Tensor
    aux_logits: torch.Tensor | None = None


class RegressorOutput(NamedTuple):
    """What every dense regressor (depth / surface normals) returns.

    Attributes:
        prediction: (N, 1, h, w) positive depth, or (N, 3, h, w) unit-length normals, at the
            network's output stride.
        features: (N, F, h_f, w_f) decoder features.
    """

    prediction: torch.Tensor
    features: torch.Tensor


class AnalyzerOutput(NamedTuple):
    """What ASM's structure analyzer returns.

    Attributes:
        features: per-layer pre-activation feature maps (list of (N, F_l, h_l, w_l)), zeroed where
            the input is invalid; index 0 is the first stride-2 encoder layer.
        reconstruction: (N, C_in, H, W) auto-encoding of the input.
    """

    features: list[torch.Tensor]
    reconstruction: torch.Tensor
