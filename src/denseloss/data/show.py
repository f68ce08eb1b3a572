"""Picture grids of data sets: image | label | scribbles | depth | normals, one block per domain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

from denseloss.data.sample import IGNORE_INDEX

__all__ = ["REGIMES", "colorize_label", "save_grid", "show_builtin"]

REGIMES: Final[tuple[str, ...]] = ("full", "semi", "scribble", "uda")
_COLUMNS: Final[tuple[str, ...]] = ("image", "label", "scribbles", "depth", "normals")
_VOID_COLOUR: Final[tuple[int, int, int]] = (255, 255, 255)


def colorize_label(label: torch.Tensor, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) int class ids -> (H, W, 3) uint8 colours; ignore (255) is white."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:] = _VOID_COLOUR
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut[label.numpy().astype(np.int64).clip(0, 255)]


def _panels(sample: Mapping[str, torch.Tensor], palette: Sequence[Sequence[int]]) -> list[Any]:
    import matplotlib

    image = sample["image"].permute(1, 2, 0).clamp(0, 1).numpy()
    label = colorize_label(sample["label"], palette) if "label" in sample else np.ones_like(image)
    scribble = sample.get("scribble")
    if scribble is not None:
        # strokes in class colours over a faded grey copy of the image, for context
        grey = 0.35 + 0.3 * image.mean(axis=2, keepdims=True).repeat(3, axis=2)
        on = (scribble != IGNORE_INDEX).numpy()
        scribbles = grey.copy()
        scribbles[on] = colorize_label(scribble, palette)[on] / 255.0
    else:
        scribbles = np.ones_like(image)
    depth = sample["depth"][0].numpy() if "depth" in sample else np.zeros(image.shape[:2])
    good = depth > 0
    lo, hi = (depth[good].min(), depth[good].max()) if good.any() else (0.0, 1.0)
    depth_rgb = matplotlib.colormaps["magma_r"]((depth - lo) / max(hi - lo, 1e-6))[..., :3]
    depth_rgb[~good] = 0
    if "normal" in sample:
        normal = sample["normal"].permute(1, 2, 0).numpy()
        # (n + 1) / 2 with y flipped, so "up" shows green as in most normal-map viewers
        normal_rgb = (normal * np.array([1.0, -1.0, -1.0]) + 1) / 2
        normal_rgb[(normal == 0).all(axis=2)] = 0
    else:
        normal_rgb = np.zeros_like(image)
    return [image, label, scribbles, depth_rgb, np.clip(normal_rgb, 0, 1)]


def save_grid(
    dataset_or_datasets: Any,
    path: str | Path,
    *,
    n: int = 6,
    regime: str = "full",
    indices: Sequence[int] | None = None,
) -> str:
    """Write a PNG grid with columns image | label | scribbles | depth | normals.

    Args:
        dataset_or_datasets: a map-style data set of sample dicts, a sequence of them, or a mapping
            ``{title: dataset}``; one block of ``n`` rows per data set (e.g. one per domain).
        path: output ``.png`` path; parent folders are created.
        n: rows per block.
        regime: ``"full"``, ``"semi"``, ``"scribble"`` or ``"uda"``; written into the title.
        indices: which samples to show (default ``0..n-1``).

    Returns:
        The path written, as a string.

    Raises:
        ValueError: ``n`` < 1, an unknown ``regime`` or an empty data set.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if regime not in REGIMES:
        raise ValueError(f"save_grid: regime must be one of {list(REGIMES)}; got {regime!r}.")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"save_grid: n must be a positive int; got {n!r}.")
    if isinstance(dataset_or_datasets, Mapping):
        blocks = list(dataset_or_datasets.items())
    elif isinstance(dataset_or_datasets, (list, tuple)):
        blocks = [(getattr(d, "domain", f"set {i}"), d) for i, d in enumerate(dataset_or_datasets)]
    else:
        blocks = [(getattr(dataset_or_datasets, "domain", ""), dataset_or_datasets)]
    for title, ds in blocks:
        if len(ds) == 0:
            raise ValueError(f"save_grid: dataset {title!r} must not be empty; got length 0.")
    rows = [
        (title, ds, i)
        for title, ds in blocks
        for i in (indices if indices is not None else range(min(n, len(ds))))
    ]
    palette = getattr(blocks[0][1], "palette", None) or [
        tuple(int(c) for c in matplotlib.colormaps["tab20"](k % 20, bytes=True)[:3])
        for k in range(256)
    ]
    cols = len(_COLUMNS)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.6 * cols + 0.6, 1.6 * len(rows) + 1.0), squeeze=False
    )
    for r, (title, ds, i) in enumerate(rows):
        for c, panel in enumerate(_panels(ds[i], palette)):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 or rows[r - 1][0] != title:
                ax.set_title(
                    f"{_COLUMNS[c]}" + (f"\n[{title}]" if title and c == 0 else ""), fontsize=8
                )
        axes[r, 0].set_ylabel(f"#{i}", fontsize=7)
    names = getattr(blocks[0][1], "class_names", None)
    if names:
        handles = [
            Patch(color=np.asarray(palette[k]) / 255, label=name) for k, name in enumerate(names)
        ]
        handles.append(Patch(facecolor="white", edgecolor="black", label="void (255)"))
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 7),
            fontsize=7,
            frameon=False,
        )
    fig.suptitle(f"regime: {regime}", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.98))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


def show_builtin(regime: str, out: str, *, size: int = 64, seed: int = 0, n: int = 4) -> str:
    """Grid of the built-in data set for ``regime`` (CLI: ``denseloss data show builtin``).

    ``"uda"`` shows a block for each domain (``synthetic`` source, ``real`` target); the other
    regimes show the ``synthetic`` training scenes.

    Returns:
        The path written.
    """
    from denseloss.data.synthetic import SyntheticScenes

    if regime not in REGIMES:
        raise ValueError(f"show_builtin: regime must be one of {list(REGIMES)}; got {regime!r}.")
    domains = ("synthetic", "real") if regime == "uda" else ("synthetic",)
    datasets = {
        d: SyntheticScenes("train", domain=d, size=size, length=n, seed=seed) for d in domains
    }
    return save_grid(datasets, out, n=n, regime=regime)
