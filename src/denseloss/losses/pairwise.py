"""Pairwise (CRF) losses: Tang et al., "On Regularized Losses for Weakly-supervised CNN Segmentation", ECCV 2018; Obukhov et al., "Gated CRF Loss for Weakly Supervised Semantic Image Segmentation", arXiv 2019; Zhang et al., "Dynamic Feature Regularized Loss for Weakly Supervised Semantic Segmentation" (DFR), arXiv 2021 / PR 2025."""  # noqa: E501

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    check_same_spatial,
    check_tensor,
)
from denseloss.losses.kernels import (
    GaussianKernel,
    PermutohedralLattice,
    border_term,
    dense_gaussian_filter,
    parse_kernels,
    resize_modality,
    window_potts_energy,
)

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

Border = Literal["exclude", "zero_pad"]
BORDERS: tuple[str, ...] = ("exclude", "zero_pad")
DEFAULT_KERNELS: tuple[dict[str, float], ...] = ({"weight": 1.0, "xy": 6.0, "rgb": 0.1},)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Half precision is reduced in float32; float32/float64 stay as they are."""
    return torch.promote_types(x.dtype, torch.float32)


def _check_radius(func: str, radius: object) -> int:
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"{func}: radius must be an int >= 1; got {radius!r}.")
    return radius


def _window_loss(
    func: str,
    probs: torch.Tensor,
    features: Mapping[str, torch.Tensor],
    kernels: tuple[GaussianKernel, ...],
    radius: int,
    valid_mask: torch.Tensor | None,
    border: str,
) -> torch.Tensor:
    """Shared body of gated_crf_loss and dfr_loss: energy / denominator (+ border quirk)."""
    n, _, h, w = probs.shape
    valid = None if valid_mask is None else valid_mask[:, None].to(probs.dtype)
    energy = window_potts_energy(probs, features, kernels, radius, valid)
    if border == "zero_pad" and valid_mask is None:
        pad = border_term(
            features, kernels, radius, (n, h, w), dtype=probs.dtype, device=probs.device
        )
        energy = energy + pad.sum()
    if valid_mask is None:
        return energy / (n * h * w)
    # An all-invalid mask leaves energy = 0 exactly; clamping the count gives 0, not 0/0.
    return energy / valid_mask.sum().clamp_min(1).to(probs.dtype)


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
    computed as a sum over shifted slices with a recomputing backward (no ``unfold``).

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
    radius = _check_radius(func, radius)
    check_choice(func, "border", border, BORDERS)
    if valid_mask is not None:
        check_mask(func, valid_mask, probs)
    dtype = _compute_dtype(probs)
    feats = _prepare_features(func, features, parsed, probs, dtype)
    return _window_loss(func, probs.to(dtype), feats, parsed, radius, valid_mask, border)


def _prepare_features(
    func: str,
    features: object,
    kernels: tuple[GaussianKernel, ...],
    probs: torch.Tensor,
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """Check, detach and area-downsample the modalities the kernels use."""
    if not isinstance(features, Mapping):
        raise TypeError(
            f"{func}: features must be a dict of modality name -> (N, F, H, W) tensor; got "
            f"{type(features).__name__}."
        )
    if "xy" in features:
        raise ValueError(
            f"{func}: features must not contain 'xy'; got keys {sorted(features)}. Hint: 'xy' "
            "is the pixel grid at the probabilities' size and is built internally."
        )
    needed = sorted({m for k in kernels for m in k.modalities() if m != "xy"})
    out = {}
    for name in needed:
        if name not in features:
            raise ValueError(
                f"{func}: features must contain every modality the kernels use ({needed}); got "
                f"keys {sorted(features)}."
            )
        f = features[name]
        check_float_tensor(func, f"features[{name!r}]", f, 4)
        if f.shape[0] != probs.shape[0]:
            raise ValueError(
                f"{func}: features[{name!r}] must have batch size {probs.shape[0]}; got shape "
                f"{tuple(f.shape)}."
            )
        out[name] = resize_modality(f.detach().to(dtype), tuple(probs.shape[-2:]))
    return out


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
        self.radius = _check_radius("GatedCrfLoss", radius)
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


# ---------------------------------------------------------------------------------------------
# DenseCRF loss
# ---------------------------------------------------------------------------------------------

Method = Literal["auto", "exact", "fast"]
METHODS: tuple[str, ...] = ("auto", "exact", "fast")
EXACT_MAX_PIXELS = 64 * 64


class _DenseQuadratic(torch.autograd.Function):
    """Σ_b Σ_k S_bkᵀ Ŵ_b S_bk with the backward 2 Ŵ S (Ŵ symmetric), Ŵ S saved from forward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        values: torch.Tensor,
        features: torch.Tensor,
        method: str,
    ) -> torch.Tensor:
        bsz, n, _ = features.shape
        if method == "exact":
            filtered = dense_gaussian_filter(features, values)
        else:
            batch_index = torch.arange(bsz, device=values.device).repeat_interleave(n)
            lattice = PermutohedralLattice.build(features.reshape(bsz * n, -1), batch_index)
            filtered = lattice.filter(values.reshape(bsz * n, -1)).reshape(values.shape)
        ctx.save_for_backward(filtered)
        return torch.dot(values.reshape(-1), filtered.reshape(-1))

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None]:
        (filtered,) = ctx.saved_tensors
        return 2.0 * grad_out * filtered, None, None


def dense_crf_loss(
    probs: torch.Tensor,
    image: torch.Tensor,
    *,
    sigma_rgb: float = 15.0,
    sigma_xy: float = 100.0,
    weight: float = 1.0,
    valid_mask: torch.Tensor | None = None,
    scale: float = 1.0,
    method: Method = "auto",
) -> torch.Tensor:
    r"""Tang et al.'s DenseCRF loss: a fully connected Gaussian quadratic relaxation.

    .. math::

        L = -\frac{\text{weight}}{B} \sum_b \sum_k S_{bk}^\top W_b S_{bk}, \quad
        W_{ij} = \exp\big(-\tfrac12\|f_i - f_j\|^2\big), \quad
        f = \big(\tfrac{x}{\sigma_{xy}}, \tfrac{y}{\sigma_{xy}}, \tfrac{R}{\sigma_{rgb}},
        \tfrac{G}{\sigma_{rgb}}, \tfrac{B}{\sigma_{rgb}}\big)

    with S = probs × valid_mask (zero outside the region of interest; those pixels still have
    image features), x, y integer pixel indices and the self term W_ii = 1 included, so L is
    negative (it is a relaxation of the Potts cut up to a constant). The normaliser is the batch
    size B only, as in rloss. Its gradient is −2·weight/B · W S (custom backward).

    ``method="exact"`` is the dense quadratic form, chunked over rows (O(n²) time, O(n) memory;
    fine up to ~128²). ``method="fast"`` is a permutohedral lattice written in PyTorch (O(n)):
    chosen over a bilateral grid because a multilinear 5-D grid touches 2⁵ = 32 cells per pixel
    and needs a dense 5-D array, where the lattice touches d + 1 = 6 vertices and stores only
    occupied ones. Its mass-conserving filter is rescaled by a measured gain (see
    ``kernels._LATTICE_GAIN_5D``) so that it stays within ~10% of ``exact``; the quadratic form
    uses the symmetrised filter, so the custom backward is its exact gradient. ``"auto"`` picks
    ``exact`` when h·w <= 64² after scaling, else ``fast``.

    Weight: rloss's own lattice returns only ≈0.45× the exact quadratic form, so its recommended
    weight 2e-9 (tied to that and to unnormalised sums) does not carry over; with this function
    the equivalent is ≈0.9e-9 and should be re-tuned.

    Args:
        probs: (B, C, H, W) float probabilities (softmax over C); half precision → float32.
        image: (B, 3, H, W) float or uint8 with values in [0, 255] (not normalised).
        sigma_rgb: σ of the colour features, in 0–255 units (> 0).
        sigma_xy: σ of the pixel position at full resolution (> 0); multiplied by ``scale``.
        weight: loss weight (>= 0).
        valid_mask: (B, H, W) bool region of interest (e.g. not crop padding).
        scale: in (0, 1]; < 1 downsamples the image (nearest), probs (bilinear,
            ``align_corners=False``) and the mask (nearest) by this factor, as rloss does.
        method: ``"auto"`` | ``"exact"`` | ``"fast"``.

    Returns:
        A scalar (float32, or float64 for float64 input). An all-invalid mask gives 0.0
        attached to the graph.

    Raises:
        TypeError: ``probs`` not float; ``image`` neither float nor uint8; ``valid_mask`` not
            bool.
        ValueError: ``probs`` not 4-D or not summing to 1; ``image`` not (B, 3, H, W) matching
            ``probs``; σ <= 0; weight < 0; scale not in (0, 1]; unknown method.

    Reference:
        ``tang2018regularized``.

    Example:
        >>> p = torch.ones(1, 1, 1, 2)  # one class, two pixels of the same colour, 1 pixel apart
        >>> img = torch.zeros(1, 3, 1, 2)
        >>> # S^T W S = 1 + 1 + 2 exp(-1/2) = 3.2131 (self terms + the pair, σxy = 1).
        >>> dense_crf_loss(p, img, sigma_xy=1.0, method="exact")
        tensor(-3.2131)
    """
    func = "dense_crf_loss"
    check_probabilities(func, probs)
    check_tensor(func, "image", image, 4)
    if not (image.is_floating_point() or image.dtype == torch.uint8):
        raise TypeError(f"{func}: image must be a float or uint8 tensor; got dtype {image.dtype}.")
    if image.shape[1] != 3:
        raise ValueError(f"{func}: image must have 3 channels; got shape {tuple(image.shape)}.")
    check_same_spatial(func, probs, image, "probs", "image")
    check_positive(func, "sigma_rgb", sigma_rgb)
    check_positive(func, "sigma_xy", sigma_xy)
    check_positive(func, "weight", weight, allow_zero=True)
    if not 0 < scale <= 1:
        raise ValueError(f"{func}: scale must be in (0, 1]; got {scale!r}.")
    check_choice(func, "method", method, METHODS)
    if valid_mask is not None:
        check_mask(func, valid_mask, probs)
    dtype = _compute_dtype(probs)
    probs, img = probs.to(dtype), image.to(dtype)
    mask = None if valid_mask is None else valid_mask[:, None].to(dtype)
    if scale != 1:
        img = F.interpolate(img, scale_factor=scale, mode="nearest")
        probs = F.interpolate(probs, scale_factor=scale, mode="bilinear", align_corners=False)
        if mask is not None:
            mask = F.interpolate(mask, scale_factor=scale, mode="nearest")
        sigma_xy = sigma_xy * scale
    bsz, _, h, w = probs.shape
    values = probs if mask is None else probs * mask
    values = values.permute(0, 2, 3, 1).reshape(bsz, h * w, -1)  # (B, n, C)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=dtype, device=probs.device),
        torch.arange(w, dtype=dtype, device=probs.device),
        indexing="ij",
    )
    grid = torch.stack([xs, ys]).expand(bsz, 2, h, w) / sigma_xy
    feats = torch.cat([grid, img / sigma_rgb], dim=1).permute(0, 2, 3, 1).reshape(bsz, h * w, 5)
    if method == "auto":
        method = "exact" if h * w <= EXACT_MAX_PIXELS else "fast"
    return -(weight / bsz) * _DenseQuadratic.apply(values, feats.detach(), method)


class DenseCrfLoss(nn.Module):
    """Module form of :func:`dense_crf_loss`. See `dense_crf_loss`."""

    def __init__(
        self,
        *,
        sigma_rgb: float = 15.0,
        sigma_xy: float = 100.0,
        weight: float = 1.0,
        scale: float = 1.0,
        method: Method = "auto",
    ) -> None:
        super().__init__()
        check_positive("DenseCrfLoss", "sigma_rgb", sigma_rgb)
        check_positive("DenseCrfLoss", "sigma_xy", sigma_xy)
        check_positive("DenseCrfLoss", "weight", weight, allow_zero=True)
        if not 0 < scale <= 1:
            raise ValueError(f"DenseCrfLoss: scale must be in (0, 1]; got {scale!r}.")
        check_choice("DenseCrfLoss", "method", method, METHODS)
        self.sigma_rgb, self.sigma_xy, self.weight = sigma_rgb, sigma_xy, weight
        self.scale = scale
        self.method: Method = method

    def forward(
        self, probs: torch.Tensor, image: torch.Tensor, valid_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return :func:`dense_crf_loss` with this module's settings."""
        return dense_crf_loss(
            probs,
            image,
            sigma_rgb=self.sigma_rgb,
            sigma_xy=self.sigma_xy,
            weight=self.weight,
            valid_mask=valid_mask,
            scale=self.scale,
            method=self.method,
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return (
            f"sigma_rgb={self.sigma_rgb}, sigma_xy={self.sigma_xy}, weight={self.weight}, "
            f"scale={self.scale}, method={self.method!r}"
        )


# ---------------------------------------------------------------------------------------------
# DFR: dynamic feature regularised loss and the feature-consistency loss
# ---------------------------------------------------------------------------------------------

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
    radius = _check_radius(func, radius)
    w_s, w_d = _check_dfr_args(func, sigma_xy, sigma_rgb, sigma_deep, weights, combine, border)
    if valid_mask is not None:
        check_mask(func, valid_mask, probs)
    dtype = _compute_dtype(probs)
    size = tuple(probs.shape[-2:])
    if detach_deep:
        # Constants: resize and normalise without a graph, in place, so only one (N, D, h, w)
        # map is alive (the deep map at the probabilities' size is the loss's largest tensor).
        with torch.no_grad():
            deep = _resize_deep(_channels_last(deep_features, dtype), size)
            if normalize_deep:
                if deep is deep_features:
                    deep = deep.clone()
                # F.normalize: x / max(‖x‖, 1e-12), over the channels.
                deep.div_(torch.linalg.vector_norm(deep, dim=1, keepdim=True).clamp_min_(1e-12))
    else:
        deep = _resize_deep(_channels_last(deep_features, dtype), size)
        if normalize_deep:
            deep = F.normalize(deep, dim=1)
    feats = {"rgb": resize_modality(image.detach().to(dtype), size), "deep": deep}
    kernels = _dfr_kernels(sigma_xy, sigma_rgb, sigma_deep, (w_s, w_d), combine)
    return _window_loss(func, probs.to(dtype), feats, kernels, radius, valid_mask, border)


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
        self.radius = _check_radius("DfrLoss", radius)
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
    dtype = _compute_dtype(deep_features)
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
