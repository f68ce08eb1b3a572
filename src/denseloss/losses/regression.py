"""Depth and surface-normal losses; Eigen, Puhrsch and Fergus, "Depth Map Prediction from a Single Image using a Multi-Scale Deep Network", NeurIPS 2014 (scale-invariant log)."""  # noqa: E501

from __future__ import annotations

from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from denseloss._validation import check_choice, check_float_tensor, check_tensor
from denseloss.losses._reduction import REDUCTIONS, Reduction, masked_reduce

__all__ = ["DepthLoss", "NormalLoss", "depth_loss", "normal_loss"]

DepthKind = Literal["l1", "l2", "silog"]
DEPTH_KINDS: tuple[str, ...] = ("l1", "l2", "silog")


def _as_map(func: str, name: str, x: object) -> torch.Tensor:
    """Accept (N, H, W) or (N, 1, H, W) float; return (N, H, W)."""
    check_float_tensor(func, name, x, (3, 4))
    x = cast(torch.Tensor, x)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(
                f"{func}: {name} must be (N, H, W) or (N, 1, H, W); got shape {tuple(x.shape)}."
            )
        x = x[:, 0]
    return x


def _check_valid_mask(func: str, valid_mask: object, shape: torch.Size) -> torch.Tensor:
    check_tensor(func, "valid_mask", valid_mask, 3)
    valid_mask = cast(torch.Tensor, valid_mask)
    if valid_mask.dtype != torch.bool:
        raise TypeError(f"{func}: valid_mask must be a bool tensor; got dtype {valid_mask.dtype}.")
    if valid_mask.shape != shape:
        raise ValueError(
            f"{func}: valid_mask must have shape {tuple(shape)}; got {tuple(valid_mask.shape)}."
        )
    return valid_mask


def depth_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    kind: DepthKind = "l1",
    valid_mask: torch.Tensor | None = None,
    silog_lambda: float = 0.5,
    min_depth: float = 1e-3,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Depth regression loss on valid pixels: L1, L2 or scale-invariant log (SILog).

    Ω = pixels with finite ``target`` > 0 (and ``valid_mask`` True): missing depth is encoded as
    0 by the usual data sets. With e_n = pred_n - target_n:

    .. math::

        L_{l1} = \frac{1}{|\Omega|}\sum_{n\in\Omega} |e_n|, \qquad
        L_{l2} = \frac{1}{|\Omega|}\sum_{n\in\Omega} e_n^2

    and, per image b with g_n = log max(pred_n, min_depth) - log target_n over Ω_b,

    .. math::

        L_{silog,b} = \frac{1}{|\Omega_b|}\sum_n g_n^2
                      - \frac{\lambda}{|\Omega_b|^2}\Bigl(\sum_n g_n\Bigr)^2

    (Eigen et al. 2014, eq. 4; λ = ``silog_lambda`` = 0.5 there: λ = 1 is fully scale
    invariant, λ = 0 the plain log-L2; BTS/AdaBins use 0.85 under a square root and ×10, which
    is *not* applied here). SILog ignores a global scale error, the main ambiguity of
    monocular depth, which the L1/L2 baselines penalise.

    Args:
        pred: (N, H, W) or (N, 1, H, W) float, predicted depth (positive for ``"silog"``;
            clamped to ``min_depth`` inside the log). Half precision is computed in float32.
        target: same shape, ground-truth depth; <= 0 or non-finite = missing.
        kind: ``"l1"`` | ``"l2"`` | ``"silog"``.
        valid_mask: optional (N, H, W) bool, True where the pixel counts (AND with target > 0).
        silog_lambda: λ in [0, 1] of SILog.
        min_depth: > 0, clamp of ``pred`` before the log (SILog only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        float32 (float64 for float64 input). L1/L2: ``"none"`` → (N, H, W) zeros outside Ω,
        ``"sum"`` → Σ_Ω, ``"mean"`` → Σ_Ω / |Ω|. SILog: ``"none"`` → (N,) per-image values
        (0 for an image without valid pixels), ``"sum"`` → their sum, ``"mean"`` → their mean
        over the images that have valid pixels. An empty Ω gives 0.0 attached to the graph.

    Raises:
        TypeError: ``pred``/``target`` not floating point, ``valid_mask`` not bool.
        ValueError: wrong shapes; unknown ``kind``/``reduction``; ``silog_lambda`` outside
            [0, 1]; ``min_depth`` <= 0.

    Reference:
        ``eigen2014depth``.

    Example:
        >>> pred = torch.tensor([[[1.0, 2.0, 5.0]]])
        >>> target = torch.tensor([[[2.0, 2.0, 0.0]]])  # third pixel missing: (1 + 0) / 2
        >>> float(depth_loss(pred, target))
        0.5
    """
    func = "depth_loss"
    pred_map = _as_map(func, "pred", pred)
    target_map = _as_map(func, "target", target)
    if pred_map.shape != target_map.shape:
        raise ValueError(
            f"{func}: target must have the shape of pred {tuple(pred.shape)}; "
            f"got {tuple(target.shape)}."
        )
    check_choice(func, "kind", kind, DEPTH_KINDS)
    check_choice(func, "reduction", reduction, REDUCTIONS)
    if not 0.0 <= silog_lambda <= 1.0:
        raise ValueError(f"{func}: silog_lambda must be in [0, 1]; got {silog_lambda!r}.")
    if not min_depth > 0:
        raise ValueError(f"{func}: min_depth must be > 0; got {min_depth!r}.")
    dtype = torch.promote_types(pred_map.dtype, torch.float32)
    p, t = pred_map.to(dtype), target_map.to(dtype)
    valid = torch.isfinite(t) & (t > 0)
    if valid_mask is not None:
        valid = valid & _check_valid_mask(func, valid_mask, pred_map.shape)
    # Invalid targets are replaced before any arithmetic so no NaN/inf can reach the gradient.
    t = torch.where(valid, t, torch.ones((), dtype=dtype, device=t.device))
    if kind == "l1":
        return masked_reduce((p - t).abs(), valid, reduction, func=func)
    if kind == "l2":
        return masked_reduce((p - t).square(), valid, reduction, func=func)
    g = torch.log(p.clamp_min(min_depth)) - torch.log(t)
    g = torch.where(valid, g, torch.zeros((), dtype=dtype, device=g.device))
    count = valid.flatten(1).sum(dim=1).to(dtype)  # (N,)
    safe = count.clamp_min(1.0)
    mean_g = g.flatten(1).sum(1) / safe
    per_image = g.square().flatten(1).sum(1) / safe - silog_lambda * mean_g.square()
    return masked_reduce(per_image, count > 0, reduction, func=func)


def normal_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    valid_mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Surface-normal loss 1 - cosine similarity, on valid pixels.

    .. math::

        L = \frac{1}{|\Omega|}\sum_{n\in\Omega}
            \Bigl(1 - \frac{\langle \hat n_n, n_n\rangle}{\max(\|\hat n_n\|,\epsilon)\,
            \max(\|n_n\|,\epsilon)}\Bigr)

    Ω = pixels whose target normal is not all zeros (the usual "missing" encoding) and where
    ``valid_mask`` is True; ε = 1e-8. Unlike an L2 loss on the vectors it depends only on the
    angle, so ``pred`` need not be normalised. Values lie in [0, 2].

    Args:
        pred: (N, 3, H, W) float, predicted normals (any length). Half precision is computed in
            float32.
        target: (N, 3, H, W) float, ground-truth normals; all-zero = missing.
        valid_mask: optional (N, H, W) bool, True where the pixel counts.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        float32 (float64 for float64 input): ``"none"`` → (N, H, W) zeros outside Ω;
        ``"sum"`` → Σ_Ω; ``"mean"`` → Σ_Ω / |Ω|. An empty Ω gives 0.0 attached to the graph.

    Raises:
        TypeError: ``pred``/``target`` not floating point, ``valid_mask`` not bool.
        ValueError: not 4-D or not 3 channels; shapes differ; ``valid_mask`` shape mismatch;
            unknown ``reduction``.

    Reference:
        ``hwang2019asm`` (normals task); ``eigen2015normals``.

    Example:
        >>> pred = torch.tensor([[[[1.0]], [[0.0]], [[0.0]]]])
        >>> target = torch.tensor([[[[0.0]], [[3.0]], [[0.0]]]])  # orthogonal: 1 - 0
        >>> float(normal_loss(pred, target))
        1.0
    """
    func = "normal_loss"
    check_float_tensor(func, "pred", pred, 4)
    check_float_tensor(func, "target", target, 4)
    if pred.shape[1] != 3:
        raise ValueError(
            f"{func}: pred must have 3 channels (x, y, z); got shape {tuple(pred.shape)}."
        )
    if pred.shape != target.shape:
        raise ValueError(
            f"{func}: target must have the shape of pred {tuple(pred.shape)}; "
            f"got {tuple(target.shape)}."
        )
    check_choice(func, "reduction", reduction, REDUCTIONS)
    dtype = torch.promote_types(pred.dtype, torch.float32)
    p, t = pred.to(dtype), target.to(dtype)
    valid = (t != 0).any(dim=1)
    if valid_mask is not None:
        valid = valid & _check_valid_mask(func, valid_mask, valid.shape)
    cosine = F.cosine_similarity(p, t, dim=1, eps=1e-8)  # (N, H, W)
    return masked_reduce(1.0 - cosine, valid, reduction, func=func)


class DepthLoss(nn.Module):
    """Module form of :func:`depth_loss`. See `depth_loss`."""

    def __init__(
        self,
        *,
        kind: DepthKind = "l1",
        silog_lambda: float = 0.5,
        min_depth: float = 1e-3,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_choice("DepthLoss", "kind", kind, DEPTH_KINDS)
        check_choice("DepthLoss", "reduction", reduction, REDUCTIONS)
        self.kind: DepthKind = kind
        self.silog_lambda = silog_lambda
        self.min_depth = min_depth
        self.reduction: Reduction = reduction

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, valid_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return :func:`depth_loss` with this module's settings."""
        return depth_loss(
            pred,
            target,
            kind=self.kind,
            valid_mask=valid_mask,
            silog_lambda=self.silog_lambda,
            min_depth=self.min_depth,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return (
            f"kind={self.kind!r}, silog_lambda={self.silog_lambda}, "
            f"min_depth={self.min_depth}, reduction={self.reduction!r}"
        )


class NormalLoss(nn.Module):
    """Module form of :func:`normal_loss`. See `normal_loss`."""

    def __init__(self, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_choice("NormalLoss", "reduction", reduction, REDUCTIONS)
        self.reduction: Reduction = reduction

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, valid_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return :func:`normal_loss` with this module's settings."""
        return normal_loss(pred, target, valid_mask=valid_mask, reduction=self.reduction)

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return f"reduction={self.reduction!r}"
