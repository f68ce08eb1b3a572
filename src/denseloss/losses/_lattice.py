"""Dense Gaussian filtering for the DenseCRF loss: exact, and a permutohedral lattice.

W V with W_ij = exp(−½‖f_i − f_j‖²) over all pixel pairs of an image, as the DenseCRF loss
(Tang et al., ECCV 2018) needs it: exactly in O(n²) (:func:`dense_gaussian_filter`) or
approximately in O(n) with the permutohedral lattice of Adams, Baek & Davis (Eurographics 2010)
(:func:`lattice_filter`: compiled when :mod:`denseloss.losses._native` is available, else
:class:`PermutohedralLattice`, the same arithmetic in PyTorch).

Accuracy of the lattice (measured, see ``docs/bench_losses.md``): the splat / blur / slice chain
is a compactly supported, spline-like kernel, not a Gaussian. With the elevation scale of Adams et
al. it is flatter and wider than exp(−½r²) (1.15× at r < 0.75, 1.6× at r ≈ 2.5, then zero
beyond r ≈ 3.5), so sums over many pairs (large images) came out 1.1-1.4× too large. Sharpening
the elevation by :data:`_LATTICE_SHARPEN` narrows it so that its mass over the pair distances
of real photographs at 64²-256² with rloss's σ's matches the Gaussian's; :data:`_LATTICE_GAIN_5D`
then centres the value on the exact one. What is left is (a) the shape mismatch (the value
depends a little on the distribution of pair distances, so on the image and its size) and (b)
the lattice is not shift-invariant (a point's self-response varies ±10 % with its position in
its simplex), which averages out over many pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from denseloss.losses import _native

__all__ = ["PermutohedralLattice", "dense_gaussian_filter", "image_features", "lattice_filter"]


def dense_gaussian_filter(
    features: torch.Tensor, values: torch.Tensor, *, chunk_elements: int = 1 << 22
) -> torch.Tensor:
    """Exact W V with W_ij = exp(−½‖f_i − f_j‖²), self term W_ii = 1 included.

    Args:
        features: (B, n, d) float.
        values: (B, n, C) float.
        chunk_elements: rows are processed in blocks of about this many kernel entries, so memory
            is O(chunk_elements + n·C) rather than O(n²).

    Returns:
        (B, n, C).
    """
    n = features.shape[1]
    out = torch.empty_like(values)
    rows = max(1, chunk_elements // max(n, 1))
    sq = features.square().sum(-1)  # (B, n)
    for start in range(0, n, rows):
        fi = features[:, start : start + rows]
        # ‖f_i − f_j‖² = ‖f_i‖² + ‖f_j‖² − 2 f_i·f_j, clamped against rounding below 0.
        d2 = sq[:, start : start + rows, None] + sq[:, None, :] - 2 * fi @ features.transpose(1, 2)
        out[:, start : start + rows] = torch.exp(-0.5 * d2.clamp_min(0)) @ values
    return out


# Calibration of the lattice against the exact dense filter (see the module docstring).
# _LATTICE_SHARPEN multiplies Adams et al.'s elevation scale sqrt(2/3)(d+1)/sqrt((i+1)(i+2)): at
# 1.0 the lattice kernel is wider than exp(-r²/2) (fast/exact 1.10-1.44 on photos at 64²-256²
# with σxy 100, σrgb 15); the value was chosen by a sweep on four scikit-image photographs at
# 64², 128² and 256² (docs/bench_losses.md). The mass-conserving filter approximates a
# *normalised* kernel, so a gain restores W_ii = 1's scale; it centres fast/exact on the same
# sweep. (rloss's and pydensecrf's lattices have neither, hence their ≈0.57× the exact value.)
_LATTICE_SHARPEN = 1.14
_LATTICE_GAIN_5D = 137.0
_LATTICE_OFFSET = (0.5377, 1.8339, 0.2588, 0.8622, 0.3188)


def elevation_scale(d: int) -> list[float]:
    """Per-dimension factor of the elevation: Adams et al.'s (the d+1 [1 2 1] blurs then give
    about a unit-variance kernel) times :data:`_LATTICE_SHARPEN`."""
    return [
        _LATTICE_SHARPEN * math.sqrt(2.0 / 3.0) * (d + 1) / math.sqrt((i + 1) * (i + 2))
        for i in range(d)
    ]


def lattice_offsets(d: int, count: int) -> list[tuple[float, ...]]:
    """``count`` fixed offsets (σ units): :data:`_LATTICE_OFFSET`, then steps along an irrational
    direction modulo 3 (a few lattice periods), so that the lattices sit at unrelated shifts."""
    step = (0.6180, 0.4142, 0.7321, 0.2361, 0.3028)
    return [
        tuple((_LATTICE_OFFSET[i % 5] + 3.0 * j * step[i % 5]) % 3.0 for i in range(d))
        for j in range(count)
    ]


def lattice_count(points: int) -> int:
    """How many shifted lattices :func:`lattice_filter` averages for an image of ``points``.

    One lattice's value depends on where the image falls on it: over random shifts, fast/exact
    has a standard deviation of 4-7 % at 64², 1-2 % at 128² (measured on photographs). Averaging
    k shifts divides that by √k; k = 2¹⁶ / points (at most 8) keeps the work of a 256² image.
    """
    return max(1, min(8, 65536 // max(points, 1)))


def image_features(image: torch.Tensor, sigma_xy: float, sigma_rgb: float) -> torch.Tensor:
    """(B, n, 5) DenseCRF features (x/σ_xy, y/σ_xy, R/σ_rgb, G/σ_rgb, B/σ_rgb) of a (B, 3, H, W)
    image, in its dtype; x, y are the integer pixel indices."""
    bsz, _, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=image.dtype, device=image.device),
        torch.arange(w, dtype=image.dtype, device=image.device),
        indexing="ij",
    )
    grid = torch.stack([xs, ys]).expand(bsz, 2, h, w) / sigma_xy
    return torch.cat([grid, image / sigma_rgb], dim=1).permute(0, 2, 3, 1).reshape(bsz, h * w, 5)


def lattice_filter(
    values: torch.Tensor, image: torch.Tensor, sigma_xy: float, sigma_rgb: float
) -> torch.Tensor:
    """Symmetrised lattice approximation Ŵ V of the dense Gaussian filter of an image.

    Ŵ approximates W_ij = exp(−½‖f_i − f_j‖²) with f = :func:`image_features`; it is the mean
    over :func:`lattice_count` lattices at the shifts of :func:`lattice_offsets` (one lattice
    from 256² up), each compiled (:mod:`denseloss.losses._native`: the features computed on the
    fly, the lattice built once per image, then all C channels splatted, blurred and sliced in
    one pass each) when available, else :class:`PermutohedralLattice`; both compute the same Ŵ.
    A mean of symmetric filters is symmetric, so 2 Ŵ V stays the exact gradient of the
    quadratic form.

    Args:
        values: (B, n, C) float, n = H·W in row-major pixel order.
        image: (B, 3, H, W) float in the dtype of ``values``.
        sigma_xy, sigma_rgb: the σ's the features are divided by.

    Returns:
        (B, n, C) in the dtype of ``values``.
    """
    bsz, n, _ = values.shape
    offsets = lattice_offsets(5, lattice_count(n))
    native = _native.available(values, image)
    feats = None if native else image_features(image, sigma_xy, sigma_rgb)
    out: torch.Tensor | None = None
    for offset in offsets:
        if feats is None:
            one = _native.lattice_filter(
                values,
                image=(image, sigma_xy, sigma_rgb),
                scale=elevation_scale(5),
                offset=offset,
                gain=_LATTICE_GAIN_5D,
            )
        else:
            batch_index = torch.arange(bsz, device=values.device).repeat_interleave(n)
            flat = feats.reshape(bsz * n, 5)
            lattice = PermutohedralLattice.build(flat, batch_index, offset=offset)
            one = lattice.filter(values.reshape(bsz * n, -1)).reshape(values.shape)
        out = one if out is None else out.add_(one)
    assert out is not None
    return out.div_(len(offsets)) if len(offsets) > 1 else out


@dataclass
class PermutohedralLattice:
    """A permutohedral lattice (Adams, Baek & Davis, Eurographics 2010) built in pure PyTorch.

    Each point is splatted onto the d + 1 vertices of its enclosing simplex with barycentric
    weights, the lattice values are blurred with [1/4, 1/2, 1/4] along each of the d + 1 lattice
    directions, and the result is sliced back with the same weights: O((d+1)·n·C) work instead of
    O(n²·C). Vertices are hashed by sorting integer codes (``torch.unique``), neighbours found by
    ``searchsorted``. Points of different batch items never share a vertex (the batch index is
    part of the code), so one lattice serves a whole batch.

    Attributes:
        index: (d+1, n) int64 vertex of each point's k-th simplex corner.
        weight: (d+1, n) barycentric weights (sum 1 over k).
        neighbours: (d+1, 2, L) int64 the two blur neighbours of each vertex per direction; L
            (one past the last vertex) stands for "absent" and reads a zero row.
        num_vertices: L.
    """

    index: torch.Tensor
    weight: torch.Tensor
    neighbours: torch.Tensor
    num_vertices: int

    @classmethod
    def build(
        cls,
        features: torch.Tensor,
        batch_index: torch.Tensor,
        *,
        offset: Sequence[float] = _LATTICE_OFFSET,
    ) -> PermutohedralLattice:
        """Build the lattice of (n, d) ``features`` (already divided by their σ), shifted by
        ``offset`` (d values; W depends on differences only, the lattice does not)."""
        n, d = features.shape
        dev = features.device
        # W depends on differences only; a fixed irrational-ish shift keeps constant-colour
        # regions (e.g. a black background at 0) off lattice vertices, where the self-response is
        # far above its mean (measured: +20-30% on piecewise-constant images without it).
        feats = features.double() + torch.tensor(offset[:d], device=dev, dtype=torch.float64)
        cf = feats * torch.tensor(elevation_scale(d), device=dev, dtype=torch.float64)
        suffix = torch.cat([cf.flip(1).cumsum(1).flip(1), feats.new_zeros(n, 1)], dim=1)
        elevated = suffix.clone()
        elevated[:, 1:] -= torch.arange(1, d + 1, device=dev, dtype=torch.float64) * cf
        # Closest remainder-0 point and the ranking of the differences.
        up = torch.ceil(elevated / (d + 1)) * (d + 1)
        down = torch.floor(elevated / (d + 1)) * (d + 1)
        rem0 = torch.where(up - elevated < elevated - down, up, down)
        total = torch.round(rem0.sum(1) / (d + 1)).long()
        diff = elevated - rem0
        ii = torch.arange(d + 1, device=dev)
        later = ii[None, :] > ii[:, None]  # [i, j]: j > i
        gt = diff[:, None, :] > diff[:, :, None]  # [i, j]: d_j > d_i
        ge = diff[:, None, :] >= diff[:, :, None]
        rank = ((gt & later) | (ge & ~later & (ii[None, :] != ii[:, None]))).sum(2)
        s = total[:, None]
        hi = (s > 0) & (rank >= d + 1 - s)
        lo = (s < 0) & (rank < -s)
        rank = rank - (d + 1) * hi.long() + (d + 1) * lo.long() + s
        rem0 = rem0 - (d + 1) * hi.double() + (d + 1) * lo.double()
        # Barycentric weights.
        v = (elevated - rem0) / (d + 1)
        bary = feats.new_zeros(n, d + 2)
        bary.scatter_add_(1, d - rank, v)
        bary.scatter_add_(1, d + 1 - rank, -v)
        bary[:, 0] += 1 + bary[:, d + 1]
        weight = bary[:, : d + 1].t().contiguous()  # (d+1, n)
        # Vertex keys (first d coordinates): rem0 + canonical[k][rank], canonical[k][r] = k when
        # r <= d - k else k - (d + 1). They are hashed by a linear code, mixed-radix over the
        # coordinates (then the batch index), so a vertex's code is the code of rem0 plus that of
        # its canonical offset, and a blur neighbour's code is the vertex's plus a constant:
        # no (d+1, n, d) key tensor and no per-neighbour re-encoding.
        base = rem0[:, :d].long()  # (n, d)
        lowest = base.amin(0) - (2 * d + 1)
        span = base.amax(0) - lowest + (2 * d + 2)
        radix = [int(x) for x in span.tolist()] + [int(batch_index.max()) + 1 if n else 1]
        if math.prod(radix) >= 2**62:
            raise ValueError(
                "dense_crf_loss: the permutohedral lattice is too large to hash; got feature "
                f"ranges {radix[:-1]}. Hint: increase sigma_rgb/sigma_xy or use method='exact'."
            )
        strides = [1] * (d + 1)
        for q in range(d - 1, -1, -1):
            strides[q] = strides[q + 1] * radix[q + 1]
        stride_t = torch.tensor(strides[:d], device=dev)
        base_code = ((base - lowest) * stride_t).sum(1) + batch_index * strides[d]  # (n,)
        r = rank[:, :d]
        codes = torch.empty(d + 1, n, dtype=torch.long, device=dev)
        for kk in range(d + 1):
            wrapped = ((r > d - kk).long() * stride_t).sum(1)
            torch.sub(base_code + kk * sum(strides[:d]), wrapped, alpha=d + 1, out=codes[kk])
        uniq, inverse = torch.unique(codes, return_inverse=True)
        del codes
        num = uniq.numel()
        nbrs = []
        for j in range(d + 1):
            pair = []
            for sign in (-1, 1):
                # key + sign on every coordinate, except coordinate j (< d) which moves by -sign·d.
                shift = sign * sum(strides[:d])
                if j < d:
                    shift -= sign * (d + 1) * strides[j]
                c = uniq + shift
                pos = torch.searchsorted(uniq, c).clamp_max_(max(num - 1, 0))
                found = uniq[pos] == c
                pair.append(pos.masked_fill_(~found, num))
            nbrs.append(torch.stack(pair))
        return cls(inverse, weight.to(features.dtype), torch.stack(nbrs), num)

    def _blur(self, lat: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
        """[1/4, 1/2, 1/4] along each direction of ``order``; ``lat`` has a zero row at L."""
        num = self.num_vertices
        lat = lat.clone()
        out, side = torch.empty_like(lat), torch.empty_like(lat[:num])
        out[num:] = 0
        for j in order:
            torch.index_select(lat, 0, self.neighbours[j, 0], out=out[:num])
            torch.index_select(lat, 0, self.neighbours[j, 1], out=side)
            out[:num].add_(side)
            # 0.5 lat + 0.25 (left + right), in place (scalings by powers of 2 are exact).
            lat[:num].mul_(0.5).add_(out[:num], alpha=0.25)
        return lat

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """Symmetrised Ŵ V for (n, C) ``values``: ½ Sᵀ(B_d⋯B_0 + B_0⋯B_d) S V.

        The product of the per-direction blurs is not symmetric; averaging both orders makes Ŵ
        symmetric, so the quadratic form's gradient is exactly 2 Ŵ V.
        """
        dplus1 = self.index.shape[0]
        # One extra zero row at L: "absent" neighbours read it.
        lat = values.new_zeros(self.num_vertices + 1, values.shape[1])
        buf = torch.empty_like(values)
        for k in range(dplus1):
            lat.index_add_(0, self.index[k], torch.mul(values, self.weight[k, :, None], out=buf))
        order = list(range(dplus1))
        lat = self._blur(lat, order).add_(self._blur(lat, order[::-1])).mul_(0.5)
        out = values.new_zeros(values.shape)
        for k in range(dplus1):
            out.addcmul_(
                torch.index_select(lat, 0, self.index[k], out=buf), self.weight[k, :, None]
            )
        return out.mul_(_LATTICE_GAIN_5D)
