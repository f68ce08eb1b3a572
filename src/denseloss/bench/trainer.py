"""Trainer overhead: images/s of ``denseloss``'s loop vs a bare PyTorch loop doing the same steps.

Both loops train the same network (``deeplabv2`` on the built-in data) with the same data stream
(same augmentation and batch order), the same SGD + poly schedule and the same pixel-wise
cross-entropy, for the same number of steps. The trainer's time is its own ``train_seconds``
(data + step, evaluation excluded); the bare loop times the same span. Runs alternate, and each
side reports its median over ``repeats`` runs, so a load change on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["bare_loop_images_per_s", "bench_trainer", "run_bench"]


def _config(steps: int, size: int, batch_size: int, out_dir: str) -> Any:
    from denseloss.config.schema import DataConfig, RunConfig, TrainConfig

    return RunConfig(
        method="ce",
        data=DataConfig(
            size=size, train_length=64, val_length=8, test_length=8, batch_size=batch_size
        ),
        train=TrainConfig(
            steps=steps,
            eval_every=0,
            checkpoint_every=0,
            log_every=10,
            progress=False,
            out_dir=out_dir,
            eval_batches=1,
        ),
    )


def bare_loop_images_per_s(config: Any) -> float:
    """Images/s of a hand-written loop equivalent to ``ce`` under ``config``."""
    from denseloss.methods.base import poly_scheduler, split_param_groups
    from denseloss.models import build_segmenter
    from denseloss.training.seeding import seed_everything
    from denseloss.training.streams import build_train_data

    seed_everything(config.train.seed)
    data = build_train_data(config.data, "full")
    net = build_segmenter(config.model.name, num_classes=data.num_classes, **config.model.kwargs)
    o = config.optim
    opt = torch.optim.SGD(
        split_param_groups(net, o.lr, o.head_lr_mult),
        lr=o.lr,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
    )
    sched = poly_scheduler(opt, config.train.steps, o.poly_power)
    net.train()
    seconds, images = 0.0, 0
    for _ in range(config.train.steps):
        start = time.perf_counter()
        batch = next(data.stream)
        labels = batch["label"]
        logits = net(batch["image"]).logits
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, labels, ignore_index=data.ignore_index)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        seconds += time.perf_counter() - start
        images += labels.shape[0]
    return images / seconds


def bench_trainer(
    *, steps: int = 60, size: int = 64, batch_size: int = 8, repeats: int = 3
) -> dict[str, float]:
    """Median images/s of the trainer and of the bare loop, and their ratio (target ≥ 0.9)."""
    from denseloss.training.trainer import train

    ours, bare = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = _config(steps, size, batch_size, tmp)
            ours.append(float(train(cfg)["images_per_s"]))
            bare.append(bare_loop_images_per_s(dataclasses.replace(cfg)))
    t, b = statistics.median(ours), statistics.median(bare)
    return {
        "trainer_images_per_s": t,
        "bare_images_per_s": b,
        "ratio": t / b,
        "steps": steps,
        "size": size,
        "batch_size": batch_size,
        "repeats": repeats,
    }


def run_bench(argv: list[str]) -> int:
    """``denseloss bench trainer [--steps N] [--repeats N]``: print the comparison as markdown."""
    p = argparse.ArgumentParser(prog="denseloss bench trainer", description=__doc__)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    r = bench_trainer(steps=a.steps, size=a.size, batch_size=a.batch_size, repeats=a.repeats)
    print("| loop | images/s |\n|---|---|")
    print(f"| denseloss trainer (`ce`) | {r['trainer_images_per_s']:.1f} |")
    print(f"| bare PyTorch loop | {r['bare_images_per_s']:.1f} |")
    print(f"| ratio | {r['ratio']:.3f} (target ≥ 0.9) |")
    print(
        f"\n{a.steps} steps, batch {a.batch_size}, {a.size}² images, median of {a.repeats}; "
        f"torch threads = {torch.get_num_threads()}"
    )
    return 0
