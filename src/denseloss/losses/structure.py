"""Adversarial structure matching; Hwang et al., "Adversarial Structure Matching for Structured Prediction Tasks", CVPR 2019."""  # noqa: E501

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from denseloss._validation import check_float_tensor, check_tensor
from denseloss.losses._reduction import masked_reduce

__all__ = [
    "StructureHingeLoss",
    "StructureMatchingLoss",
    "structure_hinge_loss",
    "structure_matching_loss",
]

# tf.nn.l2_normalize's default epsilon (on the squared norm), as in the reference.
_EPS = 1e-12


def _check_pairs(func: str, name_a: str, feats_a: object, name_b: str, feats_b: object) -> None:
    for name, feats in ((name_a, feats_a), (name_b, feats_b)):
        if not isinstance(feats, Sequence) or isinstance(feats, torch.Tensor) or not feats:
            raise TypeError(
                f"{func}: {name} must be a non-empty list of (N, C, H, W) tensors; "
                f"got {type(feats).__name__}."
            )
    feats_a = cast(Sequence[torch.Tensor], feats_a)
    feats_b = cast(Sequence[torch.Tensor], feats_b)
    if len(feats_a) != len(feats_b):
        raise ValueError(
            f"{func}: {name_b} must have as many layers as {name_a} ({len(feats_a)}); "
            f"got {len(feats_b)}."
        )
    for i, (a, b) in enumerate(zip(feats_a, feats_b)):
        check_float_tensor(func, f"{name_a}[{i}]", a, 4)
        check_float_tensor(func, f"{name_b}[{i}]", b, 4)
        if a.shape != b.shape:
            raise ValueError(
                f"{func}: {name_b}[{i}] must have shape {tuple(a.shape)} to match {name_a}[{i}]; "
                f"got {tuple(b.shape)}."
            )


def _layer_mask(valid_mask: torch.Tensor | None, size: torch.Size) -> torch.Tensor | None:
    """Resize (N, H, W) to (N, h, w): a layer pixel counts only if its whole cell is valid."""
    if valid_mask is None:
        return None
    if valid_mask.shape[-2:] == size:
        return valid_mask
    invalid = (~valid_mask).unsqueeze(1).float()
    return F.adaptive_max_pool2d(invalid, tuple(size))[:, 0] == 0


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """d(x) = Σ_channels (â(x) - b̂(x))², hats = per-pixel channel L2 normalisation; (N, H, W)."""
    dtype = torch.promote_types(a.dtype, torch.float32)
    a_hat = F.normalize(a.to(dtype), p=2.0, dim=1, eps=_EPS**0.5)
    b_hat = F.normalize(b.to(dtype), p=2.0, dim=1, eps=_EPS**0.5)
    return (a_hat - b_hat).square().sum(dim=1)


def _structure_loss(
    func: str,
    name_a: str,
    feats_a: Sequence[torch.Tensor],
    name_b: str,
    feats_b: Sequence[torch.Tensor],
    valid_mask: torch.Tensor | None,
    margin: float | None,
) -> torch.Tensor:
    _check_pairs(func, name_a, feats_a, name_b, feats_b)
    if valid_mask is not None:
        check_tensor(func, "valid_mask", valid_mask, 3)
        if valid_mask.dtype != torch.bool:
            raise TypeError(
                f"{func}: valid_mask must be a bool tensor; got dtype {valid_mask.dtype}."
            )
        if valid_mask.shape[0] != feats_a[0].shape[0]:
            raise ValueError(
                f"{func}: valid_mask must have batch size {feats_a[0].shape[0]}; "
                f"got shape {tuple(valid_mask.shape)}."
            )
    terms = []
    for a, b in zip(feats_a, feats_b):
        d = _distances(a, b)
        per_pixel = d if margin is None else F.relu(margin - d)  # hinge per pixel, then mean
        terms.append(
            masked_reduce(per_pixel, _layer_mask(valid_mask, d.shape[-2:]), "mean", func=func)
        )
    return torch.stack(terms).sum()


def structure_matching_loss(
    features_pred: Sequence[torch.Tensor],
    features_gt: Sequence[torch.Tensor],
    *,
    valid_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""ASM structure-matching distance between the analyzer's features of prediction and GT.

    .. math::

        d_l(x) = \sum_k \bigl(\hat\phi_{l,k}(\hat y)(x) - \hat\phi_{l,k}(y)(x)\bigr)^2, \qquad
        L = \sum_l \frac{1}{|\Omega_l|} \sum_{x \in \Omega_l} d_l(x)

    with φ̂ the feature map L2-normalised over channels at each pixel (x / max(‖x‖, 1e-6), as
    ``tf.nn.l2_normalize``), l over the given layers and Ω_l the valid pixels of layer l. The
    predictor minimises it; unlike a pixel-wise loss, it compares the *structures* the
    adversarially trained analyzer extracts from both maps. Each d_l lies in [0, 4].

    Args:
        features_pred: list of L tensors (N, K_l, H_l, W_l) float, analyzer features of the
            prediction (gradient flows into them).
        features_gt: list of L tensors with the same shapes, analyzer features of the GT.
        valid_mask: optional (N, H, W) bool at any resolution; resized to each layer by
            adaptive max-pooling of the invalid pixels (a layer pixel counts only if every input
            pixel of its cell is valid).

    Returns:
        Scalar, float32 (float64 for float64 input): Σ_l (mean over Ω_l of d_l). A layer with
        empty Ω_l contributes 0.0 attached to the graph, not NaN.

    Raises:
        TypeError: a feature list not a non-empty list, a feature map not floating point,
            ``valid_mask`` not bool.
        ValueError: different numbers of layers; a feature map not 4-D or with mismatched
            shapes; ``valid_mask`` with the wrong batch size or rank.

    Reference:
        ``hwang2019asm``.

    Example:
        >>> pred = [torch.tensor([[[[1.0]], [[0.0]]]])]  # unit vector (1, 0)
        >>> gt = [torch.tensor([[[[0.0]], [[2.0]]]])]  # normalised to (0, 1): (1-0)² + (0-1)² = 2
        >>> float(structure_matching_loss(pred, gt))
        2.0
    """
    return _structure_loss(
        "structure_matching_loss",
        "features_pred",
        features_pred,
        "features_gt",
        features_gt,
        valid_mask,
        None,
    )


def structure_hinge_loss(
    features_gt: Sequence[torch.Tensor],
    features_neg: Sequence[torch.Tensor],
    *,
    margin: float = 0.8,
    valid_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""ASM analyzer's hinge: push GT and negative structures apart up to a margin.

    .. math::

        L = \sum_l \frac{1}{|\Omega_l|} \sum_{x \in \Omega_l} \max\bigl(0,\ m - d_l(x)\bigr)

    with d_l the squared distance of channel-normalised features of
    :func:`structure_matching_loss` between GT and negatives (one-hot argmax predictions in the
    reference), m = ``margin``. The hinge is taken per pixel before the mean. The analyzer
    minimises it; the reference implements the paper's "maximise the ASM loss" step this way,
    which keeps the adversarial objective bounded.

    Args:
        features_gt: list of L tensors (N, K_l, H_l, W_l) float, analyzer features of the GT.
        features_neg: list of L tensors with the same shapes, features of the negatives.
        margin: m > 0 (reference 0.8).
        valid_mask: optional (N, H, W) bool, resized to each layer as in
            :func:`structure_matching_loss`.

    Returns:
        Scalar, float32 (float64 for float64 input): Σ_l mean over Ω_l of the hinge. An empty
        Ω_l contributes 0.0 attached to the graph, not NaN.

    Raises:
        TypeError: as :func:`structure_matching_loss`.
        ValueError: as :func:`structure_matching_loss`; ``margin`` <= 0.

    Reference:
        ``hwang2019asm``.

    Example:
        >>> gt = [torch.tensor([[[[1.0]], [[0.0]]]])]
        >>> neg = [torch.tensor([[[[3.0]], [[3.0]]]])]  # (.7071, .7071): d = 0.0858+0.5 = 0.5858
        >>> round(float(structure_hinge_loss(gt, neg)), 4)  # 0.8 - 0.5858
        0.2142
    """
    func = "structure_hinge_loss"
    if not margin > 0:
        raise ValueError(f"{func}: margin must be > 0; got {margin!r}.")
    return _structure_loss(
        func, "features_gt", features_gt, "features_neg", features_neg, valid_mask, margin
    )


class StructureMatchingLoss(nn.Module):
    """Module form of :func:`structure_matching_loss`. See `structure_matching_loss`."""

    def forward(
        self,
        features_pred: Sequence[torch.Tensor],
        features_gt: Sequence[torch.Tensor],
        valid_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return :func:`structure_matching_loss`."""
        return structure_matching_loss(features_pred, features_gt, valid_mask=valid_mask)


class StructureHingeLoss(nn.Module):
    """Module form of :func:`structure_hinge_loss`. See `structure_hinge_loss`."""

    def __init__(self, *, margin: float = 0.8) -> None:
        super().__init__()
        if not margin > 0:
            raise ValueError(f"StructureHingeLoss: margin must be > 0; got {margin!r}.")
        self.margin = margin

    def forward(
        self,
        features_gt: Sequence[torch.Tensor],
        features_neg: Sequence[torch.Tensor],
        valid_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return :func:`structure_hinge_loss` with this module's margin."""
        return structure_hinge_loss(
            features_gt, features_neg, margin=self.margin, valid_mask=valid_mask
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return f"margin={self.margin}"
