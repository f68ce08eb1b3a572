"""Plumbing the recipes share: building the network of a run, dense outputs, masks, freezing.

Private: the recipes in this package are the public API. Everything here is a small pure helper so
each recipe's ``training_step`` still reads top to bottom with its paper beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from denseloss.losses import cross_entropy, depth_loss, normal_loss
from denseloss.methods.base import MethodContext, Task

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "as_floats",
    "aux_cross_entropy",
    "build_predictor",
    "dense_target",
    "dense_valid",
    "frozen",
    "load_segmenter_weights",
    "masked_one_hot",
    "normalize_image",
    "pixel_loss",
    "resize",
    "to_dense",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the statistics the networks normalise with internally
IMAGENET_STD = (0.229, 0.224, 0.225)

# Channels of the dense output of each task: seg → C (filled in from ctx), depth 1, normals 3.
_REGRESSION_CHANNELS = {"depth": 1, "normals": 3}


def build_predictor(
    ctx: MethodContext, name: str | None = None, kwargs: dict[str, Any] | None = None
) -> nn.Module:
    """The run's network: a segmenter (``task="seg"``) or a dense regressor (depth / normals).

    Args:
        ctx: the method context (model name and kwargs, number of classes, task).
        name: factory name overriding ``ctx.model.name`` (DFR's ViT default).
        kwargs: factory keyword arguments used with ``name`` (default: ``ctx.model.kwargs``).
    """
    from denseloss.models import build_regressor, build_segmenter

    factory = ctx.model.name if name is None else name
    kwargs = dict(ctx.model.kwargs if kwargs is None else kwargs)
    if ctx.task == "seg":
        net = build_segmenter(factory, num_classes=ctx.num_classes, **kwargs)
    else:
        net = build_regressor(factory, task=ctx.task, **kwargs)
    if ctx.model.weights is not None:
        from denseloss.models import load_weights

        if factory != ctx.model.name:
            raise ValueError(
                f"build_predictor: model.weights must be for the network the method builds "
                f"({factory!r}); got weights with model.name={ctx.model.name!r}. Hint: pass "
                f"--model.name {factory}."
            )
        load_weights(net, ctx.model.weights)
    return net


def output_channels(ctx: MethodContext) -> int:
    """Channels of the dense prediction: C for segmentation, 1 for depth, 3 for normals."""
    return ctx.num_classes if ctx.task == "seg" else _REGRESSION_CHANNELS[ctx.task]


def resize(x: torch.Tensor, size: tuple[int, int], *, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of a (N, C, h, w) map to ``size`` (no-op when already there)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def to_dense(
    output: Any, task: Task, size: tuple[int, int], *, align_corners: bool = False
) -> torch.Tensor:
    """The network's main output upsampled to ``size``.

    Segmentation: (N, C, H, W) logits. Depth: (N, 1, H, W). Normals: (N, 3, H, W), re-normalised to
    unit length after the bilinear upsampling (which shortens interpolated vectors).
    """
    if task == "seg":
        return resize(output.logits, size, align_corners=align_corners)
    pred = resize(output.prediction, size, align_corners=align_corners)
    if task == "normals":
        pred = F.normalize(pred, dim=1, eps=1e-6)
    return pred


def dense_target(batch: dict[str, torch.Tensor], task: Task) -> torch.Tensor:
    """The batch's ground truth for ``task``: labels (N, H, W), depth (N, 1, H, W), normals."""
    key = {"seg": "label", "depth": "depth", "normals": "normal"}[task]
    if key not in batch:
        raise KeyError(
            f"dense_target: batch must contain {key!r} for task {task!r}; got keys {sorted(batch)}."
        )
    return batch[key]


def dense_valid(target: torch.Tensor, task: Task, ignore_index: int = 255) -> torch.Tensor:
    """(N, H, W) bool: labelled pixels (seg), depth > 0 (depth), non-zero normal (normals)."""
    if task == "seg":
        return target != ignore_index
    if task == "depth":
        return (target[:, 0] > 0) & torch.isfinite(target[:, 0])
    return target.abs().sum(dim=1) > 0


def pixel_loss(
    pred: torch.Tensor, target: torch.Tensor, task: Task, ignore_index: int = 255
) -> torch.Tensor:
    """The pixel-wise baseline loss: CE (seg), L2 on valid depth, 1 - cos on valid normals."""
    if task == "seg":
        return cross_entropy(pred, target, ignore_index=ignore_index)
    if task == "depth":
        return depth_loss(pred, target, kind="l2")
    return normal_loss(pred, target)


def masked_one_hot(labels: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(N, C, H, W) float one-hot of ``labels``; all-zero vectors at ignored pixels."""
    valid = labels != ignore_index
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    one_hot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).float()
    return one_hot * valid.unsqueeze(1)


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of a (N, 3, H, W) image in [0, 1]."""
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def downsample_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-downsample a (N, H, W) bool mask; a cell counts only when fully valid (Gated CRF)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    area = F.adaptive_avg_pool2d(mask.unsqueeze(1).float(), size)[:, 0]
    return area > 1.0 - 1e-6


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Freeze every parameter of ``module`` (``requires_grad=False``) for the block, then restore.

    Yields the *unwrapped* module when ``module`` is Fabric-wrapped, so a frozen network is called
    outside DDP: its reducer never waits for gradients that the frozen pass cannot produce.
    """
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield getattr(module, "module", module)
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def as_floats(terms: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Detached Python floats of the logged terms."""
    return {
        k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in terms.items()
    }


def load_segmenter_weights(module: nn.Module, path: str, key: str = "module/segmenter") -> None:
    """Load ``module``'s weights from a trainer checkpoint (``ckpt["method"][key]``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        KeyError: the checkpoint has no ``method`` entry with ``key``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"load_segmenter_weights: path must be an existing file; got {path!r}."
        )
    ckpt = torch.load(p, map_location="cpu", weights_only=True)
    method_state = ckpt.get("method", {}) if isinstance(ckpt, dict) else {}
    if key not in method_state:
        raise KeyError(
            f"load_segmenter_weights: the checkpoint's 'method' entry must contain {key!r}; got "
            f"{sorted(method_state)}. Hint: pass the last.ckpt of a `source_only` run."
        )
    module.load_state_dict(method_state[key])


def add_predictor(
    method: Any, name: str | None = None, kwargs: dict[str, Any] | None = None
) -> nn.Module:
    """Build the run's network and set it up with the recipes' SGD as ``method.nets[key]``.

    The key is ``"segmenter"`` for segmentation and ``"regressor"`` for depth / normals (the name
    trainer checkpoints and ``init_from`` look the weights up by).
    """
    key = "segmenter" if method.ctx.task == "seg" else "regressor"
    return method.add_module(key, build_predictor(method.ctx, name, kwargs), method.sgd())


@torch.no_grad()
def predict_dense(
    net: nn.Module, image: torch.Tensor, task: Task, *, align_corners: bool = False
) -> torch.Tensor:
    """Eval-time dense output of ``net`` at the image's size (logits, depth or unit normals)."""
    return to_dense(net(image), task, tuple(image.shape[-2:]), align_corners=align_corners)


def aux_cross_entropy(
    output: Any, labels: torch.Tensor, weight: float, ignore_index: int = 255
) -> torch.Tensor | None:
    """CE of the auxiliary (layer-3) classifier at the label size, or None without one.

    MMSegmentation's DeepLab-v3 configs (which PNE builds on) train baseline and method with the
    same FCN auxiliary head at weight 0.4; the full-supervision recipes share this helper so a
    study can give every method the same auxiliary term (``weight = 0`` leaves it out of the
    loss, and the caller keeps the head in the graph through :func:`unused_outputs`).
    """
    aux = getattr(output, "aux_logits", None)
    if aux is None or weight == 0:
        return None
    return cross_entropy(resize(aux, tuple(labels.shape[-2:])), labels, ignore_index=ignore_index)


def unused_outputs(output: Any) -> torch.Tensor | float:
    """``0 · Σ aux_logits`` for recipes that ignore the auxiliary classifier, else 0.

    Adding it keeps the auxiliary head in the autograd graph, so DDP (without the slower
    ``find_unused_parameters``) sees a gradient for every parameter, and a single-process run
    applies exactly the same (zero-gradient, weight-decay-only) update as a multi-process one.
    """
    aux = getattr(output, "aux_logits", None)
    return 0.0 * aux.sum() if aux is not None else 0.0
