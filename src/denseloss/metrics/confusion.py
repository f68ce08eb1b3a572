"""Dataset-level confusion matrix: mIoU, per-class IoU and pixel accuracy."""

from __future__ import annotations

import torch

from denseloss._validation import check_tensor

__all__ = ["ConfusionMatrix"]


class ConfusionMatrix:
    """Accumulate a (C, C) confusion matrix over a whole data set (not per-image averages).

    Rows are ground truth, columns predictions. Pixels whose target equals ``ignore_index`` (or
    lies outside [0, C)) are skipped.

    .. math::
        \\mathrm{IoU}_c = \\frac{M_{cc}}{\\sum_j M_{cj} + \\sum_i M_{ic} - M_{cc}},\\qquad
        \\mathrm{mIoU} = \\frac{1}{|P|}\\sum_{c \\in P} \\mathrm{IoU}_c

    where P is the set of classes present in the prediction or the ground truth (the IoU
    denominator is non-zero): torchvision's convention, minus the NaN for absent classes, which
    are reported as ``nan`` per class and left out of the mean.

    Example:
        >>> cm = ConfusionMatrix(2)
        >>> cm.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, 0]]))
        >>> round(cm.compute()["miou"], 4)  # IoU_0 = 1/2, IoU_1 = 1/2
        0.5
    """

    def __init__(self, num_classes: int, *, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"ConfusionMatrix: num_classes must be >= 1; got {num_classes}.")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Zero the accumulated counts."""
        self.matrix.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` are (N, H, W) integer class maps of equal shape."""
        check_tensor("ConfusionMatrix.update", "pred", pred)
        check_tensor("ConfusionMatrix.update", "target", target)
        if pred.shape != target.shape:
            raise ValueError(
                f"ConfusionMatrix.update: pred must have the target's shape {tuple(target.shape)}; "
                f"got {tuple(pred.shape)}."
            )
        if pred.is_floating_point():
            raise TypeError(
                "ConfusionMatrix.update: pred must hold integer class ids; got dtype "
                f"{pred.dtype}. Hint: pass logits.argmax(1)."
            )
        c = self.num_classes
        t = target.reshape(-1).long().cpu()
        p = pred.reshape(-1).long().cpu()
        keep = (t >= 0) & (t < c) & (t != self.ignore_index)
        t, p = t[keep], p[keep]
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= c):
            raise ValueError(
                f"ConfusionMatrix.update: pred must be in [0, {c}); got values in "
                f"[{int(p.min())}, {int(p.max())}]."
            )
        self.matrix += torch.bincount(t * c + p, minlength=c * c).reshape(c, c)

    def state(self) -> torch.Tensor:
        """The state to sum across processes (a copy of the matrix)."""
        return self.matrix.clone()

    def load_state(self, state: torch.Tensor) -> None:
        """Replace the counts, e.g. with the sum over DDP ranks."""
        self.matrix = state.detach().to("cpu", torch.int64).reshape(self.num_classes, -1).clone()

    def compute(self) -> dict[str, float | list[float]]:
        """Return ``{"miou", "pixel_acc", "iou": [per class, nan if absent]}``."""
        m = self.matrix.double()
        tp = m.diag()
        denom = m.sum(0) + m.sum(1) - tp
        present = denom > 0
        iou = torch.where(present, tp / denom.clamp_min(1), torch.full_like(tp, float("nan")))
        miou = float(iou[present].mean()) if bool(present.any()) else 0.0
        total = m.sum()
        acc = float(tp.sum() / total) if total > 0 else 0.0
        return {"miou": miou, "pixel_acc": acc, "iou": iou.tolist()}
