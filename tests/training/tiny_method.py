"""A tiny BN-free method for the trainer tests (independent of denseloss.methods' recipes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from denseloss.methods.base import Method, check_finite


@dataclass(frozen=True)
class TinyConfig:
    """Hyperparameters of the test method."""

    width: int = 8  # conv channels
    dropout: float = 0.1  # Dropout2d probability: makes the torch RNG state matter on resume
    nan_at: int | None = None  # from this step on the loss is NaN (tests the NaN stop)


class TinyNet(nn.Module):
    def __init__(self, num_classes: int, width: int, dropout: float) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.GroupNorm(2, width),
            nn.ReLU(),
            nn.Dropout2d(dropout),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(image))


class TinyMethod(Method):
    name = "tiny"
    regime = "full"
    tasks = ("seg",)
    Config = TinyConfig

    def __init__(self, config: TinyConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        net = TinyNet(ctx.num_classes, config.width, config.dropout)
        self.net = self.add_module("net", net, self.sgd())

    def _batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        return batch

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        b = self._batch(batch)
        logits = self.net(b["image"])
        loss = F.cross_entropy(logits, b["label"], ignore_index=self.ctx.ignore_index)
        if self.config.nan_at is not None and step >= self.config.nan_at:
            loss = loss * float("nan")
        check_finite({"loss/seg": loss})
        self.fabric.backward(loss)
        self.step_optimizer("net")
        return {"loss/seg": float(loss.detach())}

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)

    @torch.no_grad()
    def extra_maps(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"confidence": self.net(image).softmax(1).amax(1, keepdim=True)}


class TinyUDAMethod(TinyMethod):
    """Source-only training through the UDA streams (checks the paired batch layout)."""

    name = "tiny_uda"
    regime = "uda"

    def _batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        if set(batch) != {"source", "target"} or "label" in batch["target"]:
            raise KeyError(f"unexpected UDA batch layout: {sorted(batch)}")
        return batch["source"]


class TinyReturnsNaN(TinyMethod):
    """Returns a NaN term without raising (the trainer must detect it)."""

    name = "tiny_nan_return"

    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        logs = super().training_step(batch, step)
        if step >= 2:
            logs["loss/aux"] = float("inf")
        return logs
