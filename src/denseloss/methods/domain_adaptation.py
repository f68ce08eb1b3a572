"""UDA baselines: source-only training and entropy minimisation on the target (MinEnt).

MinEnt: Vu et al., "ADVENT" (CVPR 2019), as run by the MaxSquare authors (Chen, Xue, Cai; ICCV
2019, ``ZJULearning/MaxSquareLoss``): the same DeepLab-v2 "multi" network and schedule, entropy of
the target prediction with weight λ_T. Batches are ``{"source": labelled, "target": unlabelled}``;
the target stream carries no labels.
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
    """Cross-entropy on the labelled source stream only (the UDA lower bound).

    Logits are bilinearly upsampled (``align_corners=True``, as the MaxSquare reference) to the
    label size. Logged: ``loss/seg``.
    """

    name: ClassVar[str] = "source_only"
    regime: ClassVar[Regime] = "uda"
    tasks: ClassVar[tuple[Task, ...]] = ("seg",)

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of source-only training."""

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

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One SGD step on the source CE."""
        source = batch["source"]
        labels = source["label"]
        out = self.net(source["image"])
        terms = {"loss/seg": cross_entropy(self._up(out.logits, labels.shape[-2:]), labels)}
        check_finite(terms)
        self.fabric.backward(terms["loss/seg"] + unused_outputs(out))
        self.step_optimizer("segmenter")
        return as_floats(terms)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) logits."""
        return predict_dense(self.net, image, "seg", align_corners=self.config.align_corners)


class MinEnt(SourceOnly):
    r"""Source CE + λ_T · entropy of the target prediction.

    .. math:: L = CE(z_s, y_s) + \lambda_T \cdot s \cdot \frac{1}{|\Omega|}\sum_{n}
              -\sum_c p_{n,c}\log p_{n,c}

    with s = 1/C when ``reference_scale`` (the MaxSquare reference's ``softCrossEntropy`` is the
    mean over all B·C·H·W elements, i.e. entropy / C, and λ_T = 0.1 was tuned with it), else 1.
    Logged: ``loss/seg``, ``loss/ent`` (the unscaled mean entropy).
    """

    name: ClassVar[str] = "minent"

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of MinEnt (MaxSquare authors' baseline run)."""

        lambda_target: float = 0.1  # MaxSquare reference --lambda_target for the MinEnt baseline
        # Multiply the entropy by 1/C, the reference's element-wise mean, so λ_T keeps its value.
        reference_scale: bool = True
        align_corners: bool = True  # MaxSquare reference upsampling (see SourceOnly)
        # Source-only checkpoint to start from: the MaxSquare authors' runs start there (issue #1).
        init_from: str | None = None

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One SGD step on source CE + λ_T · target entropy (one backward)."""
        cfg, source, target = self.config, batch["source"], batch["target"]
        labels = source["label"]
        out_s = self.net(source["image"])
        out_t = self.net(target["image"])
        logits_t = self._up(out_t.logits, target["image"].shape[-2:])
        terms = {
            "loss/seg": cross_entropy(self._up(out_s.logits, labels.shape[-2:]), labels),
            "loss/ent": entropy_loss(logits_t, valid_mask=target.get("valid")),
        }
        check_finite(terms)
        scale = 1.0 / self.ctx.num_classes if cfg.reference_scale else 1.0
        total = terms["loss/seg"] + cfg.lambda_target * scale * terms["loss/ent"]
        self.fabric.backward(total + unused_outputs(out_s) + unused_outputs(out_t))
        self.step_optimizer("segmenter")
        return as_floats(terms)
