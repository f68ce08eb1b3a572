"""Peer implementations for ``denseloss bench losses --peers``, and the benchmark's photographs.

Each peer computes what the authors' code computes, on the benchmark's inputs, so that its time
can be put beside denseloss's in the same process:

- ``max_square[reference]``, ``max_square(image_weighting)[reference]``: ZJULearning/MaxSquareLoss
  ``MaxSquareloss`` / ``IW_MaxSquareloss`` re-expressed in plain torch (their forward is a few
  lines; the weighted one looped per image, since the original handles batch size 1 only).
- ``entropy[ADVENT]``: ADVENT's ``entropy_loss`` (valeoai/ADVENT, ``utils/loss.py``).
- ``gated_crf[unfold]``: the Gated CRF reference's formulation (LEONOB2014/GatedCRFLoss):
  ``F.unfold`` of the features and probabilities over the (2r+1)² window, kernels on the
  unfolded tensors, autograd backward. Skipped when its unfolded tensors would exceed
  :data:`UNFOLD_MAX_BYTES`.
- ``dense_crf[pydensecrf]``: Krähenbühl's C++ permutohedral lattice through ``pydensecrf``
  (build the lattice of the image with rloss's σ's and no normalisation, filter the C
  probability maps once: what rloss's forward does; rloss's backward reuses the filtered maps).
  ``pydensecrf`` does not build from the registry with Cython 3; see ``docs/bench_losses.md``
  for the command that builds it from its sdist. Absent → the row says so.

The photographs for the CRF rows are scikit-image's bundled ones (``skimage.data``: astronaut,
chelsea, coffee, rocket), resized to the benchmark size; without scikit-image the rows fall back
to uniform noise and say so.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["UNFOLD_MAX_BYTES", "photographs", "pydensecrf_available"]

UNFOLD_MAX_BYTES = 3 * 2**30  # the unfold peer's tensors above this are not run
_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def photographs(n: int, h: int, w: int) -> tuple[torch.Tensor, str]:
    """(n, 3, h, w) float in [0, 255] real photographs (cycled, resized), and their source.

    Falls back to uniform noise (source says so) when scikit-image is not installed.
    """
    try:
        from skimage import data
    except ImportError:
        g = torch.Generator().manual_seed(0)
        return torch.rand(n, 3, h, w, generator=g) * 255.0, "uniform noise (no scikit-image)"
    out = []
    for b in range(n):
        name = _PHOTOS[b % len(_PHOTOS)]
        img = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float()
        img = F.interpolate(img, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        out.append(img.clamp_(0, 255))
    return torch.cat(out), "scikit-image photographs " + ", ".join(_PHOTOS[: min(n, 4)])


def max_square_reference(logits: torch.Tensor) -> torch.Tensor:
    """ZJULearning's ``MaxSquareloss``: ``-mean(prob²[prob != ignore]) / 2`` (mask as written)."""
    prob = F.softmax(logits, dim=1)
    mask = prob != 255
    return -torch.mean(torch.pow(prob, 2)[mask]) / 2


def iw_max_square_reference(
    logits: torch.Tensor, num_class: int, ratio: float = 0.2
) -> torch.Tensor:
    """ZJULearning's ``IW_MaxSquareloss`` (histogram weights by argmax), one image at a time."""
    prob = F.softmax(logits, dim=1)
    losses = []
    for i in range(prob.shape[0]):
        p = prob[i : i + 1]
        argpred = torch.max(p, 1)[1]
        hist = torch.histc(argpred.float(), bins=num_class + 1, min=-1, max=num_class - 1)[1:]
        weight = 1 / torch.max(hist.pow(ratio) * hist.sum().pow(1 - ratio), torch.ones(1))
        weights = weight[argpred].detach()
        losses.append(-torch.sum(p.pow(2) * weights[:, None]) / num_class)
    return torch.stack(losses).mean()


def advent_entropy(logits: torch.Tensor) -> torch.Tensor:
    """ADVENT's ``entropy_loss(softmax(logits))``: −Σ p log₂(p + 1e-30) / (n h w log₂ c)."""
    v = F.softmax(logits, dim=1)
    n, c, h, w = v.size()
    return -torch.sum(torch.mul(v, torch.log2(v + 1e-30))) / (n * h * w * math.log2(c))


def unfold_bytes(shape: tuple[int, ...], radius: int, features: int = 5) -> int:
    """Bytes of the unfold peer's main tensors (unfolded probabilities, features, kernels)."""
    n, c, h, w = shape
    return 4 * n * h * w * (2 * radius + 1) ** 2 * (2 * c + features + 2)


def gated_crf_unfold(
    probs: torch.Tensor, rgb: torch.Tensor, *, radius: int = 5, sigma_xy: float = 6.0,
    sigma_rgb: float = 0.1,
) -> torch.Tensor:  # fmt: skip
    """The Gated CRF reference's unfold formulation (Potts, one xy+rgb kernel, no mask)."""
    n, c, h, w = probs.shape
    k = 2 * radius + 1
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=probs.dtype), torch.arange(w, dtype=probs.dtype), indexing="ij"
    )
    feats = torch.cat([torch.stack([xs, ys]).expand(n, 2, h, w) / sigma_xy, rgb / sigma_rgb], 1)

    def unfold(x: torch.Tensor) -> torch.Tensor:
        return F.unfold(x, k, padding=radius).view(n, x.shape[1], k, k, h, w)

    kernels = torch.exp(-0.5 * (unfold(feats) - feats.view(n, -1, 1, 1, h, w)).pow(2).sum(1))
    kernels[:, radius, radius] = 0
    y_hat_unfolded = unfold(probs)
    product = (kernels[:, None] * y_hat_unfolded).view(n, c, k * k, h, w).sum(2)
    return (kernels.sum() - (product * probs).sum()) / (n * h * w)


def pydensecrf_available() -> bool:
    """True when ``pydensecrf`` imports."""
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def _pydensecrf_filter(probs: torch.Tensor, image: torch.Tensor, sxy: float, srgb: float):
    """Ŵ S per image with pydensecrf's lattice (no normalisation): (B, C, H, W) float32."""
    import numpy as np
    import pydensecrf.densecrf as dcrf
    from pydensecrf import eigen

    bsz, c, h, w = probs.shape
    p = probs.detach().float().numpy()
    out = np.empty((bsz, c, h * w), np.float32)
    for b in range(bsz):
        crf = dcrf.DenseCRF2D(w, h, c)
        crf.setUnaryEnergy(np.zeros((c, h * w), np.float32))
        rgb = np.ascontiguousarray(image[b].permute(1, 2, 0).round().clamp(0, 255).numpy())
        crf.addPairwiseBilateral(
            sxy=sxy,
            srgb=srgb,
            rgbim=rgb.astype(np.uint8),
            compat=1,
            kernel=dcrf.DIAG_KERNEL,
            normalization=dcrf.NO_NORMALIZATION,
        )
        q = np.ascontiguousarray(p[b].reshape(c, -1))
        # Pre-sized temporaries: stepInference fills tmp1 = -unary + filtered (Potts w = 1).
        tmp1 = eigen.matrixXf(np.zeros((c, h * w), np.float32))
        tmp2 = eigen.matrixXf(np.zeros((c, h * w), np.float32))
        crf.stepInference(eigen.matrixXf(q), tmp1, tmp2)
        out[b] = np.asarray(tmp1)
    return torch.from_numpy(out).view(bsz, c, h, w)


class _PydensecrfLoss(torch.autograd.Function):
    """rloss's DenseCRFLoss design with pydensecrf's lattice: forward filters on the CPU and
    saves Ŵ S; backward returns −2/B · Ŵ S (rloss's gradient)."""

    @staticmethod
    def forward(ctx, probs, image, sxy, srgb):  # type: ignore[override]
        filtered = _pydensecrf_filter(probs, image, sxy, srgb).to(probs.dtype)
        ctx.save_for_backward(filtered)
        return -(probs * filtered).sum() / probs.shape[0]

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (filtered,) = ctx.saved_tensors
        return -2.0 * grad_out * filtered / filtered.shape[0], None, None, None


def pydensecrf_loss(
    probs: torch.Tensor, image: torch.Tensor, *, sigma_xy: float = 100.0, sigma_rgb: float = 15.0
) -> torch.Tensor:
    """−Σ_b Σ_k S_bkᵀ Ŵ S_bk / B with pydensecrf's lattice, differentiable as rloss's loss.

    Per image: ``DenseCRF2D`` + ``addPairwiseBilateral`` (builds the lattice) + one
    ``stepInference`` with a zero unary, whose first temporary is then the filtered Ŵ S.
    """
    return _PydensecrfLoss.apply(probs, image, sigma_xy, sigma_rgb)
