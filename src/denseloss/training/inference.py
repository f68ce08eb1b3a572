"""Evaluation as the papers do it: whole image, sliding window, multi-scale + flip, full resolution.

:func:`predict_scores` turns any ``predict(image) -> (N, C, h, w)`` function (``Method.predict``:
scores at the input's size) into the papers' test-time procedures; :func:`evaluate_predictions`
runs it over a split and accumulates the data-set-level metrics. With
``EvalConfig.original_labels`` the labels are read at their file's resolution while the image is
resized as in training (:func:`protocol_loader`), and the scores are upsampled to each label.

Conventions (each one a reference code's; the paper configs in ``denseloss/configs`` pick them):

* **whole** — one pass; with ``crop`` set, an input smaller than ``crop`` is first padded at the
  bottom/right with the ImageNet mean colour (0 after the networks' normalisation) and the scores
  cropped back (AdvSemiSeg's 505² evaluation). Scores = the network's logits.
* **slide** — windows of ``crop`` every ``stride`` (default ⌊2/3 · crop⌋), the last window in each
  direction flush with the border, the input first padded to at least ``crop`` as above; scores
  = the mean of the overlapping windows' logits (MMSegmentation's ``slide_inference``; ASM's
  540² windows every 320).
* **multiscale** — for each s in ``scales``, the image bilinearly resized by s and predicted whole;
  each pass's softmax, upsampled to the output size, is averaged (MMSegmentation's ``aug_test``).
* **flip** (any mode) — the horizontally flipped input's softmax, flipped back, enters the same
  average (MaxSquare's ``--flip``). Averaged scores are probabilities; the prediction is their
  argmax either way.

Depth and normals take ``whole`` or ``slide`` (normals re-normalised after averaging).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from denseloss.config.data import DataConfig, DataSource
from denseloss.config.schema import EvalConfig
from denseloss.training.seeding import get_rng_state, set_rng_state

__all__ = [
    "evaluate_predictions",
    "pad_to",
    "predict_scores",
    "protocol_loader",
    "selection_metric",
    "slide_windows",
    "subset_mious",
]

Predict = Callable[[torch.Tensor], torch.Tensor]
# ImageNet mean colour: padded pixels become 0 after the networks' own normalisation, as the
# reference codes pad after mean subtraction.
_MEAN = (0.485, 0.456, 0.406)
# Metrics where a smaller value is better (the rest of DepthMetrics / NormalMetrics / seg: larger).
_LOWER_IS_BETTER = frozenset({"abs_rel", "sq_rel", "rmse", "rmse_log", "mean", "median"})
_DEFAULT_SELECT = {"seg": "miou", "depth": "abs_rel", "normals": "mean"}


def pad_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad (N, 3, H, W) bottom/right with the mean colour up to at least ``size`` (no crop)."""
    h, w = image.shape[-2:]
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if not (ph or pw):
        return image
    out = image.new_empty((*image.shape[:-2], h + ph, w + pw))
    out[:] = image.new_tensor(_MEAN).view(1, 3, 1, 1)
    out[..., :h, :w] = image
    return out


def slide_windows(
    size: tuple[int, int], crop: tuple[int, int], stride: tuple[int, int]
) -> list[tuple[int, int]]:
    """Top-left corners of the windows covering an (H, W) input (H ≥ crop_h, W ≥ crop_w).

    Per axis: ⌈(L − c) / s⌉ + 1 windows at 0, s, 2s, …, the last one moved to L − c so it ends
    at the border (MMSegmentation's grid).

    Example:
        >>> slide_windows((4, 10), (4, 4), (4, 4))
        [(0, 0), (0, 4), (0, 6)]
    """
    starts = []
    for length, c, s in zip(size, crop, stride):
        n = max(math.ceil((length - c) / s), 0) + 1
        starts.append([min(i * s, length - c) for i in range(n)])
    return [(y, x) for y in starts[0] for x in starts[1]]


def _whole(predict: Predict, x: torch.Tensor, crop: tuple[int, int] | None) -> torch.Tensor:
    h, w = x.shape[-2:]
    padded = pad_to(x, crop) if crop is not None else x
    return predict(padded)[..., :h, :w]


def _slide(
    predict: Predict, x: torch.Tensor, crop: tuple[int, int], stride: tuple[int, int] | None
) -> torch.Tensor:
    h, w = x.shape[-2:]
    if stride is None:
        stride = (max(1, 2 * crop[0] // 3), max(1, 2 * crop[1] // 3))
    padded = pad_to(x, crop)
    count = padded.new_zeros((1, 1, *padded.shape[-2:]))
    outputs = []
    for y, x0 in slide_windows(tuple(padded.shape[-2:]), crop, stride):
        outputs.append((y, x0, predict(padded[..., y : y + crop[0], x0 : x0 + crop[1]]).float()))
        count[..., y : y + crop[0], x0 : x0 + crop[1]] += 1
    first = outputs[0][2]
    total = first.new_zeros((*first.shape[:2], *padded.shape[-2:]))
    for y, x0, out in outputs:
        total[..., y : y + crop[0], x0 : x0 + crop[1]] += out
    return (total / count)[..., :h, :w]


def _to_size(
    scores: torch.Tensor, size: tuple[int, int], task: str, align_corners: bool
) -> torch.Tensor:
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=align_corners)
    # bilinear blending shortens interpolated normals
    return F.normalize(scores, dim=1, eps=1e-6) if task == "normals" else scores


def predict_scores(
    predict: Predict,
    image: torch.Tensor,
    *,
    out_size: tuple[int, int] | None = None,
    mode: str = "whole",
    crop: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    task: str = "seg",
    align_corners: bool = False,
) -> torch.Tensor:
    """Scores of ``image`` by the test-time procedure ``mode`` (module docstring), at ``out_size``.

    Args:
        predict: ``(N, 3, h, w) -> (N, C, h, w)`` scores at the input's size (``Method.predict``).
        image: (N, 3, H, W) float in [0, 1], the network's input (already resized as in training).
        out_size: (H_l, W_l) of the labels; None = (H, W). Scores are bilinearly upsampled to it
            (``align_corners`` as given; False is torchvision's convention).
        mode: "whole", "slide" or "multiscale".
        crop: slide window / whole-image pad size (H, W).
        stride: slide window step (H, W); None = ⌊2/3 · crop⌋.
        scales: multiscale image scales.
        flip: add the horizontally flipped pass.
        task: "seg", "depth" or "normals" (the last two: whole or slide, no flip).

    Returns:
        (N, C, H_l, W_l) float32: logits for a single seg pass, else mean softmax probabilities;
        depth / unit normals for regression.

    Raises:
        ValueError: an unknown mode, slide without crop, multiscale/flip for regression.
    """
    size = tuple(out_size) if out_size is not None else tuple(image.shape[-2:])
    crop_t = tuple(crop) if crop is not None else None
    stride_t = tuple(stride) if stride is not None else None
    if mode not in ("whole", "slide", "multiscale"):
        raise ValueError(f"predict_scores: mode must be whole, slide or multiscale; got {mode!r}.")
    if mode == "slide" and crop_t is None:
        raise ValueError("predict_scores: crop must be set for mode='slide'; got None.")
    if task != "seg" and (mode == "multiscale" or flip):
        raise ValueError(f"predict_scores: task {task!r} takes mode whole or slide without flip.")

    def one_pass(x: torch.Tensor) -> torch.Tensor:
        if mode == "slide":
            return _slide(predict, x, crop_t, stride_t)  # type: ignore[arg-type]
        return _whole(predict, x, crop_t)

    passes = list(scales) if mode == "multiscale" else [1.0]
    if len(passes) == 1 and passes[0] == 1.0 and not flip:
        return _to_size(one_pass(image).float(), size, task, align_corners)
    h, w = image.shape[-2:]
    total = None
    for s in passes:
        x = image
        if s != 1.0:
            scaled = (max(1, round(h * s)), max(1, round(w * s)))
            x = F.interpolate(image, size=scaled, mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            xi = x.flip(-1) if flipped else x
            out = one_pass(xi).float()
            out = out.flip(-1) if flipped else out
            prob = _to_size(out, size, task, align_corners).softmax(dim=1)
            total = prob if total is None else total + prob
    return total / (len(passes) * (2 if flip else 1))


def selection_metric(protocol: EvalConfig, task: str) -> tuple[str, bool]:
    """The val metric that picks the best checkpoint and whether larger is better."""
    name = protocol.select or _DEFAULT_SELECT[task]
    return name, name not in _LOWER_IS_BETTER


def subset_mious(
    iou: Sequence[float], subsets: dict[str, list[int | str]], class_names: Sequence[str]
) -> dict[str, float]:
    """mIoU over each named class subset (ids or names), absent (NaN) classes left out.

    Raises:
        ValueError: a class that is neither a valid id nor one of ``class_names``.

    Example:
        >>> subset_mious([0.5, float("nan"), 1.0], {"m2": ["a", 2], "m1": [1]}, ["a", "b", "c"])
        {'m2': 0.75, 'm1': 0.0}
    """
    out = {}
    for key, classes in subsets.items():
        ids = []
        for c in classes:
            if isinstance(c, str) and c in class_names:
                ids.append(list(class_names).index(c))
            elif isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(iou):
                ids.append(c)
            else:
                raise ValueError(
                    f"eval.class_subsets[{key!r}]: classes must be ids in [0, {len(iou)}) or names "
                    f"of {list(class_names)}; got {c!r}."
                )
        values = [iou[i] for i in ids if not math.isnan(iou[i])]
        out[key] = sum(values) / len(values) if values else 0.0
    return out


def protocol_loader(
    cfg: DataConfig,
    split: str,
    source: DataSource,
    protocol: EvalConfig,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[Any, tuple[int, int] | None]:
    """The loader of ``split`` for ``protocol`` and the size to resize images to (or None).

    Without ``original_labels`` this is the ordinary evaluation loader (samples resized by
    ``data.resize`` as in training, collated). With it, samples are read at their file's size
    and batched as lists (labels of different sizes), and the returned size is the training
    resize of ``source``, applied to the images only.
    """
    from denseloss.training.streams import build_eval_dataset, build_eval_loader

    if not protocol.original_labels:
        return build_eval_loader(cfg, split, source, rank=rank, world_size=world_size), None
    size = source.resize if source.resize is not None else cfg.resize
    native = dataclasses.replace(cfg, resize=None)
    dataset = build_eval_dataset(native, split, dataclasses.replace(source, resize=None))
    n = len(dataset)  # type: ignore[arg-type]
    view = dataset if world_size == 1 else Subset(dataset, range(rank, n, world_size))
    loader = DataLoader(
        view,
        batch_size=cfg.eval_batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        collate_fn=list,
    )
    return loader, (tuple(size) if size is not None else None)


def _groups(batch: Any, input_size: tuple[int, int] | None) -> Iterable[dict[str, Any]]:
    """Collated batches as they are; list batches as runs of samples of equal image/label size."""
    if isinstance(batch, dict):
        yield batch
        return
    samples = list(batch)
    if input_size is not None:
        samples = [
            {**s, "image": F.interpolate(s["image"][None], size=input_size, mode="bilinear")[0]}
            for s in samples
        ]

    def shapes(sample: dict[str, Any]) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(v.shape) for v in sample.values() if torch.is_tensor(v))

    start = 0
    for i in range(1, len(samples) + 1):
        if i == len(samples) or shapes(samples[i]) != shapes(samples[start]):
            chunk = samples[start:i]
            keys = [k for k, v in chunk[0].items() if torch.is_tensor(v)]
            yield {k: torch.stack([s[k] for s in chunk]) for k in keys}
            start = i


@torch.no_grad()
def evaluate_predictions(
    method: Any,
    loader: Any,
    *,
    task: str,
    num_classes: int,
    ignore_index: int = 255,
    fabric: Any = None,
    max_batches: int | None = None,
    protocol: EvalConfig | None = None,
    input_size: tuple[int, int] | None = None,
    class_names: Sequence[str] = (),
) -> dict[str, Any]:
    """Data-set-level metrics of ``method.predict`` under ``protocol`` (summed over DDP ranks).

    Returns:
        Seg: ``miou``, ``pixel_acc``, ``iou`` (list), ``boundary_f1``, plus ``iou_per_class``
        (name → IoU) when ``class_names`` are given and one ``<subset>`` mIoU per
        ``protocol.class_subsets``. Depth/normals: the keys of ``DepthMetrics`` /
        ``NormalMetrics``.
    """
    from denseloss.metrics import BoundaryF1, ConfusionMatrix, DepthMetrics, NormalMetrics

    protocol = protocol or EvalConfig()
    if task == "seg":
        metrics: dict[str, Any] = {
            "confusion": ConfusionMatrix(num_classes, ignore_index=ignore_index),
            "boundary": BoundaryF1(num_classes, ignore_index=ignore_index),
        }
    else:
        metrics = {"depth": DepthMetrics()} if task == "depth" else {"normals": NormalMetrics()}
    key = {"seg": "label", "depth": "depth", "normals": "normal"}[task]
    rng = get_rng_state()
    was_training = any(m.training for m in method.nets.values())
    method.eval()
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            for group in _groups(batch, input_size):
                if fabric is not None:
                    group = fabric.to_device(group)
                target = group[key]
                pred = predict_scores(
                    method.predict,
                    group["image"],
                    out_size=tuple(target.shape[-2:]),
                    mode=protocol.mode,
                    crop=protocol.crop,
                    stride=protocol.stride,
                    scales=protocol.scales,
                    flip=protocol.flip,
                    task=task,
                )
                if task == "seg":
                    cls = pred.argmax(1)
                    metrics["confusion"].update(cls, target)
                    metrics["boundary"].update(cls, target)
                else:
                    metrics[task].update(pred, target)
    finally:
        method.train(was_training)
        set_rng_state(rng)
    out: dict[str, Any] = {}
    for metric in metrics.values():
        if fabric is not None and fabric.world_size > 1:
            state = metric.state().to(fabric.device)
            metric.load_state(fabric.all_reduce(state, reduce_op="sum").cpu())
        out.update(metric.compute())
    if task == "seg":
        out.update(subset_mious(out["iou"], protocol.class_subsets, class_names))
        if class_names:
            out["iou_per_class"] = dict(zip(class_names, out["iou"]))
    return out
