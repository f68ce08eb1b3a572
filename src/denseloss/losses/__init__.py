"""denseloss.losses: every loss as a function plus an ``nn.Module`` of the same name."""

from denseloss.losses.adversarial import (
    AdversarialLoss,
    SemiSupervisedLoss,
    adversarial_loss,
    semi_supervised_loss,
)
from denseloss.losses.cross_entropy import CrossEntropyLoss, cross_entropy, partial_cross_entropy
from denseloss.losses.entropy import EntropyLoss, entropy_loss
from denseloss.losses.max_square import (
    MaxSquareLoss,
    SelfProducedGuidance,
    max_square_loss,
    self_produced_guidance,
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
    "DepthLoss",
    "EntropyLoss",
    "MaxSquareLoss",
    "NormalLoss",
    "SelfProducedGuidance",
    "SemiSupervisedLoss",
    "StructureHingeLoss",
    "StructureMatchingLoss",
    "adversarial_loss",
    "cross_entropy",
    "depth_loss",
    "entropy_loss",
    "max_square_loss",
    "normal_loss",
    "partial_cross_entropy",
    "self_produced_guidance",
    "semi_supervised_loss",
    "structure_hinge_loss",
    "structure_matching_loss",
]
