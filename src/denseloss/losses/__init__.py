"""denseloss.losses: every loss as a function plus an ``nn.Module`` of the same name.

``check_finite_inputs()`` / ``set_check_finite()`` make every loss refuse NaN/inf inputs
(off by default; see ``denseloss._validation``).
"""

from denseloss._validation import check_finite_inputs, set_check_finite
from denseloss.losses.adversarial import (
    AdversarialLoss,
    SemiSupervisedLoss,
    adversarial_loss,
    semi_supervised_loss,
)
from denseloss.losses.contrastive import PixelContrastLoss, PneLoss, pixel_contrast_loss, pne_loss
from denseloss.losses.cross_entropy import CrossEntropyLoss, cross_entropy, partial_cross_entropy
from denseloss.losses.entropy import EntropyLoss, entropy_loss
from denseloss.losses.max_square import (
    MaxSquareLoss,
    SelfProducedGuidance,
    max_square_loss,
    self_produced_guidance,
)
from denseloss.losses.pairwise import (
    DenseCrfLoss,
    DfrLoss,
    FeatureConsistencyLoss,
    GatedCrfLoss,
    dense_crf_loss,
    dfr_loss,
    feature_consistency_loss,
    gated_crf_loss,
)
from denseloss.losses.regression import DepthLoss, NormalLoss, depth_loss, normal_loss
from denseloss.losses.structure import (
    StructureHingeLoss,
    StructureMatchingLoss,
    structure_hinge_loss,
    structure_matching_loss,
)

__all__ = [
    "AdversarialLoss",
    "CrossEntropyLoss",
    "DenseCrfLoss",
    "DepthLoss",
    "DfrLoss",
    "EntropyLoss",
    "FeatureConsistencyLoss",
    "GatedCrfLoss",
    "MaxSquareLoss",
    "NormalLoss",
    "PixelContrastLoss",
    "PneLoss",
    "SelfProducedGuidance",
    "SemiSupervisedLoss",
    "StructureHingeLoss",
    "StructureMatchingLoss",
    "adversarial_loss",
    "check_finite_inputs",
    "cross_entropy",
    "dense_crf_loss",
    "depth_loss",
    "dfr_loss",
    "entropy_loss",
    "feature_consistency_loss",
    "gated_crf_loss",
    "max_square_loss",
    "normal_loss",
    "partial_cross_entropy",
    "pixel_contrast_loss",
    "pne_loss",
    "self_produced_guidance",
    "semi_supervised_loss",
    "set_check_finite",
    "structure_hinge_loss",
    "structure_matching_loss",
]
