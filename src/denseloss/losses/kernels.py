"""Gaussian affinity kernels on colour, position and deep features (Obukhov et al., arXiv 2019).

The local-window machinery shared by :func:`~denseloss.losses.pairwise.gated_crf_loss` and
:func:`~denseloss.losses.pairwise.dfr_loss`: window-shift enumeration, the per-shift kernel of a
set of Gaussian kernels over feature modalities, the border and region-of-interest policies, and a
custom autograd function that evaluates the Potts energy

.. math::

    E = \\sum_i \\sum_{j \\in \\mathcal{W}(i), j \\neq i} K_{ij}\\, m_j\\, (1 - p_i \\cdot p_j),
    \\qquad K_{ij} = \\sum_d w_d \\exp\\Big(-\\tfrac12 \\sum_m
    \\big\\|\\tfrac{f_m(i) - f_m(j)}{\\sigma_{d,m}}\\big\\|^2\\Big)

as a sum over the :math:`(2r+1)^2 - 1` shifted slices of the image (never ``unfold``), with memory
O(N·C·h·w). K is symmetric, so only half of the shifts are visited: the unordered pair {i, j}
carries the weight :math:`K_{ij}(m_i + m_j)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "GaussianKernel",
    "PermutohedralLattice",
    "border_term",
    "dense_gaussian_filter",
    "half_window_shifts",
    "parse_kernels",
    "resize_modality",
    "shift_slices",
    "window_potts_energy",
]

Slices = tuple[slice, slice]


@dataclass(frozen=True)
class GaussianKernel:
    """One Gaussian kernel: ``weight · exp(-½ Σ_m ‖Δf_m / σ_m‖²)``.

    Attributes:
        weight: w_d >= 0.
        sigmas: ``((modality, σ), ...)``; ``"xy"`` is the integer pixel grid at the prediction's
            resolution and needs no feature tensor.
    """

    weight: float
    sigmas: tuple[tuple[str, float], ...]

    def modalities(self) -> tuple[str, ...]:
        """The modality names this kernel reads, ``"xy"`` included."""
        return tuple(name for name, _ in self.sigmas)


def parse_kernels(func: str, kernels: object) -> tuple[GaussianKernel, ...]:
    """Turn ``({"weight": w, "xy": σ, "rgb": σ}, ...)`` into :class:`GaussianKernel` objects.

    Raises:
        TypeError: ``kernels`` is not a sequence of mappings.
        ValueError: an entry has no ``"weight"``, no modality, a negative weight or a σ <= 0.
    """
    if isinstance(kernels, Mapping) or not isinstance(kernels, Sequence) or not kernels:
        raise TypeError(
            f"{func}: kernels must be a non-empty sequence of dicts such as "
            f'({{"weight": 1.0, "xy": 6.0, "rgb": 0.1}},); got {kernels!r}.'
        )
    parsed = []
    for k, desc in enumerate(kernels):
        if not isinstance(desc, Mapping):
            raise TypeError(f"{func}: kernels[{k}] must be a dict; got {type(desc).__name__}.")
        if "weight" not in desc:
            raise ValueError(f"{func}: kernels[{k}] must have a 'weight' key; got {dict(desc)!r}.")
        weight = float(desc["weight"])
        if not weight >= 0:
            raise ValueError(f"{func}: kernels[{k}]['weight'] must be >= 0; got {weight!r}.")
        sigmas = tuple((str(m), float(s)) for m, s in desc.items() if m != "weight")
        if not sigmas:
            raise ValueError(
                f"{func}: kernels[{k}] must name at least one modality besides 'weight'; "
                f"got {dict(desc)!r}."
            )
        for m, s in sigmas:
            if not (s > 0 and math.isfinite(s)):
                raise ValueError(f"{func}: kernels[{k}][{m!r}] must be a sigma > 0; got {s!r}.")
        parsed.append(GaussianKernel(weight, sigmas))
    return tuple(parsed)


def resize_modality(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-downsample (``adaptive_avg_pool2d``) a (N, F, H, W) map to ``size`` (as Gated CRF)."""
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature
    return F.adaptive_avg_pool2d(feature, size)


def half_window_shifts(radius: int) -> list[tuple[int, int]]:
    """Half of the (2r+1)² − 1 window offsets: one of each pair ±(dy, dx), (0, 0) excluded.

    Example:
        >>> half_window_shifts(1)
        [(0, 1), (1, -1), (1, 0), (1, 1)]
    """
    return [
        (dy, dx)
        for dy in range(radius + 1)
        for dx in range(-radius, radius + 1)
        if dy > 0 or dx > 0
    ]


def shift_slices(dy: int, dx: int, h: int, w: int) -> tuple[Slices, Slices] | None:
    """Slices ``(a, b)`` of an (h, w) grid such that ``b`` is ``a`` moved by (dy, dx) (dy >= 0).

    Pixel i = (y, x) in ``a`` is paired with j = (y + dy, x + dx) in ``b``; pairs leaving the
    image are absent. Returns None when no pair is left.
    """
    if dy >= h or abs(dx) >= w:
        return None
    rows_a, rows_b = slice(0, h - dy), slice(dy, h)
    if dx >= 0:
        cols_a, cols_b = slice(0, w - dx), slice(dx, w)
    else:
        cols_a, cols_b = slice(-dx, w), slice(0, w + dx)
    return (rows_a, cols_a), (rows_b, cols_b)


def _sq_distance(
    f: torch.Tensor, a: Slices, b: Slices, sqnorm: torch.Tensor | None = None, chunk: int = 4
) -> torch.Tensor:
    """Σ_F (f_i − f_j)² over a shift's pairs: (N, 1, h', w').

    With the squared norms ``sqnorm`` (N, 1, h, w) given, it is ‖f_i‖² + ‖f_j‖² − 2 f_i·f_j: one
    product-and-reduce over F (clamped at 0 against rounding), for wide maps such as DFR's
    64-channel deep features. Otherwise the difference is squared over channel chunks, so no
    F-channel temporary of the whole overlap is made per shift.
    """
    if f.shape[1] == 0:
        raise ValueError("feature maps must have at least one channel; got 0.")
    if sqnorm is not None:
        dot = (f[..., a[0], a[1]] * f[..., b[0], b[1]]).sum(1, keepdim=True)
        out = sqnorm[..., a[0], a[1]] + sqnorm[..., b[0], b[1]]
        return out.sub_(dot, alpha=2.0).clamp_min_(0.0)
    fc = f[:, :chunk]
    out = (fc[..., a[0], a[1]] - fc[..., b[0], b[1]]).square_().sum(1, keepdim=True)
    for c in range(chunk, f.shape[1], chunk):
        fc = f[:, c : c + chunk]
        out.add_((fc[..., a[0], a[1]] - fc[..., b[0], b[1]]).square_().sum(1, keepdim=True))
    return out


def _band(a: Slices, b: Slices, y0: int, y1: int) -> tuple[Slices, Slices] | None:
    """Restrict a shift's pairs to those whose first pixel i lies in rows [y0, y1)."""
    start, stop = max(a[0].start, y0), min(a[0].stop, y1)
    if start >= stop:
        return None
    dy = b[0].start - a[0].start
    return (slice(start, stop), a[1]), (slice(start + dy, stop + dy), b[1])


def _band_rows(shape: torch.Size, radius: int, target: int = 1 << 18) -> int:
    """Rows per band so that a band (with its r-row halo) of the (N, C, h, w) maps is ~1 MB.

    Every shift of the window is applied band by band, so the slices of G and p that the
    per-shift updates read and write stay in cache instead of streaming the whole map from memory
    (2(2r+1)² passes); fewer rows would only add Python overhead.
    """
    n, c, h, w = shape
    return max(8, min(h, target // max(n * c * w, 1) - radius))


def _window_pairs(shape: torch.Size, radius: int) -> list[tuple[int, int, Slices, Slices]]:
    """Every (dy, dx, a, b) of the half window, band by band (see :func:`_band_rows`)."""
    h, w = shape[-2:]
    rows = _band_rows(shape, radius)
    out = []
    for y0 in range(0, h, rows):
        for dy, dx in half_window_shifts(radius):
            sl = shift_slices(dy, dx, h, w)
            band = None if sl is None else _band(*sl, y0, y0 + rows)
            if band is not None:
                out.append((dy, dx, *band))
    return out


def _kernel_parts(
    kernels: Sequence[GaussianKernel],
    names: Sequence[str],
    features: Sequence[torch.Tensor],
    sqnorms: Sequence[torch.Tensor | None],
    a: Slices,
    b: Slices,
    dy: int,
    dx: int,
) -> list[torch.Tensor | float]:
    """w_d · k_d(i, i + (dy, dx)) for every kernel d over the shift's overlap: (N, 1, h', w')."""
    dist2: dict[str, torch.Tensor] = {}
    parts: list[torch.Tensor | float] = []
    for kernel in kernels:
        expo: torch.Tensor | float = 0.0
        for name, sigma in kernel.sigmas:
            if name == "xy":
                expo = expo + (dy * dy + dx * dx) / (sigma * sigma)
                continue
            if name not in dist2:
                q = names.index(name)
                dist2[name] = _sq_distance(features[q], a, b, sqnorms[q])
            expo = expo + dist2[name] / (sigma * sigma)
        if isinstance(expo, torch.Tensor):
            parts.append(expo.mul_(-0.5).exp_().mul_(kernel.weight))
        else:
            parts.append(kernel.weight * math.exp(-0.5 * expo))
    return parts


def _pair_weight(
    parts: Sequence[torch.Tensor | float], valid: torch.Tensor | None, a: Slices, b: Slices
) -> torch.Tensor | float:
    """K_ij (m_i + m_j): the weight of the unordered pair {i, j} (2 K_ij without a mask)."""
    kernel: torch.Tensor | float = sum(parts[1:], parts[0])
    if valid is None:
        return 2.0 * kernel
    return kernel * (valid[..., a[0], a[1]] + valid[..., b[0], b[1]])


def _as_map(x: torch.Tensor | float, like: torch.Tensor, a: Slices) -> torch.Tensor:
    """A per-pair weight as a (N, 1, h', w') tensor even when it is a constant."""
    if isinstance(x, torch.Tensor):
        return x
    ref = like[:, :1, a[0], a[1]]
    return torch.full_like(ref, x)


def _sq_norms(features: Sequence[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    """‖f‖² per pixel, (N, 1, h, w), for maps wide enough to use the dot-product distance."""
    return tuple(
        torch.linalg.vector_norm(f.detach(), dim=1, keepdim=True).square_()
        if f.shape[1] >= _DOT_MIN_CHANNELS
        else None
        for f in features
    )


# From this many channels on, ‖Δf‖² = ‖f_i‖² + ‖f_j‖² − 2 f_i·f_j (one fused reduction) beats
# squaring the difference; below it (rgb, depth) the direct form is as cheap and has no rounding.
_DOT_MIN_CHANNELS = 8


class _WindowPotts(torch.autograd.Function):
    """E = Σ_{unordered {i,j}} K_ij (m_i + m_j) (1 − p_i·p_j), with a saved-G backward.

    The forward accumulates G = ∂(Σ W p_i·p_j)/∂p shift by shift (in-place ``addcmul_`` on slices,
    band by band so they stay in cache: no per-shift temporary of size N·C·h·w) and saves it:
    ∂E/∂p = −G, so the backward for ``probs`` is a single scaling. Gradients w.r.t. a feature
    modality are computed only when that tensor requires grad (DFR with ``detach_deep=False``),
    recomputing the kernels.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        probs: torch.Tensor,
        valid: torch.Tensor | None,
        kernels: tuple[GaussianKernel, ...],
        radius: int,
        names: tuple[str, ...],
        *features: torch.Tensor,
    ) -> torch.Tensor:
        sqnorms = _sq_norms(features)
        grad_like = torch.zeros_like(probs)
        sums = []
        for dy, dx, a, b in _window_pairs(probs.shape, radius):
            wgt = _as_map(
                _pair_weight(
                    _kernel_parts(kernels, names, features, sqnorms, a, b, dy, dx), valid, a, b
                ),
                probs,
                a,
            )
            sums.append(wgt.sum())
            grad_like[..., a[0], a[1]].addcmul_(wgt, probs[..., b[0], b[1]])
            grad_like[..., b[0], b[1]].addcmul_(wgt, probs[..., a[0], a[1]])
        weight_sum = torch.stack(sums).sum() if sums else probs.new_zeros(())
        ctx.save_for_backward(probs, valid, grad_like, *features)
        ctx.kernels, ctx.radius, ctx.names = kernels, radius, names
        # Σ_unordered W p_i·p_j = ½ Σ_i p_i·G_i, with G_i = Σ_j W_ij p_j.
        quad = torch.dot(probs.reshape(-1), grad_like.reshape(-1))
        return weight_sum - 0.5 * quad

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        probs, valid, grad_like, *features = ctx.saved_tensors
        kernels, radius, names = ctx.kernels, ctx.radius, ctx.names
        out_p = grad_like * -grad_out if ctx.needs_input_grad[0] else None
        feat_grads: list[torch.Tensor | None] = [
            torch.zeros_like(f) if ctx.needs_input_grad[5 + q] else None
            for q, f in enumerate(features)
        ]
        if any(g is not None for g in feat_grads):
            sqnorms = _sq_norms(features)
            for dy, dx, a, b in _window_pairs(probs.shape, radius):
                parts = _kernel_parts(kernels, names, features, sqnorms, a, b, dy, dx)
                _feature_grads(feat_grads, parts, kernels, names, features, probs, valid, a, b)
        out_f = [g * grad_out if g is not None else None for g in feat_grads]
        return (out_p, None, None, None, None, *out_f)


def _feature_grads(
    feat_grads: list[torch.Tensor | None],
    parts: Sequence[torch.Tensor | float],
    kernels: Sequence[GaussianKernel],
    names: Sequence[str],
    features: Sequence[torch.Tensor],
    probs: torch.Tensor,
    valid: torch.Tensor | None,
    a: Slices,
    b: Slices,
) -> None:
    """Accumulate ∂E/∂f for the trainable modalities over one shift.

    ∂/∂f_i of w_d k_d(i, j) is w_d k_d · (−(f_i − f_j)/σ_{d,m}²); the pair's factor is
    (m_i + m_j)(1 − p_i·p_j), and ∂/∂f_j is the opposite.
    """
    pair = 1.0 - (probs[..., a[0], a[1]] * probs[..., b[0], b[1]]).sum(1, keepdim=True)
    if valid is not None:
        pair = pair * (valid[..., a[0], a[1]] + valid[..., b[0], b[1]])
    else:
        pair = 2.0 * pair
    for q, grad in enumerate(feat_grads):
        if grad is None:
            continue
        name = names[q]
        coef: torch.Tensor | float = 0.0
        for part, kernel in zip(parts, kernels):
            sigma = dict(kernel.sigmas).get(name)
            if sigma is not None:
                coef = coef - part / (sigma * sigma)
        f = features[q]
        g = (pair * coef) * (f[..., a[0], a[1]] - f[..., b[0], b[1]])
        grad[..., a[0], a[1]] += g
        grad[..., b[0], b[1]] -= g


def window_potts_energy(
    probs: torch.Tensor,
    features: Mapping[str, torch.Tensor],
    kernels: tuple[GaussianKernel, ...],
    radius: int,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ_i Σ_{j ∈ window(i) ∩ image, j ≠ i} K_ij m_j (1 − p_i·p_j), summed (not normalised).

    Args:
        probs: (N, C, h, w) float probabilities.
        features: modality → (N, F, h, w) float, already at the probabilities' size. Tensors that
            require grad receive one; the others are constants.
        kernels: the Gaussian kernels (from :func:`parse_kernels`).
        radius: window radius r >= 1; the window has (2r+1)² pixels.
        valid: (N, 1, h, w) float in {0, 1}: m_j, the neighbour's validity; None = all valid.

    Returns:
        A scalar tensor.
    """
    names = tuple(features)
    return _WindowPotts.apply(probs, valid, kernels, radius, names, *features.values())


def border_term(
    features: Mapping[str, torch.Tensor],
    kernels: Sequence[GaussianKernel],
    radius: int,
    shape: tuple[int, int, int],
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """The reference's zero-padding term Σ_i Σ_{j ∈ window(i) outside the image} K(i, pad).

    ``unfold`` pads features (already divided by σ) and probabilities with zeros, so an
    out-of-image neighbour has f = 0, p = 0 and adds K(i, pad) = Σ_d w_d exp(−½ Σ_m ‖f_m(i)/σ‖²)
    (with ``"xy"`` = (x, y) of i) to the loss: the same value for each of the n_out(i) missing
    window positions. Differentiable w.r.t. features (by ordinary autograd), constant in p.

    Returns:
        (N, h, w) per-pixel term.
    """
    n, h, w = shape
    ys = torch.arange(h, device=device, dtype=dtype)
    xs = torch.arange(w, device=device, dtype=dtype)
    total = torch.zeros(n, h, w, device=device, dtype=dtype)
    for kernel in kernels:
        expo = torch.zeros(n, h, w, device=device, dtype=dtype)
        for name, sigma in kernel.sigmas:
            if name == "xy":
                expo = expo + (ys[:, None].square() + xs[None, :].square()) / (sigma * sigma)
            else:
                expo = expo + features[name].square().sum(1) / (sigma * sigma)
        total = total + kernel.weight * torch.exp(-0.5 * expo)
    yi = torch.arange(h, device=device)
    xi = torch.arange(w, device=device)
    rows_in = (torch.clamp(yi + radius, max=h - 1) - torch.clamp(yi - radius, min=0) + 1).to(dtype)
    cols_in = (torch.clamp(xi + radius, max=w - 1) - torch.clamp(xi - radius, min=0) + 1).to(dtype)
    n_out = (2 * radius + 1) ** 2 - rows_in[:, None] * cols_in[None, :]
    return total * n_out


# The dense (fully connected) filters moved to _lattice.py; re-exported for existing imports.
from denseloss.losses._lattice import PermutohedralLattice, dense_gaussian_filter  # noqa: E402
