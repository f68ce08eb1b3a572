"""Run logs: ``metrics.csv`` (one row per logged step) and TensorBoard scalars.

Only rank 0 writes. Columns are the union of every key logged so far; when a new key appears
(e.g. the first evaluation) the file is rewritten with the wider header, otherwise rows are
appended. On resume, rows after the checkpoint's step are dropped so the log matches the weights.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

__all__ = ["RunLogger", "read_metrics_csv"]


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``metrics.csv`` as dicts of floats (empty cells are left out)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"read_metrics_csv: path must be an existing file; got {str(p)!r}.")
    rows: list[dict[str, float]] = []
    with p.open(newline="") as f:
        for raw in csv.DictReader(f):
            rows.append({k: float(v) for k, v in raw.items() if v not in ("", None)})
    return rows


class RunLogger:
    """CSV + TensorBoard writer for scalar logs keyed by name (``loss/seg``, ``val/miou`` ...).

    Args:
        out_dir: run directory; writes ``metrics.csv`` and ``tb/``.
        enabled: False on non-zero ranks (every call is then a no-op).
        resume_step: when resuming, drop CSV rows with ``step > resume_step``.
        tensorboard: also write TensorBoard event files.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        enabled: bool = True,
        resume_step: int | None = None,
        tensorboard: bool = True,
    ) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.csv"
        self.rows: list[dict[str, float]] = []
        self.columns: list[str] = ["step"]
        self._writer: Any = None
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            self.rows = [r for r in read_metrics_csv(self.path) if r.get("step", 0) <= resume_step]
            for row in self.rows:
                self.columns += [k for k in row if k not in self.columns]
            self._rewrite()
        elif self.path.exists():
            self.path.unlink()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events at steps >= it: keep the checkpoint step's own points
            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=purge)

    def log(self, step: int, values: dict[str, float]) -> None:
        """Write one row at ``step`` (steps done so far)."""
        if not self.enabled:
            return
        row = {"step": float(step), **{k: float(v) for k, v in values.items()}}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(self._cells(row))
        if self._writer is not None:
            for k, v in values.items():
                if math.isfinite(float(v)):
                    self._writer.add_scalar(k, float(v), step)

    def _cells(self, row: dict[str, float]) -> dict[str, Any]:
        return {k: (int(v) if k == "step" else repr(v)) for k, v in row.items()}

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            for row in self.rows:
                writer.writerow(self._cells(row))

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
