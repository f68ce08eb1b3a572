"""Pairwise (CRF) losses: Tang et al., "On Regularized Losses for Weakly-supervised CNN Segmentation", ECCV 2018; Obukhov et al., "Gated CRF Loss for Weakly Supervised Semantic Image Segmentation", arXiv 2019; Zhang et al., "Dynamic Feature Regularized Loss for Weakly Supervised Semantic Segmentation" (DFR), arXiv 2021 / PR 2025."""  # noqa: E501

# The Gated CRF loss lives here; the DenseCRF loss (_dense_crf.py) and DFR (_dfr.py) are
# re-exported, so `denseloss.losses.pairwise.<name>` stays the import path of all of them. The
# window machinery they share is in _window.py (dispatch) and kernels.py (PyTorch energy).

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from denseloss._validation import check_choice, check_mask, check_probabilities
from denseloss.losses._dense_crf import DenseCrfLoss, dense_crf_loss
from denseloss.losses._dfr import (
    DfrLoss,
    FeatureConsistencyLoss,
    dfr_loss,
    feature_consistency_loss,
)
from denseloss.losses._window import (
    BORDERS,
    Border,
    check_radius,
    compute_dtype,
    prepare_features,
    window_loss,
)
from denseloss.losses.kernels import parse_kernels

__all__ = [
    "DenseCrfLoss",
    "DfrLoss",
    "FeatureConsistencyLoss",
    "GatedCrfLoss",
    "dense_crf_loss",
    "dfr_loss",
    "feature_consistency_loss",
    "gated_crf_loss",
]

DEFAULT_KERNELS: tuple[dict[str, float], ...] = ({"weight": 1.0, "xy": 6.0, "rgb": 0.1},)


def gated_crf_loss(
    probs: torch.Tensor,
    features: Mapping[str, torch.Tensor],
    *,
    kernels: Sequence[Mapping[str, float]] = DEFAULT_KERNELS,
    radius: int = 5,
    valid_mask: torch.Tensor | None = None,
    border: Border = "exclude",
) -> torch.Tensor:
    r"""Potts Gated CRF loss over a local window.

    .. math::

        L = \frac{1}{D} \sum_{i} \sum_{j \in \mathcal{W}_r(i),\, j \neq i} m_j\, K_{ij}\,
        (1 - p_i \cdot p_j), \qquad
        K_{ij} = \sum_d w_d \exp\Big(-\tfrac12 \sum_m
        \big\|\tfrac{f_m(i) - f_m(j)}{\sigma_{d,m}}\big\|^2\Big)

    with :math:`\mathcal{W}_r(i)` the (2r+1)² window around i, m_j = ``valid_mask`` at the
    neighbour j (1 without a mask), D = Σ m (the number of valid pixels, clamped to >= 1) or
    N·h·w without a mask. Unlike the DenseCRF loss, the kernel is local and gated by the mask of
    the neighbour only, so the loss costs O((2r+1)²·N·C·h·w) time and O(N·C·h·w) memory; it is
    computed as a sum over shifted slices with a saved-G backward (no ``unfold``), by a compiled
    kernel when one is available (``_window.py``).

    Feature modalities are constants: no gradient flows into ``features``.

    Args:
        probs: (N, C, h, w) float probabilities (softmax over C), usually at the logits'
            resolution; half precision is computed in float32.
        features: modality name → (N, F, H, W) float tensor, area-downsampled
            (``adaptive_avg_pool2d``) to (h, w). The reference passes the mean/std-normalised
            image as ``"rgb"`` (σ 0.1 refers to that scale). ``"xy"`` is the integer pixel grid
            at (h, w) and must not be given.
        kernels: sequence of ``{"weight": w_d, modality: σ_{d,m}, ...}``.
        radius: r >= 1.
        valid_mask: (N, h, w) bool, the region of interest (e.g. not crop padding; for
            scribbles it is *not* ``labels != 255``). Only pairs whose neighbour j is valid count;
            centre pixels keep their gradient.
        border: ``"exclude"`` (default): neighbours outside the image do not count.
            ``"zero_pad"`` reproduces the reference's ``unfold`` zero padding: without a mask each
            out-of-image neighbour adds the constant K(i, pad) = Σ_d w_d exp(−½ Σ_m ‖f_m(i)/σ‖²)
            (no gradient). With a mask the padded neighbours are invalid, so both agree.

    Returns:
        A scalar of dtype float32 (float64 for float64 input). An all-invalid mask gives 0.0
        attached to the graph, not NaN.

    Raises:
        TypeError: ``probs`` or a feature not a float tensor; ``valid_mask`` not bool;
            ``features`` not a dict; ``kernels`` malformed.
        ValueError: ``probs`` not 4-D or not summing to 1 over C; a feature not 4-D, with a
            different batch size, or missing from ``features``; ``"xy"`` given as a feature;
            ``valid_mask`` shape; ``radius`` < 1; σ <= 0; unknown ``border``.

    Reference:
        ``obukhov2019gated``.

    Example:
        >>> p = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # 1×2×1×2: two pixels, two classes
        >>> # Both ordered pairs have K = exp(-1/2) = 0.6065 and 1 - p_i·p_j = 1; D = 2.
        >>> gated_crf_loss(p, {}, kernels=({"weight": 1.0, "xy": 1.0},), radius=1)
        tensor(0.6065)
    """
    func = "gated_crf_loss"
    check_probabilities(func, probs)
    parsed = parse_kernels(func, kernels)
    radius = check_radius(func, radius)
    check_choice(func, "border", border, BORDERS)
    if valid_mask is not None:
        check_mask(func, valid_mask, probs)
    dtype = compute_dtype(probs)
    feats = prepare_features(func, features, parsed, probs, dtype)
    return window_loss(probs.to(dtype), feats, parsed, radius, valid_mask, border)


class GatedCrfLoss(nn.Module):
    """Module form of :func:`gated_crf_loss`. See `gated_crf_loss`."""

    def __init__(
        self,
        *,
        kernels: Sequence[Mapping[str, float]] = DEFAULT_KERNELS,
        radius: int = 5,
        border: Border = "exclude",
    ) -> None:
        super().__init__()
        self.kernels = tuple(dict(k) for k in kernels)
        parse_kernels("GatedCrfLoss", self.kernels)
        self.radius = check_radius("GatedCrfLoss", radius)
        check_choice("GatedCrfLoss", "border", border, BORDERS)
        self.border: Border = border

    def forward(
        self,
        probs: torch.Tensor,
        features: Mapping[str, torch.Tensor],
        valid_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return :func:`gated_crf_loss` with this module's settings."""
        return gated_crf_loss(
            probs,
            features,
            kernels=self.kernels,
            radius=self.radius,
            valid_mask=valid_mask,
            border=self.border,
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return f"kernels={self.kernels}, radius={self.radius}, border={self.border!r}"
