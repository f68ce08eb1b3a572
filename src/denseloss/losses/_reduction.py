"""The one normaliser every loss uses."""

from __future__ import annotations

from typing import Literal

import torch

from denseloss._validation import check_choice

Reduction = Literal["none", "mean", "sum"]
REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")


def masked_reduce(
    loss: torch.Tensor,
    valid: torch.Tensor | None,
    reduction: str,
    *,
    weight: torch.Tensor | None = None,
    func: str = "loss",
) -> torch.Tensor:
    """Reduce an element-wise loss map over its valid elements.

    ``"mean"`` = Σ_{Ω} w·loss / Σ_{Ω} w (w = 1 without ``weight``), ``"sum"`` = Σ_{Ω} w·loss,
    ``"none"`` = the map with zeros outside Ω. Invalid elements are replaced with ``where`` (not
    multiplied), so a NaN/inf there can neither leak into the value nor into the gradient. An empty
    Ω gives 0.0 attached to the graph, never NaN.

    Args:
        loss: element-wise loss, any shape.
        valid: bool mask broadcastable to ``loss``, True where the element counts; None = all.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        weight: optional per-element weight broadcastable to ``loss`` (e.g. class weights looked up
            per pixel); the ``"mean"`` then divides by the weight sum, as PyTorch does.
        func: name of the calling loss, for the error message.

    Returns:
        The reduced loss: a scalar for ``"mean"``/``"sum"``, ``loss.shape`` for ``"none"``.
    """
    check_choice(func, "reduction", reduction, REDUCTIONS)
    if weight is not None:
        loss = loss * weight
    if valid is not None:
        valid = valid.expand_as(loss) if valid.shape != loss.shape else valid
        loss = torch.where(valid, loss, torch.zeros((), dtype=loss.dtype, device=loss.device))
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if weight is not None:
        w = weight.expand_as(loss) if weight.shape != loss.shape else weight
        denom = (w * valid).sum() if valid is not None else w.sum()
    elif valid is not None:
        denom = valid.sum()
    else:
        return loss.mean() if loss.numel() else total
    denom = denom.to(loss.dtype)
    # total is exactly 0 when Ω is empty: return it (0 with a graph) rather than 0/0 = NaN.
    return torch.where(denom > 0, total / torch.where(denom > 0, denom, 1), total)
