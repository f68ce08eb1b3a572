"""The local-window Potts energy of gated_crf_loss and dfr_loss: argument handling and dispatch.

:func:`window_loss` is the shared body of both losses. It evaluates the energy of
:func:`denseloss.losses.kernels.window_potts_energy` either with the compiled kernel of
:mod:`denseloss.losses._native` (fused kernel + exp + all-channel update per shift, one pass per
band of rows, denormals flushed inside the call) or, when that is not available or a feature
map needs a gradient, with the PyTorch implementation in :mod:`denseloss.losses.kernels`. Both
compute the same value and gradient (``tests/losses/test_pairwise.py`` checks it in float64).

A feature may be handed in as :class:`BandResized`: a map at another resolution that the
compiled kernel resamples (bilinear, ``align_corners=False``) and L2-normalises band by band, so
DFR's deep map never exists at the probabilities' full resolution (much coarser maps go through
coarse Gram entries: see :mod:`denseloss.losses._native_src`). The PyTorch path resizes it up
front, exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from denseloss._validation import check_float_tensor
from denseloss.losses import _native
from denseloss.losses.kernels import (
    _DOT_MIN_CHANNELS,
    GaussianKernel,
    border_term,
    resize_modality,
    window_potts_energy,
)

__all__ = ["BORDERS", "BandResized", "Border", "check_radius", "compute_dtype", "window_loss"]

Border = Literal["exclude", "zero_pad"]
BORDERS: tuple[str, ...] = ("exclude", "zero_pad")


@dataclass(frozen=True)
class BandResized:
    """A (N, F, h', w') feature map to be bilinearly resized to the probabilities' (h, w)
    (``align_corners=False``) and, with ``normalize``, L2-normalised over F (``F.normalize``)."""

    map: torch.Tensor
    normalize: bool

    def materialize(self, size: tuple[int, int]) -> torch.Tensor:
        """The full-resolution map, as the PyTorch path needs it."""
        out = self.map
        if tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return F.normalize(out, dim=1) if self.normalize else out


Feature = torch.Tensor | BandResized


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Half precision is reduced in float32; float32/float64 stay as they are."""
    return torch.promote_types(x.dtype, torch.float32)


def check_radius(func: str, radius: object) -> int:
    """``radius`` as an int >= 1, else a ValueError naming ``func``."""
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"{func}: radius must be an int >= 1; got {radius!r}.")
    return radius


def prepare_features(
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


class _CompiledWindowPotts(torch.autograd.Function):
    """E = Σ_{unordered {i,j}} K_ij (m_i + m_j) (1 − p_i·p_j) by the compiled kernel.

    The kernel returns G = Σ_j W_ij p_j (W_ij = K_ij (m_i + m_j)) and Σ W; E = Σ W − ½ p·G and
    ∂E/∂p = −G, saved from the forward (features are constants on this path).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        probs: torch.Tensor,
        valid: torch.Tensor | None,
        spec: tuple,
    ) -> torch.Tensor:
        grad_like, weight_sum = _native.window_potts(probs, valid, *spec)
        ctx.save_for_backward(grad_like)
        return weight_sum - 0.5 * torch.dot(probs.reshape(-1), grad_like.reshape(-1))

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None]:
        (grad_like,) = ctx.saved_tensors
        return grad_like * -grad_out, None, None


def _compiled_spec(
    features: Mapping[str, Feature], kernels: tuple[GaussianKernel, ...], radius: int
) -> tuple:
    """The compiled kernel's arguments: modalities with their flags and per-kernel 1/σ²."""
    names = list(features)
    mods = []
    for name in names:
        f = features[name]
        if isinstance(f, BandResized):
            mods.append((f.map, f.normalize, f.map.shape[1] >= _DOT_MIN_CHANNELS))
        else:
            mods.append((f, False, f.shape[1] >= _DOT_MIN_CHANNELS))
    weights, inv_xy, inv_mod = [], [], []
    for kernel in kernels:
        sig = dict(kernel.sigmas)
        weights.append(kernel.weight)
        inv_xy.append(1.0 / sig["xy"] ** 2 if "xy" in sig else 0.0)
        inv_mod.append([1.0 / sig[m] ** 2 if m in sig else 0.0 for m in names])
    return mods, weights, inv_xy, inv_mod, radius


def potts_energy(
    probs: torch.Tensor,
    features: Mapping[str, Feature],
    kernels: tuple[GaussianKernel, ...],
    radius: int,
    valid: torch.Tensor | None,
) -> torch.Tensor:
    """Σ_i Σ_{j ∈ window(i), j ≠ i} K_ij m_j (1 − p_i·p_j), compiled when possible.

    Args and value as :func:`denseloss.losses.kernels.window_potts_energy`; features may also
    be :class:`BandResized`.
    """
    tensors = [f.map if isinstance(f, BandResized) else f for f in features.values()]
    # Features that need a gradient (DFR with detach_deep=False) take the PyTorch path.
    compiled = len(tensors) <= _native.MAX_MODALITIES and not any(t.requires_grad for t in tensors)
    if compiled and _native.available(probs, *tensors):
        spec = _compiled_spec(features, kernels, radius)
        return _CompiledWindowPotts.apply(probs, valid, spec)
    size = tuple(probs.shape[-2:])
    full = {
        k: f.materialize(size) if isinstance(f, BandResized) else f for k, f in features.items()
    }
    return window_potts_energy(probs, full, kernels, radius, valid)


def window_loss(
    probs: torch.Tensor,
    features: Mapping[str, Feature],
    kernels: tuple[GaussianKernel, ...],
    radius: int,
    valid_mask: torch.Tensor | None,
    border: str,
) -> torch.Tensor:
    """Shared body of gated_crf_loss and dfr_loss: energy / denominator (+ border quirk)."""
    n, _, h, w = probs.shape
    valid = None if valid_mask is None else valid_mask[:, None].to(probs.dtype)
    energy = potts_energy(probs, features, kernels, radius, valid)
    if border == "zero_pad" and valid_mask is None:
        full = {
            k: f.materialize((h, w)) if isinstance(f, BandResized) else f
            for k, f in features.items()
        }
        pad = border_term(full, kernels, radius, (n, h, w), dtype=probs.dtype, device=probs.device)
        energy = energy + pad.sum()
    if valid_mask is None:
        return energy / (n * h * w)
    # An all-invalid mask leaves energy = 0 exactly; clamping the count gives 0, not 0/0.
    return energy / valid_mask.sum().clamp_min(1).to(probs.dtype)
