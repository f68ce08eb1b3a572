"""The generic training loop: one plain loop for every method and supervision regime.

Pseudo-loop (what :meth:`Trainer.fit` runs on every rank)::

    seed_everything(train.seed)
    data = build_train_data(config.data, method_cls.regime)   # stream(s) for the regime
    method = method_cls(method_cls.Config(**params), MethodContext(fabric, ...))
    seed_everything(train.seed + rank)
    step = 0 or restore(train.resume)      # method, RNG states, stream positions, step
    while step < train.steps:
        batch = next(data.stream)
        logs = method.training_step(batch, step)   # the method does its own backward/step
        step += 1                                   # a NaN/inf term stops here (no checkpoint)
        if step % log_every == 0:        logger.log(step, logs)        # metrics.csv + TensorBoard
        if step % eval_every == 0:       logger.log(step, evaluate("val"))
        if step % checkpoint_every == 0: save_checkpoint()             # checkpoints/last.ckpt
    save_checkpoint(); evaluate("val"); evaluate("test")                # the last step is final
    write results.json and curves.png

Model selection never looks at the test split: the final model is the last step's. Evaluation
forks the RNG state, so evaluating (or not) never changes the training trajectory.

The extension points are the methods of :class:`Trainer` (``training_step``, ``evaluate``,
``save_checkpoint``, ``restore``): override them in a subclass; there are no callbacks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from denseloss.config.schema import (
    RunConfig,
    config_from_dict,
    config_to_dict,
    method_class,
    method_config,
    save_config,
    validate,
)
from denseloss.methods.base import MethodContext, NonFiniteLossError
from denseloss.training.checkpoint import (
    CHECKPOINT_FORMAT,
    LAST,
    atomic_save,
    load_checkpoint,
    resolve_checkpoint,
)
from denseloss.training.cpu import configure_threads
from denseloss.training.fabric_setup import (
    build_fabric,
    detect_external_launch,
    launch,
    leave_process_group,
    process_group_exists,
    rescale_stream_state,
    resolve_processes,
)
from denseloss.training.interrupt import StopOnInterrupt, TrainingInterruptedError
from denseloss.training.logging import RunLogger
from denseloss.training.run_dir import launcher_rank, prepare_run_dir, record_resume
from denseloss.training.seeding import get_rng_state, seed_everything, set_rng_state
from denseloss.training.streams import (
    TrainData,
    build_eval_loader,
    build_train_data,
    check_run_data,
    write_split,
)

__all__ = [
    "BEST",
    "Trainer",
    "batch_plan",
    "batch_size_of",
    "resolve_run_config",
    "resolved_params",
    "train",
]

BEST = "best.ckpt"  # checkpoints/best.ckpt: the best val model so far (eval.select)


def resolve_run_config(config: RunConfig, *, method_cls: type | None = None) -> RunConfig:
    """Validate ``config`` and fill ``train.out_dir`` (the resumed run's, or a timestamped one)."""
    if method_cls is None:
        validate(config)
    out_dir = config.train.out_dir
    if out_dir is None:
        if config.train.resume is not None:
            ckpt = resolve_checkpoint(config.train.resume)
            out_dir = str(ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent)
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            out_dir = str(Path("runs") / f"{config.method}-{stamp}")
    return dataclasses.replace(config, train=dataclasses.replace(config.train, out_dir=out_dir))


def train(
    config: RunConfig, *, method_cls: type | None = None, stop_after: int | None = None
) -> dict[str, Any]:
    """Run (or resume) training as ``config`` says, on 1 or ``train.devices`` processes.

    Args:
        config: the run; ``train.out_dir=None`` picks ``runs/<method>-<timestamp>``.
        method_cls: a ``Method`` subclass to use instead of ``METHODS[config.method]`` (tests).
        stop_after: debugging hook: return right after step ``stop_after`` and its checkpoint,
            as if the process had been killed there (no final evaluation).

    Returns:
        The content of ``results.json`` (rank 0's), or ``{"stopped_at": k, ...}``.

    Raises:
        NonFiniteLossError: a loss term became NaN/inf; the message names it, and the last
            good checkpoint is left in place.
    """
    config = resolve_run_config(config, method_cls=method_cls)
    # Under torchrun / srun / `fabric run` the processes exist already: take their layout.
    external = detect_external_launch()
    config = dataclasses.replace(config, train=resolve_processes(config.train, external))
    t = config.train
    configure_threads(t.threads, t.devices)
    if launcher_rank(external) == 0:  # before anything is written: refuse, then check the data
        resume = prepare_run_dir(config)
        if config.data.check != "off":
            regime = (method_cls or method_class(config.method)).regime
            check_run_data(config.data, regime, config.task, progress=t.progress)
        if resume is not None:
            Path(str(t.out_dir)).mkdir(parents=True, exist_ok=True)
            record_resume(str(t.out_dir), resume.step, resume.changes)
    # a process group set up here (torchrun / srun / `fabric run` / Fabric's own launcher) is
    # torn down here; one the caller made before calling train() is the caller's
    owns_group = not process_group_exists()
    fabric = build_fabric(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        precision=t.precision,
        strategy=t.strategy,
        sync_bn=t.sync_bn,
        external=external is not None,
    )
    # Fabric's spawn launcher rejects frozen dataclasses among the arguments: pass a plain dict.
    results = launch(fabric, _fit, config_to_dict(config), method_cls, stop_after)
    if owns_group:
        leave_process_group()
    if isinstance(results, dict) and "interrupted_at" in results:
        raise TrainingInterruptedError(
            f"train: interrupted after step {results['interrupted_at']}; checkpoint "
            f"{results['checkpoint']} kept. Resume with `denseloss train --resume "
            f"{results['out_dir']}`."
        )
    return results


def _fit(
    fabric: Any, config: dict[str, Any], method_cls: type | None, stop_after: int | None
) -> dict[str, Any]:
    if fabric.world_size > 1:  # processes started apart resolved apart: rank 0's out_dir wins
        config = fabric.broadcast(config, src=0)
    processes = fabric.world_size // int(config["train"].get("num_nodes", 1))
    configure_threads(config["train"].get("threads"), processes)
    trainer = Trainer(fabric, config_from_dict(config), method_cls=method_cls)
    return trainer.fit(stop_after=stop_after)


def batch_size_of(batch: Any) -> int:
    """Images in a (possibly nested) batch: the sum over its streams' ``image`` tensors."""
    if isinstance(batch, dict):
        if "image" in batch and isinstance(batch["image"], torch.Tensor):
            return int(batch["image"].shape[0])
        return sum(batch_size_of(v) for v in batch.values())
    return 0


def batch_plan(config: RunConfig, world_size: int) -> str:
    """``batch 10 × 1 process × 1 accumulation = global 10`` (+ the LR rule when it differs).

    The global batch is what one optimiser step averages over. When the protocol names another
    (``train.reference_batch``), the linear scaling rule (Goyal et al. 2017) is stated, not applied.
    """
    t = config.train
    b, k = config.data.batch_size, t.accumulate
    size = b * world_size * k
    nodes = max(1, t.num_nodes)
    layout = f" ({nodes} nodes × {world_size // nodes})" if nodes > 1 else ""
    line = (
        f"denseloss: batch {b} per process × {world_size} process{'es' if world_size > 1 else ''}"
        f"{layout} × {k} accumulation step{'s' if k > 1 else ''} = global batch {size}"
    )
    ref = t.reference_batch
    if ref is not None and ref != size:
        line += (
            f"; the protocol's global batch is {ref}: to keep its schedule either reach {ref} "
            f"(--train.accumulate / --data.batch_size) or scale every learning rate by "
            f"{size}/{ref} = {size / ref:.3g} (linear rule; optim.lr={config.optim.lr:g} → "
            f"{config.optim.lr * size / ref:.3g}), which is a new protocol"
        )
    return line


def resolved_params(method_config: Any) -> dict[str, Any]:
    """A method's Config as plain JSON values (tuples as lists), ``{}`` for a Config-less one."""
    if not dataclasses.is_dataclass(method_config):
        return {}
    return json.loads(json.dumps(dataclasses.asdict(method_config), default=str))


def _scalars(prefix: str, metrics: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


class Trainer:
    """Drives one ``Method`` through the loop in the module docstring.

    Args:
        fabric: a launched ``lightning_fabric.Fabric``.
        config: the resolved run config (``train.out_dir`` set; see :func:`resolve_run_config`).
        method_cls: overrides ``METHODS[config.method]``.
    """

    def __init__(self, fabric: Any, config: RunConfig, *, method_cls: type | None = None) -> None:
        if config.train.out_dir is None:
            raise ValueError(
                "Trainer: config.train.out_dir must be set; got None. "
                "Hint: pass the config through resolve_run_config()."
            )
        self.fabric = fabric
        self.config = config
        self.out_dir = Path(config.train.out_dir)
        self.ckpt_path = self.out_dir / "checkpoints" / LAST
        self.method_cls = method_cls if method_cls is not None else method_class(config.method)
        self.regime = self.method_cls.regime
        t = config.train
        seed_everything(t.seed)
        self.data: TrainData = build_train_data(
            config.data, self.regime, rank=fabric.global_rank, world_size=fabric.world_size
        )
        ctx = MethodContext(
            fabric=fabric,
            num_classes=self.data.num_classes,
            total_steps=t.steps,
            model=config.model,
            optim=config.optim,
            task=config.task,
            ignore_index=self.data.ignore_index,
        )
        self.method = self.method_cls(method_config(config, self.method_cls), ctx)
        self.method.train()
        # Training randomness (dropout, augmentation in the main process) differs per rank.
        seed_everything(t.seed + fabric.global_rank)
        self.step = 0
        self.train_seconds = 0.0
        self.train_images = 0
        self.last_good_step: int | None = None
        self.best: dict[str, Any] | None = None  # {"step", "metric", "value", "val"} on val
        self._final_row: dict[str, float] = {}

    # -- extension points -----------------------------------------------------------------------
    def training_step(self, batch: Any) -> dict[str, float]:
        """``method.training_step`` plus the finiteness check of every returned term."""
        try:
            logs = self.method.training_step(batch, self.step)
        except NonFiniteLossError as err:
            raise NonFiniteLossError(self._nan_message(str(err))) from err
        out = {k: float(v) for k, v in logs.items()}
        for name, value in out.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    self._nan_message(f"loss term {name!r} is {value} (its update was applied).")
                )
        return out

    def evaluate(self, split: str) -> dict[str, Any]:
        """Metrics of the current model on ``split`` ("val" or "test") of the evaluation domain.

        Predictions follow ``config.eval`` (whole / slide / multiscale, flip, labels at their
        original resolution); see :mod:`denseloss.training.inference`.
        """
        from denseloss.training.inference import evaluate_predictions, protocol_loader

        source = self.data.eval_source
        rank, world = self.fabric.global_rank, self.fabric.world_size
        if source is None:  # a TrainData built without a complete source (the built-in domain)
            loader = build_eval_loader(
                self.config.data, split, self.data.eval_domain, rank=rank, world_size=world
            )
            size = None
        else:
            loader, size = protocol_loader(
                self.config.data, split, source, self.config.eval, rank=rank, world_size=world
            )
        return evaluate_predictions(
            self.method,
            loader,
            task=self.config.task,
            num_classes=self.data.num_classes,
            ignore_index=self.data.ignore_index,
            fabric=self.fabric,
            max_batches=self.config.train.eval_batches,
            protocol=self.config.eval,
            input_size=size,
            class_names=self.data.class_names,
        )

    def save_checkpoint(self, path: Path | None = None) -> None:
        """Write ``checkpoints/last.ckpt`` (or ``path``) atomically (rank 0), then wait for all."""
        if self.fabric.global_rank == 0:
            atomic_save(
                {
                    "format": CHECKPOINT_FORMAT,
                    "step": self.step,
                    "method": self.method.state_dict(),
                    "rng": get_rng_state(),
                    "streams": self.data.stream.state_dict(),
                    "config": config_to_dict(self.config),
                    "extra": {
                        "train_seconds": self.train_seconds,
                        "train_images": self.train_images,
                        "world_size": self.fabric.world_size,
                        "best": self.best,
                    },
                },
                self.ckpt_path if path is None else path,
            )
        if path is None:
            self.last_good_step = self.step
        self.fabric.barrier()

    def restore(self, path: str) -> None:
        """Load a checkpoint: method, RNG states, stream positions and step."""
        state = load_checkpoint(path)
        saved = config_from_dict(state["config"])
        if saved.method != self.config.method:
            raise ValueError(
                f"Trainer.restore: checkpoint method must be {self.config.method!r}; "
                f"got {saved.method!r} in {path!r}."
            )
        extra = state.get("extra", {})
        saved_world = int(extra.get("world_size", saved.train.devices * saved.train.num_nodes))
        # rank 0's stream positions; another process count continues the same global stream
        streams = rescale_stream_state(
            state["streams"], saved_world=saved_world, world=self.fabric.world_size
        )
        self.method.load_state_dict(state["method"])
        self.data.stream.load_state_dict(streams)
        set_rng_state(state["rng"])
        if self.fabric.global_rank != 0:
            seed_everything(self.config.train.seed + self.fabric.global_rank + state["step"])
        self.step = int(state["step"])
        self.last_good_step = self.step
        self.train_seconds = float(extra.get("train_seconds", 0.0))
        self.train_images = int(extra.get("train_images", 0))
        self.best = extra.get("best")

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, *, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``train.steps`` (module docstring); returns the content of ``results.json``."""
        t = self.config.train
        rank0 = self.fabric.global_rank == 0
        if t.resume is not None:
            self.restore(t.resume)
        if rank0:
            # one line: per-process and global batch (with accumulation), the LR rule if needed
            print(batch_plan(self.config, self.fabric.world_size), file=sys.stderr, flush=True)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.out_dir / "config.yaml")
            if self.data.split_ids is not None:  # the semi split, readable by data.labeled_list
                write_split(self.out_dir, self.data.split_ids, self.data.description["labeled_by"])
        logger = RunLogger(
            self.out_dir, enabled=rank0, resume_step=self.step if t.resume is not None else None
        )
        bar = _progress(t.steps, self.step, enabled=t.progress and rank0, desc=self.config.method)
        interrupt = StopOnInterrupt().install()
        try:
            while self.step < t.steps:
                start = time.perf_counter()
                logs, images = self._accumulated_step()
                self.train_seconds += time.perf_counter() - start
                self.train_images += images * self.fabric.world_size
                self.step += 1
                bar.update(1)
                bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in logs.items()})
                self._after_step(logger, logs)
                if stop_after is not None and self.step >= stop_after:
                    return {"stopped_at": self.step, "out_dir": str(self.out_dir)}
                if self.step < t.steps and interrupt.should_stop(self.fabric):  # Ctrl-C
                    self.save_checkpoint()
                    return {
                        "interrupted_at": self.step,
                        "checkpoint": str(self.ckpt_path),
                        "out_dir": str(self.out_dir),
                    }
            return self._finish(logger)
        except KeyboardInterrupt:  # a second Ctrl-C, mid-step: the last checkpoint stands
            where = (
                f"checkpoint {self.ckpt_path} (step {self.last_good_step}) kept; resume with "
                f"`denseloss train --resume {self.out_dir}`"
                if self.last_good_step is not None
                else "no checkpoint had been written yet"
            )
            raise TrainingInterruptedError(
                f"train: interrupted during step {self.step + 1}; {where}."
            ) from None
        finally:
            interrupt.restore()
            bar.close()
            logger.close()

    def _accumulated_step(self) -> tuple[dict[str, float], int]:
        """``train.accumulate`` micro-batches, one optimiser step; mean logs and images seen."""
        k = self.config.train.accumulate
        total: dict[str, float] = {}
        images = 0
        for i in range(k):
            batch = self.fabric.to_device(next(self.data.stream))
            if k > 1:
                self.method.set_micro_batch(i, k)
            for name, value in self.training_step(batch).items():
                total[name] = total.get(name, 0.0) + value / k
            images += batch_size_of(batch)
        return total, images

    def _consider_best(self, val: dict[str, Any]) -> None:
        """Keep ``checkpoints/best.ckpt`` = the model with the best val ``eval.select`` so far."""
        from denseloss.training.inference import selection_metric

        name, higher = selection_metric(self.config.eval, self.config.task)
        if name not in val:
            raise ValueError(f"Trainer: eval.select must be one of {sorted(val)}; got {name!r}.")
        value = float(val[name])
        if self.best is not None:
            old = float(self.best["value"])
            if (value <= old) if higher else (value >= old):
                return
        self.best = {"step": self.step, "metric": name, "value": value, "val": val}
        self.save_checkpoint(self.ckpt_path.with_name(BEST))

    def _after_step(self, logger: RunLogger, logs: dict[str, float]) -> None:
        t = self.config.train
        row: dict[str, float] = {}
        if self.step % t.log_every == 0 or self.step == t.steps:
            row.update(logs)
            for name, opt in self.method.optimizers.items():
                row[f"lr/{name}"] = float(opt.param_groups[0]["lr"])
        if t.eval_every and self.step % t.eval_every == 0 and self.step < t.steps:
            val = self.evaluate("val")
            row.update(_scalars("val", val))
            self._consider_best(val)
        if self.step == t.steps:
            self._final_row = row  # logged by _finish together with the final metrics
        elif row:
            logger.log(self.step, row)
        if t.checkpoint_every and self.step % t.checkpoint_every == 0 and self.step < t.steps:
            self.save_checkpoint()

    def _test_is_val(self) -> bool:
        """Whether "test" names the same samples as "val" (the papers report on val)."""
        s = self.data.eval_source
        return s is not None and (s.val_split, s.val_length) == (s.test_split, s.test_length)

    def _best_results(self, test_last: dict[str, Any]) -> dict[str, Any]:
        """The best-val checkpoint's val and test metrics (test evaluated on its weights)."""
        best = dict(self.best or {})
        path = self.ckpt_path.with_name(BEST)
        if best.get("step") == self.step or self._test_is_val():
            test = test_last if best.get("step") == self.step else best["val"]
        else:
            self.method.load_state_dict(load_checkpoint(path)["method"])
            test = self.evaluate("test")
        return {**best, "model": "best", "checkpoint": str(path), "test": test}

    def _finish(self, logger: RunLogger) -> dict[str, Any]:
        self.save_checkpoint()
        val = self.evaluate("val")
        self._consider_best(val)
        test = val if self._test_is_val() else self.evaluate("test")
        logger.log(self.step, {**self._final_row, **_scalars("val", val), **_scalars("test", test)})
        best = self._best_results(test)
        results = {
            "model": "last",
            "method": self.config.method,
            "regime": self.regime,
            "task": self.config.task,
            "steps": self.step,
            "eval_domain": self.data.eval_domain,
            "data": self.data.description,
            "val": val,
            "test": test,
            "images_per_s": self.train_images / self.train_seconds if self.train_seconds else 0.0,
            "train_seconds": self.train_seconds,
            "world_size": self.fabric.world_size,
            # what ran: CPU autocast has no float16, so "16-mixed" runs bf16 there
            "precision": "bf16-mixed"
            if self.config.train.precision == "16-mixed" and self.fabric.device.type == "cpu"
            else self.config.train.precision,
            "threads": torch.get_num_threads(),
            "checkpoint": str(self.ckpt_path),
            "best": best,
            "eval": dataclasses.asdict(self.config.eval),
            # every hyperparameter as the method resolved it, defaults included: a later change
            # of a default shows up against this (reproduce's runner refuses to mix the two)
            "params": resolved_params(self.method.config),
            "batch": batch_plan(self.config, self.fabric.world_size),
            "out_dir": str(self.out_dir),
        }
        if self.fabric.global_rank == 0:
            (self.out_dir / "results.json").write_text(json.dumps(results, indent=2))
            from denseloss.training.evaluation import results_table

            (self.out_dir / "results.md").write_text(results_table(results))
            from denseloss.viz.curves import plot_curves

            plot_curves(logger.path, self.out_dir / "curves.png")
        return results

    def _nan_message(self, detail: str) -> str:
        where = (
            f"the last good checkpoint ({self.ckpt_path}, step {self.last_good_step}) is kept"
            if self.last_good_step is not None
            else "no checkpoint had been written yet"
        )
        return f"Trainer: training stopped at step {self.step}: {detail} {where}."


def _progress(total: int, initial: int, *, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, dynamic_ncols=True)
