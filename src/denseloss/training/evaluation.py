"""Evaluate a finished (or interrupted) run: rebuild its method, load a checkpoint, score a split.

Used by ``denseloss eval``. Besides the metrics it writes pictures of the first evaluation batch:
segmentation overlays (with the method's extra maps, e.g. AdvSemiSeg's confidence, and the
scribbles for the scribble regime) or depth / normal panels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from denseloss.config.schema import (
    RunConfig,
    config_from_dict,
    load_config,
    method_class,
    method_config,
)
from denseloss.methods.base import MethodContext
from denseloss.training.checkpoint import load_checkpoint, resolve_checkpoint
from denseloss.training.fabric_setup import build_fabric
from denseloss.training.streams import build_eval_dataset, build_eval_loader

__all__ = ["evaluate_run"]


def _run_config(run: str | Path | None, checkpoint: str | Path | None) -> RunConfig:
    if run is not None and (Path(run) / "config.yaml").is_file():
        return load_config(Path(run) / "config.yaml")
    source = checkpoint if checkpoint is not None else run
    if source is None:
        raise ValueError("evaluate_run: run or checkpoint must be given; got neither.")
    return config_from_dict(load_checkpoint(source)["config"])


def evaluate_run(
    run: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    split: str = "val",
    out: str | Path | None = None,
    max_batches: int | None = None,
    accelerator: str = "cpu",
    method_cls: type | None = None,
) -> dict[str, Any]:
    """Metrics of a run's checkpoint on ``split``, plus pictures and ``eval_<split>.json``.

    Args:
        run: run directory (holds ``config.yaml`` and ``checkpoints/last.ckpt``).
        checkpoint: checkpoint file; default ``<run>/checkpoints/last.ckpt``.
        split: "val" or "test".
        out: directory for the JSON and PNGs; default ``<run>/eval``.
        max_batches: evaluate at most this many batches.
        accelerator: "cpu", "cuda" or "auto".
        method_cls: overrides ``METHODS[config.method]`` (tests).

    Returns:
        ``{"split", "checkpoint", "step", "metrics", "pictures"}``.
    """
    if split not in ("val", "test"):
        raise ValueError(f"evaluate_run: split must be 'val' or 'test'; got {split!r}.")
    config = _run_config(run, checkpoint)
    ckpt_path = resolve_checkpoint(checkpoint if checkpoint is not None else run)  # type: ignore[arg-type]
    state = load_checkpoint(ckpt_path)
    cls = method_cls if method_cls is not None else method_class(config.method)
    fabric = build_fabric(accelerator=accelerator, devices=1, precision=config.train.precision)
    fabric.launch()
    domain = config.data.target_domain if cls.regime == "uda" else config.data.domain
    dataset = build_eval_dataset(config.data, split, domain)
    ctx = MethodContext(
        fabric=fabric,
        num_classes=int(getattr(dataset, "num_classes", 0)),
        total_steps=config.train.steps,
        model=config.model,
        optim=config.optim,
        task=config.task,
        ignore_index=int(getattr(dataset, "ignore_index", 255)),
    )
    method = cls(method_config(config, cls), ctx)
    method.load_state_dict(state["method"])
    method.eval()

    from denseloss.training.trainer import evaluate_method

    loader = build_eval_loader(config.data, split, domain)
    metrics = evaluate_method(
        method,
        loader,
        task=config.task,
        num_classes=ctx.num_classes,
        ignore_index=ctx.ignore_index,
        fabric=fabric,
        max_batches=max_batches,
    )
    default_dir = Path(run if run is not None else ckpt_path.parent) / "eval"
    out_dir = Path(out) if out is not None else default_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    batch = fabric.to_device(next(iter(loader)))
    picture = _pictures(method, batch, config, cls.regime, dataset, out_dir / f"{split}.png")
    result = {
        "split": split,
        "domain": domain,
        "checkpoint": str(ckpt_path),
        "step": int(state["step"]),
        "metrics": metrics,
        "pictures": [str(picture)],
    }
    (out_dir / f"eval_{split}.json").write_text(json.dumps(result, indent=2))
    return result


def _pictures(
    method: Any, batch: dict[str, Any], config: RunConfig, regime: str, dataset: Any, path: Path
) -> Path:
    from denseloss.viz.overlays import save_overlays, save_regression_panel

    image = batch["image"]
    pred = method.predict(image).float()
    if config.task == "depth":
        return save_regression_panel(image, batch["depth"], pred, path, task="depth")
    if config.task == "normals":
        return save_regression_panel(image, batch["normal"], pred, path, task="normals")
    return save_overlays(
        image,
        batch["label"],
        pred.argmax(1),
        path,
        palette=list(getattr(dataset, "palette", [])),
        extra_maps=method.extra_maps(image),
        scribbles=batch.get("scribble") if regime == "scribble" else None,
        ignore_index=int(getattr(dataset, "ignore_index", 255)),
    )
