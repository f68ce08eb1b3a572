"""denseloss.models: segmenters, regressors, discriminators, ASM's analyzer and method heads.

One plain dict of factories per kind (no registration side effects):
``SEGMENTERS`` (``build_segmenter``), ``REGRESSORS`` (``build_regressor``), ``DISCRIMINATORS``
(``build_discriminator``), ``ANALYZERS`` (``build_analyzer``). An unknown name raises a
``ValueError`` listing the valid names. The papers' networks (``ResNet`` with torchvision's names,
``VisionTransformer`` with timm's, the DeepLab-v2 / v3+ and ViT segmenters) load pretrained or
released weights with :func:`load_weights` (``--model.weights``); see ``docs/models.md``.
"""

from __future__ import annotations

from denseloss.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageNormalize,
    MobileNetV2,
    MobileNetV2Encoder,
    ResNetEncoder,
    UNetEncoder,
    ViTEncoder,
)
from denseloss.models.composition import CAPABILITIES, require_capability
from denseloss.models.discriminator import (
    DISCRIMINATORS,
    FCDiscriminator,
    PatchDiscriminator,
    build_discriminator,
)
from denseloss.models.heads import (
    ASPP,
    ASPPSumClassifier,
    FCNHead,
    FeatureConsistencyHead,
    ProjectionHead,
    upsample_to,
)
from denseloss.models.outputs import AnalyzerOutput, RegressorOutput, SegmenterOutput
from denseloss.models.pretrained import mobilenet_v2_imagenet_weights
from denseloss.models.regressor import REGRESSORS, Regressor, build_regressor
from denseloss.models.resnet import ResNet, resnet50, resnet101
from denseloss.models.segmenter import (
    SEGMENTER_ALIASES,
    SEGMENTER_CAPABILITIES,
    SEGMENTERS,
    Segmenter,
    build_segmenter,
    segmenters_with,
)
from denseloss.models.structure_analyzer import ANALYZERS, StructureAnalyzer, build_analyzer
from denseloss.models.vit import VisionTransformer
from denseloss.models.weights import WeightsReport, load_weights, read_state_dict

__all__ = [
    "ANALYZERS",
    "ASPP",
    "CAPABILITIES",
    "DISCRIMINATORS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "REGRESSORS",
    "SEGMENTERS",
    "SEGMENTER_ALIASES",
    "SEGMENTER_CAPABILITIES",
    "ASPPSumClassifier",
    "AnalyzerOutput",
    "FCDiscriminator",
    "FCNHead",
    "FeatureConsistencyHead",
    "ImageNormalize",
    "MobileNetV2",
    "MobileNetV2Encoder",
    "PatchDiscriminator",
    "ProjectionHead",
    "Regressor",
    "RegressorOutput",
    "ResNet",
    "ResNetEncoder",
    "Segmenter",
    "SegmenterOutput",
    "StructureAnalyzer",
    "UNetEncoder",
    "ViTEncoder",
    "VisionTransformer",
    "WeightsReport",
    "build_analyzer",
    "build_discriminator",
    "build_regressor",
    "build_segmenter",
    "load_weights",
    "mobilenet_v2_imagenet_weights",
    "read_state_dict",
    "require_capability",
    "resnet50",
    "resnet101",
    "segmenters_with",
    "upsample_to",
]
