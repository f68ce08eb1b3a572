"""Named recipes as plain functions returning :class:`RunConfig` (no ``_base_`` inheritance).

``quick`` fits the 2-core CPU budget of CI and the README tables (minutes per method); ``full``
is the longer schedule for a real comparison. Both use the built-in data; every value is an
ordinary dataclass field, so ``dataclasses.replace`` adjusts a preset.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from denseloss.config.schema import DataConfig, RunConfig, TrainConfig
from denseloss.methods.base import ModelConfig, OptimConfig

__all__ = ["STUDIES", "preset"]

Study = Literal["quick", "full"]

# study -> (steps, eval_every, image size, training scenes, batch size)
STUDIES: dict[str, tuple[int, int, int, int, int]] = {
    "quick": (300, 100, 64, 1000, 8),
    "full": (3000, 500, 96, 4000, 8),
}


def preset(
    method: str,
    *,
    study: Study = "quick",
    task: Literal["seg", "depth", "normals"] = "seg",
    seed: int = 0,
    labeled_fraction: float = 0.125,
    model: str | None = None,
    params: dict[str, Any] | None = None,
    out_dir: str | None = None,
) -> RunConfig:
    """The run config of ``method`` in ``study`` on the built-in data.

    Args:
        method: key of ``denseloss.methods.METHODS`` (its regime picks the data streams).
        study: "quick" (300 steps at 64²) or "full" (3000 steps at 96²).
        task: "seg", "depth" or "normals".
        seed: seed of both the data order and the training randomness.
        labeled_fraction: labelled fraction for the semi-supervised regime.
        model: segmenter/regressor factory name; None keeps ``ModelConfig``'s default.
        params: overrides of the method's own Config.
        out_dir: run directory; None = ``runs/<study>/<method>-<task>-s<seed>``.

    Raises:
        ValueError: unknown study.

    Example:
        >>> preset("ce", study="quick").train.steps
        300
    """
    if study not in STUDIES:
        raise ValueError(f"preset: study must be one of {sorted(STUDIES)}; got {study!r}.")
    steps, eval_every, size, length, batch = STUDIES[study]
    return RunConfig(
        method=method,
        task=task,
        data=DataConfig(
            size=size,
            train_length=length,
            batch_size=batch,
            seed=seed,
            labeled_fraction=labeled_fraction,
        ),
        model=ModelConfig() if model is None else dataclasses.replace(ModelConfig(), name=model),
        optim=OptimConfig(),
        train=TrainConfig(
            steps=steps,
            eval_every=eval_every,
            checkpoint_every=eval_every,
            seed=seed,
            out_dir=out_dir or f"runs/{study}/{method}-{task}-s{seed}",
        ),
        params=dict(params or {}),
    )
