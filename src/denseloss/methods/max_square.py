"""MaxSquare: "Domain Adaptation for Semantic Segmentation with Maximum Squares Loss"
(Chen, Xue, Cai; ICCV 2019; reference ``ZJULearning/MaxSquareLoss``, METHODS.md §4).

Three recipes: ``maxsquare`` (source CE + λ_T · MaxSquare on the target), ``maxsquare_iw``
(image-wise class-balanced weighting, ratio 0.2) and ``maxsquare_iw_multi`` (+ multi-level
self-produced guidance on the auxiliary layer-3 classifier). The authors start adaptation from a
source-only checkpoint (their issue #1: 42.1 → 44.3 mIoU); set ``init_from`` to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from denseloss.losses import cross_entropy, max_square_loss, self_produced_guidance
from denseloss.methods._common import as_floats, unused_outputs
from denseloss.methods.base import MethodContext, check_finite
from denseloss.methods.domain_adaptation import SourceOnly

__all__ = ["MaxSquare", "MaxSquareIW", "MaxSquareIWMulti"]


class MaxSquare(SourceOnly):
    r"""Source CE + λ_T · s · MaxSquare(target), optionally image-weighted and multi-level.

    .. math::

        L = \underbrace{CE(z_s, y_s) + \lambda_{aux} CE(z^{aux}_s, y_s)}_{L_{src}}
            + \lambda_T s\, L_{MS}(z_t) + \lambda_{aux}\lambda_T\, CE(z^{aux}_t, \hat y_t)

    L_src is :meth:`SourceOnly.source_loss`, the same for every UDA recipe (its aux term
    whenever the network has an aux head, as the reference's ``--multi True`` source
    pretraining); the target aux term only with ``multi_level``, ŷ_t =
    ``self_produced_guidance(z_t, z^aux_t, threshold)``, no gradient. λ_aux = ``aux_weight``
    is the reference's single ``--lambda_seg`` (0.1), which weighs both aux terms.
    L_MS is :func:`denseloss.losses.max_square_loss` (the paper's normalisation).
    ``reference_scale`` sets s to the reference code's normalisation relative to the paper's, so
    λ_T keeps the value its authors tuned: 1/C for plain MaxSquare (the code averages over
    B·C·H·W), 2/C for the image-weighted form (the code divides by B·C and has no ½).
    All logits are upsampled to the image size (``align_corners=True``, as the reference) before
    any loss. Logged: ``loss/seg``, ``loss/aux`` (with an aux head), ``loss/target`` (unscaled
    L_MS), and with ``multi_level`` ``loss/aux_target``.
    """

    name: ClassVar[str] = "maxsquare"

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of MaxSquare (README GTA5 → Cityscapes runs)."""

        lambda_target: float = 0.1  # reference --lambda_target (0.09 for IW + multi)
        image_weighting: bool = False  # reference --IW_ratio > 0 switches IW-MaxSquare on
        ratio: float = 0.2  # reference --IW_ratio
        multi_level: bool = False  # reference --multi
        # λ_aux, reference --lambda_seg: source aux CE (shared with every UDA recipe) and, with
        # multi_level, λ_aux·λ_T on the target aux guidance term.
        aux_weight: float = 0.1
        threshold: float = 0.95  # reference --threshold of the self-produced guidance
        # Scale L_MS to the reference code's normalisation (÷C, or ×2/C with IW) so λ_T transfers.
        reference_scale: bool = True
        align_corners: bool = True  # reference nn.Upsample(align_corners=True)
        # Source-only checkpoint to adapt from (the authors' recipe; their issue #1).
        init_from: str | None = None

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        from denseloss.models import require_capability

        super().__init__(config, ctx)
        if config.multi_level:
            require_capability(self.net, "aux_logits", method=self.name)
        self.last_pseudo_labels: torch.Tensor | None = None  # ŷ_t of the last step (inspection)

    def _target_scale(self) -> float:
        if not self.config.reference_scale:
            return 1.0
        c = self.ctx.num_classes
        return 2.0 / c if self.config.image_weighting else 1.0 / c

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One SGD step on the source and target terms (a single backward of their sum)."""
        cfg, source, target = self.config, batch["source"], batch["target"]
        out_s = self.net(source["image"])
        terms, source_total = self.source_loss(out_s, source["label"])
        out_t = self.net(target["image"])
        size_t = target["image"].shape[-2:]
        logits_t = self._up(out_t.logits, size_t)
        terms["loss/target"] = max_square_loss(
            logits_t,
            valid_mask=target.get("valid"),
            image_weighting=cfg.image_weighting,
            ratio=cfg.ratio,
        )
        if cfg.multi_level:
            if out_s.aux_logits is None or out_t.aux_logits is None:
                raise ValueError(
                    f"{type(self).__name__}: the network must have an auxiliary classifier "
                    "(aux_logits) for multi_level=True; got None. Hint: use model 'deeplabv2'."
                )
            aux_t = self._up(out_t.aux_logits, size_t)
            pseudo = self_produced_guidance(
                logits_t.detach(),
                aux_t.detach(),
                threshold=cfg.threshold,
                ignore_index=self.ctx.ignore_index,
            )
            self.last_pseudo_labels = pseudo
            terms["loss/aux_target"] = cross_entropy(
                aux_t, pseudo, ignore_index=self.ctx.ignore_index
            )
        check_finite(terms)
        lam_t = cfg.lambda_target
        total = source_total + lam_t * self._target_scale() * terms["loss/target"]
        if cfg.multi_level:
            total = total + cfg.aux_weight * lam_t * terms["loss/aux_target"]
        else:
            total = total + unused_outputs(out_t)
        self.fabric.backward(total)
        self.step_optimizer("segmenter")
        return as_floats(terms)


class MaxSquareIW(MaxSquare):
    """MaxSquare with image-wise class-balanced weighting (README "+IW")."""

    name: ClassVar[str] = "maxsquare_iw"

    @dataclass(frozen=True)
    class Config(MaxSquare.Config):
        """MaxSquare.Config with ``image_weighting=True``."""

        image_weighting: bool = True  # reference --IW_ratio 0.2


class MaxSquareIWMulti(MaxSquare):
    """IW-MaxSquare + multi-level self-produced guidance (README "+IW+Multi", 46.4 mIoU)."""

    name: ClassVar[str] = "maxsquare_iw_multi"

    @dataclass(frozen=True)
    class Config(MaxSquare.Config):
        """MaxSquare.Config with image weighting, multi-level guidance and λ_T = 0.09."""

        lambda_target: float = 0.09  # reference README command for +IW+Multi
        image_weighting: bool = True  # reference --IW_ratio 0.2
        multi_level: bool = True  # reference --multi True
