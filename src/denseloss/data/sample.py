"""Typed sample/batch conventions shared by datasets, methods and the trainer.

A *sample* is a plain ``dict[str, Tensor]`` so the stock DataLoader collates it; the keys are fixed:

========== ======================= ===============================================================
key        shape / dtype           meaning
========== ======================= ===============================================================
image      (3, H, W) float32       RGB in [0, 1] (models normalise internally)
label      (H, W) int64            dense class ids, ``IGNORE_INDEX`` = void / not labelled
scribble   (H, W) int64            sparse class ids on scribble pixels, ``IGNORE_INDEX`` elsewhere
depth      (1, H, W) float32       metres (or scene units), 0 = invalid
normal     (3, H, W) float32       unit surface normals (camera frame), all-zero = invalid
valid      (H, W) bool             region of interest: False on crop padding
index      () int64                dataset index of the sample
========== ======================= ===============================================================

A *batch* is the collated dict (leading N). Regimes that draw from two streams nest them:
``{"labeled": batch, "unlabeled": batch, "gt": batch}`` (semi-supervised; ``gt`` is the separate
labelled stream the discriminator sees), ``{"source": batch, "target": batch}`` (UDA). Only keys the
regime may use are present: the target stream of UDA and the unlabelled stream of the semi regime
carry no ``label`` during training.
"""

from __future__ import annotations

from typing import Final

import torch

IGNORE_INDEX: Final[int] = 255

Sample = dict[str, torch.Tensor]
Batch = dict[str, torch.Tensor]

SAMPLE_KEYS: Final[tuple[str, ...]] = (
    "image",
    "label",
    "scribble",
    "depth",
    "normal",
    "valid",
    "index",
)

__all__ = ["IGNORE_INDEX", "SAMPLE_KEYS", "Batch", "Sample", "to_device"]


def to_device(batch: object, device: torch.device | str) -> object:
    """Move every tensor of a (possibly nested) batch dict to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
