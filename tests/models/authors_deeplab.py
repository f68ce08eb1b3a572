"""The authors' DeepLab-v2 networks, ported line for line for the weight-mapping tests.

From hfslyc/AdvSemiSeg ``model/deeplab.py`` (``Res_Deeplab``) and wasidennis/AdaptSegNet /
ZJULearning/MaxSquareLoss ``deeplab_multi.py`` (``DeeplabMulti``). Only ``width`` is new (64 in the
originals, where it fixes the 64 / 1024 / 2048 channel counts) so the tests can build a small one;
module names, strides, dilations, ceil-mode pooling and the early ``return`` in
``Classifier_Module.forward`` are theirs.
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, kernel_size=3, stride=1, padding=dilation, bias=False, dilation=dilation
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class Classifier_Module(nn.Module):  # noqa: N801 - the authors' name
    def __init__(self, inplanes, dilation_series, padding_series, num_classes):
        super().__init__()
        self.conv2d_list = nn.ModuleList()
        for dilation, padding in zip(dilation_series, padding_series):
            self.conv2d_list.append(
                nn.Conv2d(inplanes, num_classes, 3, 1, padding=padding, dilation=dilation)
            )
        for m in self.conv2d_list:
            m.weight.data.normal_(0, 0.01)

    def forward(self, x):
        out = self.conv2d_list[0](x)
        for i in range(len(self.conv2d_list) - 1):
            out += self.conv2d_list[i + 1](x)
            return out  # the released code's early return: only branches 0 and 1 are summed
        return out


class ResNetMulti(nn.Module):
    """``multi=False``: AdvSemiSeg's ResNet (layer5 on layer4); True: DeeplabMulti (+layer6)."""

    def __init__(self, layers, num_classes, *, multi, width=64):
        super().__init__()
        self.multi = multi
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=1, dilation=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=1, dilation=4)
        rates = [6, 12, 18, 24]
        if multi:
            self.layer5 = Classifier_Module(width * 16, rates, rates, num_classes)
            self.layer6 = Classifier_Module(width * 32, rates, rates, num_classes)
        else:
            self.layer5 = Classifier_Module(width * 32, rates, rates, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data.normal_(0, 0.01)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def _make_layer(self, planes, blocks, stride=1, dilation=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4 or dilation == 2 or dilation == 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        layers = [
            Bottleneck(self.inplanes, planes, stride, dilation=dilation, downsample=downsample)
        ]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        if not self.multi:
            return self.layer5(self.layer4(x))
        return self.layer6(self.layer4(x)), self.layer5(x)  # (main, aux), as MaxSquare's


def authors_state_dict(model: nn.Module, *, scale_prefix: bool, old_format: bool) -> dict:
    """Their checkpoint: optionally the MS-COCO init's ``Scale.`` prefix and no
    ``num_batches_tracked`` (PyTorch 0.3 files)."""
    sd = {}
    for k, v in model.state_dict().items():
        if old_format and k.endswith("num_batches_tracked"):
            continue
        sd[("Scale." if scale_prefix else "") + k] = v
    return sd


def imagenet_like(x: torch.Tensor) -> torch.Tensor:
    """Their networks take mean-subtracted images; ours normalise [0, 1] images internally."""
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    return (x - mean) / std
