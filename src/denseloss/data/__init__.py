"""denseloss.data: the built-in data set, joint transforms, resumable streams, picture grids.

``DATASETS`` maps a name to a factory ``factory(root=None, split="train", **kw) -> Dataset``;
``build_dataset`` looks a name up and calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from denseloss.data.check import SplitReport, check_dataset
from denseloss.data.layouts import layout_datasets
from denseloss.data.loading import (
    Augmented,
    InfiniteSampler,
    PairedIterator,
    PairedStream,
    Stream,
    labeled_split,
    make_eval_loader,
    make_loader,
    make_stream,
)
from denseloss.data.sample import IGNORE_INDEX, SAMPLE_KEYS, Batch, Sample, to_device
from denseloss.data.show import save_grid, show_builtin
from denseloss.data.synthetic import SyntheticScenes, build_builtin
from denseloss.data.transforms import (
    ColorJitter,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
)
from denseloss.data.views import DatasetView, derive_scribbles

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "SAMPLE_KEYS",
    "Augmented",
    "Batch",
    "ColorJitter",
    "Compose",
    "DatasetView",
    "InfiniteSampler",
    "Normalize",
    "PairedIterator",
    "PairedStream",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "Sample",
    "SplitReport",
    "Stream",
    "SyntheticScenes",
    "build_dataset",
    "check_dataset",
    "derive_scribbles",
    "labeled_split",
    "make_eval_loader",
    "make_loader",
    "make_stream",
    "save_grid",
    "show_builtin",
    "to_device",
]

DATASETS: dict[str, Callable[..., Dataset]] = {
    "builtin": build_builtin,
}
DATASETS.update(layout_datasets())


def build_dataset(
    name: str, *, root: str | None = None, split: str = "train", **kw: Any
) -> Dataset:
    """Build data set ``name`` from ``DATASETS`` (``"builtin"`` needs no ``root``).

    Raises:
        ValueError: ``name`` is not in ``DATASETS``; the message lists the valid names.
    """
    if name not in DATASETS:
        raise ValueError(f"build_dataset: name must be one of {sorted(DATASETS)}; got {name!r}.")
    return DATASETS[name](root=root, split=split, **kw)
