"""Monocular depth metrics (Eigen et al. 2014), pooled over all valid pixels of a data set."""

from __future__ import annotations

import math

import torch

__all__ = ["DepthMetrics"]


class DepthMetrics:
    """AbsRel, SqRel, RMSE, RMSE-log and δ < 1.25^k, pooled over valid pixels (target > 0).

    With p the prediction (clamped to ≥ ``min_depth``), g the target and Ω the valid pixels of the
    whole data set: AbsRel = mean_Ω |p − g|/g, SqRel = mean_Ω (p − g)²/g,
    RMSE = sqrt(mean_Ω (p − g)²), RMSE-log = sqrt(mean_Ω (log p − log g)²),
    δ_k = fraction of Ω with max(p/g, g/p) < 1.25^k, k = 1, 2, 3.

    Example:
        >>> m = DepthMetrics()
        >>> m.update(torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), 1.0))
        >>> m.compute()["abs_rel"]  # |2 - 1| / 1
        1.0
    """

    KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")

    def __init__(self, *, min_depth: float = 1e-3) -> None:
        self.min_depth = min_depth
        # n, Σ|p-g|/g, Σ(p-g)²/g, Σ(p-g)², Σ(log p - log g)², #δ1, #δ2, #δ3
        self.sums = torch.zeros(8, dtype=torch.float64)

    def reset(self) -> None:
        """Zero the accumulated sums."""
        self.sums.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` (N, 1, H, W) float; target ≤ 0 is invalid."""
        if pred.shape != target.shape:
            raise ValueError(
                f"DepthMetrics.update: pred must have the target's shape {tuple(target.shape)}; "
                f"got {tuple(pred.shape)}."
            )
        g = target.detach().double().cpu()
        p = pred.detach().double().cpu().clamp_min(self.min_depth)
        valid = g > 0
        p, g = p[valid], g[valid]
        diff = p - g
        ratio = torch.maximum(p / g, g / p)
        self.sums += torch.stack(
            [
                torch.tensor(float(g.numel()), dtype=torch.float64),
                (diff.abs() / g).sum(),
                (diff**2 / g).sum(),
                (diff**2).sum(),
                ((p.log() - g.log()) ** 2).sum(),
                (ratio < 1.25).sum().double(),
                (ratio < 1.25**2).sum().double(),
                (ratio < 1.25**3).sum().double(),
            ]
        )

    def state(self) -> torch.Tensor:
        """The state to sum across processes."""
        return self.sums.clone()

    def load_state(self, state: torch.Tensor) -> None:
        """Replace the sums, e.g. with the sum over DDP ranks."""
        self.sums = state.detach().to("cpu", torch.float64).clone()

    def compute(self) -> dict[str, float]:
        """Return the seven metrics (0.0 for every metric when no pixel was valid)."""
        n = float(self.sums[0])
        if n == 0:
            return dict.fromkeys(self.KEYS, 0.0)
        s = (self.sums[1:] / n).tolist()
        return {
            "abs_rel": s[0],
            "sq_rel": s[1],
            "rmse": math.sqrt(s[2]),
            "rmse_log": math.sqrt(s[3]),
            "delta1": s[4],
            "delta2": s[5],
            "delta3": s[6],
        }
