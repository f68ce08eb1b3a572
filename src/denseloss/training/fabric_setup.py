"""Build the Lightning Fabric engine from a ``TrainConfig``: devices, strategy, precision.

One command runs on 1 or N devices: ``devices > 1`` selects DDP, launched with ``ddp_spawn`` on the
CPU (gloo; works from Python, tests and the CLI alike) and ``ddp`` on CUDA (NCCL; Fabric re-runs
the command once per device). On the CPU only bfloat16 autocast exists, so ``16-mixed`` is mapped
to ``bf16-mixed`` there.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["build_fabric", "resolve_accelerator", "use_sync_batchnorm"]


def resolve_accelerator(accelerator: str) -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is visible, else ``"cpu"``; others pass through."""
    if accelerator not in ("cpu", "cuda", "auto"):
        raise ValueError(
            "resolve_accelerator: accelerator must be 'cpu', 'cuda' or 'auto'; "
            f"got {accelerator!r}."
        )
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "resolve_accelerator: accelerator must be 'cpu' or 'auto' on a machine without CUDA; "
            "got 'cuda'."
        )
    return accelerator


def build_fabric(
    *,
    accelerator: str = "cpu",
    devices: int = 1,
    precision: str = "32-true",
    strategy: str = "auto",
) -> Any:
    """A ``lightning.fabric.Fabric`` for the given devices and precision (not launched yet).

    Args:
        accelerator: "cpu", "cuda" or "auto".
        devices: number of processes; DDP when > 1.
        precision: "32-true", "bf16-mixed" or "16-mixed" (→ "bf16-mixed" on the CPU).
        strategy: "auto" (``ddp_spawn`` on the CPU, ``ddp`` on CUDA when ``devices > 1``), or an
            explicit "ddp_spawn", "ddp_fork" (CPU, POSIX: no re-import in the children, much
            faster start) or "ddp".
    """
    from lightning_fabric import Fabric

    acc = resolve_accelerator(accelerator)
    if not isinstance(devices, int) or devices < 1:
        raise ValueError(f"build_fabric: devices must be a positive int; got {devices!r}.")
    if precision not in ("32-true", "bf16-mixed", "16-mixed"):
        raise ValueError(
            "build_fabric: precision must be '32-true', 'bf16-mixed' or '16-mixed'; "
            f"got {precision!r}."
        )
    if acc == "cpu" and precision == "16-mixed":
        precision = "bf16-mixed"
    if strategy not in ("auto", "ddp_spawn", "ddp_fork", "ddp"):
        raise ValueError(
            "build_fabric: strategy must be 'auto', 'ddp_spawn', 'ddp_fork' or 'ddp'; "
            f"got {strategy!r}."
        )
    if devices == 1:
        strategy = "auto"
    elif strategy == "auto":
        strategy = "ddp_spawn" if acc == "cpu" else "ddp"
    return Fabric(accelerator=acc, devices=devices, strategy=strategy, precision=precision)


def use_sync_batchnorm(fabric: Any) -> bool:
    """SyncBatchNorm only pays off (and only works) on CUDA with more than one process."""
    return fabric.world_size > 1 and fabric.device.type == "cuda"


def maybe_convert_sync_batchnorm(fabric: Any, module: nn.Module) -> nn.Module:
    """``nn.SyncBatchNorm.convert_sync_batchnorm(module)`` when :func:`use_sync_batchnorm`."""
    if use_sync_batchnorm(fabric):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module
