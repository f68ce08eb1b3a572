"""denseloss.models: segmenters, regressors, discriminators, ASM's analyzer and method heads.

One plain dict of factories per kind (no registration side effects):
``SEGMENTERS`` (``build_segmenter``), ``REGRESSORS`` (``build_regressor``), ``DISCRIMINATORS``
(``build_discriminator``), ``ANALYZERS`` (``build_analyzer``). An unknown name raises a
``ValueError`` listing the valid names.
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
from denseloss.models.segmenter import SEGMENTERS, Segmenter, build_segmenter
from denseloss.models.structure_analyzer import ANALYZERS, StructureAnalyzer, build_analyzer

__all__ = [
    "ANALYZERS",
    "ASPP",
    "DISCRIMINATORS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "REGRESSORS",
    "SEGMENTERS",
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
    "ResNetEncoder",
    "Segmenter",
    "SegmenterOutput",
    "StructureAnalyzer",
    "UNetEncoder",
    "ViTEncoder",
    "build_analyzer",
    "build_discriminator",
    "build_regressor",
    "build_segmenter",
    "mobilenet_v2_imagenet_weights",
    "upsample_to",
]
