"""The papers' DeepLab networks on ResNet-50/101: DeepLab-v2 (ASPP-sum) and DeepLab-v3+.

- ``deeplabv2_resnet101``: AdvSemiSeg's ``Res_Deeplab`` (also the DenseCRF-loss baseline):
  ResNet-101 at output stride 8, classifier = :class:`~denseloss.models.heads.ASPPSumClassifier`
  (four 3×3 convs, rates 6, 12, 18, 24, summed) on layer4; ``features`` = layer4 (2048 channels).
- ``deeplabv2_resnet101_multi``: AdaptSegNet's / MaxSquare's ``DeeplabMulti``: the same plus a
  second ASPP-sum classifier on layer3 (1024 channels) as ``aux_logits`` (MaxSquare's multi-level
  self-produced guidance).
- ``deeplabv3plus_resnet50`` / ``deeplabv3plus_resnet101`` (PNE; rloss's PyTorch release):
  ResNet at output stride 16 → ASPP (1×1, three 3×3 at rates 6, 12, 18, image pooling; 256
  channels) → decoder that fuses a 48-channel projection of layer1 → ``features`` (256, stride 4)
  → dropout + 1×1 classifier; ``aux_logits`` = FCN head on layer3 (MMSeg's auxiliary head).

All take any input size (torchvision convention; 321² gives 41² logits at stride 8). ``layers`` and
``width`` override the ResNet's depth and width; the published networks use the defaults, smaller
values exist for fast tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from denseloss.models._checks import check_positive_int
from denseloss.models.composition import LastStage, Segmenter
from denseloss.models.heads import ASPP, ASPPSumClassifier, FCNHead, conv_bn_relu, upsample_to
from denseloss.models.resnet import RESNET_LAYERS, ResNet

__all__ = [
    "DeepLabV3PlusDecoder",
    "deeplabv2_resnet101",
    "deeplabv2_resnet101_multi",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101",
]


def _deeplabv2(
    name: str,
    *,
    num_classes: int,
    multi_level: bool,
    rates: Sequence[int],
    output_stride: int,
    freeze_bn: bool,
    reference_code: bool,
    layers: Sequence[int],
    width: int,
) -> Segmenter:
    check_positive_int(name, "num_classes", num_classes)
    encoder = ResNet(
        layers=layers,
        width=width,
        output_stride=output_stride,
        freeze_bn=freeze_bn,
        reference_code=reference_code,
    )
    ch = encoder.out_channels
    used = 2 if reference_code else None

    def classifier(in_channels: int) -> ASPPSumClassifier:
        return ASPPSumClassifier(in_channels, num_classes, rates=rates, branches_used=used)

    head: nn.Module = classifier(ch[3])
    if multi_level:
        head = nn.ModuleDict({"main": head, "aux": classifier(ch[2])})
    return Segmenter(
        encoder,
        LastStage(),
        head,
        feature_channels=ch[3],
        num_classes=num_classes,
        input_multiple=1,
        aux_stage=2 if multi_level else None,
        name=name,
    )


def deeplabv2_resnet101(
    *,
    num_classes: int,
    rates: Sequence[int] = (6, 12, 18, 24),
    output_stride: int = 8,
    freeze_bn: bool = False,
    reference_code: bool = False,
    layers: Sequence[int] = RESNET_LAYERS["resnet101"],
    width: int = 64,
) -> Segmenter:
    """DeepLab-v2 ResNet-101 (AdvSemiSeg's ``Res_Deeplab``); ``aux_logits`` is None.

    Args:
        num_classes: C.
        rates: dilation rates of the ASPP-sum classifier (the papers' 6, 12, 18, 24).
        output_stride: 8 (the papers), 16 or 32.
        freeze_bn: BatchNorm in eval mode with frozen affine parameters (the DeepLab-v2 recipe).
        reference_code: reproduce the released code's forward exactly (stride on the first 1×1
            conv, ceil-mode max-pool, every block of a dilated layer dilated, and the classifier
            that sums only its first two convs); set it to evaluate the authors' checkpoints.
        layers: blocks per ResNet stage (tests only).
        width: ResNet stem width (tests only).

    Example:
        >>> net = deeplabv2_resnet101(num_classes=21, layers=(1, 1, 1, 1), width=8)
        >>> out = net(torch.rand(1, 3, 321, 321))
        >>> tuple(out.logits.shape), tuple(out.features.shape), out.aux_logits
        ((1, 21, 41, 41), (1, 256, 41, 41), None)
    """
    return _deeplabv2(
        "deeplabv2_resnet101",
        num_classes=num_classes,
        multi_level=False,
        rates=rates,
        output_stride=output_stride,
        freeze_bn=freeze_bn,
        reference_code=reference_code,
        layers=layers,
        width=width,
    )


def deeplabv2_resnet101_multi(
    *,
    num_classes: int,
    rates: Sequence[int] = (6, 12, 18, 24),
    output_stride: int = 8,
    freeze_bn: bool = False,
    reference_code: bool = False,
    layers: Sequence[int] = RESNET_LAYERS["resnet101"],
    width: int = 64,
) -> Segmenter:
    """DeepLab-v2 ResNet-101 with a layer-3 classifier (``DeeplabMulti``; MaxSquare +Multi).

    As :func:`deeplabv2_resnet101`, plus ``aux_logits`` = an ASPP-sum classifier of the same form
    on layer3 (their ``layer5``; the main classifier is their ``layer6``).

    Example:
        >>> net = deeplabv2_resnet101_multi(num_classes=19, layers=(1, 1, 1, 1), width=8)
        >>> out = net(torch.rand(1, 3, 64, 128))
        >>> tuple(out.logits.shape), tuple(out.aux_logits.shape)
        ((1, 19, 8, 16), (1, 19, 8, 16))
    """
    return _deeplabv2(
        "deeplabv2_resnet101_multi",
        num_classes=num_classes,
        multi_level=True,
        rates=rates,
        output_stride=output_stride,
        freeze_bn=freeze_bn,
        reference_code=reference_code,
        layers=layers,
        width=width,
    )


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the last stage, upsampled to layer1 and fused with its 1×1 projection.

    .. math:: f = \\mathrm{conv}_{3×3}^{2}\\big([\\uparrow \\mathrm{ASPP}(x_4),\\;
              \\mathrm{conv}_{1×1}(x_1)]\\big)

    Dropout 0.5 after the ASPP and after the first fusion conv, as the reference implementations
    (jfzhang95's ``pytorch-deeplab-xception``, used by rloss; torchvision's ASPP).

    Args:
        in_channels: channels of the last stage.
        low_level_channels: channels of the first stage (layer1).
        rates: ASPP atrous rates.
        aspp_channels: ASPP width.
        low_level_projection: width of the layer1 projection (48).
        channels: width of ``features``.
    """

    def __init__(
        self,
        in_channels: int,
        low_level_channels: int,
        *,
        rates: Sequence[int] = (6, 12, 18),
        aspp_channels: int = 256,
        low_level_projection: int = 48,
        channels: int = 256,
    ) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, aspp_channels, rates=rates)
        self.aspp_dropout = nn.Dropout(0.5)
        self.low_level = conv_bn_relu(low_level_channels, low_level_projection, 1)
        self.fuse = nn.Sequential(
            conv_bn_relu(aspp_channels + low_level_projection, channels, 3),
            nn.Dropout(0.5),
            conv_bn_relu(channels, channels, 3),
        )

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """[layer1 (N, C1, h1, w1), ..., last (N, C4, h4, w4)] -> (N, channels, h1, w1)."""
        low = self.low_level(stages[0])
        high = upsample_to(self.aspp_dropout(self.aspp(stages[-1])), low.shape[-2:])
        return self.fuse(torch.cat([high, low], dim=1))


def _deeplabv3plus(
    name: str,
    depth_layers: Sequence[int],
    *,
    num_classes: int,
    output_stride: int,
    rates: Sequence[int] | None,
    aux: bool,
    freeze_bn: bool,
    dropout: float,
    layers: Sequence[int] | None,
    width: int,
) -> Segmenter:
    check_positive_int(name, "num_classes", num_classes)
    encoder = ResNet(
        layers=depth_layers if layers is None else layers,
        width=width,
        output_stride=output_stride,
        freeze_bn=freeze_bn,
    )
    if rates is None:
        # the paper's rates at stride 16, doubled at stride 8 (same field of view in pixels)
        rates = tuple(r * 16 // output_stride for r in (6, 12, 18))
    ch = encoder.out_channels
    c = 4 * width  # 256 at the published width
    decoder = DeepLabV3PlusDecoder(ch[3], ch[0], rates=rates, aspp_channels=c, channels=c)
    main = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(c, num_classes, 1))
    head: nn.Module = main
    if aux:
        head = nn.ModuleDict({"main": main, "aux": FCNHead(ch[2], num_classes, channels=c)})
    return Segmenter(
        encoder,
        decoder,
        head,
        feature_channels=c,
        num_classes=num_classes,
        input_multiple=1,
        output_stride=4,
        aux_stage=2 if aux else None,
        name=name,
    )


def deeplabv3plus_resnet50(
    *,
    num_classes: int,
    output_stride: int = 16,
    rates: Sequence[int] | None = None,
    aux: bool = True,
    freeze_bn: bool = False,
    dropout: float = 0.1,
    layers: Sequence[int] | None = None,
    width: int = 64,
) -> Segmenter:
    """DeepLab-v3+ on ResNet-50; logits and ``features`` at stride 4.

    Args:
        num_classes: C.
        output_stride: encoder stride, 16 (the paper's training setting) or 8.
        rates: ASPP rates; None = (6, 12, 18) at stride 16, (12, 24, 36) at stride 8.
        aux: add the FCN auxiliary classifier on layer3 (``aux_logits``; PNE weighs it 0.4).
        freeze_bn: BatchNorm of the encoder in eval mode, affine parameters frozen.
        dropout: dropout before the 1×1 classifier (MMSeg's 0.1).
        layers: blocks per ResNet stage (tests only; default ResNet-50's).
        width: ResNet stem width (tests only).

    Example:
        >>> net = deeplabv3plus_resnet50(num_classes=19, layers=(1, 1, 1, 1), width=8)
        >>> out = net(torch.rand(1, 3, 321, 321))
        >>> tuple(out.logits.shape), tuple(out.features.shape), tuple(out.aux_logits.shape)
        ((1, 19, 81, 81), (1, 32, 81, 81), (1, 19, 21, 21))
    """
    return _deeplabv3plus(
        "deeplabv3plus_resnet50",
        RESNET_LAYERS["resnet50"],
        num_classes=num_classes,
        output_stride=output_stride,
        rates=rates,
        aux=aux,
        freeze_bn=freeze_bn,
        dropout=dropout,
        layers=layers,
        width=width,
    )


def deeplabv3plus_resnet101(
    *,
    num_classes: int,
    output_stride: int = 16,
    rates: Sequence[int] | None = None,
    aux: bool = True,
    freeze_bn: bool = False,
    dropout: float = 0.1,
    layers: Sequence[int] | None = None,
    width: int = 64,
) -> Segmenter:
    """DeepLab-v3+ on ResNet-101 (PNE's network); arguments as :func:`deeplabv3plus_resnet50`."""
    return _deeplabv3plus(
        "deeplabv3plus_resnet101",
        RESNET_LAYERS["resnet101"],
        num_classes=num_classes,
        output_stride=output_stride,
        rates=rates,
        aux=aux,
        freeze_bn=freeze_bn,
        dropout=dropout,
        layers=layers,
        width=width,
    )
