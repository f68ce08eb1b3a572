"""Evaluate a finished (or interrupted) run: rebuild its method, load a checkpoint, score a split.

Used by ``denseloss eval``. Besides the metrics it writes pictures of the first evaluation batch:
segmentation overlays (with the method's extra maps, e.g. AdvSemiSeg's confidence, and the
scribbles for the scribble regime) or depth / normal panels.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from denseloss.config.data import DataSource, describe_source, eval_source_of, validate_data
from denseloss.config.schema import (
    RunConfig,
    check_eval_config,
    config_from_dict,
    load_config,
    method_class,
    method_config,
)
from denseloss.methods.base import MethodContext
from denseloss.training.checkpoint import load_checkpoint, resolve_checkpoint
from denseloss.training.fabric_setup import build_fabric
from denseloss.training.streams import build_eval_dataset, build_eval_loader

__all__ = ["evaluate_run", "results_table"]


def _run_config(run: str | Path | None, checkpoint: str | Path | None) -> RunConfig:
    if run is not None and (Path(run) / "config.yaml").is_file():
        return load_config(Path(run) / "config.yaml")
    source = checkpoint if checkpoint is not None else run
    if source is None:
        raise ValueError("evaluate_run: run or checkpoint must be given; got neither.")
    return config_from_dict(load_checkpoint(source)["config"])


def eval_source(
    config: RunConfig, regime: str, overrides: dict[str, Any] | None = None
) -> DataSource:
    """The data set a run is evaluated on: its own (the target for UDA), or another one.

    ``overrides`` holds :class:`DataSource` fields (``name``, ``root``, ``domain``, ``kwargs``,
    ``val_split``, ...). A new ``name`` starts from that data set's defaults (nothing of the run's
    data set is inherited); otherwise the given fields replace those of the run's data set.

    Raises:
        ValueError: an unknown field, or an invalid data set (see ``validate_data``).
    """
    own = eval_source_of(config.data, regime)
    if not overrides:
        return own
    fields = {f.name for f in dataclasses.fields(DataSource)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"evaluate_run: data overrides must be among {sorted(fields)}; got {unknown}."
        )
    if overrides.get("name", own.name) != own.name:
        source = DataSource(**overrides)
        if source.name == "builtin" and source.domain is None:
            source = dataclasses.replace(source, domain="real")
    else:
        source = dataclasses.replace(own, **overrides)
    keys = ("name", "root", "domain", "kwargs")
    probe = dataclasses.replace(
        config.data, **{k: getattr(source, k) for k in keys}, target=DataSource()
    )
    validate_data(probe, "full")
    return source


def _slug(source: DataSource) -> str:
    tail = source.domain if source.name == "builtin" else Path(str(source.root)).name
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{source.name}-{tail}")


def evaluate_run(
    run: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    split: str = "val",
    out: str | Path | None = None,
    max_batches: int | None = None,
    accelerator: str = "cpu",
    method_cls: type | None = None,
    data: dict[str, Any] | None = None,
    resize: tuple[int, int] | None = None,
    protocol: dict[str, Any] | None = None,
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
        data: evaluate on another data set: :class:`DataSource` fields (see :func:`eval_source`);
            the files are then named ``eval_<split>-<data set>.json`` / ``.png``.
        resize: ``(H, W)`` to resize samples to (default: the run's ``data.resize``).
        protocol: :class:`~denseloss.config.schema.EvalConfig` fields replacing the run's
            ``eval`` (e.g. ``{"mode": "multiscale", "scales": [0.75, 1, 1.25], "flip": True}``);
            by default the run is scored exactly as it was during training. The files are then
            named ``eval_<split>[-<data set>]-<mode>[<scales>][-flip].json``.

    Returns:
        ``{"split", "data_set", "split_name", "domain", "checkpoint", "step", "metrics",
        "pictures"}``.

    Raises:
        ValueError: a bad split or data override, or a data set whose class count differs from
            the run's.
    """
    if split not in ("val", "test"):
        raise ValueError(f"evaluate_run: split must be 'val' or 'test'; got {split!r}.")
    config = _run_config(run, checkpoint)
    if resize is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, resize=resize))
    ckpt_path = resolve_checkpoint(checkpoint if checkpoint is not None else run)  # type: ignore[arg-type]
    state = load_checkpoint(ckpt_path)
    cls = method_cls if method_cls is not None else method_class(config.method)
    source = eval_source(config, cls.regime, data)
    fabric = build_fabric(accelerator=accelerator, devices=1, precision=config.train.precision)
    fabric.launch()
    dataset = build_eval_dataset(config.data, split, source)
    num_classes = int(getattr(dataset, "num_classes", 0))
    trained = _trained_classes(state, config, cls) if data else None
    if config.task == "seg" and trained is not None and num_classes != trained:
        raise ValueError(
            f"evaluate_run: the evaluated data set must have the run's {trained} classes; got "
            f"{num_classes} in {describe_source(source)!r}."
        )
    ctx = MethodContext(
        fabric=fabric,
        num_classes=num_classes,
        total_steps=config.train.steps,
        # the trained weights come from the checkpoint: never re-read model.weights (it may
        # have moved since training)
        model=dataclasses.replace(config.model, weights=None),
        optim=config.optim,
        task=config.task,
        ignore_index=int(getattr(dataset, "ignore_index", 255)),
    )
    method = cls(method_config(config, cls), ctx)
    method.load_state_dict(state["method"])
    method.eval()

    from denseloss.training.inference import evaluate_predictions, protocol_loader

    if protocol:
        config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, **protocol))
        check_eval_config(config.eval, config.task)
    scored, size = protocol_loader(config.data, split, source, config.eval)
    metrics = evaluate_predictions(
        method,
        scored,
        task=config.task,
        num_classes=ctx.num_classes,
        ignore_index=ctx.ignore_index,
        fabric=fabric,
        max_batches=max_batches,
        protocol=config.eval,
        input_size=size,
        class_names=tuple(getattr(dataset, "class_names", ())),
    )
    loader = build_eval_loader(config.data, split, source)  # collated batches for the pictures
    default_dir = Path(run if run is not None else ckpt_path.parent) / "eval"
    out_dir = Path(out) if out is not None else default_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = split if not data else f"{split}-{_slug(source)}"
    if protocol:  # another protocol never overwrites the run's own scores
        e = config.eval
        scales = "_".join(f"{x:g}" for x in e.scales) if e.mode == "multiscale" else ""
        stem += f"-{e.mode}{scales}"
        stem += "-flip" if e.flip else ""
    batch = fabric.to_device(next(iter(loader)))
    picture = _pictures(method, batch, config, cls.regime, dataset, out_dir / f"{stem}.png")
    result = {
        "split": split,
        "data_set": describe_source(source),
        "split_name": getattr(source, f"{split}_split"),
        "domain": describe_source(source),
        "checkpoint": str(ckpt_path),
        "step": int(state["step"]),
        "eval": dataclasses.asdict(config.eval),
        "metrics": metrics,
        "pictures": [str(picture)],
    }
    (out_dir / f"eval_{stem}.json").write_text(json.dumps(result, indent=2))
    return result


def _trained_classes(state: dict[str, Any], config: RunConfig, cls: type) -> int | None:
    """The class count the checkpoint was trained with (from its config's data set)."""
    try:
        saved = config_from_dict(state["config"])
        dataset = build_eval_dataset(saved.data, "val", eval_source_of(saved.data, cls.regime))
    except (OSError, ValueError, TypeError):  # the run's own data may have moved: no check
        return None
    return int(getattr(dataset, "num_classes", 0))


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
        class_names=list(getattr(dataset, "class_names", ())) or None,
    )


def _fmt(value: Any) -> str:
    return "–" if value is None or value != value else f"{100 * float(value):.1f}"


def results_table(results: dict[str, Any]) -> str:
    """Markdown of a run's ``results.json``: last and best-val model, mIoU, subsets, per class.

    Depth / normals runs get one row per model with their metrics as they are.
    """
    rows = [("last", results.get("steps"), results.get("val", {}), results.get("test", {}))]
    best = results.get("best") or {}
    if best:
        rows.append(("best val", best.get("step"), best.get("val", {}), best.get("test", {})))
    lines = [f"# {results.get('method')} — {results.get('eval_domain')}", ""]
    if results.get("task", "seg") != "seg":
        keys = [k for k, v in rows[0][2].items() if isinstance(v, (int, float))]
        lines += ["| model | step | split | " + " | ".join(keys) + " |"]
        lines += ["|---" * (len(keys) + 3) + "|"]
        for name, step, val, test in rows:
            for split, m in (("val", val), ("test", test)):
                cells = " | ".join(f"{float(m.get(k, float('nan'))):.4g}" for k in keys)
                lines.append(f"| {name} | {step} | {split} | {cells} |")
        return "\n".join(lines) + "\n"
    extra = list((results.get("eval") or {}).get("class_subsets") or {})
    head = ["model", "step", "split", "mIoU (%)", *[f"{k} (%)" for k in extra], "pixel acc (%)"]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, step, val, test in rows:
        for split, m in (("val", val), ("test", test)):
            cells = [
                _fmt(m.get("miou")),
                *[_fmt(m.get(k)) for k in extra],
                _fmt(m.get("pixel_acc")),
            ]
            lines.append(f"| {name} | {step} | {split} | " + " | ".join(cells) + " |")
    per_class = rows[0][2].get("iou_per_class") or {}
    if per_class:
        lines += ["", "IoU per class (%), val:", ""]
        lines += [
            "| class | " + " | ".join(r[0] for r in rows) + " |",
            "|---" * (len(rows) + 1) + "|",
        ]
        for cls in per_class:
            cells = [_fmt((r[2].get("iou_per_class") or {}).get(cls)) for r in rows]
            lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
