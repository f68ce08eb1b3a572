"""AdaBN: a trained run re-evaluated with BatchNorm statistics re-estimated on target images.

Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation" (ICLR-W 2017): the
weights stay as trained; only the running mean/variance of every BatchNorm layer are replaced
by the statistics of the target domain's (unlabelled) training images. In domain adaptation
this control separates what an adapted method gains through its target loss from what any
network gains by normalising target features with target statistics.

Estimation: every BatchNorm layer is reset and put in cumulative-average mode
(``momentum=None``) while the rest of the network stays in eval mode (no dropout); the target
training images are passed once, un-augmented, without gradients. The result is the exact
dataset mean of the per-batch statistics, independent of the order of batches.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["RESULTS_ADABN", "adabn_results", "reestimate_batchnorm"]

RESULTS_ADABN = "results_adabn.json"


@torch.no_grad()
def reestimate_batchnorm(net: nn.Module, batches: Any, *, max_images: int | None = None) -> int:
    """Replace the running statistics of every BatchNorm layer of ``net`` by those of ``batches``.

    Args:
        net: the network (called as ``net(image)``).
        batches: iterable of dicts with an ``"image"`` (N, 3, H, W) tensor.
        max_images: stop after this many images (None = all).

    Returns:
        The number of images the statistics were estimated from.

    Raises:
        ValueError: ``net`` has no BatchNorm layer, or ``batches`` yields no image.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ValueError("reestimate_batchnorm: net must contain a BatchNorm layer; found none.")
    was_training = net.training
    momenta = [m.momentum for m in bns]
    net.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = the mean over all batches seen
        m.train()
    seen = 0
    try:
        for batch in batches:
            image = batch["image"]
            if max_images is not None:
                image = image[: max(0, max_images - seen)]
            if image.shape[0] == 0:
                break
            net(image)
            seen += int(image.shape[0])
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        net.train(was_training)
    if seen == 0:
        raise ValueError("reestimate_batchnorm: batches must yield at least one image; got none.")
    return seen


def adabn_results(run_dir: str | Path, *, max_images: int | None = None) -> dict[str, Any]:
    """Val and test metrics of a finished UDA run after target BN re-estimation (cached).

    Reads ``<run_dir>/config.yaml`` and ``checkpoints/last.ckpt``, re-estimates the BatchNorm
    statistics of every network of the method on the target domain's training images, evaluates
    on the target val and test splits and writes ``<run_dir>/results_adabn.json``; a later call
    returns that file.

    Raises:
        FileNotFoundError: the run has no config or checkpoint.
    """
    from denseloss.config.data import target_of
    from denseloss.config.schema import load_config, method_class, method_config
    from denseloss.methods.base import MethodContext
    from denseloss.training.checkpoint import load_checkpoint
    from denseloss.training.fabric_setup import build_fabric
    from denseloss.training.inference import evaluate_predictions
    from denseloss.training.streams import build_eval_dataset, build_eval_loader

    run_dir = Path(run_dir)
    cached = run_dir / RESULTS_ADABN
    if cached.is_file():
        return json.loads(cached.read_text())
    cfg_file, ckpt = run_dir / "config.yaml", run_dir / "checkpoints" / "last.ckpt"
    for f in (cfg_file, ckpt):
        if not f.is_file():
            raise FileNotFoundError(f"adabn_results: {f} must exist (a finished run); it does not.")
    config = load_config(cfg_file)
    cls = method_class(config.method)
    target = target_of(config.data)
    fabric = build_fabric(accelerator="cpu", devices=1, precision=config.train.precision)
    fabric.launch()
    train_set = build_eval_dataset(config.data, "train", target)
    ctx = MethodContext(
        fabric=fabric,
        num_classes=int(getattr(train_set, "num_classes", 0)),
        total_steps=config.train.steps,
        # the trained weights come from the checkpoint: never re-read model.weights (it may
        # have moved since training)
        model=dataclasses.replace(config.model, weights=None),
        optim=config.optim,
        task=config.task,
        ignore_index=int(getattr(train_set, "ignore_index", 255)),
    )
    # init_from only seeds training; the trained weights come from the run's own checkpoint
    params = {k: v for k, v in config.params.items() if k != "init_from"}
    method = cls(method_config(dataclasses.replace(config, params=params), cls), ctx)
    method.load_state_dict(load_checkpoint(ckpt)["method"])
    images = 0
    for net in method.nets.values():
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
            loader = build_eval_loader(config.data, "train", target)
            images = reestimate_batchnorm(net, loader, max_images=max_images)
    out: dict[str, Any] = {"target": dataclasses.asdict(target), "bn_images": images}
    for split in ("val", "test"):
        out[split] = evaluate_predictions(
            method,
            build_eval_loader(config.data, split, target),
            task=config.task,
            num_classes=ctx.num_classes,
            ignore_index=ctx.ignore_index,
            fabric=fabric,
        )
    cached.write_text(json.dumps(out, indent=2))
    return out
