"""Run folders: a new run never reuses one that holds a run; a resume never changes one silently.

Rules applied by :func:`denseloss.training.trainer.train` before anything is written:

* **New run** (``train.resume`` unset): ``train.out_dir`` must not hold a run, i.e. none of
  ``config.yaml``, ``metrics.csv``, ``results.json``, ``checkpoints/``, ``tb/``. Otherwise
  :class:`RunExistsError` (one line: continue it with ``--train.resume <dir>`` or pick another
  ``--train.out_dir``). Nothing is renamed or suffixed behind the user's back.
* **Resume**: the checkpoint's config and the new one may differ only in the fields of
  :data:`OPERATIONAL` (where output goes, logging/evaluation cadence, workers, threads, data
  roots: none changes the training trajectory), and in the process layout (devices, nodes,
  strategy, accelerator, per-device batch) when the global batch stays the same (the trainer
  then continues the same global batches). Any other difference (learning rate, steps, data,
  the global batch, ...) is refused unless ``train.allow_config_change`` is set; either way every
  difference is appended to ``<out_dir>/resumes.jsonl`` as ``{"step", "time", "changed": {field:
  [old, new]}}``.

:func:`run_state` tells a driver such as ``denseloss reproduce`` what a folder holds: a driver
that reruns into the same folders resumes a ``"resumable"`` one (``train.resume=<folder>``) and
deletes a ``"stale"`` one (a run stopped before its first checkpoint) before starting it again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from denseloss.config.schema import RunConfig, config_from_dict, config_to_dict
from denseloss.training.checkpoint import LAST, read_checkpoint_config, resolve_checkpoint

__all__ = [
    "OPERATIONAL",
    "RUN_FILES",
    "ResumeInfo",
    "RunExistsError",
    "config_changes",
    "launcher_rank",
    "prepare_run_dir",
    "record_resume",
    "run_state",
]

RUN_FILES: tuple[str, ...] = ("config.yaml", "metrics.csv", "results.json", "checkpoints", "tb")

# Fields a resume may change freely: they decide where results go and how often the run reports,
# not what it computes (bit-exactness is kept for any value of these).
OPERATIONAL: frozenset[str] = frozenset(
    {
        "train.resume",
        "train.out_dir",
        "train.progress",
        "train.eval_batches",
        "train.eval_every",
        "train.log_every",
        "train.checkpoint_every",
        "train.threads",
        "train.allow_config_change",
        "data.num_workers",
        "data.eval_batch_size",
        "data.check",
        "data.root",
        "data.target.root",
    }
)


# The process layout may change on resume when the global batch stays the same: the trainer
# rescales the stream positions so the same global batches follow (fabric_setup).
_LAYOUT: frozenset[str] = frozenset(
    {"train.devices", "train.num_nodes", "train.strategy", "train.accelerator", "data.batch_size"}
)


@dataclass(frozen=True)
class ResumeInfo:
    """What :func:`prepare_run_dir` found for a resume."""

    step: int  # the checkpoint's step (training continues from there)
    changes: dict[str, list[Any]]  # {field: [checkpoint's value, new value]}


class RunExistsError(ValueError):
    """``train.out_dir`` already holds a run and ``train.resume`` was not given."""


def launcher_rank(external: object | None) -> int:
    """This process's global rank under torchrun / srun (read from the launcher's variables)."""
    if external is None:
        return 0
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def run_state(out_dir: str | Path) -> Literal["empty", "finished", "resumable", "stale"]:
    """What a run folder holds.

    Returns:
        ``"empty"`` (absent, or none of :data:`RUN_FILES`), ``"finished"`` (``results.json``),
        ``"resumable"`` (``checkpoints/last.ckpt`` but no results), or ``"stale"`` (run files
        but no checkpoint: a run stopped before its first checkpoint, nothing to continue).
    """
    p = Path(out_dir)
    if (p / "results.json").is_file():
        return "finished"
    if (p / "checkpoints" / LAST).is_file():
        return "resumable"
    if any((p / name).exists() for name in RUN_FILES):
        return "stale"
    return "empty"


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        # method params and data-set kwargs compare as whole values (their keys are free-form)
        if isinstance(value, dict) and key not in ("params", "kwargs"):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_changes(old: RunConfig, new: RunConfig) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for every field (dotted: ``optim.lr``) that differs."""
    a, b = _flatten(config_to_dict(old)), _flatten(config_to_dict(new))
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def prepare_run_dir(config: RunConfig) -> ResumeInfo | None:
    """Apply the module's rules to a resolved config (``train.out_dir`` set).

    Returns:
        For a resume, the checkpoint's step and the changes made to its config; else ``None``.

    Raises:
        RunExistsError: a new run in a folder that holds one, or a resume into another folder
            that holds one.
        ValueError: a resume that changes non-operational fields without
            ``train.allow_config_change``.
        FileNotFoundError: ``train.resume`` names no checkpoint.
    """
    t = config.train
    out_dir = Path(str(t.out_dir))
    if t.resume is None:
        _refuse_existing(out_dir)
        return None
    ckpt = resolve_checkpoint(t.resume)
    run_of_ckpt = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    if out_dir.resolve() != run_of_ckpt.resolve():
        _refuse_existing(out_dir)  # continuing into a new folder: that folder must be free
    saved_dict, step = read_checkpoint_config(ckpt)
    saved = config_from_dict(saved_dict)
    changes = config_changes(saved, config)
    free = OPERATIONAL | (_LAYOUT if _global_batch(saved) == _global_batch(config) else set())
    blocking = {k: v for k, v in changes.items() if k not in free}
    if blocking and not t.allow_config_change:
        listed = "; ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in list(blocking.items())[:4])
        more = f" (+{len(blocking) - 4} more)" if len(blocking) > 4 else ""
        raise ValueError(
            f"train: resume must keep the run's hyperparameters; got changes to {listed}{more} "
            f"versus {ckpt}. Hint: drop those flags (`denseloss train --resume {run_of_ckpt}` "
            "uses the run's own config), or pass --train.allow_config_change true to accept "
            "and record them."
        )
    return ResumeInfo(step=step, changes=changes)


def _global_batch(config: RunConfig) -> int:
    return config.data.batch_size * config.train.devices * getattr(config.train, "num_nodes", 1)


def _refuse_existing(out_dir: Path) -> None:
    held = [name for name in RUN_FILES if (out_dir / name).exists()]
    if not held:
        return
    if run_state(out_dir) == "stale":
        hint = (
            "it holds no checkpoint, so there is nothing to resume: delete it or choose a new "
            "--train.out_dir"
        )
    else:
        hint = (
            f"continue it with `denseloss train --resume {out_dir}`, or choose a new "
            "--train.out_dir"
        )
    raise RunExistsError(
        f"train: train.out_dir must not hold a run for a new run; got {str(out_dir)!r} with "
        f"{', '.join(held)}. Hint: {hint}."
    )


def record_resume(out_dir: str | Path, step: int, changes: dict[str, list[Any]]) -> None:
    """Append one resume record to ``<out_dir>/resumes.jsonl`` (the history of a run's resumes)."""
    entry = {"step": int(step), "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "changed": changes}
    with (Path(out_dir) / "resumes.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")
