"""ResNet-50 / ResNet-101 (bottleneck blocks) under torchvision's parameter names.

``ResNet(layers=(3, 4, 23, 3))`` has exactly the keys of ``torchvision.models.resnet101()``
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, …, and ``fc`` when
``num_classes`` is given), so torchvision's ImageNet ``.pth`` loads with ``strict=True``. As an
encoder (``num_classes=None``) it returns the four stage maps ``[layer1, layer2, layer3, layer4]``
with 256, 512, 1024, 2048 channels (``4·width``, …, ``32·width``) at strides 4, 8 and then
``output_stride``-dependent: dilation replaces the strides of layer3 / layer4 for output stride 16
/ 8, as torchvision's ``replace_stride_with_dilation`` does.

``reference_code=True`` reproduces the DeepLab-v2 network of the AdvSemiSeg / AdaptSegNet /
MaxSquare releases (their ``Bottleneck`` and ``ResNet``): the stride of a block sits on its first
1×1 conv (torchvision, "ResNet v1.5", puts it on the 3×3 conv), the stem max-pool uses
``ceil_mode=True``, and every block of a dilated layer uses the layer's dilation (torchvision keeps
the previous dilation in the first block). The parameter shapes are the same either way; only the
forward differs, so a checkpoint of either kind loads into either network, but the authors'
numbers need ``reference_code=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from denseloss.models._checks import check_int_tuple, check_positive_int

__all__ = ["RESNET_LAYERS", "Bottleneck", "ResNet", "resnet50", "resnet101"]

RESNET_LAYERS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}

# layer3 / layer4 dilation per output stride (the rest of the stride stays a stride)
_DILATIONS = {8: (2, 4), 16: (1, 2), 32: (1, 1)}


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride, dilation) → 1×1 (×4 channels), BN after each, ReLU after the sum.

    Args:
        in_channels: input channels.
        planes: width of the 1×1 and 3×3 convs; the output has ``4 · planes`` channels.
        stride: 1 or 2.
        dilation: dilation (= padding) of the 3×3 conv.
        downsample: the shortcut (``Sequential(conv 1×1, BN)``) or None for identity.
        stride_in_1x1: put the stride on ``conv1`` (Caffe / the DeepLab-v2 releases) instead of
            ``conv2`` (torchvision).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, planes, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, s3, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, 4·planes, H/stride, W/stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet with torchvision's module names; an encoder, or a classifier with ``fc``.

    Args:
        layers: blocks per stage, (3, 4, 6, 3) for ResNet-50, (3, 4, 23, 3) for ResNet-101.
        width: stem width and layer1 planes (64 in the published networks; smaller values are for
            tests only). Stage i has ``width · 2^i`` planes and ``4 · width · 2^i`` output channels.
        output_stride: 8, 16 or 32 (stride of layer4).
        num_classes: None for an encoder; an int adds torchvision's ``avgpool`` + ``fc``
            (used by :meth:`classify`; 1000 for the ImageNet checkpoints).
        freeze_bn: keep every BatchNorm in eval mode (running statistics fixed) and its affine
            parameters frozen (``requires_grad=False``), as the DeepLab-v2 references train.
        reference_code: the DeepLab-v2 releases' variant (see the module docstring).

    Returns (forward): ``[layer1, layer2, layer3, layer4]`` maps.

    Example:
        >>> enc = ResNet(layers=(1, 1, 1, 1), width=8, output_stride=8)
        >>> [tuple(f.shape) for f in enc(torch.rand(1, 3, 321, 321))]
        [(1, 32, 81, 81), (1, 64, 41, 41), (1, 128, 41, 41), (1, 256, 41, 41)]
    """

    def __init__(
        self,
        *,
        layers: Sequence[int] = RESNET_LAYERS["resnet101"],
        width: int = 64,
        output_stride: int = 32,
        num_classes: int | None = None,
        freeze_bn: bool = False,
        reference_code: bool = False,
    ) -> None:
        super().__init__()
        layers = check_int_tuple("ResNet", "layers", layers, 4)
        check_positive_int("ResNet", "width", width)
        if output_stride not in _DILATIONS:
            raise ValueError(
                f"ResNet: output_stride must be one of [8, 16, 32]; got {output_stride!r}."
            )
        self.freeze_bn = bool(freeze_bn)
        self.reference_code = bool(reference_code)
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=self.reference_code)
        self._in_channels = width
        self._dilation = 1
        d3, d4 = _DILATIONS[output_stride]
        self.layer1 = self._make_layer(width, layers[0], stride=1, dilation=1)
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2, dilation=1)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2, dilation=d3)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2, dilation=d4)
        self.out_channels: tuple[int, ...] = tuple(width * 2**i * 4 for i in range(4))
        self.output_stride = output_stride
        if num_classes is not None:
            check_positive_int("ResNet", "num_classes", num_classes)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(self.out_channels[-1], num_classes)
        _init_resnet(self)
        if self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.requires_grad_(False)

    def _make_layer(self, planes: int, blocks: int, *, stride: int, dilation: int) -> nn.Sequential:
        # torchvision: a dilated layer trades its stride for dilation; its first block keeps the
        # previous layer's dilation. The DeepLab-v2 releases dilate every block of the layer.
        if dilation > 1:
            stride = 1
        first_dilation = dilation if self.reference_code else self._dilation
        out_channels = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self._in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self._in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        mods = [
            Bottleneck(
                self._in_channels,
                planes,
                stride=stride,
                dilation=first_dilation,
                downsample=downsample,
                stride_in_1x1=self.reference_code,
            )
        ]
        mods += [
            Bottleneck(out_channels, planes, dilation=dilation, stride_in_1x1=self.reference_code)
            for _ in range(blocks - 1)
        ]
        self._in_channels = out_channels
        self._dilation = dilation
        return nn.Sequential(*mods)

    def train(self, mode: bool = True) -> ResNet:
        """As ``nn.Module.train``; with ``freeze_bn`` every BatchNorm stays in eval mode."""
        super().train(mode)
        if self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) normalised image -> four stage maps (strides 4, 8, 8/16/32, OS)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised image -> (N, num_classes) logits (needs ``num_classes``).

        Raises:
            ValueError: the network was built without a classifier.
        """
        if not hasattr(self, "fc"):
            raise ValueError(
                "ResNet.classify: num_classes must be set at construction (the encoder has no fc); "
                "got num_classes=None."
            )
        return self.fc(torch.flatten(self.avgpool(self(x)[-1]), 1))


def _init_resnet(module: nn.Module) -> None:
    # torchvision's init: He (fan_out) convs, unit/zero BN affine, default Linear
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet50(**kwargs: object) -> ResNet:
    """torchvision's ResNet-50 layout (25,557,032 parameters with ``num_classes=1000``)."""
    return ResNet(layers=RESNET_LAYERS["resnet50"], **kwargs)  # type: ignore[arg-type]


def resnet101(**kwargs: object) -> ResNet:
    """torchvision's ResNet-101 layout (44,549,160 parameters with ``num_classes=1000``)."""
    return ResNet(layers=RESNET_LAYERS["resnet101"], **kwargs)  # type: ignore[arg-type]
