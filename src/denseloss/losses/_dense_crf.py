"""DenseCRF loss; Tang et al., "On Regularized Losses for Weakly-supervised CNN Segmentation", ECCV 2018 (re-exported by pairwise.py)."""  # noqa: E501

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from denseloss._validation import (
    check_choice,
    check_mask,
    check_positive,
    check_probabilities,
    check_same_spatial,
    check_tensor,
)
from denseloss.losses._lattice import dense_gaussian_filter, image_features, lattice_filter
from denseloss.losses._window import compute_dtype

__all__ = ["DenseCrfLoss", "dense_crf_loss"]

Method = Literal["auto", "exact", "fast"]
METHODS: tuple[str, ...] = ("auto", "exact", "fast")
EXACT_MAX_PIXELS = 64 * 64


class _DenseQuadratic(torch.autograd.Function):
    """Σ_b Σ_k S_bkᵀ Ŵ_b S_bk with the backward 2 Ŵ S (Ŵ symmetric), Ŵ S saved from forward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        values: torch.Tensor,
        image: torch.Tensor,
        sigmas: tuple[float, float],
        method: str,
    ) -> torch.Tensor:
        if method == "exact":
            filtered = dense_gaussian_filter(image_features(image, *sigmas), values)
        else:
            filtered = lattice_filter(values, image, *sigmas)
        ctx.save_for_backward(filtered)
        return torch.dot(values.reshape(-1), filtered.reshape(-1))

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None]:
        (filtered,) = ctx.saved_tensors
        return 2.0 * grad_out * filtered, None, None, None


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
    fine up to ~128²). ``method="fast"`` is a permutohedral lattice (O(n); compiled when a C
    compiler is available, else the same arithmetic in PyTorch, ``_lattice.py``): chosen over a
    bilateral grid because a multilinear 5-D grid touches 2⁵ = 32 cells per pixel and needs a
    dense 5-D array, where the lattice touches d + 1 = 6 vertices and stores only occupied
    ones. Its elevation is sharpened and its mass-conserving filter rescaled by a gain, both
    calibrated on photographs (``_lattice._LATTICE_SHARPEN``, ``_LATTICE_GAIN_5D``), and below
    256² it averages up to 8 shifted lattices: on photographs with these σ's it stays within
    5 % of ``exact`` from 64² to 256² (``docs/bench_losses.md``: where the rest of the error
    comes from). The quadratic form uses the symmetrised filter, so the custom backward is its
    exact gradient. ``"auto"`` picks ``exact`` when h·w <= 64² after scaling, else ``fast``.

    Weight: rloss's own lattice returns only ≈0.45-0.6× the exact quadratic form, so its recommended
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
    dtype = compute_dtype(probs)
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
    if method == "auto":
        method = "exact" if h * w <= EXACT_MAX_PIXELS else "fast"
    sigmas = (float(sigma_xy), float(sigma_rgb))
    return -(weight / bsz) * _DenseQuadratic.apply(values, img.detach(), sigmas, method)


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
