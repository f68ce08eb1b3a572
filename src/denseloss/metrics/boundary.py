"""Boundary F1: how well predicted class boundaries land on the true ones (ASM's claim)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["BoundaryF1", "class_boundaries"]


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return mask
    x = mask.float().unsqueeze(1)
    return F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius).squeeze(1) > 0


def class_boundaries(labels: torch.Tensor, cls: int) -> torch.Tensor:
    """Boundary pixels of class ``cls`` in (N, H, W) ``labels``.

    A pixel is on the boundary when it belongs to ``cls`` and one of its 4-neighbours inside the
    image does not (ignore pixels count as "not ``cls``"; the image border is not a boundary).
    """
    m = labels == cls
    x = m.float().unsqueeze(1)
    # Replicate-pad so the image border never reads as a class change.
    pad = F.pad(x, (1, 1, 1, 1), mode="replicate")
    neigh_min = torch.minimum(
        torch.minimum(pad[..., :-2, 1:-1], pad[..., 2:, 1:-1]),
        torch.minimum(pad[..., 1:-1, :-2], pad[..., 1:-1, 2:]),
    )
    return (m & (neigh_min.squeeze(1) < 1)).bool()


class BoundaryF1:
    """Dataset-level boundary F-score at a pixel tolerance (Csurka et al. BF score, pooled).

    For each class c: B_p, B_g = boundary pixels of c in prediction and ground truth (pixels
    whose target is ``ignore_index`` are dropped from both);
    precision_c = |B_p ∩ dilate(B_g, τ)| / |B_p|, recall_c = |B_g ∩ dilate(B_p, τ)| / |B_g|
    with counts pooled over the whole data set, F1_c = 2PR / (P + R) (0 when P + R = 0), and the
    result is the mean of F1_c over classes that have boundary pixels in the ground truth or the
    prediction. Dilation is a (2τ+1)² square (Chebyshev distance ≤ τ).

    Example:
        >>> bf = BoundaryF1(2, tolerance=0)
        >>> y = torch.tensor([[[0, 0, 1, 1]]])
        >>> bf.update(y, y)
        >>> bf.compute()["boundary_f1"]
        1.0
    """

    def __init__(self, num_classes: int, *, tolerance: int = 2, ignore_index: int = 255) -> None:
        if tolerance < 0:
            raise ValueError(f"BoundaryF1: tolerance must be >= 0; got {tolerance}.")
        self.num_classes = num_classes
        self.tolerance = tolerance
        self.ignore_index = ignore_index
        # rows: matched predicted boundary, predicted boundary, matched GT boundary, GT boundary
        self.counts = torch.zeros(4, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Zero the accumulated counts."""
        self.counts.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of (N, H, W) integer prediction and target maps."""
        if pred.shape != target.shape or pred.ndim != 3:
            raise ValueError(
                "BoundaryF1.update: pred and target must both be (N, H, W) of equal shape; got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}."
            )
        pred = pred.long().cpu()
        target = target.long().cpu()
        valid = target != self.ignore_index
        for c in range(self.num_classes):
            bp = class_boundaries(pred, c) & valid
            bg = class_boundaries(target, c) & valid
            n_p, n_g = int(bp.sum()), int(bg.sum())
            if n_p == 0 and n_g == 0:
                continue
            self.counts[0, c] += int((bp & _dilate(bg, self.tolerance)).sum())
            self.counts[1, c] += n_p
            self.counts[2, c] += int((bg & _dilate(bp, self.tolerance)).sum())
            self.counts[3, c] += n_g

    def state(self) -> torch.Tensor:
        """The state to sum across processes."""
        return self.counts.clone()

    def load_state(self, state: torch.Tensor) -> None:
        """Replace the counts, e.g. with the sum over DDP ranks."""
        self.counts = state.detach().to("cpu", torch.int64).reshape(4, -1).clone()

    def compute(self) -> dict[str, float | list[float]]:
        """Return ``{"boundary_f1", "boundary_f1_per_class": [nan where no boundary]}``."""
        c = self.counts.double()
        prec = c[0] / c[1].clamp_min(1)
        rec = c[2] / c[3].clamp_min(1)
        f1 = torch.where(prec + rec > 0, 2 * prec * rec / (prec + rec).clamp_min(1e-12), 0.0)
        seen = (c[1] + c[3]) > 0
        f1 = torch.where(seen, f1, torch.full_like(f1, float("nan")))
        mean = float(f1[seen].mean()) if bool(seen.any()) else 0.0
        return {"boundary_f1": mean, "boundary_f1_per_class": f1.tolist()}
