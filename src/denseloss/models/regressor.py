"""Dense regressors for ASM's depth and surface-normal tasks, sharing the segmenters' encoders.

``build_regressor(name, *, task)`` with ``task="depth"`` gives a (N, 1, h, w) **positive** map
(``softplus(x) + 1e-4``, so ``log(depth)`` is always finite); ``task="normals"`` gives (N, 3, h, w)
**unit** vectors (L2-normalised over channels). Factories in ``REGRESSORS``:

- ``deeplabv2``: dilated ResNet, ASPP-sum head on layer4; OS 8.
- ``mobilenetv2``: MobileNetV2 (+ImageNet weights) → ASPP-lite → 1×1; OS 16 (or 8).
- ``unet``: U-Net (BN + ReLU, as ASM's predictor); OS 1, for sharp depth and normals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from denseloss._validation import check_choice
from denseloss.models._checks import check_image
from denseloss.models.backbones import (
    ImageNormalize,
    MobileNetV2Encoder,
    ResNetEncoder,
    UNetEncoder,
    double_conv,
)
from denseloss.models.heads import ASPP, ASPPSumClassifier, upsample_to
from denseloss.models.outputs import RegressorOutput
from denseloss.models.pretrained import mobilenet_v2_imagenet_weights
from denseloss.models.segmenter import LastStage, StageDecoder

__all__ = [
    "DEPTH_EPS",
    "REGRESSORS",
    "Regressor",
    "UNetDecoder",
    "build_regressor",
    "deeplabv2_regressor",
    "mobilenetv2_regressor",
    "unet_regressor",
]

Task = Literal["depth", "normals"]
TASK_CHANNELS = {"depth": 1, "normals": 3}
DEPTH_EPS = 1e-4  # floor of the predicted depth, so log-depth (ASM's analyzer input) stays finite


class UNetDecoder(nn.Module):
    """U-Net expanding path: bilinear ×2 upsampling, concat with the skip, double conv.

    Returns the full-resolution map with ``widths[0]`` channels.
    """

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        widths = tuple(widths)
        self.blocks = nn.ModuleList(
            double_conv(widths[i + 1] + widths[i], widths[i])
            for i in reversed(range(len(widths) - 1))
        )

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """[maps at strides 1, 2, 4, …] -> (N, widths[0], H, W)."""
        x = stages[-1]
        for block, skip in zip(self.blocks, reversed(stages[:-1])):
            x = block(torch.cat([upsample_to(x, skip.shape[-2:]), skip], dim=1))
        return x


class Regressor(nn.Module):
    """``normalize`` → ``encoder`` → ``decoder`` → ``head`` → positive depth / unit normals.

    Args:
        encoder: module with ``output_stride`` returning a list of stage maps.
        decoder: stage list → ``features``.
        head: ``features`` → (N, 1 or 3, h, w) raw map.
        task: ``"depth"`` or ``"normals"``.
        feature_channels: channels of ``features``.
        output_stride: stride of the prediction w.r.t. the input.
        input_multiple: H and W must be multiples of this.
        name: name used in error messages.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        head: nn.Module,
        *,
        task: Task,
        feature_channels: int,
        output_stride: int,
        input_multiple: int,
        name: str = "Regressor",
    ) -> None:
        super().__init__()
        self.normalize = ImageNormalize()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.task = task
        self.feature_channels = feature_channels
        self.output_stride = output_stride
        self.input_multiple = input_multiple
        self.name = name

    def forward(self, image: torch.Tensor) -> RegressorOutput:
        """(N, 3, H, W) in [0, 1] -> prediction (N, 1|3, H/OS, W/OS), features."""
        image = check_image(self.name, image, self.input_multiple)
        features = self.decoder(self.encoder(self.normalize(image)))
        raw = self.head(features)
        if self.task == "depth":
            prediction = F.softplus(raw) + DEPTH_EPS
        else:
            prediction = F.normalize(raw, dim=1, eps=1e-6)
        return RegressorOutput(prediction, features)


def _check_task(func: str, task: object) -> Task:
    check_choice(func, "task", task, tuple(TASK_CHANNELS))
    return task  # type: ignore[return-value]


def deeplabv2_regressor(
    *,
    task: Task,
    widths: Sequence[int] = (16, 32, 64, 128),
    blocks: Sequence[int] = (1, 1, 1, 1),
    rates: Sequence[int] = (1, 2, 3, 4),
    output_stride: int = 8,
) -> Regressor:
    """DeepLab-v2 regressor: dilated ResNet, ASPP-sum head to 1 or 3 channels; OS 8.

    Example:
        >>> out = deeplabv2_regressor(task="normals")(torch.rand(2, 3, 64, 64))
        >>> tuple(out.prediction.shape), tuple(out.features.shape)
        ((2, 3, 8, 8), (2, 128, 8, 8))
    """
    task = _check_task("deeplabv2_regressor", task)
    encoder = ResNetEncoder(widths=widths, blocks=blocks, output_stride=output_stride)
    head = ASPPSumClassifier(encoder.out_channels[3], TASK_CHANNELS[task], rates=rates)
    return Regressor(
        encoder,
        LastStage(),
        head,
        task=task,
        feature_channels=encoder.out_channels[3],
        output_stride=output_stride,
        input_multiple=output_stride,
        name="deeplabv2_regressor",
    )


def mobilenetv2_regressor(
    *,
    task: Task,
    pretrained: bool = False,
    weights_path: str | None = None,
    width_mult: float = 1.0,
    output_stride: int = 16,
    aspp_channels: int = 128,
    rates: Sequence[int] = (),
) -> Regressor:
    """MobileNetV2 regressor: (ImageNet-pretrained) encoder → ASPP-lite → 1×1 conv.

    Example:
        >>> out = mobilenetv2_regressor(task="depth", width_mult=0.5)(torch.rand(2, 3, 64, 64))
        >>> tuple(out.prediction.shape), bool((out.prediction > 0).all())
        ((2, 1, 4, 4), True)
    """
    task = _check_task("mobilenetv2_regressor", task)
    if pretrained and width_mult != 1.0:
        raise ValueError(
            "mobilenetv2_regressor: width_mult must be 1.0 when pretrained=True; got "
            f"{width_mult!r}."
        )
    encoder = MobileNetV2Encoder(width_mult=width_mult, output_stride=output_stride)
    if pretrained:
        encoder.load_imagenet(mobilenet_v2_imagenet_weights(weights_path))
    decoder = StageDecoder(ASPP(encoder.out_channels[-1], aspp_channels, rates=rates))
    head = nn.Conv2d(aspp_channels, TASK_CHANNELS[task], 1)
    return Regressor(
        encoder,
        decoder,
        head,
        task=task,
        feature_channels=aspp_channels,
        output_stride=output_stride,
        input_multiple=output_stride,
        name="mobilenetv2_regressor",
    )


def unet_regressor(*, task: Task, widths: Sequence[int] = (16, 32, 64, 128)) -> Regressor:
    """U-Net regressor (ASM's predictor is a BN+ReLU U-Net): full-resolution prediction, OS 1.

    H and W must be multiples of ``2 ** (len(widths) - 1)`` (8 by default).

    Example:
        >>> out = unet_regressor(task="depth")(torch.rand(2, 3, 64, 48))
        >>> tuple(out.prediction.shape), tuple(out.features.shape)
        ((2, 1, 64, 48), (2, 16, 64, 48))
    """
    task = _check_task("unet_regressor", task)
    encoder = UNetEncoder(widths=widths)
    decoder = UNetDecoder(encoder.out_channels)
    head = nn.Conv2d(encoder.out_channels[0], TASK_CHANNELS[task], 1)
    return Regressor(
        encoder,
        decoder,
        head,
        task=task,
        feature_channels=encoder.out_channels[0],
        output_stride=1,
        input_multiple=encoder.output_stride,
        name="unet_regressor",
    )


REGRESSORS: dict[str, Callable[..., Regressor]] = {
    "deeplabv2": deeplabv2_regressor,
    "mobilenetv2": mobilenetv2_regressor,
    "unet": unet_regressor,
}


def build_regressor(name: str, *, task: Task, **kwargs: object) -> Regressor:
    """Build ``REGRESSORS[name](task=task, **kwargs)``.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names) or ``task``.

    Example:
        >>> build_regressor("unet", task="normals").output_stride
        1
    """
    if name not in REGRESSORS:
        raise ValueError(
            f"build_regressor: name must be one of {sorted(REGRESSORS)}; got {name!r}."
        )
    return REGRESSORS[name](task=task, **kwargs)
