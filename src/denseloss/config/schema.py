"""Run configuration: frozen dataclasses, the single source of truth for the CLI and checkpoints.

``RunConfig`` is what ``denseloss train`` parses (``--config run.yaml``, ``--print-config`` and flag
overrides such as ``--train.steps 300`` are all derived from these fields), what every run writes
next to its logs as ``config.yaml``, and what every checkpoint carries. Components never read these
objects: :func:`method_config` and the trainer's builders map them to constructor keyword arguments.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from denseloss.config.data import DataConfig, DataSource, validate_data
from denseloss.methods.base import ModelConfig, OptimConfig

__all__ = [
    "DataConfig",
    "DataSource",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "check_eval_config",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "method_class",
    "method_config",
    "save_config",
    "validate",
]

Accelerator = Literal["cpu", "cuda", "auto"]
Precision = Literal["32-true", "bf16-mixed", "16-mixed"]
RunTask = Literal["seg", "depth", "normals"]
Strategy = Literal["auto", "ddp_spawn", "ddp_fork", "ddp"]
EvalMode = Literal["whole", "slide", "multiscale"]


@dataclass(frozen=True)
class TrainConfig:
    """Length of the run, cadence of evaluation/logging/checkpoints, devices and precision."""

    steps: int = 1000  # optimisation steps (one training_step call each)
    eval_every: int = 250  # evaluate on the val split every k steps (0 = only at the end)
    log_every: int = 10  # write a metrics.csv / TensorBoard row every k steps
    checkpoint_every: int = 250  # save last.ckpt every k steps (0 = only at the end)
    seed: int = 0  # seed of model initialisation and of every random op during training
    accelerator: Accelerator = "auto"  # "auto" (CUDA when visible, else CPU), "cpu", "cuda"
    devices: int = 1  # processes per node (DDP when > 1: gloo on CPU, NCCL on CUDA)
    num_nodes: int = 1  # machines; > 1 needs torchrun, srun or `fabric run` (docs/scaling.md)
    precision: Precision = "32-true"  # "32-true", "bf16-mixed" or "16-mixed" (→ bf16 on CPU)
    strategy: Strategy = "auto"  # DDP launcher; auto = ddp_spawn on CPU, ddp on CUDA
    out_dir: str | None = None  # run directory; None = runs/<method>-<timestamp>
    resume: str | None = None  # run directory or .ckpt file to continue exactly from
    allow_config_change: bool = False  # let a resume change hyperparameters (see resumes.jsonl)
    threads: int | None = None  # torch CPU threads per process; None = torch's, capped at the CPUs
    # this process may use / devices (set 1 on a machine shared with other jobs)
    eval_batches: int | None = None  # evaluate on at most this many batches per split (None = all)
    progress: bool = True  # show a tqdm progress bar with the live losses
    sync_bn: bool = False  # SyncBatchNorm (global-batch statistics) when processes > 1
    # micro-batches per optimiser step: gradients of `accumulate` batches are averaged, so the
    # global batch is batch_size · devices · num_nodes · accumulate (BatchNorm still sees one)
    accumulate: int = 1
    # the protocol's global batch (the shipped configs set the paper's); when the run's global
    # batch differs, the start-up line states the linear learning-rate scaling rule
    reference_batch: int | None = None


@dataclass(frozen=True)
class EvalConfig:
    """How val/test predictions are made and scored (training/inference.py has the maths)."""

    mode: EvalMode = "whole"  # "whole" image, sliding window ("slide"), "multiscale" (+ flip)
    # whole: pad smaller inputs (bottom/right, mean colour) up to [H, W] (AdvSemiSeg: 505²);
    # slide: the window [H, W]
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None  # slide: window step [H, W]; None = 2/3 of crop
    scales: tuple[float, ...] = (1.0,)  # multiscale: image scales whose probabilities average
    flip: bool = False  # average with the horizontally flipped input's probabilities
    # score against labels at their file's resolution (the papers' protocol): the image is
    # resized as in training (data.resize / data.target.resize), the labels are not
    original_labels: bool = False
    # extra mIoU over named class subsets, e.g. {"miou13": [road, sidewalk, ...]} (names or ids)
    class_subsets: dict[str, list[int | str]] = field(default_factory=dict)
    # val metric that picks checkpoints/best.ckpt; None = miou (seg), abs_rel (depth), mean (°)
    select: str | None = None

    def __post_init__(self) -> None:
        # YAML / JSON give lists: store the typed forms
        for name in ("crop", "stride", "scales"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))


@dataclass(frozen=True)
class RunConfig:
    """One training run: a method of ``denseloss.methods.METHODS`` and everything around it."""

    method: str = "ce"  # key of denseloss.methods.METHODS (`denseloss list` shows them)
    task: RunTask = "seg"  # "seg", "depth" or "normals" (must be in the method's tasks)
    data: DataConfig = field(default_factory=DataConfig)  # data set and batching
    model: ModelConfig = field(default_factory=ModelConfig)  # network factory and its kwargs
    optim: OptimConfig = field(default_factory=OptimConfig)  # SGD + poly schedule
    train: TrainConfig = field(default_factory=TrainConfig)  # loop, devices, output
    eval: EvalConfig = field(default_factory=EvalConfig)  # evaluation protocol
    params: dict[str, Any] = field(default_factory=dict)  # overrides of METHODS[method].Config


def method_class(name: str) -> type:
    """The ``Method`` subclass registered as ``name``; an unknown name lists the valid ones."""
    from denseloss.methods import METHODS

    if name not in METHODS:
        raise ValueError(
            f"method_class: method must be one of {sorted(METHODS)}; got {name!r}. "
            "Hint: `denseloss list` shows every method with its defaults."
        )
    return METHODS[name]


def method_config(config: RunConfig, cls: type | None = None) -> Any:
    """Build ``METHODS[config.method].Config`` (or ``cls.Config``) from ``config.params``.

    Raises:
        ValueError: unknown method, or a key of ``params`` that the method's Config lacks.
    """
    if cls is None:
        cls = method_class(config.method)
    cfg_cls = cls.Config
    if not dataclasses.is_dataclass(cfg_cls):
        if config.params:
            raise ValueError(
                f"method_config: params must be empty for method {config.method!r} (it has no "
                f"hyperparameters); got {sorted(config.params)}."
            )
        return cfg_cls()
    valid = [f.name for f in dataclasses.fields(cfg_cls)]
    unknown = sorted(set(config.params) - set(valid))
    if unknown:
        raise ValueError(
            f"method_config: params keys must be fields of {cfg_cls.__qualname__} "
            f"({', '.join(valid) or 'none'}); got unknown {unknown}."
        )
    hints = typing.get_type_hints(cfg_cls)
    for key, value in config.params.items():
        if not _matches(value, hints.get(key, Any)):
            raise TypeError(
                f"method_config: params[{key!r}] must be {_hint_name(hints[key])}; got "
                f"{value!r} ({type(value).__name__})."
            )
    return cfg_cls(**config.params)


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as parsed from JSON/YAML: tuples arrive as lists) fits ``hint``."""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_matches, value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return not isinstance(hint, type) or isinstance(value, hint)


def _hint_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def validate(config: RunConfig) -> RunConfig:
    """Check the cross-field rules the type hints cannot express; return ``config`` unchanged.

    Raises:
        ValueError: unknown method or params key, a task the method does not support, or a
            non-positive length/size/step count.
    """
    cls = method_class(config.method)
    method_config(config)
    tasks = tuple(getattr(cls, "tasks", ("seg",)))
    if config.task not in tasks:
        raise ValueError(
            f"validate: task must be one of {list(tasks)} for method {config.method!r}; "
            f"got {config.task!r}."
        )
    for name, value in (
        ("train.steps", config.train.steps),
        ("train.devices", config.train.devices),
        ("train.num_nodes", config.train.num_nodes),
        ("data.size", config.data.size),
        ("data.batch_size", config.data.batch_size),
        ("data.eval_batch_size", config.data.eval_batch_size),
        ("train.log_every", config.train.log_every),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"validate: {name} must be a positive int; got {value!r}.")
    for name, value in (
        ("train.eval_every", config.train.eval_every),
        ("train.checkpoint_every", config.train.checkpoint_every),
        ("data.num_workers", config.data.num_workers),
    ):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"validate: {name} must be a non-negative int; got {value!r}.")
    if not 0.0 < config.data.labeled_fraction <= 1.0:
        raise ValueError(
            "validate: data.labeled_fraction must be in (0, 1]; "
            f"got {config.data.labeled_fraction!r}."
        )
    if not isinstance(config.train.sync_bn, bool):
        raise ValueError(f"validate: train.sync_bn must be a bool; got {config.train.sync_bn!r}.")
    threads = config.train.threads
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"validate: train.threads must be an int >= 1 or None; got {threads!r}.")
    accumulate = config.train.accumulate
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise ValueError(f"validate: train.accumulate must be an int >= 1; got {accumulate!r}.")
    ref = config.train.reference_batch
    if ref is not None and (isinstance(ref, bool) or not isinstance(ref, int) or ref < 1):
        raise ValueError(f"validate: train.reference_batch must be an int >= 1; got {ref!r}.")
    validate_data(config.data, cls.regime)
    check_eval_config(config.eval, config.task)
    return config


def _pair(value: Any) -> bool:
    return (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    )


def check_eval_config(e: EvalConfig, task: str) -> None:
    """Refuse an :class:`EvalConfig` that cannot run for ``task`` (one line naming the field).

    Class names in ``class_subsets`` are checked against the data set when evaluating.
    """
    if e.mode not in typing.get_args(EvalMode):
        raise ValueError(
            f"validate: eval.mode must be one of {list(typing.get_args(EvalMode))}; got {e.mode!r}."
        )
    for name in ("crop", "stride"):
        value = getattr(e, name)
        if value is not None and not _pair(value):
            raise ValueError(
                f"validate: eval.{name} must be [H, W] (two positive ints) or None; got {value!r}."
            )
    if e.mode == "slide" and e.crop is None:
        raise ValueError("validate: eval.crop must be set for eval.mode='slide' (the window).")
    if e.stride is not None and e.mode != "slide":
        raise ValueError(f"validate: eval.stride applies to eval.mode='slide'; got {e.mode!r}.")
    if e.stride is not None and e.crop is not None and any(s > c for s, c in zip(e.stride, e.crop)):
        raise ValueError(
            f"validate: eval.stride must not exceed eval.crop {list(e.crop)} (windows would skip "
            f"pixels); got {list(e.stride)}."
        )
    scales = tuple(e.scales)
    if not scales or any(
        isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0 for s in scales
    ):
        raise ValueError(f"validate: eval.scales must be positive numbers; got {list(scales)!r}.")
    if e.mode != "multiscale" and scales != (1.0,):
        raise ValueError(
            f"validate: eval.scales applies to eval.mode='multiscale'; got {list(scales)} with "
            f"eval.mode={e.mode!r}."
        )
    if task != "seg" and (e.class_subsets or e.mode == "multiscale" or e.flip):
        raise ValueError(
            f"validate: eval.mode='multiscale', eval.flip and eval.class_subsets apply to task "
            f"'seg'; got task {task!r} with mode={e.mode!r}, flip={e.flip}, class_subsets="
            f"{e.class_subsets}. Hint: depth and normals evaluate 'whole' or 'slide'."
        )
    metrics = {
        "seg": ("miou", "pixel_acc", "boundary_f1", *e.class_subsets),
        "depth": ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3"),
        "normals": ("mean", "median", "within_11.25", "within_22.5", "within_30"),
    }[task]
    if e.select is not None and e.select not in metrics:
        raise ValueError(
            f"validate: eval.select must be one of {list(metrics)} for task {task!r}; got "
            f"{e.select!r}."
        )
    for key, classes in e.class_subsets.items():
        if not isinstance(classes, (list, tuple)) or not classes:
            raise ValueError(
                f"validate: eval.class_subsets[{key!r}] must be a non-empty list of class names or "
                f"ids; got {classes!r}."
            )


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain nested dict of primitives (YAML/JSON/``torch.save(weights_only)`` safe)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Inverse of :func:`config_to_dict`; unknown keys raise ``ValueError`` naming them."""
    if not isinstance(data, dict):
        raise TypeError(f"config_from_dict: data must be a dict; got {type(data).__name__}.")
    parts = {
        "data": DataConfig,
        "model": ModelConfig,
        "optim": OptimConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
    }
    kwargs: dict[str, Any] = {}
    top = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(data) - top)
    if unknown:
        raise ValueError(f"config_from_dict: keys must be in {sorted(top)}; got unknown {unknown}.")
    if isinstance(data.get("data"), dict):
        data = {**data, "data": _legacy_data(data["data"])}
    for key, value in data.items():
        if key in parts and isinstance(value, dict):
            names = {f.name for f in dataclasses.fields(parts[key])}
            bad = sorted(set(value) - names)
            if bad:
                raise ValueError(
                    f"config_from_dict: {key} keys must be in {sorted(names)}; got unknown {bad}."
                )
            kwargs[key] = parts[key](**value)
        else:
            kwargs[key] = value
    return RunConfig(**kwargs)


def _legacy_data(data: dict[str, Any]) -> dict[str, Any]:
    """Read the data part of configs written before ``data.target`` existed.

    ``target_domain`` was the built-in target domain; ``domain: synthetic`` was recorded for every
    data set although only the built-in data has domains.
    """
    data = dict(data)
    target_domain = data.pop("target_domain", None)
    builtin = data.get("name", "builtin") == "builtin"
    if target_domain is not None and builtin and "target" not in data:
        data["target"] = {"domain": target_domain}
    if not builtin and data.get("domain") == "synthetic":
        data["domain"] = None
    return data


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write ``config`` as YAML (read by ``denseloss train --config`` and :func:`load_config`)."""
    import yaml

    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML file written by :func:`save_config`."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"load_config: path must be an existing file; got {str(p)!r}.")
    try:
        content = yaml.safe_load(p.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"load_config: {p} is not valid YAML ({error}).") from error
    return config_from_dict(content or {})
