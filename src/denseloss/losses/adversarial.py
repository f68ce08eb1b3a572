"""Fully convolutional adversarial losses; Hung et al., "Adversarial Learning for Semi-Supervised Semantic Segmentation", BMVC 2018."""  # noqa: E501

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from denseloss._validation import (
    check_choice,
    check_float_tensor,
    check_logits,
    check_mask,
    check_same_spatial,
)
from denseloss.losses._argmax import first_argmax
from denseloss.losses._reduction import REDUCTIONS, Reduction, masked_reduce

__all__ = ["AdversarialLoss", "SemiSupervisedLoss", "adversarial_loss", "semi_supervised_loss"]


def _check_d_logits(func: str, d_logits: object) -> None:
    check_float_tensor(func, "d_logits", d_logits, 4)
    d_logits = cast(torch.Tensor, d_logits)
    if d_logits.shape[1] != 1:
        raise ValueError(
            f"{func}: d_logits must have shape (N, 1, H, W); got {tuple(d_logits.shape)}."
        )


def _check_real(func: str, real: object) -> None:
    if not isinstance(real, bool):
        raise TypeError(f"{func}: real must be a bool; got {type(real).__name__}.")


class _SelfCrossEntropy(torch.autograd.Function):
    """-max_c log softmax(z)_c per pixel: cross-entropy against the pixel's own argmax.

    The value is -amax(log p) (no argmax/gather in the forward); the backward is
    softmax(z) - onehot(argmax), built as exp(log p)·g in one (N, C, H, W) buffer with -g
    scattered at the argmax, instead of gather's zero-filled one-hot plus log_softmax's backward.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, logits: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=1)
        top = logp.amax(dim=1)  # (N, H, W)
        ctx.save_for_backward(logp, top)
        return -top

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> torch.Tensor:
        logp, top = ctx.saved_tensors  # type: ignore[attr-defined]
        pseudo = first_argmax(logp, top).unsqueeze(1)  # (N, 1, H, W)
        grad = logp.exp().mul_(grad_out.unsqueeze(1))
        return grad.scatter_add_(1, pseudo, -grad_out.unsqueeze(1))


def adversarial_loss(
    d_logits: torch.Tensor,
    *,
    real: bool,
    valid_mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Spatial binary cross-entropy of a fully convolutional discriminator's map.

    .. math::

        \ell_n = \begin{cases} -\log \sigma(d_n) = \operatorname{softplus}(-d_n) & \text{real} \\
                               -\log(1-\sigma(d_n)) = \operatorname{softplus}(d_n) & \text{fake}
                 \end{cases}, \qquad
        L = \frac{1}{|\Omega|}\sum_{n\in\Omega} \ell_n

    (the reference's ``BCEWithLogitsLoss2d`` against an all-ones or all-zeros map). Unlike an
    image-level GAN loss, each pixel of the (upsampled) discriminator map is a separate
    real/fake decision, which is what lets AdvSemiSeg read it as a confidence map. Use
    ``real=True`` for the generator step and for ground-truth one-hot maps in the
    discriminator step, ``real=False`` for (detached) predictions in the discriminator step.

    Args:
        d_logits: (N, 1, H, W) float, raw discriminator scores (no sigmoid); half precision is
            computed in float32.
        real: target is "real" (1) or "fake" (0).
        valid_mask: optional (N, H, W) bool, True where the pixel counts (e.g. labels != 255
            in the labelled generator step).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        float32 (float64 for float64 input): ``"none"`` → (N, 1, H, W) zeros outside Ω;
        ``"sum"`` → Σ_Ω ℓ; ``"mean"`` → Σ_Ω ℓ / |Ω|. An empty Ω gives 0.0 attached to the
        graph, not NaN (the reference gives NaN on an all-ignored batch).

    Raises:
        TypeError: ``d_logits`` not floating point; ``real`` not bool; ``valid_mask`` not bool.
        ValueError: ``d_logits`` not (N, 1, H, W); ``valid_mask`` shape mismatch; unknown
            ``reduction``.

    Reference:
        ``hung2018adversarial``.

    Example:
        >>> d = torch.zeros(1, 1, 1, 2)  # σ(0) = 1/2: -log(1/2) = 0.6931 either way
        >>> round(float(adversarial_loss(d, real=True)), 4)
        0.6931
    """
    func = "adversarial_loss"
    _check_d_logits(func, d_logits)
    _check_real(func, real)
    valid = None
    if valid_mask is not None:
        check_mask(func, valid_mask, d_logits)
        valid = valid_mask.unsqueeze(1)
    check_choice(func, "reduction", reduction, REDUCTIONS)
    d = d_logits.to(torch.promote_types(d_logits.dtype, torch.float32))
    loss = F.softplus(-d) if real else F.softplus(d)  # stable BCE-with-logits
    return masked_reduce(loss, valid, reduction, func=func)


def semi_supervised_loss(
    logits: torch.Tensor,
    d_logits: torch.Tensor,
    *,
    threshold: float = 0.2,
    ignore_index: int = 255,
    valid_mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""AdvSemiSeg's L_semi: self-training on pixels the discriminator trusts.

    .. math::

        \hat y_n = \arg\max_c z_{n,c}, \quad
        \Omega = \{n : \sigma(d_n) > T_{semi},\ v_n\}, \quad
        L = -\frac{1}{|\Omega|}\sum_{n\in\Omega} \log \operatorname{softmax}(z_n)_{\hat y_n}

    The pseudo-labels ŷ and the trust mask carry no gradient (the discriminator is frozen in
    the generator step); the gradient flows into ``logits`` only. Unlike plain self-training,
    the pixels kept are chosen by the discriminator's confidence map rather than by the
    segmenter's own confidence.

    Args:
        logits: (N, C, H, W) float, raw scores of the unlabelled images; half precision is
            computed in float32.
        d_logits: (N, 1, H, W) float, the discriminator's raw map on softmax(logits), already at
            the logits' size.
        threshold: T_semi in [0, 1] (reference 0.2).
        ignore_index: the value the reference writes into untrusted pixels of the pseudo-label
            map; only checked to lie outside [0, C) (kept for parity of signatures).
        valid_mask: optional (N, H, W) bool v, True where the pixel exists (False on crop
            padding); None = all valid. Pixels outside it are never trusted.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        float32 (float64 for float64 input): ``"none"`` → (N, H, W) zeros at untrusted pixels;
        ``"sum"`` → Σ_Ω; ``"mean"`` → Σ_Ω / |Ω|. No trusted pixel gives 0.0 attached to the
        graph, not NaN.

    Raises:
        TypeError: ``logits``/``d_logits`` not floating point.
        ValueError: wrong rank, ``d_logits`` not 1-channel or not matching the logits' size;
            ``threshold`` outside [0, 1]; ``ignore_index`` inside [0, C); unknown ``reduction``;
            ``valid_mask`` not a bool (N, H, W) tensor.

    Reference:
        ``hung2018adversarial``.

    Example:
        >>> logits = torch.zeros(1, 2, 1, 2)  # CE against own argmax = -log(1/2)
        >>> d = torch.tensor([[[[5.0, -5.0]]]])  # σ: 0.993 (trusted), 0.007 (not)
        >>> round(float(semi_supervised_loss(logits, d)), 4)
        0.6931
    """
    func = "semi_supervised_loss"
    check_logits(func, logits)
    _check_d_logits(func, d_logits)
    check_same_spatial(func, logits, d_logits, "logits", "d_logits")
    check_choice(func, "reduction", reduction, REDUCTIONS)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{func}: threshold must be in [0, 1]; got {threshold!r}.")
    if 0 <= ignore_index < logits.shape[1]:
        raise ValueError(
            f"{func}: ignore_index must be outside [0, {logits.shape[1]}); got {ignore_index}."
        )
    if valid_mask is not None:
        check_mask(func, valid_mask, logits)
    with torch.no_grad():
        trusted = torch.sigmoid(d_logits.detach().float()[:, 0]) > threshold
        if valid_mask is not None:
            trusted = trusted & valid_mask
    # -log softmax at the argmax = -max_c log p_c; its gradient is softmax - onehot(argmax).
    loss = _SelfCrossEntropy.apply(logits.to(torch.promote_types(logits.dtype, torch.float32)))
    return masked_reduce(loss, trusted, reduction, func=func)


class AdversarialLoss(nn.Module):
    """Module form of :func:`adversarial_loss` (``real`` is given per call). See `adversarial_loss`."""  # noqa: E501

    def __init__(self, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_choice("AdversarialLoss", "reduction", reduction, REDUCTIONS)
        self.reduction: Reduction = reduction

    def forward(
        self,
        d_logits: torch.Tensor,
        *,
        real: bool,
        valid_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return :func:`adversarial_loss` with this module's settings."""
        return adversarial_loss(
            d_logits, real=real, valid_mask=valid_mask, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return f"reduction={self.reduction!r}"


class SemiSupervisedLoss(nn.Module):
    """Module form of :func:`semi_supervised_loss`. See `semi_supervised_loss`."""

    def __init__(
        self, *, threshold: float = 0.2, ignore_index: int = 255, reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"SemiSupervisedLoss: threshold must be in [0, 1]; got {threshold!r}.")
        check_choice("SemiSupervisedLoss", "reduction", reduction, REDUCTIONS)
        self.threshold = threshold
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction

    def forward(
        self,
        logits: torch.Tensor,
        d_logits: torch.Tensor,
        valid_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return :func:`semi_supervised_loss` with this module's settings."""
        return semi_supervised_loss(
            logits,
            d_logits,
            threshold=self.threshold,
            ignore_index=self.ignore_index,
            valid_mask=valid_mask,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return (
            f"threshold={self.threshold}, ignore_index={self.ignore_index}, "
            f"reduction={self.reduction!r}"
        )
