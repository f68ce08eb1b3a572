"""Ctrl-C during training: finish the step, keep a checkpoint, say how to resume.

The first SIGINT only sets a flag (and prints one line); the trainer checks it after each
completed step, writes ``checkpoints/last.ckpt`` at that step and stops, so the checkpoint is a
consistent state (never the middle of a method's several optimiser steps) and a resume continues
bit-exactly. A second Ctrl-C raises ``KeyboardInterrupt`` at once; the last checkpoint written
before it is kept. Under DDP the ranks agree on the step to stop at (the flag is all-reduced
after every step), so no rank is left waiting in a collective.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

import torch

__all__ = ["StopOnInterrupt", "TrainingInterruptedError"]


class TrainingInterruptedError(Exception):
    """Training stopped on Ctrl-C; the message says where the checkpoint is and how to resume."""


class StopOnInterrupt:
    """Turns the first SIGINT into a flag between :meth:`install` and :meth:`restore`.

    Only the main thread can handle signals; elsewhere both calls do nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> StopOnInterrupt:
        """Route SIGINT to the flag; returns ``self``."""
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        print(
            "\ndenseloss: stopping after this step and saving a checkpoint "
            "(Ctrl-C again stops at once).",
            file=sys.stderr,
            flush=True,
        )
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def restore(self) -> None:
        """Put the previous SIGINT handler back."""
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def should_stop(self, fabric: Any) -> bool:
        """Whether any rank was interrupted (one tiny all-reduce per step under DDP)."""
        if fabric.world_size == 1:
            return self.requested
        flag = torch.tensor(float(self.requested), device=fabric.device)
        return bool(fabric.all_reduce(flag, reduce_op="sum") > 0)
