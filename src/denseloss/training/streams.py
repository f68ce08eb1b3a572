"""Builder: ``DataConfig`` + regime → training streams and evaluation loaders.

This is the one place that maps the data part of a run's config onto the constructor keyword
arguments of :mod:`denseloss.data`. Per regime the training stream yields:

========= ========================================================================================
regime    batch
========= ========================================================================================
full      one batch: image, label, scribble, depth, normal, valid
semi      ``{"labeled": ..., "unlabeled": ... (label dropped), "gt": ...}``; ``gt`` is a second
          stream over the labelled subset with another seed (what AdvSemiSeg's D sees);
          ``unlabeled`` is absent when the labelled fraction is 1
scribble  one batch with ``label`` dropped: ``scribble`` is the only supervision
uda       ``{"source": domain with labels, "target": target_domain, label dropped}``
========= ========================================================================================

Evaluation always uses full labels on the val/test split of the evaluation domain (the target
domain for UDA). Evaluation loaders shard the split over DDP ranks (``rank::world_size``); metric
states are summed across ranks by the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader, Dataset

from denseloss.config.schema import DataConfig

__all__ = ["TrainData", "build_eval_dataset", "build_eval_loader", "build_train_data"]

# Keys each regime must not see during training (see the table above).
_DROP: dict[str, tuple[str, ...]] = {"full": (), "scribble": ("label",)}


@dataclass
class TrainData:
    """The training stream plus what the trainer needs to know about the label space."""

    stream: Any  # iterator of batches with state_dict()/load_state_dict() (its position)
    num_classes: int  # segmentation classes
    ignore_index: int  # void label
    palette: list[tuple[int, int, int]]  # RGB colour per class, for pictures
    class_names: tuple[str, ...]  # class names, for reports
    eval_domain: str  # domain of the val/test splits


def _dataset(cfg: DataConfig, split: str, domain: str) -> Dataset:
    from denseloss.data import build_dataset

    length = {"train": cfg.train_length, "val": cfg.val_length, "test": cfg.test_length}[split]
    kw: dict[str, Any] = dict(cfg.kwargs)
    if cfg.name == "builtin":
        kw.update(domain=domain, size=cfg.size, seed=cfg.seed)
        if length is not None:
            kw["length"] = length
    return build_dataset(cfg.name, root=cfg.root, split=split, **kw)


def _augmentation(cfg: DataConfig) -> Any:
    """Random scale 0.75–1.25, crop back to ``size`` (padding = void), flip, small colour jitter."""
    if not cfg.augment:
        return None
    from denseloss.data.transforms import (
        ColorJitter,
        Compose,
        RandomCrop,
        RandomHorizontalFlip,
        RandomScale,
    )

    return Compose(
        [
            RandomScale(0.75, 1.25),
            RandomCrop(cfg.size),
            RandomHorizontalFlip(),
            ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1),
        ]
    )


def _stream(
    cfg: DataConfig,
    dataset: Dataset,
    *,
    seed: int,
    rank: int,
    world_size: int,
    drop: tuple[str, ...],
) -> Any:
    from denseloss.data import make_stream

    return make_stream(
        dataset,
        batch_size=cfg.batch_size,
        seed=seed,
        transform=_augmentation(cfg),
        num_workers=cfg.num_workers,
        rank=rank,
        world_size=world_size,
        drop_keys=drop,
    )


def build_train_data(
    cfg: DataConfig, regime: str, *, rank: int = 0, world_size: int = 1
) -> TrainData:
    """Training stream(s) for ``regime`` on rank ``rank`` of ``world_size``.

    Raises:
        ValueError: unknown regime.
    """
    from denseloss.data import PairedStream, labeled_split

    if regime not in ("full", "semi", "scribble", "uda"):
        raise ValueError(
            f"build_train_data: regime must be 'full', 'semi', 'scribble' or 'uda'; got {regime!r}."
        )
    common = {"rank": rank, "world_size": world_size}
    train = _dataset(cfg, "train", cfg.domain)
    eval_domain = cfg.domain
    if regime in _DROP:
        stream = _stream(cfg, train, seed=cfg.seed, drop=_DROP[regime], **common)
    elif regime == "semi":
        labeled, unlabeled = labeled_split(train, cfg.labeled_fraction, seed=cfg.seed)
        streams = {
            "labeled": _stream(cfg, labeled, seed=cfg.seed, drop=(), **common),
            "gt": _stream(cfg, labeled, seed=cfg.seed + 2, drop=(), **common),
        }
        if len(unlabeled):  # labeled_fraction = 1 leaves nothing unlabelled
            streams["unlabeled"] = _stream(
                cfg, unlabeled, seed=cfg.seed + 1, drop=("label",), **common
            )
        stream = PairedStream(streams)
    else:
        target = _dataset(cfg, "train", cfg.target_domain)
        eval_domain = cfg.target_domain
        stream = PairedStream(
            {
                "source": _stream(cfg, train, seed=cfg.seed, drop=(), **common),
                "target": _stream(cfg, target, seed=cfg.seed + 1, drop=("label",), **common),
            }
        )
    return TrainData(
        stream=stream,
        num_classes=int(getattr(train, "num_classes", 0)),
        ignore_index=int(getattr(train, "ignore_index", 255)),
        palette=[tuple(c) for c in getattr(train, "palette", [])],
        class_names=tuple(getattr(train, "class_names", ())),
        eval_domain=eval_domain,
    )


def build_eval_dataset(cfg: DataConfig, split: str, domain: str) -> Dataset:
    """The un-augmented ``split`` of ``domain`` (full labels)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"build_eval_dataset: split must be 'val' or 'test'; got {split!r}.")
    return _dataset(cfg, split, domain)


def build_eval_loader(
    cfg: DataConfig, split: str, domain: str, *, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """Sequential loader over this rank's share (``rank::world_size``, no padding) of ``split``."""
    from denseloss.data import make_eval_loader

    dataset = build_eval_dataset(cfg, split, domain)
    return make_eval_loader(
        dataset, cfg.eval_batch_size, cfg.num_workers, rank=rank, world_size=world_size
    )
