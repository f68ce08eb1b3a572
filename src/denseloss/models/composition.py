"""The segmenter composition (normalize → encoder → decoder → head) and its capabilities.

Every factory of ``SEGMENTERS`` returns a :class:`Segmenter`. What a method may ask of one is a
*capability*: ``"features"`` (``output.features`` and ``feature_channels``, read by PNE's and
pixel contrast's projection head and DFR's feature-consistency head) and ``"aux_logits"`` (an
auxiliary classifier on an intermediate stage, read by MaxSquare's multi-level guidance and PNE's
auxiliary loss). :func:`require_capability` is the one check methods call, so a method given an
unsuitable network says what is missing and which networks have it.
"""

from __future__ import annotations

import torch
from torch import nn

from denseloss.models._checks import check_image
from denseloss.models.backbones import ImageNormalize
from denseloss.models.outputs import SegmenterOutput

__all__ = ["CAPABILITIES", "LastStage", "Segmenter", "StageDecoder", "require_capability"]

# What each capability means, for error messages.
CAPABILITIES = {
    "features": "decoder features (output.features, feature_channels)",
    "aux_logits": "an auxiliary classifier on an intermediate stage (output.aux_logits)",
}


class LastStage(nn.Module):
    """Decoder that passes the encoder's last stage through (DeepLab-v2 has no decoder)."""

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """[..., (N, F, h, w)] -> (N, F, h, w)."""
        return stages[-1]


class StageDecoder(nn.Module):
    """Apply a module to the encoder's last stage (ASPP, a conv stack)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """[..., (N, C, h, w)] -> module output."""
        return self.module(stages[-1])


class Segmenter(nn.Module):
    """Explicit composition: ``normalize`` → ``encoder`` → ``decoder`` → ``head``.

    ``encoder(x)`` returns a list of stage maps; ``decoder(stages)`` returns ``features``;
    ``head`` is the classifier on ``features``, or ``nn.ModuleDict(main=..., aux=...)`` when an
    auxiliary classifier reads ``stages[aux_stage]``. The forward returns the same
    :class:`SegmenterOutput` in train and eval mode.

    Args:
        encoder: module with ``out_channels`` and ``output_stride``.
        decoder: maps the stage list to ``features`` (N, ``feature_channels``, h, w).
        head: classifier, or a ``ModuleDict`` with keys ``"main"`` and ``"aux"``.
        feature_channels: channels of ``features``.
        num_classes: C (the weights loader uses it to recognise a classifier trained for another
            number of classes).
        input_multiple: H and W must be multiples of this (defaults to the output stride; 1 for
            networks that take any size, as torchvision's ResNets do).
        output_stride: stride of ``logits`` (defaults to the encoder's; DeepLab-v3+ decodes to 4).
        aux_stage: index of the stage the aux classifier reads (needed with a ModuleDict head).
        name: name used in error messages.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        head: nn.Module,
        *,
        feature_channels: int,
        num_classes: int | None = None,
        input_multiple: int | None = None,
        output_stride: int | None = None,
        aux_stage: int | None = None,
        name: str = "Segmenter",
    ) -> None:
        super().__init__()
        self.normalize = ImageNormalize()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.feature_channels = feature_channels
        self.num_classes = num_classes
        self.output_stride: int = int(output_stride or encoder.output_stride)
        self.input_multiple = input_multiple or self.output_stride
        self.aux_stage = aux_stage
        self.name = name

    @property
    def capabilities(self) -> frozenset[str]:
        """``{"features"}``, plus ``"aux_logits"`` when the head has an auxiliary classifier."""
        caps = {"features"}
        if isinstance(self.head, nn.ModuleDict):
            caps.add("aux_logits")
        return frozenset(caps)

    def forward(self, image: torch.Tensor) -> SegmenterOutput:
        """(N, 3, H, W) in [0, 1] -> logits (N, C, H/OS, W/OS), features, aux_logits or None."""
        image = check_image(self.name, image, self.input_multiple)
        stages = self.encoder(self.normalize(image))
        features = self.decoder(stages)
        if isinstance(self.head, nn.ModuleDict):
            logits = self.head["main"](features)
            aux = self.head["aux"](stages[self.aux_stage])
            return SegmenterOutput(logits, features, aux)
        return SegmenterOutput(self.head(features), features, None)


def require_capability(net: nn.Module, capability: str, *, method: str) -> None:
    """Raise a ``ValueError`` naming the missing capability when ``net`` lacks ``capability``.

    ``net`` may be Fabric/DDP-wrapped (``.module`` is looked through). A module that is not a
    :class:`Segmenter` has ``"features"`` when it exposes ``feature_channels``.

    Args:
        net: the segmenter a method was given.
        capability: a key of :data:`CAPABILITIES`.
        method: the method's name, for the message.

    Raises:
        ValueError: the capability is missing (the message lists the segmenters that have it).

    Example:
        >>> from denseloss.models import build_segmenter
        >>> require_capability(build_segmenter("vit_mini", num_classes=3), "aux_logits",
        ...                    method="maxsquare_iw_multi")
        Traceback (most recent call last):
        ...
        ValueError: maxsquare_iw_multi: the segmenter must provide aux_logits (an auxiliary ...
    """
    if capability not in CAPABILITIES:
        raise ValueError(
            f"require_capability: capability must be one of {sorted(CAPABILITIES)}; "
            f"got {capability!r}."
        )
    inner = getattr(net, "module", net)
    caps = getattr(inner, "capabilities", None)
    if caps is None:
        caps = {"features"} if hasattr(inner, "feature_channels") else set()
    if capability in caps:
        return
    from denseloss.models.segmenter import segmenters_with

    name = getattr(inner, "name", type(inner).__name__)
    raise ValueError(
        f"{method}: the segmenter must provide {capability} ({CAPABILITIES[capability]}); got "
        f"{name!r} without it. Hint: use --model.name with one of {segmenters_with(capability)}."
    )
