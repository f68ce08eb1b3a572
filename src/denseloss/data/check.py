"""Eager validation of a data set, sample by sample, with a summary of what it holds.

``denseloss train`` runs :func:`check_dataset` on every split a run will touch before step 1,
and ``denseloss data check <layout> --root ...`` runs it and prints :func:`format_report`. For
each sample of an on-disk layout (a :class:`~denseloss.data.layouts.LayoutDataset`) it checks:

* the image: its header decodes (Pillow, or the ``.npy`` header), a PNG's chunk CRCs verify and
  a JPEG ends with its end-of-image marker (a truncated download fails here, not at the final
  evaluation), without decoding the pixels;
* the label, scribble, depth and normal files: decoded with the loader's own readers, so the
  label mode (index PNG, never JPEG: lossy compression changes class ids), the id mapping, the
  value range ``[0, C) ∪ {ignore}`` and the size (equal to the image's) are exactly what training
  would check;
* the keys the run needs (``require``): e.g. a scribble for every training image of a scribble
  run.

Data sets that are not file-backed (the Landsat scene, user data sets) are read with
``dataset[i]``; the built-in scenes are procedural and correct by construction, so only counted.
The report sums class pixel counts and ignored pixels (for "classes present" and the ignore
fraction) and the distinct image sizes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from denseloss.data.errors import DataError
from denseloss.data.sample import IGNORE_INDEX

__all__ = ["SplitReport", "check_dataset", "format_report", "image_size"]

# Below this many samples the check is quick enough not to need a progress bar.
_PROGRESS_MIN = 200


@dataclass
class SplitReport:
    """What :func:`check_dataset` found in one split."""

    role: str  # what the run uses the split for ("train", "val", "target train", ...)
    samples: int = 0  # samples checked
    keys: Counter = field(default_factory=Counter)  # key -> samples that have it
    sizes: Counter = field(default_factory=Counter)  # (H, W) -> samples of that native size
    class_pixels: np.ndarray | None = None  # (C,) label pixels per class
    ignore_pixels: int = 0  # label pixels equal to the ignore index
    errors: list[str] = field(default_factory=list)  # one line each, naming the file

    @property
    def ignore_fraction(self) -> float:
        """Ignored label pixels / all label pixels (0 when there are no labels)."""
        total = self.ignore_pixels + (
            0 if self.class_pixels is None else int(self.class_pixels.sum())
        )
        return self.ignore_pixels / total if total else 0.0


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image from its header, after a cheap integrity check (no pixel decode).

    Raises:
        FileNotFoundError: no file at ``path``.
        DataError: the header does not decode, a PNG fails its CRC check, or a JPEG lacks its
            end-of-image marker (truncated).
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image not found: {p}")
    if p.suffix == ".npy":
        try:
            shape = np.load(p, mmap_mode="r", allow_pickle=False).shape
        except (ValueError, OSError, EOFError) as error:
            raise DataError(f"{p}: cannot read .npy array ({error}).") from error
        return int(shape[0]), int(shape[1])
    try:
        with Image.open(p) as image:
            width, height = image.size
            kind = image.format
            if kind == "PNG":
                image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DataError(f"{p}: cannot decode image ({error}).") from error
    if kind == "JPEG":
        with p.open("rb") as f:
            f.seek(max(0, p.stat().st_size - 64))
            tail = f.read().rstrip(b"\x00")
        if not tail.endswith(b"\xff\xd9"):
            raise DataError(f"{p}: JPEG is truncated (no end-of-image marker).")
    return int(height), int(width)


def _inspect_record(dataset: Any, index: int) -> tuple[tuple[int, int], dict[str, Any]]:
    """Size and validated label-like arrays of one sample of a LayoutDataset (no image decode)."""
    record = dataset.records[index]
    size = image_size(record.image)
    # the readers only look at the image's (H, W): a zero-stride stand-in costs nothing
    image = np.broadcast_to(np.zeros((1, 1, 3), dtype=np.uint8), (*size, 3))
    out: dict[str, Any] = {"image": None}
    if record.label is not None:
        out["label"] = dataset._checked(dataset.read_label(record), image, record, record.label)
    out.update(dataset.read_extra(record, image))
    return size, out


def check_dataset(
    dataset: Any,
    *,
    role: str,
    indices: Sequence[int] | None = None,
    require: Sequence[str] = (),
    max_errors: int | None = None,
    progress: bool = False,
) -> SplitReport:
    """Validate every sample of ``dataset`` (or those in ``indices``) and summarise them.

    Args:
        dataset: a data set of ``denseloss.data`` (a layout, the built-in scenes, any map-style
            data set of sample dicts).
        role: what the split is for, used in messages (``"train"``, ``"val"``, ...).
        indices: the samples to check (default: all).
        require: keys every checked sample must have (``"label"``, ``"scribble"``, ...).
        max_errors: stop after this many errors (``None``: check everything).
        progress: show a tqdm bar (only for more than 200 samples).

    Returns:
        A :class:`SplitReport`; ``errors`` is empty when every sample passed.
    """
    from denseloss.data.synthetic import SyntheticScenes

    report = SplitReport(role=role)
    order = list(range(len(dataset))) if indices is None else list(indices)
    num_classes = int(getattr(dataset, "num_classes", 0))
    report.class_pixels = np.zeros(num_classes, dtype=np.int64) if num_classes else None
    if isinstance(dataset, SyntheticScenes):  # procedural: every key present, always valid
        report.samples = len(order)
        report.keys.update(
            {k: len(order) for k in ("image", "label", "scribble", "depth", "normal")}
        )
        report.sizes[(dataset.size, dataset.size)] = len(order)
        return report
    from tqdm.auto import tqdm

    file_backed = hasattr(dataset, "records") and hasattr(dataset, "read_label")
    bar = tqdm(
        order,
        desc=f"checking {role}",
        disable=not progress or len(order) < _PROGRESS_MIN,
        leave=False,
        dynamic_ncols=True,
    )
    for index in bar:
        where = dataset.records[index].image if file_backed else f"{role} sample {index}"
        try:
            if file_backed:
                size, arrays = _inspect_record(dataset, index)
            else:
                arrays = dataset[index]
                size = tuple(int(s) for s in arrays["image"].shape[-2:])
        except (DataError, FileNotFoundError, ValueError) as error:
            report.errors.append(str(error))
            if max_errors is not None and len(report.errors) >= max_errors:
                break
            continue
        report.samples += 1
        report.sizes[size] += 1
        report.keys.update(k for k in arrays if k not in ("valid", "index"))
        missing = [k for k in require if k not in arrays]
        if missing:
            report.errors.append(
                f"{where}: has no {' or '.join(missing)}; the {role} split needs one for every "
                "sample."
            )
            if max_errors is not None and len(report.errors) >= max_errors:
                break
        label = arrays.get("label")
        if label is not None and report.class_pixels is not None:
            values = np.asarray(label).reshape(-1)
            ignore = int(getattr(dataset, "ignore_index", IGNORE_INDEX))
            report.ignore_pixels += int((values == ignore).sum())
            kept = values[values != ignore]
            report.class_pixels += np.bincount(kept, minlength=num_classes)[:num_classes]
    bar.close()
    return report


def format_report(title: str, reports: Sequence[SplitReport], class_names: Sequence[str]) -> str:
    """Plain-text summary: one line per split (samples, keys, sizes, classes present, ignore)."""
    lines = [title]
    for r in reports:
        keys = " ".join(f"{k}" if n == r.samples else f"{k}({n}/{r.samples})"
                        for k, n in sorted(r.keys.items()))  # fmt: skip
        sizes = ", ".join(f"{h}x{w}" for (h, w), _ in r.sizes.most_common(3))
        if len(r.sizes) > 3:
            sizes += f" (+{len(r.sizes) - 3} more sizes)"
        present = "-"
        if r.class_pixels is not None and r.class_pixels.sum():
            ids = [i for i, n in enumerate(r.class_pixels) if n]
            names = [class_names[i] if i < len(class_names) else str(i) for i in ids]
            present = f"{len(ids)}/{len(r.class_pixels)} ({', '.join(names)})"
        lines.append(
            f"  {r.role:<13} {r.samples:>6} samples  keys: {keys or '-'}  sizes: {sizes or '-'}  "
            f"classes present: {present}  ignore: {100 * r.ignore_fraction:.1f} %"
        )
        lines += [f"    error: {e}" for e in r.errors]
    return "\n".join(lines)
