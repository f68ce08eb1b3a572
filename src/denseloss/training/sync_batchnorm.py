"""SyncBatchNorm on every device: torch's on CUDA, :class:`GlooSyncBatchNorm` on the CPU.

With more than one process, BatchNorm normalises each rank's share of the batch with that
share's statistics, so DDP no longer computes what one process with the global batch computes.
SyncBatchNorm uses the statistics of the global batch. PyTorch's ``nn.SyncBatchNorm`` needs a GPU
(and DDP refuses it on the CPU), so the CPU (gloo) gets :class:`GlooSyncBatchNorm`, the same maths
with plain collectives; ``train.sync_bn`` (``fabric_setup.SyncBatchNormDDPStrategy``) converts.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["GlooSyncBatchNorm", "convert_sync_batchnorm"]


class _AllReduceSum(torch.autograd.Function):
    """``all_reduce(SUM)`` whose backward is the ``all_reduce(SUM)`` of the incoming gradients.

    With y = Σ_r x_r on every rank, the gradient of the sum of every rank's loss with respect to
    x_k is Σ_r ∂L_r/∂y: the all-reduced gradient (what torch's SyncBatchNorm backward computes).
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm synchronised over the process group on the CPU (gloo), where torch's refuses.

    In training, with n = Σ_r N_r·H·W pixels over all ranks, per channel:

    .. math::

        \\mu = \\frac{1}{n} \\sum_{r, i} x_{r,i}, \\quad
        \\sigma^2 = \\frac{1}{n} \\sum_{r, i} (x_{r,i} - \\mu)^2, \\quad
        y = \\gamma \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta

    i.e. BatchNorm over the concatenated global batch (two passes, for accuracy), with gradients
    through both all-reduces; running stats get the unbiased σ²·n/(n−1), as in BatchNorm.
    Statistics are computed in float32 at least (float64 stays float64). Evaluation, and training
    without a process group, is plain BatchNorm. It is not an ``nn.SyncBatchNorm`` (whose kernel
    needs a GPU and which DDP refuses on the CPU); on CUDA :func:`convert_sync_batchnorm` uses
    torch's.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(
                f"GlooSyncBatchNorm: input must be (N, C, ...) with 2+ dims; got {input.dim()}."
            )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """See the class docstring; (N, C, ...) → same shape and dtype."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        group = dist.group.WORLD
        x = input.to(torch.promote_types(input.dtype, torch.float32))
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64)
        dist.all_reduce(count, group=group)
        n = float(count)
        mean = _AllReduceSum.apply(x.sum(dims), group) / n
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply(centred.square().sum(dims), group) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            self._update_running_stats(mean.detach(), var.detach() * n / max(n - 1.0, 1.0))
        return y.to(input.dtype)

    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average, as in nn.BatchNorm
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        with torch.no_grad():
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
            self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Every BatchNorm of ``module`` → this class, as ``nn.SyncBatchNorm`` converts."""
        batchnorm = nn.modules.batchnorm._BatchNorm
        if isinstance(module, batchnorm) and not isinstance(module, cls):
            out = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
            )
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.train(module.training)
            return out
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module


def convert_sync_batchnorm(module: nn.Module, *, device_type: str) -> nn.Module:
    """Every BatchNorm of ``module`` → ``nn.SyncBatchNorm`` (CUDA) or :class:`GlooSyncBatchNorm`.

    Both conversions keep the parameter and buffer tensors (so an optimiser built before the
    conversion still holds the right parameters) and the state-dict keys (so checkpoints load
    with or without SyncBN).
    """
    if device_type == "cpu":
        return GlooSyncBatchNorm.convert(module)
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)
