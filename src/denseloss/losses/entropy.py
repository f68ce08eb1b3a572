"""Entropy minimisation (MinEnt); Vu et al., "ADVENT: Adversarial Entropy Minimization for Domain Adaptation in Semantic Segmentation", CVPR 2019."""  # noqa: E501

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from denseloss._validation import check_choice, check_logits, check_mask
from denseloss.losses._reduction import REDUCTIONS, Reduction, masked_reduce

__all__ = ["EntropyLoss", "entropy_loss"]


class _Entropy(torch.autograd.Function):
    """H = -Σ_c p_c log p_c per pixel from log_softmax, with a lean backward.

    With log p and H saved from the forward, ∂H/∂z_c = -p_c (log p_c + H). Only log p and the
    gradient are (N, C, H, W) allocations: p·log p is summed and p is re-applied one channel at a
    time, since a fresh full-size temporary (page faults) dominates the cost on CPU.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, logits: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=1)
        entropy = torch.zeros(
            (logp.shape[0], *logp.shape[2:]), dtype=logp.dtype, device=logp.device
        )
        for c in range(logp.shape[1]):
            entropy.addcmul_(logp[:, c].exp(), logp[:, c], value=-1.0)  # (N, H, W)
        ctx.save_for_backward(logp, entropy)
        return entropy

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> torch.Tensor:
        logp, entropy = ctx.saved_tensors  # type: ignore[attr-defined]
        grad = logp + entropy.unsqueeze(1)
        grad.mul_(-grad_out.unsqueeze(1))
        for c in range(logp.shape[1]):
            grad[:, c].mul_(logp[:, c].exp())
        return grad


def entropy_loss(
    logits: torch.Tensor,
    *,
    valid_mask: torch.Tensor | None = None,
    normalize: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Mean Shannon entropy of the per-pixel class distribution.

    .. math::

        H_n = -\sum_c p_{n,c} \log p_{n,c}, \qquad
        L = \frac{1}{|\Omega|} \sum_{n \in \Omega} H_n \; (\div \log C \text{ if normalize})

    with p = softmax(logits) and Ω the valid pixels. ``log p`` comes from ``log_softmax`` so the
    value and gradient stay finite when some p underflow to 0 (fp16-safe). The entropy's
    gradient grows without bound as p → 0 for easy pixels' losers, which is what MaxSquare
    (:func:`~denseloss.losses.max_square_loss`) replaces.

    Args:
        logits: (N, C, H, W) float, raw scores; half precision is computed in float32.
        valid_mask: optional (N, H, W) bool, True where the pixel counts.
        normalize: divide by log C so the loss lies in [0, 1] (needs C >= 2).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        float32 (float64 for float64 input): ``"none"`` → (N, H, W), zeros outside Ω;
        ``"sum"`` → Σ_Ω H; ``"mean"`` → Σ_Ω H / |Ω|. An empty Ω gives 0.0 attached to the
        graph, not NaN.

    Raises:
        TypeError: ``logits`` not floating point, ``valid_mask`` not bool.
        ValueError: ``logits`` not 4-D; ``valid_mask`` shape mismatch; ``normalize`` with C < 2;
            unknown ``reduction``.

    Reference:
        ``vu2019advent``; ``grandvalet2005entropy``.

    Example:
        >>> logits = torch.zeros(1, 4, 1, 1)  # uniform over 4 classes: H = log 4
        >>> round(float(entropy_loss(logits)), 4), float(entropy_loss(logits, normalize=True))
        (1.3863, 1.0)
    """
    func = "entropy_loss"
    check_logits(func, logits)
    if valid_mask is not None:
        check_mask(func, valid_mask, logits)
    check_choice(func, "reduction", reduction, REDUCTIONS)
    num_classes = logits.shape[1]
    if normalize and num_classes < 2:
        raise ValueError(
            f"{func}: logits must have at least 2 classes when normalize=True; got {num_classes}."
        )
    loss = _Entropy.apply(logits.to(torch.promote_types(logits.dtype, torch.float32)))
    if normalize:
        loss = loss / math.log(num_classes)
    return masked_reduce(loss, valid_mask, reduction, func=func)


class EntropyLoss(nn.Module):
    """Module form of :func:`entropy_loss`. See `entropy_loss`."""

    def __init__(self, *, normalize: bool = False, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_choice("EntropyLoss", "reduction", reduction, REDUCTIONS)
        self.normalize = normalize
        self.reduction: Reduction = reduction

    def forward(self, logits: torch.Tensor, valid_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return :func:`entropy_loss` with this module's settings."""
        return entropy_loss(
            logits, valid_mask=valid_mask, normalize=self.normalize, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return f"normalize={self.normalize}, reduction={self.reduction!r}"
