"""denseloss.methods: every recipe (baselines included) as a ``Method``, keyed by its CLI name.

``METHODS`` is an explicit dict (no registration side effects). Each class has ``name``,
``regime`` ("full", "semi", "scribble", "uda"), ``tasks`` and a frozen dataclass ``Config``.
"""

from __future__ import annotations

from denseloss.methods.adv_semi_seg import AdversarialBaseline, AdvSemiSeg
from denseloss.methods.asm import AdversarialStructureMatching
from denseloss.methods.base import (
    Method,
    MethodContext,
    ModelConfig,
    NonFiniteLossError,
    OptimConfig,
    check_finite,
)
from denseloss.methods.dfr import DFR
from denseloss.methods.domain_adaptation import MinEnt, SourceOnly
from denseloss.methods.max_square import MaxSquare, MaxSquareIW, MaxSquareIWMulti
from denseloss.methods.pne import PNE, PixelContrast
from denseloss.methods.scribble import PartialCE, PartialCEDenseCRF, PartialCEGatedCRF
from denseloss.methods.semi_supervised import LabeledOnly
from denseloss.methods.supervised import ConditionalGAN, CrossEntropy

METHODS: dict[str, type[Method]] = {
    # full labels
    "ce": CrossEntropy,
    "cgan": ConditionalGAN,
    "asm": AdversarialStructureMatching,
    "pne": PNE,
    "pixel_contrast": PixelContrast,
    # semi-supervised
    "ce_labeled_only": LabeledOnly,
    "adv": AdversarialBaseline,
    "advsemi": AdvSemiSeg,
    # scribbles
    "pce": PartialCE,
    "pce_densecrf": PartialCEDenseCRF,
    "pce_gatedcrf": PartialCEGatedCRF,
    "dfr": DFR,
    # unsupervised domain adaptation
    "source_only": SourceOnly,
    "minent": MinEnt,
    "maxsquare": MaxSquare,
    "maxsquare_iw": MaxSquareIW,
    "maxsquare_iw_multi": MaxSquareIWMulti,
}

__all__ = [
    "DFR",
    "METHODS",
    "PNE",
    "AdvSemiSeg",
    "AdversarialBaseline",
    "AdversarialStructureMatching",
    "ConditionalGAN",
    "CrossEntropy",
    "LabeledOnly",
    "MaxSquare",
    "MaxSquareIW",
    "MaxSquareIWMulti",
    "Method",
    "MethodContext",
    "MinEnt",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "PartialCE",
    "PartialCEDenseCRF",
    "PartialCEGatedCRF",
    "PixelContrast",
    "SourceOnly",
    "check_finite",
]
