"""Full-label baselines: the pixel-wise loss (``ce``) and the conditional-GAN prior (``cgan``).

``ce`` is cross-entropy for segmentation, L2 for depth and 1 - cos for surface normals: the
"IID" baseline of ASM (Hwang et al., ECCV 2018). ``cgan`` is the structural-prior baseline ASM
compares against: a conditional patch discriminator on (image, prediction) pairs (Isola et al.,
"pix2pix", CVPR 2017; the ASM authors' ``stanford_scenes/models/discriminator.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from denseloss.losses import adversarial_loss
from denseloss.methods._common import (
    add_predictor,
    as_floats,
    aux_cross_entropy,
    dense_target,
    dense_valid,
    frozen,
    masked_one_hot,
    output_channels,
    pixel_loss,
    predict_dense,
    to_dense,
    unused_outputs,
)
from denseloss.methods.base import Method, MethodContext, Regime, Task, check_finite

__all__ = ["ConditionalGAN", "CrossEntropy"]


class CrossEntropy(Method):
    """Pixel-wise supervised baseline: CE (seg), L2 (depth), 1 - cos (normals).

    One SGD step per batch on ``pixel_loss(upsample(net(image)), target)`` (+ ``aux_weight`` ·
    CE of the auxiliary classifier for segmentation networks that have one); logged as
    ``loss/seg`` (or ``loss/depth`` / ``loss/normals``) and ``loss/aux``.
    """

    name: ClassVar[str] = "ce"
    regime: ClassVar[Regime] = "full"
    tasks: ClassVar[tuple[Task, ...]] = ("seg", "depth", "normals")

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of the pixel-wise baseline."""

        # MMSeg DeepLab-v3 base config: FCN auxiliary head (layer 3) at weight 0.4, the same
        # weight PNE and pixel contrast use, so the full-supervision rows differ only in their
        # own term. Segmentation only, and only for networks with an auxiliary classifier.
        aux_weight: float = 0.4

    def __init__(self, config: CrossEntropy.Config, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.net = add_predictor(self)
        self.net_key = next(iter(self.nets))

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One SGD step on the pixel-wise loss of the task."""
        task = self.ctx.task
        target = dense_target(batch, task)
        out = self.net(batch["image"])
        pred = to_dense(out, task, tuple(target.shape[-2:]))
        terms = {f"loss/{task}": pixel_loss(pred, target, task, self.ctx.ignore_index)}
        aux_weight = self.config.aux_weight
        aux = None
        if task == "seg":
            aux = aux_cross_entropy(out, target, aux_weight, self.ctx.ignore_index)
        if aux is not None:
            terms["loss/aux"] = aux
        check_finite(terms)
        total = terms[f"loss/{task}"] + (aux_weight * aux if aux is not None else 0.0)
        self.fabric.backward(total + unused_outputs(out))
        self.step_optimizer(self.net_key)
        return as_floats(terms)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (N, C, H, W), depth (N, 1, H, W) or unit normals (N, 3, H, W)."""
        return predict_dense(self.net, image, self.ctx.task)


class ConditionalGAN(Method):
    """Pixel loss + λ · conditional patch-GAN loss (the structural-prior baseline of ASM).

    Per step (AdvSemiSeg's / pix2pix's order): the generator step first, with the discriminator
    frozen, on ``pixel + λ_adv · BCE(D([x, ŷ]), real)``; then the discriminator step on the
    *detached* prediction: ``(BCE(D([x, ŷ]), fake) + BCE(D([x, y]), real)) / 2``. ŷ is
    softmax(logits) for segmentation and the prediction itself for depth / normals; y is the one-hot
    label (resp. the GT map). Ignored / invalid pixels are zeroed in *both* ŷ and y so the
    discriminator cannot tell them apart by the ignore pattern.
    """

    name: ClassVar[str] = "cgan"
    regime: ClassVar[Regime] = "full"
    tasks: ClassVar[tuple[Task, ...]] = ("seg", "depth", "normals")

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of the cGAN baseline."""

        # pix2pix: λ_L1 = 100 with adversarial weight 1, i.e. adversarial = 0.01 × pixel loss.
        lambda_adv: float = 0.01
        # AdvSemiSeg's discriminator optimiser (Hung et al. 2018), as the brief of issue 5 asks.
        d_lr: float = 1e-4
        d_betas: tuple[float, float] = (0.9, 0.99)  # AdvSemiSeg's Adam betas
        # DISCRIMINATORS["patch"] keyword arguments (its own defaults = pix2pix 70x70 PatchGAN,
        # scaled for 64² by the models package).
        d_kwargs: dict[str, Any] | None = None

    def __init__(self, config: ConditionalGAN.Config, ctx: MethodContext) -> None:
        from denseloss.models import DISCRIMINATORS

        super().__init__(config, ctx)
        self.net = add_predictor(self)
        self.net_key = next(iter(self.nets))
        d = DISCRIMINATORS["patch"](3 + output_channels(ctx), **(config.d_kwargs or {}))
        betas = tuple(config.d_betas)
        self.disc = self.add_module(
            "discriminator",
            d,
            lambda m: torch.optim.Adam(m.parameters(), lr=config.d_lr, betas=betas),
        )

    def _pair(self, image: torch.Tensor, dense: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return torch.cat([image, dense * valid.unsqueeze(1).to(dense.dtype)], dim=1)

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """Generator step (D frozen), then discriminator step on the detached prediction."""
        task, cfg = self.ctx.task, self.config
        image = batch["image"]
        target = dense_target(batch, task)
        valid = dense_valid(target, task, self.ctx.ignore_index)
        out = self.net(image)
        pred = to_dense(out, task, tuple(target.shape[-2:]))
        fake = pred.softmax(dim=1) if task == "seg" else pred
        if task == "seg":
            real = masked_one_hot(target, self.ctx.num_classes, self.ctx.ignore_index)
        else:
            real = target.to(pred.dtype)

        pix = pixel_loss(pred, target, task, self.ctx.ignore_index)
        with frozen(self.disc) as d, self.fabric.autocast():
            adv = adversarial_loss(d(self._pair(image, fake, valid)), real=True)
        g_terms = {f"loss/{task}": pix, "loss/adv": adv}
        check_finite(g_terms)
        self.fabric.backward(pix + cfg.lambda_adv * adv + unused_outputs(out))
        self.step_optimizer(self.net_key)

        # One D pass on [fake; real] (same as two passes for a BN-free D; one DDP forward).
        pairs = torch.cat(
            [self._pair(image, fake.detach(), valid), self._pair(image, real, valid)], dim=0
        )
        d_out = self.disc(pairs)
        n = image.shape[0]
        d_fake = adversarial_loss(d_out[:n], real=False)
        d_real = adversarial_loss(d_out[n:], real=True)
        d_terms = {"loss/d_fake": d_fake, "loss/d_real": d_real}
        check_finite(d_terms)
        self.fabric.backward((d_fake + d_real) / 2)
        self.step_optimizer("discriminator")
        return as_floats({**g_terms, **d_terms})

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (N, C, H, W), depth (N, 1, H, W) or unit normals (N, 3, H, W)."""
        return predict_dense(self.net, image, self.ctx.task)
