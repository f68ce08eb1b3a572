"""DFR's regularised loss and feature-consistency loss; Zhang et al., "Dynamic Feature Regularized Loss for Weakly Supervised Semantic Segmentation", arXiv 2021 / PR 2025 (re-exported by pairwise.py)."""  # noqa: E501

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from denseloss._validation import (
    check_choice,
    check_float_tensor,
    check_labels,
    check_mask,
    check_positive,
    check_probabilities,
)
from denseloss.losses._window import (
    BORDERS,
    BandResized,
    Border,
    check_radius,
    compute_dtype,
    window_loss,
)
from denseloss.losses.kernels import GaussianKernel, resize_modality

__all__ = ["DfrLoss", "FeatureConsistencyLoss", "dfr_loss", "feature_consistency_loss"]

Combine = Literal["sum", "product"]
COMBINES: tuple[str, ...] = ("sum", "product")


def _resize_deep(deep: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-downsample when larger than ``size`` in both dims, else bilinear interpolation."""
    if tuple(deep.shape[-2:]) == tuple(size):
        return deep
    if deep.shape[-2] >= size[0] and deep.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(deep, size)
    return F.interpolate(deep, size=size, mode="bilinear", align_corners=False)


def _channels_last(deep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``deep`` in ``dtype``, channels-last: the window's per-shift f_i·f_j then reduces over
    contiguous memory (about 10× faster for D = 64 than over the channel-first stride)."""
    return deep.to(dtype).contiguous(memory_format=torch.channels_last)


def _dfr_kernels(
    sigma_xy: float, sigma_rgb: float, sigma_deep: float, weights: tuple[float, float], combine: str
) -> tuple[GaussianKernel, ...]:
    shallow = (("xy", sigma_xy), ("rgb", sigma_rgb))
    if combine == "sum":
        return (
            GaussianKernel(weights[0], shallow),
            GaussianKernel(weights[1], (("deep", sigma_deep),)),
        )
    return (GaussianKernel(weights[0] * weights[1], (*shallow, ("deep", sigma_deep))),)


def _check_dfr_args(
    func: str,
    sigma_xy: float,
    sigma_rgb: float,
    sigma_deep: float,
    weights: object,
    combine: str,
    border: str,
) -> tuple[float, float]:
    check_positive(func, "sigma_xy", sigma_xy)
    check_positive(func, "sigma_rgb", sigma_rgb)
    check_positive(func, "sigma_deep", sigma_deep)
    if (
        not isinstance(weights, Sequence)
        or len(weights) != 2
        or not all(isinstance(x, (int, float)) and x >= 0 for x in weights)
    ):
        raise ValueError(
            f"{func}: weights must be a pair (shallow, deep) of numbers >= 0; got {weights!r}."
        )
    check_choice(func, "combine", combine, COMBINES)
    check_choice(func, "border", border, BORDERS)
    return float(weights[0]), float(weights[1])


def dfr_loss(
    probs: torch.Tensor,
    image: torch.Tensor,
    deep_features: torch.Tensor,
    *,
    radius: int = 5,
    sigma_xy: float = 6.0,
    sigma_rgb: float = 0.1,
    sigma_deep: float = 0.5,
    weights: tuple[float, float] = (1.0, 1.0),
    combine: Combine = "sum",
    normalize_deep: bool = True,
    detach_deep: bool = True,
    valid_mask: torch.Tensor | None = None,
    border: Border = "exclude",
) -> torch.Tensor:
    r"""DFR's regularised loss: a Gated-CRF local-window Potts loss with a deep-feature kernel.

    .. math::

        L = \frac{1}{D} \sum_i \sum_{j \in \mathcal{W}_r(i), j \neq i} m_j K_{ij}
        (1 - p_i \cdot p_j), \qquad
        k^s_{ij} = \exp\Big(-\frac{\|xy_i - xy_j\|^2}{2\sigma_{xy}^2}
        - \frac{\|c_i - c_j\|^2}{2\sigma_{rgb}^2}\Big), \quad
        k^d_{ij} = \exp\Big(-\frac{\|\hat f_i - \hat f_j\|^2}{2\sigma_{deep}^2}\Big)

    ``combine="sum"``: K = w_s k^s + w_d k^d (a deep-feature kernel that links pixels of similar
    semantics even across colour edges); ``combine="product"``: K = w_s w_d k^s k^d (one
    Gaussian on the concatenated features: deep features can only veto a colour affinity).
    D, m_j, the window and the border policy are those of :func:`gated_crf_loss`.

    No reference code exists (METHODS.md §3); every choice below is ours and is a keyword:

    - shallow kernel = Gated CRF's default (xy σ 6 at the probabilities' resolution, rgb σ 0.1);
      the image is the project's [0, 1] image, area-downsampled. Gated CRF applies σ 0.1 to the
      mean/std-normalised image; to reproduce that sharpness use ``sigma_rgb ≈ 0.1 × 0.226``.
    - deep features f̂ = the feature-consistency head's output, resized to (h, w) (area when
      larger, bilinear otherwise), then L2-normalised over channels (``normalize_deep``), so
      ‖f̂_i − f̂_j‖² = 2 − 2 cos ∈ [0, 4]; σ_deep = 0.5 gives k^d = exp(−4(1 − cos)).
    - gradient policy: by default (``detach_deep=True``) the deep features are constants here, so
      the segmentation loss cannot collapse the features to make K small; the head is trained
      by :func:`feature_consistency_loss`. ``detach_deep=False`` lets ∂L/∂f̂ flow (custom
      backward, exact). The image never receives a gradient.

    Args:
        probs: (N, C, h, w) float probabilities; half precision → float32.
        image: (N, 3, H, W) float in [0, 1] (or normalised, with σ adjusted).
        deep_features: (N, D, H', W') float, the feature-consistency head's output.
        radius: window radius r >= 1.
        sigma_xy, sigma_rgb, sigma_deep: kernel σ's (> 0).
        weights: (w_s, w_d) >= 0.
        combine: ``"sum"`` | ``"product"``.
        normalize_deep: L2-normalise the deep features over channels.
        detach_deep: treat the deep features as constants.
        valid_mask: (N, h, w) bool region of interest (neighbour validity), as in gated_crf_loss.
        border: ``"exclude"`` | ``"zero_pad"``, as in gated_crf_loss.

    Returns:
        A scalar (float32, or float64 for float64 input); an all-invalid mask gives 0.0
        attached to the graph.

    Raises:
        TypeError: a tensor of the wrong dtype.
        ValueError: shapes (4-D, 3 image channels, batch size), ``probs`` not summing to 1, σ
            <= 0, malformed ``weights``, radius < 1, unknown ``combine``/``border``.

    Reference:
        ``zhang2021dfr``; ``obukhov2019gated``.

    Example:
        >>> p = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # two pixels, two classes
        >>> img = torch.zeros(1, 3, 1, 2)
        >>> deep = torch.tensor([[[[1.0, 1.0]]]])  # identical deep features: k^d = 1
        >>> # K = exp(-1/72) + 1 = 1.9862 (xy distance 1, σxy 6); two ordered pairs / D = 2.
        >>> dfr_loss(p, img, deep, radius=1)
        tensor(1.9862)
    """
    func = "dfr_loss"
    check_probabilities(func, probs)
    check_float_tensor(func, "image", image, 4)
    check_float_tensor(func, "deep_features", deep_features, 4)
    if image.shape[1] != 3 or image.shape[0] != probs.shape[0]:
        raise ValueError(
            f"{func}: image must have shape (N, 3, H, W) with N = {probs.shape[0]}; got "
            f"{tuple(image.shape)}."
        )
    if deep_features.shape[0] != probs.shape[0]:
        raise ValueError(
            f"{func}: deep_features must have batch size {probs.shape[0]}; got shape "
            f"{tuple(deep_features.shape)}."
        )
    radius = check_radius(func, radius)
    w_s, w_d = _check_dfr_args(func, sigma_xy, sigma_rgb, sigma_deep, weights, combine, border)
    if valid_mask is not None:
        check_mask(func, valid_mask, probs)
    dtype = compute_dtype(probs)
    size = tuple(probs.shape[-2:])
    deep: torch.Tensor | BandResized
    if detach_deep:
        # Constants. A map smaller than (h, w) is resized (bilinear) and normalised by the window
        # kernel band by band, so the deep map at the probabilities' size (3.4× the logits for
        # 64 channels) never exists; a larger one is area-downsampled first.
        with torch.no_grad():
            deep_in = deep_features.detach().to(dtype)
            if deep_in.shape[-2] >= size[0] and deep_in.shape[-1] >= size[1]:
                deep_in = _resize_deep(deep_in, size)
            deep = BandResized(deep_in.contiguous(), normalize_deep)
    else:
        deep = _resize_deep(_channels_last(deep_features, dtype), size)
        if normalize_deep:
            deep = F.normalize(deep, dim=1)
    feats = {"rgb": resize_modality(image.detach().to(dtype), size), "deep": deep}
    kernels = _dfr_kernels(sigma_xy, sigma_rgb, sigma_deep, (w_s, w_d), combine)
    return window_loss(probs.to(dtype), feats, kernels, radius, valid_mask, border)


class DfrLoss(nn.Module):
    """Module form of :func:`dfr_loss`. See `dfr_loss`."""

    def __init__(
        self,
        *,
        radius: int = 5,
        sigma_xy: float = 6.0,
        sigma_rgb: float = 0.1,
        sigma_deep: float = 0.5,
        weights: tuple[float, float] = (1.0, 1.0),
        combine: Combine = "sum",
        normalize_deep: bool = True,
        detach_deep: bool = True,
        border: Border = "exclude",
    ) -> None:
        super().__init__()
        self.radius = check_radius("DfrLoss", radius)
        self.weights = _check_dfr_args(
            "DfrLoss", sigma_xy, sigma_rgb, sigma_deep, weights, combine, border
        )
        self.sigma_xy, self.sigma_rgb, self.sigma_deep = sigma_xy, sigma_rgb, sigma_deep
        self.combine: Combine = combine
        self.normalize_deep, self.detach_deep = normalize_deep, detach_deep
        self.border: Border = border

    def forward(
        self,
        probs: torch.Tensor,
        image: torch.Tensor,
        deep_features: torch.Tensor,
        valid_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return :func:`dfr_loss` with this module's settings."""
        return dfr_loss(
            probs,
            image,
            deep_features,
            radius=self.radius,
            sigma_xy=self.sigma_xy,
            sigma_rgb=self.sigma_rgb,
            sigma_deep=self.sigma_deep,
            weights=self.weights,
            combine=self.combine,
            normalize_deep=self.normalize_deep,
            detach_deep=self.detach_deep,
            valid_mask=valid_mask,
            border=self.border,
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return (
            f"radius={self.radius}, sigma_xy={self.sigma_xy}, sigma_rgb={self.sigma_rgb}, "
            f"sigma_deep={self.sigma_deep}, weights={self.weights}, combine={self.combine!r}, "
            f"normalize_deep={self.normalize_deep}, detach_deep={self.detach_deep}, "
            f"border={self.border!r}"
        )


def feature_consistency_loss(
    deep_features: torch.Tensor,
    scribble_labels: torch.Tensor,
    *,
    max_pixels: int = 1024,
    margin: float = 0.0,
    ignore_index: int = 255,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Pairwise feature-consistency loss on scribble pixels (trains DFR's consistency head).

    .. math::

        L = \tfrac12\Big(\frac{1}{|P|}\sum_{(i,j)\in P} (1 - \cos_{ij})
        + \frac{1}{|Q|}\sum_{(i,j)\in Q} \max(0, \cos_{ij} - \text{margin})\Big)

    over unordered pairs i < j of labelled pixels of the same image: P = same label, Q =
    different labels, cos = cosine similarity of the feature vectors. Balanced as in A2GNN: each
    term is averaged over its own pair count (pooled over the batch), then the two are
    averaged; when only one kind of pair exists, L is that term alone. No reference code exists
    for DFR; A2GNN's affinity head (METHODS.md §3) is the closest design.

    Args:
        deep_features: (N, D, h, w) float, the head's output.
        scribble_labels: (N, H, W) int64 scribble labels, ``ignore_index`` = unlabelled;
            nearest-resized to (h, w).
        max_pixels: at most this many labelled pixels per image are used (sampled without
            replacement with ``generator``), bounding the pairs to max_pixels²/2.
        margin: different-label pairs are pushed until cos <= margin (in [-1, 1)).
        ignore_index: the unlabelled value.
        generator: CPU generator for the subsampling (reproducibility).

    Returns:
        A scalar; 0.0 attached to the graph when there is no pair.

    Raises:
        TypeError: ``deep_features`` not float or labels not integer.
        ValueError: shapes, batch mismatch, ``max_pixels`` < 2, ``margin`` outside [-1, 1).

    Reference:
        ``zhang2021dfr``; ``zhang2021a2gnn``.

    Example:
        >>> f = torch.tensor([[[[1.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]]])  # 3 pixels, D = 2
        >>> y = torch.tensor([[[0, 0, 1]]])
        >>> # same pair (0,1): 1 - cos = 0; different pairs cos = 0 -> max(0, 0 - 0) = 0.
        >>> feature_consistency_loss(f, y)
        tensor(0.)
    """
    func = "feature_consistency_loss"
    check_float_tensor(func, "deep_features", deep_features, 4)
    check_labels(func, scribble_labels, ignore_index=ignore_index, name="scribble_labels")
    if scribble_labels.shape[0] != deep_features.shape[0]:
        raise ValueError(
            f"{func}: scribble_labels must have batch size {deep_features.shape[0]}; got shape "
            f"{tuple(scribble_labels.shape)}."
        )
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 2:
        raise ValueError(f"{func}: max_pixels must be an int >= 2; got {max_pixels!r}.")
    if not -1 <= margin < 1:
        raise ValueError(f"{func}: margin must be in [-1, 1); got {margin!r}.")
    dtype = compute_dtype(deep_features)
    feats = deep_features.to(dtype)
    h, w = feats.shape[-2:]
    labels = F.interpolate(scribble_labels[:, None].float(), size=(h, w), mode="nearest")
    labels = labels[:, 0].long()
    pos_sum = neg_sum = feats.sum() * 0
    pos_count = neg_count = 0
    for b in range(feats.shape[0]):
        idx = (labels[b].reshape(-1) != ignore_index).nonzero().squeeze(1)
        if idx.numel() > max_pixels:
            pick = torch.randperm(idx.numel(), generator=generator)[:max_pixels]
            idx = idx[pick.to(idx.device)]
        if idx.numel() < 2:
            continue
        f = F.normalize(feats[b].reshape(feats.shape[1], -1)[:, idx].t(), dim=1)  # (m, D)
        y = labels[b].reshape(-1)[idx]
        cos = f @ f.t()
        upper = torch.ones_like(cos, dtype=torch.bool).triu(1)
        same = (y[:, None] == y[None, :]) & upper
        diff = (y[:, None] != y[None, :]) & upper
        pos_sum = pos_sum + torch.where(same, 1 - cos, 0).sum()
        neg_sum = neg_sum + torch.where(diff, (cos - margin).clamp_min(0), 0).sum()
        pos_count += int(same.sum())
        neg_count += int(diff.sum())
    terms = [s / c for s, c in ((pos_sum, pos_count), (neg_sum, neg_count)) if c > 0]
    if not terms:
        return pos_sum
    return sum(terms[1:], terms[0]) / len(terms)


class FeatureConsistencyLoss(nn.Module):
    """Module form of :func:`feature_consistency_loss`. See `feature_consistency_loss`."""

    def __init__(self, *, max_pixels: int = 1024, margin: float = 0.0, ignore_index: int = 255):
        super().__init__()
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 2:
            raise ValueError(
                f"FeatureConsistencyLoss: max_pixels must be an int >= 2; got {max_pixels!r}."
            )
        if not -1 <= margin < 1:
            raise ValueError(f"FeatureConsistencyLoss: margin must be in [-1, 1); got {margin!r}.")
        self.max_pixels, self.margin, self.ignore_index = max_pixels, margin, ignore_index

    def forward(
        self,
        deep_features: torch.Tensor,
        scribble_labels: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Return :func:`feature_consistency_loss` with this module's settings."""
        return feature_consistency_loss(
            deep_features,
            scribble_labels,
            max_pixels=self.max_pixels,
            margin=self.margin,
            ignore_index=self.ignore_index,
            generator=generator,
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return (
            f"max_pixels={self.max_pixels}, margin={self.margin}, ignore_index={self.ignore_index}"
        )
