"""Gradient accumulation (``--train.accumulate``): k micro-batches of b = one step on k·b.

``Method.step_optimizer`` sums the micro-batches' gradients and steps once on the last,
dividing by k, so for a loss that is a mean over equally sized micro-batches SGD with momentum
and weight decay lands on exactly the full batch's weights.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from denseloss.config.schema import RunConfig
from denseloss.methods.base import Method, MethodContext, OptimConfig
from denseloss.training.fabric_setup import build_fabric
from denseloss.training.trainer import train
from tests.training.tiny_method import TinyMethod


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.encoder(x)))


class _Toy(Method):
    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(None, ctx)
        torch.manual_seed(0)
        self.net = self.add_module("net", _Net(), self.sgd())

    def training_step(self, batch: dict, step: int) -> dict[str, float]:
        loss = (self.net(batch["image"]) - 1).pow(2).mean()  # a mean over the batch's pixels
        self.fabric.backward(loss)
        self.step_optimizer("net")
        return {"loss/toy": float(loss.detach())}


@pytest.fixture(scope="module")
def fabric():
    f = build_fabric(accelerator="cpu", devices=1)
    f.launch()
    return f


def _toy(fabric) -> _Toy:
    optim = OptimConfig(lr=0.1, momentum=0.9, weight_decay=0.01, head_lr_mult=10.0)
    return _Toy(MethodContext(fabric=fabric, num_classes=2, total_steps=4, optim=optim))


def test_two_micro_batches_equal_one_batch(fabric) -> None:
    images = torch.rand(3, 4, 3, 5, 5, generator=torch.Generator().manual_seed(3))
    full, acc = _toy(fabric), _toy(fabric)
    for step in range(3):  # momentum carries over: three steps must keep agreeing
        full.training_step({"image": images[step]}, step)
        before = [p.detach().clone() for p in acc.net.parameters()]
        acc.set_micro_batch(0, 2)
        acc.training_step({"image": images[step, :2]}, step)
        assert all(torch.equal(a, b) for a, b in zip(before, acc.net.parameters()))
        acc.set_micro_batch(1, 2)
        acc.training_step({"image": images[step, 2:]}, step)
        for a, b in zip(full.net.parameters(), acc.net.parameters()):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    # one scheduler step per optimiser step, not per micro-batch
    assert acc.schedulers["net"].last_epoch == full.schedulers["net"].last_epoch == 3
    with pytest.raises(ValueError, match="index"):
        acc.set_micro_batch(2, 2)


def test_trainer_draws_accumulate_batches_per_step(tiny_config: RunConfig) -> None:
    config = dataclasses.replace(
        tiny_config,
        train=dataclasses.replace(tiny_config.train, steps=2, accumulate=3, reference_batch=12),
    )
    results = train(config, method_cls=TinyMethod)
    assert results["train_seconds"] > 0
    # 2 steps × 3 micro-batches × batch 4 images
    ckpt = torch.load(Path(results["checkpoint"]), weights_only=True)
    assert ckpt["extra"]["train_images"] == 24
    assert "× 3 accumulation steps = global batch 12" in results["batch"]
    assert "protocol" not in results["batch"]  # the reference batch is met: no LR rule
    saved = json.loads(Path(results["out_dir"], "results.json").read_text())
    assert saved["best"]["model"] == "best"
    assert saved["model"] == "last"


def test_batch_plan_states_the_linear_rule(tiny_config: RunConfig) -> None:
    from denseloss.training.trainer import batch_plan

    config = dataclasses.replace(
        tiny_config, train=dataclasses.replace(tiny_config.train, reference_batch=10)
    )
    line = batch_plan(config, world_size=2)
    assert "global batch 8" in line
    assert "by 8/10 = 0.8" in line
