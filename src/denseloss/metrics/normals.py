"""Surface-normal metrics: angular error statistics pooled over valid pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["NormalMetrics"]

_BIN = 0.01  # histogram bin width in degrees: the median is exact to this resolution
_NBINS = int(180 / _BIN)


class NormalMetrics:
    """Mean / median angular error (degrees) and % of pixels within 11.25°, 22.5°, 30°.

    The angle at a pixel is acos(⟨n̂_p, n̂_g⟩) with both vectors L2-normalised; pixels whose target
    is the zero vector are invalid. The median is read from a 0.01°-wide histogram (so the state
    has a fixed size and can be summed across DDP ranks): exact to ±0.005°.

    Example:
        >>> m = NormalMetrics()
        >>> g = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
        >>> p = torch.tensor([0.0, 1.0, 1.0]).view(1, 3, 1, 1)
        >>> m.update(p, g)
        >>> round(m.compute()["mean"], 3)  # 45 degrees
        45.0
    """

    KEYS = ("mean", "median", "within_11.25", "within_22.5", "within_30")

    def __init__(self) -> None:
        self.hist = torch.zeros(_NBINS, dtype=torch.float64)
        self.sums = torch.zeros(5, dtype=torch.float64)  # n, Σangle, #<11.25, #<22.5, #<30

    def reset(self) -> None:
        """Zero the accumulated state."""
        self.hist.zero_()
        self.sums.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of (N, 3, H, W) normals; an all-zero target vector marks an invalid pixel."""
        if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(
                "NormalMetrics.update: pred and target must both be (N, 3, H, W); got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}."
            )
        g = target.detach().double().cpu()
        p = pred.detach().double().cpu()
        valid = g.abs().sum(1) > 0
        cos = (F.normalize(p, dim=1) * F.normalize(g, dim=1)).sum(1).clamp(-1, 1)
        ang = torch.rad2deg(torch.acos(cos[valid]))
        self.sums += torch.stack(
            [
                torch.tensor(float(ang.numel()), dtype=torch.float64),
                ang.sum(),
                (ang < 11.25).sum().double(),
                (ang < 22.5).sum().double(),
                (ang < 30).sum().double(),
            ]
        )
        idx = (ang / _BIN).long().clamp(0, _NBINS - 1)
        self.hist += torch.bincount(idx, minlength=_NBINS).double()

    def state(self) -> torch.Tensor:
        """The state to sum across processes (sums and histogram concatenated)."""
        return torch.cat([self.sums, self.hist])

    def load_state(self, state: torch.Tensor) -> None:
        """Replace the state, e.g. with the sum over DDP ranks."""
        s = state.detach().to("cpu", torch.float64)
        self.sums, self.hist = s[:5].clone(), s[5:].clone()

    def compute(self) -> dict[str, float]:
        """Return mean, median (degrees) and the three within-t° percentages."""
        n = float(self.sums[0])
        if n == 0:
            return dict.fromkeys(self.KEYS, 0.0)
        cdf = torch.cumsum(self.hist, 0)
        k = int(torch.searchsorted(cdf, torch.tensor(n / 2, dtype=torch.float64)))
        return {
            "mean": float(self.sums[1]) / n,
            "median": (k + 0.5) * _BIN,
            "within_11.25": 100 * float(self.sums[2]) / n,
            "within_22.5": 100 * float(self.sums[3]) / n,
            "within_30": 100 * float(self.sums[4]) / n,
        }
