"""Pixel-wise (partial) cross-entropy; Tang et al., "Normalized Cut Loss for Weakly-Supervised CNN Segmentation", CVPR 2018, for the partial form."""  # noqa: E501

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from denseloss._validation import (
    check_choice,
    check_float_tensor,
    check_labels,
    check_logits,
    check_mask,
)
from denseloss.losses._reduction import REDUCTIONS, Reduction, masked_reduce

__all__ = ["CrossEntropyLoss", "cross_entropy", "partial_cross_entropy"]


def _check_weight(func: str, weight: object, num_classes: int | None) -> None:
    check_float_tensor(func, "weight", weight, 1)
    weight = cast(torch.Tensor, weight)
    if num_classes is not None and weight.shape[0] != num_classes:
        raise ValueError(
            f"{func}: weight must have one entry per class ({num_classes}); "
            f"got shape {tuple(weight.shape)}."
        )
    if bool((weight < 0).any()):
        raise ValueError(f"{func}: weight must be >= 0; got min {float(weight.min()):.3g}.")


def _cross_entropy(
    func: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int,
    weight: torch.Tensor | None,
    valid_mask: torch.Tensor | None,
    reduction: Reduction,
    validate: bool,
    labels_name: str = "labels",
) -> torch.Tensor:
    check_logits(func, logits)
    num_classes = logits.shape[1] if validate else None
    check_labels(
        func, labels, num_classes, ignore_index=ignore_index, name=labels_name, like=logits
    )
    if labels.dtype != torch.int64:  # uint8 / int16 labels as PNGs decode: gather needs int64
        labels = labels.long()
    if weight is not None:
        _check_weight(func, weight, logits.shape[1])
    valid = labels != ignore_index
    if valid_mask is not None:
        check_mask(func, valid_mask, logits)
        valid = valid & valid_mask
    # Ignored pixels may hold any value (255); gather a safe class 0 there, masked out below.
    safe = torch.where(valid, labels, torch.zeros((), dtype=labels.dtype, device=labels.device))
    # Half-precision inputs are reduced in float32 (as autocast does for cross-entropy).
    logp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=1)
    loss = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)  # (N, H, W)
    pixel_weight = None
    if weight is not None:
        pixel_weight = weight.to(device=loss.device, dtype=loss.dtype)[safe]
    return masked_reduce(loss, valid, reduction, weight=pixel_weight, func=func)


def cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = 255,
    weight: torch.Tensor | None = None,
    valid_mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    validate: bool = True,
) -> torch.Tensor:
    r"""Ignore-aware pixel-wise cross-entropy.

    .. math::

        \ell_n = -w_{y_n} \log \operatorname{softmax}(z_n)_{y_n}, \qquad
        L = \frac{\sum_{n \in \Omega} \ell_n}{\sum_{n \in \Omega} w_{y_n}}

    with Ω the pixels whose label is not ``ignore_index`` (and, when given, where
    ``valid_mask`` is True), and w ≡ 1 without class weights. This is the baseline every other
    loss of denseloss is compared with; with scribble labels (unlabelled = ignore) it is the
    partial cross-entropy (see :func:`partial_cross_entropy`).

    Args:
        logits: (N, C, H, W) float, raw scores. float16/bfloat16 are computed and reduced in
            float32.
        labels: (N, H, W) any integer dtype (int64 avoids a copy), values in [0, C) or
            ``ignore_index``.
        ignore_index: label value that does not count.
        weight: optional (C,) float class weights >= 0; ``"mean"`` then divides by the sum of
            the weights of the valid pixels, as :func:`torch.nn.functional.cross_entropy` does.
        valid_mask: optional (N, H, W) bool, True where the pixel counts; combined (AND) with
            ``labels != ignore_index``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        validate: check that labels lie in [0, C) or equal ``ignore_index`` (one device sync).

    Returns:
        float32 (float64 for float64 input) tensor: ``"none"`` → (N, H, W) with zeros at
        ignored pixels; ``"sum"`` → scalar Σ_Ω w·ℓ; ``"mean"`` → scalar Σ_Ω w·ℓ / Σ_Ω w. An
        empty Ω gives 0.0 attached to the graph, not NaN.

    Raises:
        TypeError: ``logits``/``weight`` not floating point, ``labels`` not integer,
            ``valid_mask`` not bool.
        ValueError: wrong rank or mismatched shapes of ``logits``, ``labels``, ``valid_mask``,
            ``weight``; ``labels`` outside [0, C) and not ``ignore_index``; negative ``weight``;
            unknown ``reduction``.

    Reference:
        ``long2015fcn`` (pixel-wise CE), ``tang2018ncut`` (partial CE on scribbles).

    Example:
        >>> logits = torch.zeros(1, 2, 1, 2)
        >>> labels = torch.tensor([[[0, 255]]])
        >>> round(float(cross_entropy(logits, labels)), 4)  # -log(1/2)
        0.6931
    """
    return _cross_entropy(
        "cross_entropy", logits, labels, ignore_index, weight, valid_mask, reduction, validate
    )


def partial_cross_entropy(
    logits: torch.Tensor,
    scribbles: torch.Tensor,
    *,
    ignore_index: int = 255,
    weight: torch.Tensor | None = None,
    valid_mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Partial cross-entropy of scribble supervision: :func:`cross_entropy` on the labelled pixels.

    ``scribbles`` is (N, H, W) int64 with unlabelled pixels set to ``ignore_index``; the mean
    runs over the scribbled pixels only. Identical to :func:`cross_entropy` (errors name
    ``partial_cross_entropy``); on fully labelled maps it equals ``F.cross_entropy``.

    Example:
        >>> logits = torch.zeros(1, 3, 1, 2)
        >>> scribbles = torch.tensor([[[2, 255]]])
        >>> round(float(partial_cross_entropy(logits, scribbles)), 4)  # -log(1/3)
        1.0986
    """
    return _cross_entropy(
        "partial_cross_entropy",
        logits,
        scribbles,
        ignore_index,
        weight,
        valid_mask,
        reduction,
        validate,
        labels_name="scribbles",
    )


class CrossEntropyLoss(nn.Module):
    """Module form of :func:`cross_entropy` (class weights stored as a buffer). See `cross_entropy`."""  # noqa: E501

    weight: torch.Tensor | None

    def __init__(
        self,
        *,
        ignore_index: int = 255,
        weight: torch.Tensor | None = None,
        reduction: Reduction = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__()
        if weight is not None:
            _check_weight("CrossEntropyLoss", weight, None)
        check_choice("CrossEntropyLoss", "reduction", reduction, REDUCTIONS)
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction
        self.validate = validate
        self.register_buffer("weight", None if weight is None else weight.detach().clone())

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        valid_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return :func:`cross_entropy` with this module's settings."""
        return cross_entropy(
            logits,
            labels,
            ignore_index=self.ignore_index,
            weight=self.weight,
            valid_mask=valid_mask,
            reduction=self.reduction,
            validate=self.validate,
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return (
            f"ignore_index={self.ignore_index}, weighted={self.weight is not None}, "
            f"reduction={self.reduction!r}"
        )
