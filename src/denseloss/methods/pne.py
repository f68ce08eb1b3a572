"""PNE (positive-negative equal contrastive loss) and its basis, supervised pixel contrast.

PNE: Wang et al., "Positive-Negative Equal Contrastive Loss for Semantic Segmentation"
(Neurocomputing 2023; reference ``jingw193/PNE_Loss``). Pixel contrast: Wang et al., "Exploring
Cross-Image Pixel Contrast for Semantic Segmentation" (ICCV 2021; ``tfzhou/ContrastiveSeg``).
Both add a projection head on the segmenter's features and a contrastive term to cross-entropy
(METHODS.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from denseloss.losses import cross_entropy, pixel_contrast_loss, pne_loss
from denseloss.methods._common import (
    add_predictor,
    as_floats,
    aux_cross_entropy,
    predict_dense,
    resize,
    unused_outputs,
)
from denseloss.methods.base import Method, MethodContext, Regime, Task, check_finite

__all__ = ["PNE", "PixelContrast"]


def _embeddings(projection: torch.nn.Module, output: Any) -> torch.Tensor:
    """Projection-head embeddings at the logits' resolution (the losses pair them pixel-wise)."""
    return resize(projection(output.features), tuple(output.logits.shape[-2:]))


class PNE(Method):
    """CE + aux_weight · CE(aux) + pne_weight · PNE(projection(features), logits, labels).

    The PNE term contrasts only misclassified pixels (anchors) against equally many positives and
    negatives; it takes the low-resolution logits and the projection embeddings (labels are
    nearest-resized inside the loss), gives no gradient to the logits and detaches positives and
    negatives (the reference's pattern, implemented in :func:`denseloss.losses.pne_loss`).
    Logged: ``loss/seg``, ``loss/aux`` (when the network has an auxiliary head), ``loss/pne``.
    """

    name: ClassVar[str] = "pne"
    regime: ClassVar[Regime] = "full"
    tasks: ClassVar[tuple[Task, ...]] = ("seg",)

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of PNE (the released Cityscapes config)."""

        pne_weight: float = 1.3  # released config loss_weight (class default 0.1 is unused)
        temperature: float = 1.0  # released config temp (class default 10 is unusable)
        patch_size: int = 100  # released config patch_size: anchors/positives/negatives per pair
        # Released config gate [0, 199]: pairs with more misclassified anchors are ignored.
        gate: tuple[int, int] = (0, 199)
        aux_weight: float = 0.4  # MMSeg deeplabv3 base config: FCN auxiliary head loss weight
        # Reference head: 512 → 512 → 256 (the hidden width follows the network's features).
        embedding_dim: int = 256

    def __init__(self, config: PNE.Config, ctx: MethodContext) -> None:
        from denseloss.models import ProjectionHead, require_capability

        super().__init__(config, ctx)
        self.net = add_predictor(self)
        require_capability(self.net, "features", method=self.name)
        head = ProjectionHead(self.net.feature_channels, out_channels=config.embedding_dim)
        self.projection = self.add_module("projection", head, self.sgd())

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One SGD step of segmenter and projection head on CE + aux CE + PNE."""
        cfg, labels = self.config, batch["label"]
        size = tuple(labels.shape[-2:])
        out = self.net(batch["image"])
        terms = {"loss/seg": cross_entropy(resize(out.logits, size), labels)}
        aux = aux_cross_entropy(out, labels, cfg.aux_weight, self.ctx.ignore_index)
        if aux is not None:
            terms["loss/aux"] = aux
        terms["loss/pne"] = pne_loss(
            _embeddings(self.projection, out),
            out.logits,
            labels,
            patch_size=cfg.patch_size,
            temperature=cfg.temperature,
            gate=tuple(cfg.gate),
            ignore_index=self.ctx.ignore_index,
        )
        check_finite(terms)
        total = terms["loss/seg"] + cfg.pne_weight * terms["loss/pne"]
        if "loss/aux" in terms:
            total = total + cfg.aux_weight * terms["loss/aux"]
        self.fabric.backward(total + unused_outputs(out))
        self.step_optimizer("segmenter")
        self.step_optimizer("projection")
        return as_floats(terms)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) logits."""
        return predict_dense(self.net, image, "seg")


class PixelContrast(Method):
    """CE + aux_weight · CE(aux) + weight(t) · pixel_contrast(projection(features), labels, argmax).

    weight(t) = 0 before ``warmup_steps`` and ``contrast_weight`` after (the reference multiplies
    the contrast term by 0 during warm-up; here it is not computed then, which is the same
    update and lets the projection head sit out of the graph). Logged: ``loss/seg``,
    ``loss/contrast`` (0.0 during warm-up).
    """

    name: ClassVar[str] = "pixel_contrast"
    regime: ClassVar[Regime] = "full"
    tasks: ClassVar[tuple[Task, ...]] = ("seg",)

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of pixel contrast (ContrastiveSeg, Cityscapes HRNet config)."""

        contrast_weight: float = 0.1  # reference loss_weight
        # Reference warmup_iters 5000 of 40k (1/8 of the run); scaled for the built-in data:
        # 1/8 of the default 1000-step run.
        warmup_steps: int = 125
        temperature: float = 0.1  # reference τ (best of the README's sweep)
        base_temperature: float = 0.07  # reference τ_base
        max_samples: int = 1024  # reference max_samples
        # Reference 100 at stride-4 maps of 1024×512 crops (≈32k pixels per image); scaled for the
        # built-in data: an 8×8 logit map has 64 pixels, so a class qualifies with > 6 of them.
        max_views: int = 6
        embedding_dim: int = 256  # reference 'convmlp' projection width
        # The aux head weight PNE and the CE baseline use (MMSeg's 0.4): one value per study.
        aux_weight: float = 0.4

    def __init__(self, config: PixelContrast.Config, ctx: MethodContext) -> None:
        from denseloss.models import ProjectionHead, require_capability

        super().__init__(config, ctx)
        self.net = add_predictor(self)
        require_capability(self.net, "features", method=self.name)
        head = ProjectionHead(self.net.feature_channels, out_channels=config.embedding_dim)
        self.projection = self.add_module("projection", head, self.sgd())

    def weight(self, step: int) -> float:
        """The contrast term's weight at ``step``: 0 during warm-up, ``contrast_weight`` after."""
        return self.config.contrast_weight if step >= self.config.warmup_steps else 0.0

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One SGD step on CE (+ the contrast term once warm-up is over)."""
        labels = batch["label"]
        out = self.net(batch["image"])
        seg = cross_entropy(resize(out.logits, tuple(labels.shape[-2:])), labels)
        weight = self.weight(step)
        if weight > 0:
            cfg = self.config
            emb = F.normalize(_embeddings(self.projection, out), dim=1)
            contrast = pixel_contrast_loss(
                emb,
                labels,
                out.logits.detach().argmax(dim=1),
                temperature=cfg.temperature,
                base_temperature=cfg.base_temperature,
                max_samples=cfg.max_samples,
                max_views=cfg.max_views,
                ignore_index=self.ctx.ignore_index,
            )
        else:
            contrast = seg.new_zeros(())
        terms = {"loss/seg": seg, "loss/contrast": contrast}
        aux = aux_cross_entropy(out, labels, self.config.aux_weight, self.ctx.ignore_index)
        if aux is not None:
            terms["loss/aux"] = aux
        check_finite(terms)
        total = seg + weight * contrast + (self.config.aux_weight * aux if aux is not None else 0)
        self.fabric.backward(total + unused_outputs(out))
        self.step_optimizer("segmenter")
        self.step_optimizer("projection")  # no gradient during warm-up: SGD leaves it unchanged
        return as_floats(terms)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) logits."""
        return predict_dense(self.net, image, "seg")
