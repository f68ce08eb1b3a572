"""Checkpoints: the full training state, written atomically, loaded safely.

A checkpoint is a plain dict of tensors and primitive containers::

    {
        "format": 1,
        "step": k,                   # optimisation steps done; training resumes at step index k
        "method": method.state_dict(),   # modules, optimisers, schedulers (``module/<name>`` ...)
        "rng": get_rng_state(),      # torch / numpy / python (/ cuda) generators
        "streams": stream.state_dict(),  # positions of the training data streams
        "config": config_to_dict(resolved_config),
        "extra": {...},              # small trainer bookkeeping (e.g. the throughput timer)
    }

It is written to a temporary file in the destination's directory, flushed and fsync'ed, then moved
over the destination with ``os.replace`` (atomic on POSIX and Windows). The destination is never
unlinked first, so a crash or a failing write leaves the previous checkpoint intact. Loading uses
``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_save",
    "load_checkpoint",
    "read_checkpoint_config",
    "resolve_checkpoint",
]

CHECKPOINT_FORMAT = 1
LAST = "last.ckpt"


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temp file + fsync + ``os.replace``).

    Args:
        obj: tensors and primitive containers only (so it loads with ``weights_only=True``).
        path: destination file; its directory is created if missing.

    Returns:
        The destination path.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # temp files of a writer that was killed (SIGKILL, power loss) before its os.replace
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable (best effort: not every platform can open a directory).
    with contextlib.suppress(OSError):
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return dest


def resolve_checkpoint(path: str | Path) -> Path:
    """A ``.ckpt`` file as given, or ``<run dir>/checkpoints/last.ckpt`` for a run directory.

    Raises:
        FileNotFoundError: neither exists.
    """
    p = Path(path)
    if p.is_dir():
        for candidate in (p / "checkpoints" / LAST, p / LAST):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"resolve_checkpoint: path must be a checkpoint file or a run directory holding "
            f"checkpoints/{LAST}; got directory {str(p)!r} without one."
        )
    if not p.is_file():
        raise FileNotFoundError(
            f"resolve_checkpoint: path must be an existing checkpoint file or run directory; "
            f"got {str(p)!r}."
        )
    return p


def _load(path: Path, *, mmap: bool) -> Any:
    """``torch.load(weights_only=True)``; any failure to read is one ``ValueError`` naming the file.

    torch's own messages for a truncated or foreign file are long and suggest
    ``weights_only=False``, which would run pickled code from the file: never do that here.
    """
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is not a denseloss checkpoint (empty file).")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
        first = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
        raise ValueError(
            f"{path} is not a denseloss checkpoint (truncated?): {type(error).__name__}: {first}"
        ) from error


def read_checkpoint_config(path: str | Path) -> tuple[dict[str, Any], int]:
    """The ``config`` dict and ``step`` of a checkpoint, memory-mapped (tensors are not read).

    Raises:
        FileNotFoundError, ValueError: as :func:`load_checkpoint`.
    """
    p = resolve_checkpoint(path)
    state = _load(p, mmap=True)
    if not isinstance(state, dict) or "config" not in state or "step" not in state:
        raise ValueError(f"{p} is not a denseloss checkpoint (no config/step entries).")
    return state["config"], int(state["step"])


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by the trainer with ``torch.load(weights_only=True)`` on CPU.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: the file is not a denseloss checkpoint (missing keys or another format).
    """
    p = resolve_checkpoint(path)
    state = _load(p, mmap=False)
    required = {"format", "step", "method", "rng", "streams", "config"}
    if not isinstance(state, dict) or not required <= set(state):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"load_checkpoint: path must hold a denseloss checkpoint with keys {sorted(required)}; "
            f"got {got} in {str(p)!r}."
        )
    if state["format"] != CHECKPOINT_FORMAT:
        raise ValueError(
            f"load_checkpoint: checkpoint format must be {CHECKPOINT_FORMAT}; "
            f"got {state['format']!r} in {str(p)!r}."
        )
    return state
