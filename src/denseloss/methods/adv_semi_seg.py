"""AdvSemiSeg: "Adversarial Learning for Semi-Supervised Semantic Segmentation"
(Hung, Tsai, Liou, Lin, Yang; BMVC 2018; reference ``hfslyc/AdvSemiSeg``, METHODS.md §5).

Two recipes: ``adv`` (CE + λ_adv · L_adv on labelled images only; the paper's "+L_adv" rows) and
``advsemi`` (+ λ_semi_adv · L_adv on unlabelled images + λ_semi · L_semi after ``semi_start``).
Batches are ``{"labeled": ..., "unlabeled": ..., "gt": ...}``; ``gt`` is the separate labelled
stream whose one-hot labels are the discriminator's "real" inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from denseloss.losses import adversarial_loss, cross_entropy, semi_supervised_loss
from denseloss.methods._common import (
    add_predictor,
    as_floats,
    frozen,
    masked_one_hot,
    predict_dense,
    resize,
    unused_outputs,
)
from denseloss.methods.base import Method, MethodContext, Regime, Task, check_finite

__all__ = ["AdvSemiSeg", "AdversarialBaseline"]

# (loss terms, weighted G total, detached fake probabilities, their (N, H, W) masks, trusted).
_GeneratorTerms = tuple[
    dict[str, torch.Tensor], torch.Tensor, list[torch.Tensor], list[torch.Tensor], float
]


class AdvSemiSeg(Method):
    r"""Segmentation network G + fully convolutional discriminator D on probability maps.

    Per step (the reference's order):

    1. **G step**, D frozen (``requires_grad=False``, called outside DDP):
       ``CE(z_l, y_l) + λ_adv · BCE(D(p_l), 1)[y_l ≠ ign]`` and, with unlabelled data,
       ``λ_semi_adv · BCE(D(p_u), 1)[v_u] + λ_semi · L_semi(z_u, D(p_u))[v_u]`` (L_semi from
       ``semi_start``: CE against argmax where σ(D) > T_semi; v_u = the unlabelled ``valid``).
       p = softmax of the logits upsampled to the image.
    2. **D step** on *detached* predictions: ``BCE(D([p_l; p_u]), 0)/2`` (labelled ignore and
       unlabelled padding pixels masked) + ``BCE(D(onehot(y_gt)), 1)/2`` (ignore pixels masked);
       Adam, poly-decayed.

    **Masks.** D always sees the whole probability map (its convolutions run over the padding,
    as in the reference); only the per-pixel losses are masked. Labelled batch and ``gt``
    stream: pixels with label = ign *or* ``valid`` False (the reference pads labels with 255, so
    its ``labels == 255`` mask already covers the padding; ``valid`` makes that independent of
    the pad label). Unlabelled batch: its ``valid`` (False on the zero padding of a crop) masks
    L_semi_adv, L_semi (padding is never trusted) and D's fake loss. The reference has no mask
    there (``ignore_mask_remain`` is all False: its unlabelled loader is the labelled loader
    with the labels discarded), so D learns that zero-padded regions are "fake" and L_semi_adv
    pushes the segmenter on pixels that are not in the image; we drop those pixels instead.
    ``semi/trusted`` is the trusted fraction of the unlabelled batch's valid pixels.

    Reference quirk: when no unlabelled pixel passes T_semi after ``semi_start``, the reference
    skips the unlabelled backward altogether (L_semi_adv too). That couples an unrelated term to
    the trust mask; by default we keep L_semi_adv (L_semi is 0 then). ``skip_untrusted_unlabeled``
    reproduces the reference.

    Logged: ``loss/seg``, ``loss/adv``, ``loss/semi_adv``, ``loss/semi``, ``loss/d_fake``,
    ``loss/d_real`` (unweighted), ``semi/trusted`` (fraction of trusted unlabelled pixels).
    """

    name: ClassVar[str] = "advsemi"
    regime: ClassVar[Regime] = "semi"
    tasks: ClassVar[tuple[Task, ...]] = ("seg",)
    uses_unlabeled: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of AdvSemiSeg (reference defaults, README/paper values)."""

        lambda_adv: float = 0.01  # README/paper λ_adv for semi runs (code default 0.1)
        lambda_semi_adv: float = 0.001  # reference --lambda-semi-adv
        lambda_semi: float = 0.1  # reference --lambda-semi
        threshold: float = 0.2  # reference --mask-T (T_semi); paper: 0.1–0.3 works
        # Reference 5000 of 20k iterations (1/4 of the run); scaled for the built-in data:
        # 1/4 of the default 1000-step run.
        semi_start: int = 250
        semi_start_adv: int = 0  # reference --semi-start-adv
        d_lr: float = 1e-4  # reference --learning-rate-D (Adam, poly-decayed)
        d_betas: tuple[float, float] = (0.9, 0.99)  # reference Adam betas of D
        ndf: int = 64  # reference FCDiscriminator width
        # reference: five stride-2 convs (1/32 map); (2, 2, 2, 1, 1) keeps 64² crops spatial
        d_strides: tuple[int, ...] = (2, 2, 2, 2, 2)
        align_corners: bool = True  # reference nn.Upsample (PyTorch 0.3 bilinear = corners)
        # Reproduce the reference's skip of the whole unlabelled backward when nothing is trusted.
        skip_untrusted_unlabeled: bool = False

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        from denseloss.models import DISCRIMINATORS

        super().__init__(config, ctx)
        self.net = add_predictor(self)
        d = DISCRIMINATORS["fc"](
            ctx.num_classes, ndf=config.ndf, upsample=True, strides=tuple(config.d_strides)
        )
        betas = tuple(config.d_betas)
        self.disc = self.add_module(
            "discriminator",
            d,
            lambda m: torch.optim.Adam(m.parameters(), lr=config.d_lr, betas=betas),
        )

    def _logits(self, out: Any, size: tuple[int, ...]) -> torch.Tensor:
        return resize(out.logits, tuple(size), align_corners=self.config.align_corners)

    def _generator_terms(self, batch: dict[str, Any], step: int) -> _GeneratorTerms:
        """G losses (D frozen): terms, weighted total, fake probabilities, masks, trusted."""
        cfg = self.config
        labeled = batch["labeled"]
        labels = labeled["label"]
        out_l = self.net(labeled["image"])
        logits_l = self._logits(out_l, labels.shape[-2:])
        p_l = logits_l.softmax(dim=1)
        valid_l = _valid(labeled, labels != self.ctx.ignore_index)
        terms: dict[str, torch.Tensor] = {
            "loss/seg": cross_entropy(
                logits_l, labels, ignore_index=self.ctx.ignore_index, valid_mask=valid_l
            )
        }
        with frozen(self.disc) as d, self.fabric.autocast():
            terms["loss/adv"] = adversarial_loss(d(p_l), real=True, valid_mask=valid_l)
            total = terms["loss/seg"] + cfg.lambda_adv * terms["loss/adv"] + unused_outputs(out_l)
            fakes, valids = [p_l.detach()], [valid_l]
            trusted = 0.0
            use_u = self.uses_unlabeled and "unlabeled" in batch and step >= cfg.semi_start_adv
            if use_u:
                unlabeled = batch["unlabeled"]
                image_u = unlabeled["image"]
                valid_u = _valid(unlabeled, torch.ones_like(image_u[:, 0], dtype=torch.bool))
                out_u = self.net(image_u)
                logits_u = self._logits(out_u, image_u.shape[-2:])
                p_u = logits_u.softmax(dim=1)
                d_u = d(p_u)
                fakes.append(p_u.detach())
                valids.append(valid_u)
                terms["loss/semi_adv"] = adversarial_loss(d_u, real=True, valid_mask=valid_u)
                unl = cfg.lambda_semi_adv * terms["loss/semi_adv"] + unused_outputs(out_u)
                if step >= cfg.semi_start and cfg.lambda_semi > 0:
                    with torch.no_grad():
                        passes = torch.sigmoid(d_u.detach().float()[:, 0]) > cfg.threshold
                        n_valid = valid_u.sum().clamp(min=1)
                        trusted = float((passes & valid_u).sum() / n_valid)
                    terms["loss/semi"] = semi_supervised_loss(
                        logits_u,
                        d_u,
                        threshold=cfg.threshold,
                        ignore_index=self.ctx.ignore_index,
                        valid_mask=valid_u,
                    )
                    unl = unl + cfg.lambda_semi * terms["loss/semi"]
                    if cfg.skip_untrusted_unlabeled and trusted == 0.0:
                        unl = 0.0 * unl  # reference: no unlabelled backward this iteration
                else:
                    terms["loss/semi"] = logits_u.new_zeros(())
                total = total + unl
        return terms, total, fakes, valids, trusted

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """G step with D frozen, then D step on detached predictions vs one-hot ``gt`` labels."""
        terms, total, fakes, valids, trusted = self._generator_terms(batch, step)
        check_finite(terms)
        self.fabric.backward(total)
        self.step_optimizer("segmenter")

        # D step: one pass on [fake_l; fake_u; real] (BN-free D: same as separate passes).
        ign = self.ctx.ignore_index
        gt_batch = batch.get("gt", batch["labeled"])
        gt = gt_batch["label"]
        real = masked_one_hot(gt, self.ctx.num_classes, ign)
        fake, valid_fake = torch.cat(fakes), torch.cat(valids)
        valid_real = _valid(gt_batch, gt != ign)
        d_out = self.disc(torch.cat([fake, real.to(fake.dtype)]))
        n = fake.shape[0]
        d_terms = {
            "loss/d_fake": adversarial_loss(d_out[:n], real=False, valid_mask=valid_fake),
            "loss/d_real": adversarial_loss(d_out[n:], real=True, valid_mask=valid_real),
        }
        check_finite(d_terms)
        self.fabric.backward((d_terms["loss/d_fake"] + d_terms["loss/d_real"]) / 2)
        self.step_optimizer("discriminator")
        logs = as_floats({**terms, **d_terms})
        if self.uses_unlabeled:
            logs["semi/trusted"] = trusted
        return logs

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) logits."""
        return predict_dense(self.net, image, "seg", align_corners=self.config.align_corners)

    @torch.no_grad()
    def extra_maps(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"confidence": σ(D(softmax(logits)))}``, (N, 1, H, W) in [0, 1]."""
        probs = self.predict(image).softmax(dim=1)
        return {"confidence": torch.sigmoid(self.disc(probs).float())}


def _valid(stream_batch: dict[str, Any], mask: torch.Tensor) -> torch.Tensor:
    """``mask`` AND the batch's ``valid`` (False on crop padding) when the batch carries one."""
    valid = stream_batch.get("valid")
    return mask if valid is None else mask & valid.to(device=mask.device, dtype=torch.bool)


class AdversarialBaseline(AdvSemiSeg):
    """CE + λ_adv · L_adv on labelled images only (AdvSemiSeg's "+L_adv" rows, no unlabelled data).

    The discriminator sees the labelled predictions (fake) and the ``gt`` stream (real).
    Logged: ``loss/seg``, ``loss/adv``, ``loss/d_fake``, ``loss/d_real``.
    """

    name: ClassVar[str] = "adv"
    uses_unlabeled: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of the adversarial-only baseline (AdvSemiSeg reference values)."""

        lambda_adv: float = 0.01  # README/paper λ_adv (code default 0.1)
        d_lr: float = 1e-4  # reference --learning-rate-D
        d_betas: tuple[float, float] = (0.9, 0.99)  # reference Adam betas of D
        ndf: int = 64  # reference FCDiscriminator width
        # reference: five stride-2 convs (1/32 map); (2, 2, 2, 1, 1) keeps 64² crops spatial
        d_strides: tuple[int, ...] = (2, 2, 2, 2, 2)
        align_corners: bool = True  # reference nn.Upsample
