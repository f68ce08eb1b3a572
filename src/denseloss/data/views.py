"""Views of a data set that a run needs: the first N samples, a fixed resize, derived scribbles.

A :class:`DatasetView` wraps any map-style data set and keeps its label-space attributes
(``num_classes``, ``class_names``, ``palette``, ``ignore_index``, ``records``, ...), so a
resized or truncated data set is still described truthfully in ``results.json`` and can be
validated like the original. :func:`sample_id` and :func:`has_label` answer, without decoding
anything, which sample is which (for a labelled-subset list) and which samples carry a label.

Derived scribbles (``data.scribbles: derived``) are drawn from the dense label by the same
stroke generator as the built-in scenes (:func:`denseloss.data.synthetic._scribbles`): every
4-connected region of one class (pixels equal to ignore are never used) gets one random
wiggly stroke ``width`` pixels wide inside the region, eroded away from its border, with stroke
lengths shared out over regions in proportion to √area so that about ``fraction`` of the image is
covered. The strokes of sample ``i`` are a pure function of ``(seed, i)`` and of its label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from denseloss.data.sample import IGNORE_INDEX, Sample
from denseloss.data.transforms import resize

__all__ = ["DatasetView", "derive_scribbles", "has_label", "sample_id"]


def derive_scribbles(
    label: np.ndarray,
    *,
    seed: int,
    index: int,
    width: int = 3,
    fraction: float = 0.03,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """ScribbleSup-style strokes drawn inside the regions of a dense ``(H, W)`` label.

    Args:
        label: ``(H, W)`` integer class ids, ``ignore_index`` = void.
        seed: stroke seed (with ``index``, one ``numpy.random.default_rng([seed, index])``).
        index: sample index.
        width: stroke width in pixels (>= 1).
        fraction: target fraction of pixels covered, in (0, 1).
        ignore_index: void value of ``label``; it is also the value off the strokes.

    Returns:
        ``(H, W)`` int64: the label's class on stroke pixels, ``ignore_index`` elsewhere. Every
        stroke pixel equals the dense label there.
    """
    from scipy import ndimage

    from denseloss.data.synthetic import _scribbles

    label = np.asarray(label)
    instance = np.full(label.shape, -1, dtype=np.int64)
    instance_class: list[int] = []
    for cls in np.unique(label):
        if int(cls) == ignore_index:
            continue
        regions, count = ndimage.label(label == cls)
        for k in range(1, count + 1):
            instance[regions == k] = len(instance_class)
            instance_class.append(int(cls))
    rng = np.random.default_rng([seed, index])
    strokes = _scribbles(rng, instance, instance_class, label != ignore_index, width, fraction)
    return np.where(strokes == IGNORE_INDEX, ignore_index, strokes).astype(np.int64)


class DatasetView(Dataset):
    """``base`` restricted to ``indices``, resized to ``size``, with derived scribbles if asked.

    Attribute access falls through to ``base`` (``num_classes``, ``palette``, ``records`` ...).

    Args:
        base: map-style data set of sample dicts.
        indices: the base indices this view shows, in order (``None`` = all).
        size: ``(H, W)`` every spatial entry is resized to (image bilinear, others nearest; see
            :func:`denseloss.data.transforms.resize`); ``None`` keeps the native size.
        derived_scribbles: replace ``scribble`` by strokes drawn from ``label``
            (:func:`derive_scribbles`, at native resolution, before the resize).
        scribble_seed: seed of the derived strokes.
    """

    def __init__(
        self,
        base: Dataset,
        *,
        indices: Sequence[int] | None = None,
        size: tuple[int, int] | None = None,
        derived_scribbles: bool = False,
        scribble_seed: int = 0,
    ) -> None:
        self.base = base
        self.indices = list(range(len(base))) if indices is None else [int(i) for i in indices]  # type: ignore[arg-type]
        if size is not None and (
            len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size)
        ):
            raise ValueError(f"DatasetView: size must be (H, W) positive ints; got {size!r}.")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.derived_scribbles = bool(derived_scribbles)
        self.scribble_seed = int(scribble_seed)

    def __getattr__(self, name: str) -> Any:
        # only called for attributes the view lacks; guard the ones unpickling looks up first
        if name.startswith("__") or name in ("base", "indices"):
            raise AttributeError(name)
        return getattr(self.base, name)

    def __len__(self) -> int:
        return len(self.indices)

    def base_index(self, index: int) -> int:
        """The index in ``base`` of item ``index``."""
        return self.indices[index]

    def __getitem__(self, index: int) -> Sample:
        base_index = self.indices[int(index)]
        sample = dict(self.base[base_index])
        if self.derived_scribbles and "label" in sample:
            ignore = int(getattr(self.base, "ignore_index", IGNORE_INDEX))
            strokes = derive_scribbles(
                sample["label"].numpy(),
                seed=self.scribble_seed,
                index=base_index,
                ignore_index=ignore,
            )
            sample["scribble"] = torch.from_numpy(strokes)
        if self.size is not None and tuple(sample["image"].shape[-2:]) != self.size:
            sample = resize(sample, self.size)
        sample["index"] = torch.tensor(int(index), dtype=torch.int64)
        return sample

    def __repr__(self) -> str:
        return f"DatasetView({self.base!r}, n={len(self)}, size={self.size})"


def _unwrap(dataset: Any, index: int) -> tuple[Any, int]:
    """The innermost data set and index behind views and ``torch.utils.data.Subset``."""
    while True:
        if isinstance(dataset, DatasetView):
            dataset, index = dataset.base, dataset.indices[index]
        elif isinstance(dataset, torch.utils.data.Subset):
            dataset, index = dataset.dataset, int(dataset.indices[index])
        else:
            return dataset, index


def sample_id(dataset: Any, index: int) -> str:
    """A stable name of sample ``index``: the image file's stem for on-disk layouts, else the index.

    This is what a labelled-subset list (``data.labeled_list``) holds, one per line.
    """
    base, i = _unwrap(dataset, index)
    records = getattr(base, "records", None)
    if records is not None:
        return records[i].image.stem
    return str(i)


def has_label(dataset: Any, index: int) -> bool:
    """Whether sample ``index`` carries a dense ``label`` (decided from the file list)."""
    base, i = _unwrap(dataset, index)
    records = getattr(base, "records", None)
    if records is not None:
        return records[i].label is not None
    return bool(getattr(base, "has_labels", True))
