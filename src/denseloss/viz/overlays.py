"""Prediction pictures: image | ground truth | prediction grids, plus method maps and regressions.

All functions take CPU or GPU tensors, draw with matplotlib's Agg backend (no display needed) and
write one PNG. Class colours come from the data set's ``palette``; void pixels (``ignore_index``)
are left uncoloured so the image shows through.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["colorize", "overlay", "save_overlays", "save_regression_panel"]


def colorize(
    labels: torch.Tensor, palette: Sequence[Sequence[int]], *, ignore_index: int = 255
) -> np.ndarray:
    """(H, W) int class map → (H, W, 3) float RGB in [0, 1]; void and unknown ids are black."""
    lut = np.zeros((256, 3), dtype=np.float32)
    pal = np.asarray(palette, dtype=np.float32).reshape(-1, 3)[:255] / 255.0
    lut[: len(pal)] = pal
    ids = labels.detach().cpu().numpy().astype(np.int64)
    ids = np.where((ids < 0) | (ids > 255) | (ids == ignore_index), 255, ids)
    return lut[ids]


def overlay(
    image: torch.Tensor,
    labels: torch.Tensor,
    palette: Sequence[Sequence[int]],
    *,
    alpha: float = 0.6,
    ignore_index: int = 255,
) -> np.ndarray:
    """Blend the palette colours of ``labels`` (H, W) onto ``image`` (3, H, W) in [0, 1].

    Returns:
        (H, W, 3) float RGB in [0, 1]; pixels equal to ``ignore_index`` show the bare image.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1]; got {alpha!r}.")
    img = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    colours = colorize(labels, palette, ignore_index=ignore_index)
    keep = (labels.detach().cpu().numpy() != ignore_index)[..., None]
    return np.where(keep, (1 - alpha) * img + alpha * colours, img)


def _check_images(func: str, images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{func}: images must be a (N, 3, H, W) tensor; got {shape}.")


def _grid(
    columns: list[tuple[str, list[np.ndarray], dict]],
    path: str | Path,
    legend: Sequence[tuple[str, Sequence[int]]] = (),
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(columns[0][1])
    fig, axes = plt.subplots(
        rows, len(columns), figsize=(2.0 * len(columns), 2.0 * rows), squeeze=False
    )
    for c, (title, cells, kw) in enumerate(columns):
        for r, cell in enumerate(cells):
            ax = axes[r][c]
            ax.imshow(cell, interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
    if legend:  # which colour is which class
        from matplotlib.patches import Patch

        handles = [Patch(color=np.asarray(rgb) / 255, label=name) for name, rgb in legend]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7,
                   frameon=False)  # fmt: skip
        fig.tight_layout(rect=(0, 0.03 + 0.03 * ((len(handles) - 1) // 6), 1, 1))
    else:
        fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def save_overlays(
    images: torch.Tensor,
    labels: torch.Tensor,
    preds: torch.Tensor,
    path: str | Path,
    *,
    palette: Sequence[Sequence[int]],
    extra_maps: dict[str, torch.Tensor] | None = None,
    scribbles: torch.Tensor | None = None,
    ignore_index: int = 255,
    max_rows: int = 8,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write a grid: one row per image; columns image | [scribbles] | ground truth | prediction
    | one column per extra map (e.g. AdvSemiSeg's discriminator confidence).

    Args:
        images: (N, 3, H, W) float in [0, 1].
        labels: (N, H, W) int ground truth, ``ignore_index`` = void.
        preds: (N, H, W) int predicted classes, or (N, C, H, W) logits (argmax is taken).
        path: PNG to write.
        palette: RGB (0–255) colour per class.
        extra_maps: name → (N, 1, H, W) or (N, H, W) float map, shown with a colour scale.
        scribbles: (N, H, W) int sparse labels (DFR and the scribble regime).
        ignore_index: void label.
        max_rows: at most this many images.
        class_names: one name per class: adds a colour legend of the classes present in the
            ground truth or the prediction.

    Returns:
        The written path.
    """
    _check_images("save_overlays", images)
    if preds.ndim == 4:
        preds = preds.argmax(1)
    n = min(images.shape[0], max_rows)
    if labels.shape[0] < n or preds.shape[0] < n:
        raise ValueError(
            f"save_overlays: labels and preds must hold at least {n} maps; "
            f"got {labels.shape[0]} and {preds.shape[0]}."
        )
    img = [images[i].detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() for i in range(n)]
    cols: list[tuple[str, list[np.ndarray], dict]] = [("image", img, {})]
    if scribbles is not None:
        marks = [overlay(images[i], scribbles[i], palette, alpha=1.0) for i in range(n)]
        cols.append(("scribbles", marks, {}))
    cols.append(("ground truth", [overlay(images[i], labels[i], palette) for i in range(n)], {}))
    cols.append(("prediction", [overlay(images[i], preds[i], palette) for i in range(n)], {}))
    for name, maps in (extra_maps or {}).items():
        m = maps.detach().float().cpu()
        m = m[:, 0] if m.ndim == 4 else m
        cols.append((name, [m[i].numpy() for i in range(n)], {"cmap": "viridis"}))
    legend: list[tuple[str, Sequence[int]]] = []
    if class_names:
        shown = torch.cat([labels[:n].flatten(), preds[:n].flatten()]).unique().tolist()
        legend = [
            (class_names[k], palette[k])
            for k in sorted(int(v) for v in shown)
            if k != ignore_index and k < min(len(class_names), len(palette))
        ]
    return _grid(cols, path, legend)


def _normal_rgb(normal: torch.Tensor) -> np.ndarray:
    """(3, H, W) unit normals → (H, W, 3) RGB (n + 1) / 2, the usual display convention."""
    return ((normal.detach().float().cpu().permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)


def save_regression_panel(
    images: torch.Tensor,
    target: torch.Tensor,
    pred: torch.Tensor,
    path: str | Path,
    *,
    task: str,
    max_rows: int = 8,
) -> Path:
    """Write image | ground truth | prediction | |error| for depth or surface normals.

    Args:
        images: (N, 3, H, W) float in [0, 1].
        target: depth (N, 1, H, W) (0 = invalid) or normals (N, 3, H, W) unit vectors.
        pred: same shape as ``target``.
        path: PNG to write.
        task: "depth" or "normals".
        max_rows: at most this many images.

    Returns:
        The written path.
    """
    _check_images("save_regression_panel", images)
    if task not in ("depth", "normals"):
        raise ValueError(f"save_regression_panel: task must be 'depth' or 'normals'; got {task!r}.")
    if target.shape != pred.shape:
        raise ValueError(
            f"save_regression_panel: pred must have the target's shape {tuple(target.shape)}; "
            f"got {tuple(pred.shape)}."
        )
    n = min(images.shape[0], max_rows)
    img = [images[i].detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() for i in range(n)]
    t, p = target.detach().float().cpu(), pred.detach().float().cpu()
    if task == "depth":
        vmax = float(t[:n].max())
        kw = {"cmap": "magma_r", "vmin": 0.0, "vmax": vmax if vmax > 0 else 1.0}
        err = [(p[i, 0] - t[i, 0]).abs().where(t[i, 0] > 0, 0).numpy() for i in range(n)]
        cols = [
            ("image", img, {}),
            ("depth (gt)", [t[i, 0].numpy() for i in range(n)], kw),
            ("depth (pred)", [p[i, 0].numpy() for i in range(n)], kw),
            ("|error|", err, {"cmap": "inferno"}),
        ]
    else:
        cos = torch.nn.functional.cosine_similarity(p[:n], t[:n], dim=1).clamp(-1, 1)
        angle = torch.rad2deg(torch.acos(cos)) * (t[:n].abs().sum(1) > 0)
        cols = [
            ("image", img, {}),
            ("normals (gt)", [_normal_rgb(t[i]) for i in range(n)], {}),
            ("normals (pred)", [_normal_rgb(p[i]) for i in range(n)], {}),
            ("angle error (deg)", [angle[i].numpy() for i in range(n)], {"cmap": "inferno"}),
        ]
    return _grid(cols, path)
