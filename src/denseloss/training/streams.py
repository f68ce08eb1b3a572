"""Builder: ``DataConfig`` + regime → training streams, evaluation loaders and eager data checks.

This is the one place that maps the data part of a run's config onto the constructor keyword
arguments of :mod:`denseloss.data`. A run reads the data set of ``data.*`` (the *source*) and,
for UDA, the target of ``data.target.*`` (:mod:`denseloss.config.data` resolves both). Per
regime the training stream yields:

========= ========================================================================================
regime    batch
========= ========================================================================================
full      one batch: image, label (and scribble, depth, normal where the data set has them)
semi      ``{"labeled": ..., "unlabeled": ... (label dropped), "gt": ...}``; ``gt`` is a second
          stream over the labelled subset with another seed (what AdvSemiSeg's D sees);
          ``unlabeled`` is absent when nothing is unlabelled
scribble  one batch with ``label`` dropped: ``scribble`` is the only supervision
uda       ``{"source": source train split, with labels, "target": target train split, label
          dropped}``
========= ========================================================================================

The semi-supervised labelled subset is, in this order of precedence: the samples listed in
``data.labeled_list`` (image stems, or indices for the built-in data; UniMatch's ``labeled.txt``
lines ``<image path> <label path>`` too, and an ``unlabeled.txt`` beside a ``labeled.txt`` gives
the unlabelled subset, else it is the rest of the split); else, when some training
images have no label file, exactly those that have one; else a seeded ``labeled_fraction`` of the
training split (:func:`denseloss.data.labeled_split`).

Evaluation always uses full labels on the val/test splits of the evaluation data set: the target
for UDA, the source otherwise. Evaluation loaders shard a split over DDP ranks
(``rank::world_size``); metric states are summed across ranks by the trainer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from denseloss.config.data import (
    DataConfig,
    DataSource,
    describe_source,
    eval_source_of,
    source_of,
    target_of,
    validate_data,
)
from denseloss.data.errors import DataError

__all__ = [
    "TrainData",
    "build_eval_dataset",
    "build_eval_loader",
    "build_split",
    "build_train_data",
    "check_run_data",
    "read_split_list",
    "semi_split",
    "write_split",
]

# Keys each regime must not see during training (see the table above).
_DROP: dict[str, tuple[str, ...]] = {"full": (), "scribble": ("label",)}
# The key evaluation (and full-label training) reads for each task.
_TASK_KEY: dict[str, str] = {"seg": "label", "depth": "depth", "normals": "normal"}


@dataclass
class TrainData:
    """The training stream plus what the trainer needs to know about the label space."""

    stream: Any  # iterator of batches with state_dict()/load_state_dict() (its position)
    num_classes: int  # segmentation classes
    ignore_index: int  # void label
    palette: list[tuple[int, int, int]]  # RGB colour per class, for pictures
    class_names: tuple[str, ...]  # class names, for reports
    eval_domain: str  # the evaluated data set, short form ("real", "folder:/data/target")
    eval_source: DataSource | None = None  # the evaluated data set, complete
    description: dict[str, Any] = field(default_factory=dict)  # the data used, for results.json
    split_ids: dict[str, list[str]] | None = None  # semi: {"labeled": ids, "unlabeled": ids}


def build_split(
    cfg: DataConfig,
    source: DataSource,
    split: str,
    *,
    derived_scribbles: bool = False,
    prefix: str = "data",
) -> Dataset:
    """Split ``split`` ("train", "val" or "test") of ``source``: capped, resized, as configured.

    Raises:
        FileNotFoundError, DataError: the split cannot be indexed; the message starts with the
            config field that names it (``data.val_split='val': ...``).
    """
    from denseloss.data import build_dataset
    from denseloss.data.views import DatasetView

    name = getattr(source, f"{split}_split")
    length = getattr(source, f"{split}_length")
    kw: dict[str, Any] = dict(source.kwargs)
    if source.name == "builtin":
        kw.update(domain=source.domain, size=cfg.size, seed=cfg.seed)
        if length is not None:
            kw["length"] = length
    try:
        dataset = build_dataset(source.name, root=source.root, split=name, **kw)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{prefix}.{split}_split={name!r}: {err}") from err
    except DataError as err:
        raise DataError(f"{prefix}.{split}_split={name!r}: {err}") from err
    n = len(dataset)  # type: ignore[arg-type]
    indices = None if length is None or length >= n else range(length)
    resize = source.resize if source.resize is not None else cfg.resize
    if indices is None and resize is None and not derived_scribbles:
        return dataset
    return DatasetView(
        dataset,
        indices=indices,
        size=resize,
        derived_scribbles=derived_scribbles,
        scribble_seed=cfg.seed,
    )


def _augmentation(cfg: DataConfig, crop: tuple[int, int] | None = None) -> Any:
    """Random scale in ``scale_range``, crop to ``crop`` (default ``data.crop``, else ``size``²;
    padding = void), flip, colour jitter; each step only when the config asks for it."""
    if not cfg.augment:
        return None
    from denseloss.data.transforms import (
        ColorJitter,
        Compose,
        RandomCrop,
        RandomHorizontalFlip,
        RandomScale,
    )

    steps: list[Any] = []
    if tuple(cfg.scale_range) != (1.0, 1.0):
        steps.append(RandomScale(*cfg.scale_range))
    crop = crop if crop is not None else cfg.crop
    steps.append(RandomCrop(tuple(crop) if crop is not None else cfg.size))
    if cfg.flip:
        steps.append(RandomHorizontalFlip())
    if cfg.jitter > 0:
        steps.append(ColorJitter(brightness=cfg.jitter, contrast=cfg.jitter, saturation=cfg.jitter))
    return Compose(steps)


def _stream(
    cfg: DataConfig,
    dataset: Dataset,
    *,
    seed: int,
    rank: int,
    world_size: int,
    drop: tuple[str, ...],
    crop: tuple[int, int] | None = None,
) -> Any:
    from denseloss.data import make_stream

    return make_stream(
        dataset,
        batch_size=cfg.batch_size,
        seed=seed,
        transform=_augmentation(cfg, crop),
        num_workers=cfg.num_workers,
        rank=rank,
        world_size=world_size,
        drop_keys=drop,
    )


def semi_split(cfg: DataConfig, train: Dataset) -> tuple[list[int], list[int], str]:
    """Labelled and unlabelled indices of ``train``, and how they were chosen (module docstring).

    Raises:
        DataError: a listed id is not in the training split, or has no label file.
    """
    from denseloss.data import labeled_split
    from denseloss.data.views import has_label, sample_id

    n = len(train)  # type: ignore[arg-type]
    if cfg.labeled_list is not None:
        path = Path(cfg.labeled_list)
        ids = {sample_id(train, i): i for i in range(n)}
        labeled = sorted(_listed(path, ids))
        unlabelled_listed = [sample_id(train, i) for i in labeled if not has_label(train, i)]
        if unlabelled_listed:
            raise DataError(
                f"{path}: data.labeled_list names samples without a label file, first "
                f"{unlabelled_listed[0]!r}."
            )
        chosen = set(labeled)
        sibling = path.with_name(path.name.replace("labeled", "unlabeled"))
        if "labeled" in path.name and sibling.is_file():  # UniMatch / denseloss split pair
            unlabeled = sorted(_listed(sibling, ids))
            both = chosen.intersection(unlabeled)
            if both:
                raise DataError(
                    f"{sibling}: the unlabelled list must not repeat labelled samples; got "
                    f"{len(both)}, first {sample_id(train, min(both))!r}."
                )
            return labeled, unlabeled, f"lists {path} + {sibling.name}"
        return labeled, [i for i in range(n) if i not in chosen], f"list {path}"
    flags = [has_label(train, i) for i in range(n)]
    if not all(flags):
        labeled = [i for i in range(n) if flags[i]]
        return labeled, [i for i in range(n) if not flags[i]], "label files present"
    lab, unlab = labeled_split(train, cfg.labeled_fraction, seed=cfg.seed)
    return list(lab.indices), list(unlab.indices), f"fraction {cfg.labeled_fraction}"


def read_split_list(path: str | Path) -> list[str]:
    """Sample ids of a split list, in file order.

    Accepted lines: a sample id (``2007_000032``; denseloss's own ``split/labeled.txt``), or
    UniMatch's ``JPEGImages/2007_000032.jpg SegmentationClass/2007_000032.png`` (the image's
    stem is the id). Blank lines and ``#`` comments are skipped.
    """
    ids = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(Path(line.split()[0]).stem)
    return ids


def _listed(path: Path, ids: dict[str, int]) -> set[int]:
    wanted = read_split_list(path)
    unknown = [w for w in wanted if w not in ids]
    if unknown:
        raise DataError(
            f"{path}: data.labeled_list ids must name training samples (image stems); got "
            f"{len(unknown)} unknown, first {unknown[0]!r}."
        )
    return {ids[w] for w in wanted}


def write_split(out_dir: str | Path, split: dict[str, list[str]], how: str) -> list[Path]:
    """Write ``split/labeled.txt`` and ``split/unlabeled.txt`` (one id per line) under ``out_dir``.

    ``--data.labeled_list <out_dir>/split/labeled.txt`` reads the pair back (same subsets).
    """
    folder = Path(out_dir) / "split"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for part in ("labeled", "unlabeled"):
        path = folder / f"{part}.txt"
        header = f"# {part} training samples of this run ({how}); one id per line\n"
        path.write_text(header + "".join(f"{i}\n" for i in split.get(part, [])))
        paths.append(path)
    return paths


def _split_entry(source: DataSource, split: str, dataset: Dataset) -> dict[str, Any]:
    return {
        "data_set": describe_source(source),
        "split": getattr(source, f"{split}_split"),
        "samples": len(dataset),  # type: ignore[arg-type]
    }


def build_train_data(
    cfg: DataConfig, regime: str, *, rank: int = 0, world_size: int = 1
) -> TrainData:
    """Training stream(s) for ``regime`` on rank ``rank`` of ``world_size``.

    Raises:
        ValueError: unknown regime, or data settings that do not fit it (see
            :func:`denseloss.config.data.validate_data`).
    """
    from torch.utils.data import Subset

    from denseloss.data import PairedStream

    if regime not in ("full", "semi", "scribble", "uda"):
        raise ValueError(
            f"build_train_data: regime must be 'full', 'semi', 'scribble' or 'uda'; got {regime!r}."
        )
    validate_data(cfg, regime)
    common = {"rank": rank, "world_size": world_size}
    source = source_of(cfg)
    derived = regime == "scribble" and cfg.scribbles == "derived"
    train = build_split(cfg, source, "train", derived_scribbles=derived)
    description: dict[str, Any] = {"train": _split_entry(source, "train", train)}
    split_ids: dict[str, list[str]] | None = None
    if regime in _DROP:
        stream = _stream(cfg, train, seed=cfg.seed, drop=_DROP[regime], **common)
        if regime == "scribble":
            description["scribbles"] = cfg.scribbles
    elif regime == "semi":
        labeled_idx, unlabeled_idx, how = semi_split(cfg, train)
        labeled, unlabeled = Subset(train, labeled_idx), Subset(train, unlabeled_idx)
        streams = {
            "labeled": _stream(cfg, labeled, seed=cfg.seed, drop=(), **common),
            "gt": _stream(cfg, labeled, seed=cfg.seed + 2, drop=(), **common),
        }
        if len(unlabeled):  # labeled_fraction = 1 leaves nothing unlabelled
            streams["unlabeled"] = _stream(
                cfg, unlabeled, seed=cfg.seed + 1, drop=("label",), **common
            )
        stream = PairedStream(streams)
        description.update(labeled=len(labeled), unlabeled=len(unlabeled), labeled_by=how)
        from denseloss.data.views import sample_id

        split_ids = {
            "labeled": [sample_id(train, i) for i in labeled_idx],
            "unlabeled": [sample_id(train, i) for i in unlabeled_idx],
        }
    else:
        target_source = target_of(cfg)
        target = build_split(cfg, target_source, "train", prefix="data.target")
        description["target_train"] = _split_entry(target_source, "train", target)
        stream = PairedStream(
            {
                "source": _stream(cfg, train, seed=cfg.seed, drop=(), **common),
                "target": _stream(
                    cfg,
                    target,
                    seed=cfg.seed + 1,
                    drop=("label",),
                    crop=target_source.crop,
                    **common,
                ),
            }
        )
    eval_source = eval_source_of(cfg, regime)
    if cfg.resize is not None:
        description["resize"] = list(cfg.resize)
    return TrainData(
        split_ids=split_ids,
        stream=stream,
        num_classes=int(getattr(train, "num_classes", 0)),
        ignore_index=int(getattr(train, "ignore_index", 255)),
        palette=[tuple(c) for c in getattr(train, "palette", [])],
        class_names=tuple(getattr(train, "class_names", ())),
        eval_domain=describe_source(eval_source),
        eval_source=eval_source,
        description=description,
    )


def _as_source(cfg: DataConfig, source: DataSource | str) -> DataSource:
    """A complete source; a plain string is a built-in domain (the former ``eval_domain``)."""
    if isinstance(source, DataSource):
        return source
    if cfg.name != "builtin":
        raise TypeError(
            f"build_eval_dataset: source must be a DataSource for data.name={cfg.name!r}; got the "
            f"string {source!r}. Hint: pass TrainData.eval_source."
        )
    return dataclasses.replace(source_of(cfg), domain=source)


def build_eval_dataset(cfg: DataConfig, split: str, source: DataSource | str) -> Dataset:
    """The un-augmented ``split`` ("val" or "test") of ``source`` (full labels), resized as set."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"build_eval_dataset: split must be 'val' or 'test'; got {split!r}.")
    return build_split(cfg, _as_source(cfg, source), split)


def build_eval_loader(
    cfg: DataConfig,
    split: str,
    source: DataSource | str,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Sequential loader over this rank's share (``rank::world_size``, no padding) of ``split``."""
    from denseloss.data import make_eval_loader

    dataset = build_eval_dataset(cfg, split, source)
    return make_eval_loader(
        dataset, cfg.eval_batch_size, cfg.num_workers, rank=rank, world_size=world_size
    )


def check_run_data(
    cfg: DataConfig, regime: str, task: str = "seg", *, progress: bool = False
) -> list[Any]:
    """Index and validate every split a run of ``regime``/``task`` reads, before it starts.

    Each sample is checked by :func:`denseloss.data.check.check_dataset` for the keys its role
    needs: the training split a label (full, semi's labelled part, UDA source; or ``depth`` /
    ``normal`` for those tasks), a scribble (scribble regime, unless derived from labels), nothing
    but an image for the UDA target's training split; val and test the task's key. Splits whose
    images differ in size must be resized (``data.resize``) where they are batched whole (always
    in evaluation when ``eval_batch_size > 1``; in training without augmentation).

    Returns:
        The :class:`~denseloss.data.check.SplitReport` of each split.

    Raises:
        DataError: the first problem found, naming the file (or the split and the fix).
        FileNotFoundError: a split that cannot be indexed, naming the config field.
    """
    from denseloss.data.check import check_dataset
    from denseloss.data.views import DatasetView

    validate_data(cfg, regime)
    key = _TASK_KEY[task]
    source = source_of(cfg)
    derived = regime == "scribble" and cfg.scribbles == "derived"
    train = build_split(cfg, source, "train", derived_scribbles=derived)
    plans: list[tuple[str, Dataset, list[int] | None, tuple[str, ...], int | None]] = []
    if regime == "semi":
        labeled, unlabeled, _ = semi_split(cfg, train)
        plans.append(("train (labelled)", train, labeled, (key,), _batched(cfg)))
        if unlabeled:
            plans.append(("train (unlabelled)", train, unlabeled, (), _batched(cfg)))
    else:
        need = ("label" if derived else "scribble",) if regime == "scribble" else (key,)
        plans.append(("train", train, None, need, _batched(cfg)))
    eval_source = eval_source_of(cfg, regime)
    prefix = "data.target" if regime == "uda" else "data"
    if regime == "uda":
        target = build_split(cfg, eval_source, "train", prefix=prefix)
        plans.append(("target train", target, None, (), _batched(cfg)))
    for split in ("val", "test"):
        dataset = build_split(cfg, eval_source, split, prefix=prefix)
        batch = cfg.eval_batch_size if cfg.resize is None else None
        plans.append((f"{prefix}.{split}_split", dataset, None, (key,), batch))
    reports = []
    classes = int(getattr(train, "num_classes", 0))
    for role, dataset, indices, need, batch in plans:
        base, view_indices = dataset, indices
        if isinstance(dataset, DatasetView):
            base = dataset.base
            view_indices = [dataset.indices[i] for i in (indices or range(len(dataset)))]
        own = int(getattr(base, "num_classes", 0))
        if task == "seg" and own and classes and own != classes:
            raise DataError(
                f"check_run_data: {role} must have the {classes} classes of the training data; "
                f"got {own} classes. Hint: the target's label space must equal the source's."
            )
        if derived and role == "train":
            need = ("label",)
        report = check_dataset(
            base, role=role, indices=view_indices, require=need, max_errors=1, progress=progress
        )
        if report.errors:
            raise DataError(report.errors[0])
        if batch is not None and batch > 1 and len(report.sizes) > 1:
            sizes = ", ".join(f"{h}x{w}" for (h, w), _ in report.sizes.most_common(3))
            raise DataError(
                f"check_run_data: {role} images must share one size to be batched; got "
                f"{len(report.sizes)} sizes ({sizes}, ...). Hint: --data.resize [H, W] resizes "
                "every sample."
            )
        reports.append(report)
    return reports


def _batched(cfg: DataConfig) -> int | None:
    """Training batches need one image size only without augmentation (the crop fixes it)."""
    return None if cfg.augment or cfg.resize is not None else cfg.batch_size
