"""The ``Method`` base: what the trainer calls, and the plumbing every recipe shares.

A method owns its modules, optimisers and schedulers, and performs its own backward passes and
optimiser steps inside :meth:`Method.training_step`, in the order its paper prescribes. The trainer
only feeds batches, calls ``training_step``/``predict`` and checkpoints ``state_dict``.

Pseudo-loop the trainer runs::

    method = METHODS[name](config, ctx)          # builds + fabric.setup()s modules/optimisers
    for step in range(start, total_steps):
        logs = method.training_step(batch, step)  # dict[str, float], e.g. {"loss/seg": 0.7}
        if step % eval_every == 0:
            method.eval(); logits = method.predict(images); method.train()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

Regime = Literal["full", "semi", "scribble", "uda"]
Task = Literal["seg", "depth", "normals"]

__all__ = [
    "Method",
    "MethodContext",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "Regime",
    "Task",
    "check_finite",
    "poly_scheduler",
]


@dataclass(frozen=True)
class OptimConfig:
    """SGD + poly schedule shared by the recipes (DeepLab / AdvSemiSeg / MaxSquare convention)."""

    lr: float = 0.01  # base learning rate of the encoder
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 weight decay
    poly_power: float = 0.9  # lr = base · (1 - step/total)^power
    head_lr_mult: float = 10.0  # LR × this for non-encoder params (DeepLab-v2 classifier ×10)
    # Length of the poly schedule; None = the run's steps. Longer than the run = a model taken
    # mid-schedule (MaxSquare pretrains source-only that way before restarting adaptation).
    schedule_steps: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build: a key of ``SEGMENTERS`` (or ``REGRESSORS`` for depth/normals)."""

    name: str = "deeplabv2"  # factory name
    kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the factory
    # torchvision / timm / authors' / denseloss weights loaded after building (strict), or None
    weights: str | None = None


@dataclass
class MethodContext:
    """Everything a method needs besides its own hyperparameters."""

    fabric: Any  # lightning.fabric.Fabric (typed loosely so this module imports without it)
    num_classes: int  # number of classes (segmentation) — ignored by regression tasks
    total_steps: int  # length of the schedule, for poly LR and decaying weights
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    task: Task = "seg"
    ignore_index: int = 255


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; the step was not applied."""


def check_finite(terms: dict[str, torch.Tensor]) -> None:
    """Raise :class:`NonFiniteLossError` naming the first non-finite loss term.

    Called by methods *before* ``backward`` so a bad step never touches the weights.
    """
    for name, value in terms.items():
        if not bool(torch.isfinite(value.detach()).all()):
            raise NonFiniteLossError(
                f"loss term {name!r} is {float(value.detach().float().sum())}; the step was "
                "skipped. Hint: lower the learning rate or the term's weight."
            )


def poly_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, power: float) -> LambdaLR:
    """Poly learning-rate decay: lr_t = lr_0 · (1 - t / T)^power, floored at 0."""
    total = max(1, total_steps)
    return LambdaLR(optimizer, lambda t: max(0.0, 1.0 - t / total) ** power)


def split_param_groups(module: nn.Module, lr: float, head_lr_mult: float) -> list[dict[str, Any]]:
    """Encoder parameters at ``lr``, every other trainable parameter at ``lr · head_lr_mult``.

    Modules built by ``denseloss.models`` expose ``.encoder``; a module without one is all head.
    """
    encoder = getattr(module, "encoder", None)
    enc_ids = {id(p) for p in encoder.parameters()} if isinstance(encoder, nn.Module) else set()
    enc = [p for p in module.parameters() if p.requires_grad and id(p) in enc_ids]
    rest = [p for p in module.parameters() if p.requires_grad and id(p) not in enc_ids]
    groups = []
    if enc:
        groups.append({"params": enc, "lr": lr})
    if rest:
        groups.append({"params": rest, "lr": lr * head_lr_mult})
    return groups


class Method:
    """Base class of every recipe (baselines included).

    Subclasses set the class attributes, build modules in ``__init__`` through :meth:`add_module`
    and implement :meth:`training_step` and :meth:`predict`.
    """

    name: ClassVar[str] = ""
    regime: ClassVar[Regime] = "full"
    tasks: ClassVar[tuple[Task, ...]] = ("seg",)
    Config: ClassVar[type] = object  # frozen dataclass of the method's own hyperparameters

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        self.config = config
        self.ctx = ctx
        self.fabric = ctx.fabric
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, LambdaLR] = {}

    # -- building ------------------------------------------------------------------------------
    def add_module(
        self,
        name: str,
        module: nn.Module,
        make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
        *,
        poly: bool = True,
    ) -> nn.Module:
        """Set ``module`` (and its optimiser, made by ``make_optimizer``) up with Fabric.

        The optimiser gets a poly scheduler over ``ctx.optim.schedule_steps`` (default
        ``ctx.total_steps``) unless ``poly=False``.
        Returns the Fabric-wrapped module; it is also kept in ``self.nets[name]``.
        """
        if make_optimizer is None:
            module = self.fabric.setup_module(module)
        else:
            opt = make_optimizer(module)
            module, opt = self.fabric.setup(module, opt)
            self.optimizers[name] = opt
            if poly:
                horizon = self.ctx.optim.schedule_steps
                if horizon is None:
                    horizon = self.ctx.total_steps
                elif horizon < self.ctx.total_steps:
                    raise ValueError(
                        "optim.schedule_steps must be None or >= the run's steps "
                        f"({self.ctx.total_steps}); got {horizon!r}."
                    )
                self.schedulers[name] = poly_scheduler(opt, horizon, self.ctx.optim.poly_power)
        self.nets[name] = module
        return module

    def sgd(
        self, lr: float | None = None, head_lr_mult: float | None = None
    ) -> Callable[[nn.Module], torch.optim.Optimizer]:
        """Factory of the recipes' SGD (momentum, weight decay, head LR multiplier from ctx)."""
        o = self.ctx.optim
        base = o.lr if lr is None else lr
        mult = o.head_lr_mult if head_lr_mult is None else head_lr_mult

        def make(module: nn.Module) -> torch.optim.Optimizer:
            return torch.optim.SGD(
                split_param_groups(module, base, mult),
                lr=base,
                momentum=o.momentum,
                weight_decay=o.weight_decay,
            )

        return make

    def set_micro_batch(self, index: int, count: int) -> None:
        """Declare the next :meth:`training_step` micro-batch ``index`` of ``count`` (accumulation).

        Called by the trainer when ``train.accumulate`` = ``count`` > 1. Until the last micro-batch
        :meth:`step_optimizer` only lets gradients add up in ``.grad``; on the last it divides
        them by ``count`` (the mean over the ``count`` micro-batches, as each recipe's loss is a
        mean over its batch) and steps. The recipes need no change: this is the reference codes'
        ``iter_size`` (each loss / iter_size, one ``step`` per iteration), and a GAN recipe's G
        and D steps accumulate separately because each backward touches only its own network.
        BatchNorm statistics are still those of one micro-batch.
        """
        if not 0 <= index < count:
            raise ValueError(f"set_micro_batch: index must be in [0, count={count}); got {index}.")
        self._micro_batch = (index, count)

    def step_optimizer(self, name: str) -> None:
        """``optimizer.step()``, ``zero_grad`` and one scheduler step for ``name``.

        With gradient accumulation (:meth:`set_micro_batch`) this happens on the last
        micro-batch only, after dividing the summed gradients by the micro-batch count.
        """
        index, count = getattr(self, "_micro_batch", (0, 1))
        if index < count - 1:
            return  # keep summing gradients; the last micro-batch steps
        opt = self.optimizers[name]
        if count > 1:
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.div_(count)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if name in self.schedulers:
            self.schedulers[name].step()

    # -- what the trainer calls ----------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One optimisation step; returns detached scalars keyed ``loss/<term>``."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Eval-mode prediction at the image's size.

        Args:
            image: (N, 3, H, W) float in [0, 1].

        Returns:
            Segmentation: (N, C, H, W) logits. Depth: (N, 1, H, W). Normals: (N, 3, H, W) unit.
        """
        raise NotImplementedError

    @torch.no_grad()
    def extra_maps(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Method-specific (N, 1, H, W) maps worth a picture (e.g. AdvSemiSeg's confidence)."""
        return {}

    def train(self, mode: bool = True) -> Method:
        for m in self.nets.values():
            m.train(mode)
        return self

    def eval(self) -> Method:
        return self.train(False)

    def parameters(self) -> Iterable[nn.Parameter]:
        for m in self.nets.values():
            yield from m.parameters()

    def state_dict(self) -> dict[str, Any]:
        """All modules, optimisers and schedulers, keyed ``<kind>/<name>``."""
        sd: dict[str, Any] = {}
        for k, m in self.nets.items():
            sd[f"module/{k}"] = m.state_dict()
        for k, o in self.optimizers.items():
            sd[f"optimizer/{k}"] = o.state_dict()
        for k, s in self.schedulers.items():
            sd[f"scheduler/{k}"] = s.state_dict()
        return sd

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`; a missing or extra key raises ``KeyError``."""
        expected = set(self.state_dict())
        got = set(state)
        if expected != got:
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: state keys differ; missing "
                f"{sorted(expected - got)}, unexpected {sorted(got - expected)}."
            )
        for k, m in self.nets.items():
            m.load_state_dict(state[f"module/{k}"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state[f"optimizer/{k}"])
        for k, s in self.schedulers.items():
            s.load_state_dict(state[f"scheduler/{k}"])


def decay(step: int, total: int, start: float, end: float) -> float:
    """Geometric interpolation from ``start`` to ``end`` over ``total`` steps (ASM's 10^(-t/T))."""
    t = min(max(step / max(1, total), 0.0), 1.0)
    if start <= 0 or end <= 0:
        return start + (end - start) * t
    return start * math.exp(t * math.log(end / start))
