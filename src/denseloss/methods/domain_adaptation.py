"""UDA baselines: source-only training and entropy minimisation on the target (MinEnt).

MinEnt: Vu et al., "ADVENT" (CVPR 2019), as run by the MaxSquare authors (Chen, Xue, Cai; ICCV
2019, ``ZJULearning/MaxSquareLoss``): the same DeepLab-v2 "multi" network and schedule, entropy of
the target prediction with weight λ_T. Batches are ``{"source": labelled, "target": unlabelled}``;
the target stream carries no labels.

Every UDA recipe here (source-only, MinEnt, the MaxSquare family) trains on the source with the
*same* term, :meth:`SourceOnly.source_loss`: CE of the main classifier + ``aux_weight`` · CE of
the auxiliary (layer-3) classifier when the network has one. MaxSquare's reference pretrains the
source-only model with ``--multi True`` (README, ``tools/train_source.py``: ``cur_loss +=
lambda_seg * CE(pred_2, y)``, ``--lambda_seg`` default 0.1) and IW+Multi's target guidance
then reads that aux head; one source term for all keeps the rows comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from denseloss.losses import cross_entropy, entropy_loss
from denseloss.methods._common import (
    add_predictor,
    as_floats,
    load_segmenter_weights,
    predict_dense,
    resize,
    unused_outputs,
)
from denseloss.methods.base import Method, MethodContext, Regime, Task, check_finite

__all__ = ["MinEnt", "SourceOnly"]


class SourceOnly(Method):
    r"""Cross-entropy on the labelled source stream only (the UDA lower bound).

    .. math:: L_{src} = CE(z_s, y_s) + \lambda_{aux}\, CE(z^{aux}_s, y_s)

    (the aux term only when the network returns ``aux_logits``). Logits are bilinearly upsampled
    (``align_corners=True``, as the MaxSquare reference) to the label size. Logged:
    ``loss/seg`` and, with an aux head, ``loss/aux`` (both unweighted).
    """

    name: ClassVar[str] = "source_only"
    regime: ClassVar[Regime] = "uda"
    tasks: ClassVar[tuple[Task, ...]] = ("seg",)

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of source-only training."""

        # λ_aux: MaxSquare reference --lambda_seg (default 0.1), the aux-classifier CE weight of
        # its multi-level source pretraining (tools/train_source.py with --multi True).
        aux_weight: float = 0.1
        # MaxSquare reference: nn.Upsample(..., align_corners=True) before every loss and at test.
        align_corners: bool = True
        # A trainer checkpoint (last.ckpt) whose method["module/segmenter"] initialises the
        # network; None = the factory's initialisation.
        init_from: str | None = None

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.net = add_predictor(self)
        if config.init_from is not None:
            load_segmenter_weights(self.net, config.init_from)

    def _up(self, logits: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        return resize(logits, tuple(size), align_corners=self.config.align_corners)

    def source_loss(
        self, out: Any, labels: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The source term every UDA recipe shares: (unweighted terms, L_src).

        ``loss/seg`` = CE of the main logits; with ``out.aux_logits``, ``loss/aux`` = CE of the
        aux logits, added with weight ``aux_weight`` (weight 0 still keeps the aux head in the
        graph, as :func:`unused_outputs` does).
        """
        size, ign = labels.shape[-2:], self.ctx.ignore_index
        terms = {"loss/seg": cross_entropy(self._up(out.logits, size), labels, ignore_index=ign)}
        total = terms["loss/seg"]
        aux = getattr(out, "aux_logits", None)
        if aux is not None:
            terms["loss/aux"] = cross_entropy(self._up(aux, size), labels, ignore_index=ign)
            total = total + self.config.aux_weight * terms["loss/aux"]
        return terms, total

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One SGD step on the source term."""
        source = batch["source"]
        terms, total = self.source_loss(self.net(source["image"]), source["label"])
        check_finite(terms)
        self.fabric.backward(total)
        self.step_optimizer("segmenter")
        return as_floats(terms)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) logits."""
        return predict_dense(self.net, image, "seg", align_corners=self.config.align_corners)


class MinEnt(SourceOnly):
    r"""Source term + λ_T · entropy of the target prediction.

    .. math:: L = L_{src} + \lambda_T \cdot s \cdot \frac{1}{|\Omega|}\sum_{n}
              -\sum_c p_{n,c}\log p_{n,c}

    with s = 1/C when ``reference_scale`` (the MaxSquare reference's ``softCrossEntropy`` is the
    mean over all B·C·H·W elements, i.e. entropy / C, and λ_T = 0.1 was tuned with it), else 1.
    L_src is :meth:`SourceOnly.source_loss`. Logged: ``loss/seg`` (and ``loss/aux``),
    ``loss/ent`` (the unscaled mean entropy).
    """

    name: ClassVar[str] = "minent"

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of MinEnt (MaxSquare authors' baseline run)."""

        lambda_target: float = 0.1  # MaxSquare reference --lambda_target for the MinEnt baseline
        aux_weight: float = 0.1  # λ_aux of the shared source term (see SourceOnly.Config)
        # Multiply the entropy by 1/C, the reference's element-wise mean, so λ_T keeps its value.
        reference_scale: bool = True
        align_corners: bool = True  # MaxSquare reference upsampling (see SourceOnly)
        # Source-only checkpoint to start from: the MaxSquare authors' runs start there (issue #1).
        init_from: str | None = None

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One SGD step on the source term + λ_T · target entropy (one backward)."""
        cfg, source, target = self.config, batch["source"], batch["target"]
        terms, source_total = self.source_loss(self.net(source["image"]), source["label"])
        out_t = self.net(target["image"])
        logits_t = self._up(out_t.logits, target["image"].shape[-2:])
        terms["loss/ent"] = entropy_loss(logits_t, valid_mask=target.get("valid"))
        check_finite(terms)
        scale = 1.0 / self.ctx.num_classes if cfg.reference_scale else 1.0
        total = source_total + cfg.lambda_target * scale * terms["loss/ent"]
        self.fabric.backward(total + unused_outputs(out_t))
        self.step_optimizer("segmenter")
        return as_floats(terms)
