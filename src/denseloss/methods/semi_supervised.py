"""Semi-supervised baseline: cross-entropy on the labelled subset only.

The "baseline" rows of AdvSemiSeg (Hung et al., BMVC 2018): DeepLab-v2 trained on the labelled
fraction alone. Batches are ``{"labeled": ..., "unlabeled": ..., "gt": ...}``; only ``labeled``
is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from denseloss.losses import cross_entropy
from denseloss.methods._common import (
    add_predictor,
    as_floats,
    predict_dense,
    resize,
    unused_outputs,
)
from denseloss.methods.base import Method, MethodContext, Regime, Task, check_finite

__all__ = ["LabeledOnly"]


class LabeledOnly(Method):
    """CE on the labelled stream (void and ``valid``-False pixels excluded); the unlabelled and
    ``gt`` streams are ignored.

    Logits are upsampled with ``align_corners=True`` (AdvSemiSeg's ``nn.Upsample``). Logged:
    ``loss/seg``.
    """

    name: ClassVar[str] = "ce_labeled_only"
    regime: ClassVar[Regime] = "semi"
    tasks: ClassVar[tuple[Task, ...]] = ("seg",)

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of the labelled-only baseline."""

        align_corners: bool = True  # AdvSemiSeg reference interp (PyTorch 0.3 bilinear upsample)

    def __init__(self, config: LabeledOnly.Config, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.net = add_predictor(self)

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One SGD step on the labelled CE."""
        labeled = batch["labeled"]
        labels = labeled["label"]
        out = self.net(labeled["image"])
        logits = resize(
            out.logits, tuple(labels.shape[-2:]), align_corners=self.config.align_corners
        )
        # Padding carries the void label already; ``valid`` keeps it out for any pad label,
        # exactly as AdvSemiSeg's labelled CE does.
        loss = cross_entropy(
            logits, labels, ignore_index=self.ctx.ignore_index, valid_mask=labeled.get("valid")
        )
        terms = {"loss/seg": loss}
        check_finite(terms)
        self.fabric.backward(terms["loss/seg"] + unused_outputs(out))
        self.step_optimizer("segmenter")
        return as_floats(terms)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) logits."""
        return predict_dense(self.net, image, "seg", align_corners=self.config.align_corners)
