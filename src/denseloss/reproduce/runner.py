"""Run a study seed by seed, resumably, and write its markdown tables and figures."""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from denseloss.reproduce.adabn import RESULTS_ADABN, adabn_results
from denseloss.reproduce.studies import BUDGETS, Budget, Run, study_runs, with_seed
from denseloss.reproduce.tables import aggregate, format_tables, metric, plot_study

__all__ = ["run_study", "study_tasks"]

RESULTS = "results.json"


def _print(line: str) -> None:
    print(line, flush=True)


def _train(config: Any) -> dict[str, Any]:
    from denseloss.training.trainer import train

    return train(config)


def _select(runs: list[Run], only: tuple[str, ...] | None, study: str) -> list[Run]:
    """``runs`` restricted to ``only`` plus the runs they are initialised or derived from."""
    if not only:
        return runs
    by_key = {r.key: r for r in runs}
    unknown = sorted(set(only) - set(by_key))
    if unknown:
        raise ValueError(
            f"run_study: only must name runs of study {study!r} ({sorted(by_key)}); got {unknown}."
        )
    wanted = set(only)
    stack = list(wanted)
    while stack:  # follow init_from and derived_from chains
        run = by_key[stack.pop()]
        for dep in (run.init_from, run.derived_from):
            if dep is not None and dep not in wanted:
                wanted.add(dep)
                stack.append(dep)
    return [r for r in runs if r.key in wanted]


def run_study(
    study: str,
    *,
    budget: str | Budget = "quick",
    out: str | Path = "results",
    seeds: tuple[int, ...] | None = None,
    only: tuple[str, ...] | None = None,
    overrides: Callable[[Any], Any] | None = None,
    train_fn: Callable[[Any], dict[str, Any]] = _train,
    log: Callable[[str], None] = _print,
    jobs: int = 1,
    threads: int | None = None,
    tables_only: bool = False,
    adabn_images: int = 200,
) -> dict[str, Any]:
    """Run every (run, seed) of ``study`` that has no ``results.json`` yet, then aggregate.

    Args:
        study: a key of ``STUDIES`` ("semi", "uda", "scribble", "full", "real").
        budget: "quick", "full" or a :class:`Budget`.
        out: root folder; runs land in ``<out>/<study>/<run key>/seed<k>/``.
        seeds: training seeds (default: the budget's).
        only: run keys to restrict to (their ``init_from`` dependencies run too).
        overrides: optional function applied to every concrete ``RunConfig`` (e.g. devices).
        train_fn: the training function (``denseloss.training.trainer.train``; tests swap it).
        log: where progress lines go.
        jobs: runs trained at the same time, each in its own process (1 = in this process).
            Small networks use 2 cores better as 2 one-thread runs than as 1 two-thread run;
            results do not depend on ``jobs`` (every run is seeded on its own).
        threads: torch threads per run (each worker process, or this process with
            ``jobs=1``; default: cores // jobs for workers, torch's own for ``jobs=1``).
        tables_only: train nothing; rebuild the tables from the runs already on disk.
        adabn_images: target training images the AdaBN cells re-estimate BatchNorm on.

    Returns:
        ``{"study", "budget", "tables": {...}, "markdown", "seconds"}``; also written to
        ``<out>/<study>/summary.json`` and ``<out>/<study>/table.md``.
    """
    b = BUDGETS[budget] if isinstance(budget, str) else budget
    runs = study_runs(study, b)
    runs = _select(runs, only, study)
    root = Path(out) / study
    seeds = tuple(b.seeds if seeds is None else seeds)
    start = time.perf_counter()
    results: dict[tuple[str, int], dict[str, Any]] = {}
    todo: list[tuple[Run, int, Any]] = []
    derived = [r for r in runs if r.derived_from is not None]
    runs_to_train = [r for r in runs if r.derived_from is None]
    for seed in seeds:
        for run in runs_to_train:
            run_dir = root / run.key / f"seed{seed}"
            done = run_dir / RESULTS
            cfg = _seed_config(run, seed, root, overrides)
            if done.exists():
                res = json.loads(done.read_text())
                changed = _config_changes(cfg, run_dir, res)
                if changed:
                    raise ValueError(
                        f"run_study: {run_dir} holds a finished run of another configuration "
                        f"than study {study!r} defines now ({', '.join(changed)} differ); "
                        "delete that folder to retrain it, or use another out folder."
                    )
                results[(run.key, seed)] = res
                log(f"[{study}] {run.key} seed {seed}: done earlier, skipped")
                continue
            if not tables_only:
                cfg = _continue_or_clear(cfg, run_dir, log, f"[{study}] {run.key} seed {seed}")
            todo.append((run, seed, cfg))

    def finished(run: Run, seed: int, res: dict[str, Any], seconds: float) -> None:
        results[(run.key, seed)] = res
        done = root / run.key / f"seed{seed}" / RESULTS
        if not done.exists():  # the trainer writes it; a custom train_fn may not
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(res, indent=2))
        key, title, _ = run.metrics[0]
        log(
            f"[{study}] {run.key} seed {seed}: test {title} = {metric(res, key):.4g} "
            f"({seconds:.0f} s)"
        )

    if tables_only:  # aggregate what is on disk; missing runs show as "—"
        todo = []
    # Waves: a run starts once the run it is initialised from has finished.
    while todo:
        ready = [t for t in todo if t[0].init_from is None or (t[0].init_from, t[1]) in results]
        if not ready:
            raise RuntimeError(f"run_study: unresolved init_from dependencies in {study!r}.")
        todo = [t for t in todo if t not in ready]
        tasks = [((run, seed), cfg) for run, seed, cfg in ready]
        for (run, seed), res, seconds in _map(train_fn, tasks, jobs, threads):
            finished(run, seed, res, seconds)
    _evaluate_derived(
        study, derived, seeds, root, results, log, tables_only, adabn_images, jobs, threads
    )
    tables = aggregate(runs, results, seeds)
    val_tables = aggregate(runs, results, seeds, split="val")
    markdown = format_tables(study, tables, b, seeds)
    root.mkdir(parents=True, exist_ok=True)
    (root / "table.md").write_text(markdown)
    (root / "table_val.md").write_text(format_tables(study, val_tables, b, seeds, split="val"))
    summary = {
        "study": study,
        "budget": b.__dict__ if not isinstance(budget, str) else budget,
        "seeds": list(seeds),
        "tables": tables,
        "val_tables": val_tables,
        "seconds": time.perf_counter() - start,
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    plot_study(tables, root / "figure.png", title=study)
    summary["markdown"] = markdown
    return summary


def _continue_or_clear(cfg: Any, run_dir: Path, log: Callable[[str], None], name: str) -> Any:
    """A run folder left by a stopped study: resume it from its checkpoint, or clear it.

    The trainer never reuses a folder that holds a run (``training.run_dir``); a study that was
    stopped mid-run continues that run exactly (``train.resume``), and a run stopped before its
    first checkpoint has nothing to continue, so its folder is removed and the run starts over.
    """
    import shutil

    from denseloss.training.run_dir import run_state

    state = run_state(run_dir)
    if state == "resumable":
        log(f"{name}: resuming the stopped run in {run_dir}")
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, resume=str(run_dir)))
    if state == "stale":
        log(f"{name}: removing {run_dir} (stopped before its first checkpoint)")
        shutil.rmtree(run_dir)
    return cfg


def _evaluate_derived(
    study: str,
    derived: list[Run],
    seeds: tuple[int, ...],
    root: Path,
    results: dict[tuple[str, int], dict[str, Any]],
    log: Callable[[str], None],
    tables_only: bool,
    adabn_images: int,
    jobs: int = 1,
    threads: int | None = None,
) -> None:
    """Fill ``results`` for the derived (AdaBN) cells of finished runs, cached next to each run.

    With ``jobs > 1`` the re-evaluations run in worker processes like the training runs.
    """
    todo = []
    for run in derived:
        for seed in seeds:
            base = root / str(run.derived_from) / f"seed{seed}"
            if (run.derived_from, seed) not in results:
                continue
            if tables_only and not (base / RESULTS_ADABN).is_file():
                continue
            todo.append((run, seed, base))

    def done(run: Run, seed: int, res: dict[str, Any], seconds: float) -> None:
        results[(run.key, seed)] = res
        key, title, _ = run.metrics[0]
        log(
            f"[{study}] {run.key} seed {seed}: test {title} = {metric(res, key):.4g} "
            f"({seconds:.0f} s)"
        )

    fn = functools.partial(adabn_results, max_images=adabn_images)
    tasks = [((run, seed), base) for run, seed, base in todo]
    # a single re-evaluation is not worth a worker process
    for (run, seed), res, seconds in _map(fn, tasks, jobs if len(todo) > 1 else 1, threads):
        done(run, seed, res, seconds)


# What defines a run's result: every field of these sections, and of ``train`` only these (its
# other fields are how it ran: threads, devices, logging). ``params.init_from`` is a path that
# moves with the study folder (the dependency itself is the study's structure).
_DEFINING = ("method", "task", "model", "data", "optim", "eval")
_DEFINING_TRAIN = ("train.steps", "train.seed", "train.accumulate")


def _config_changes(cfg: Any, run_dir: Path, res: dict[str, Any]) -> list[str]:
    """The fields in which the finished run in ``run_dir`` differs from ``cfg`` ([] = none).

    Compares the run's ``config.yaml`` with ``cfg`` field by field (``config_changes``, as a
    resume does), the method's hyperparameters as the method resolves them (an explicit value
    equal to the default is the same run), and, where ``results.json`` records them
    (``params``), the values resolved at training time, so a changed default is caught too. A
    folder without ``config.yaml`` (a custom ``train_fn``) is taken as it is.
    """
    from denseloss.config.schema import load_config
    from denseloss.training.run_dir import config_changes

    path = run_dir / "config.yaml"
    if not path.is_file():
        return []
    saved = load_config(path)
    if saved.method != cfg.method:
        return ["method"]
    try:
        old = _resolved(saved, None)
    except ValueError:  # a hyperparameter the method no longer has
        return ["params"]
    new = _resolved(cfg, None)
    changes = [
        k
        for k in config_changes(saved, cfg)
        if k.split(".")[0] in _DEFINING or k in _DEFINING_TRAIN
    ]
    changes += _param_changes(old, new, "")
    if "params" in res:
        changes += [
            c
            for c in _param_changes(_resolved(None, res["params"]), new, " (default)")
            if c.removesuffix(" (default)") not in changes
        ]
    return changes


def _param_changes(old: dict[str, Any], new: dict[str, Any], note: str) -> list[str]:
    return [f"params.{k}{note}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def _resolved(cfg: Any, recorded: dict[str, Any] | None) -> dict[str, Any]:
    """Resolved method hyperparameters of ``cfg`` (or as recorded), without ``init_from``."""
    from denseloss.config.schema import method_config
    from denseloss.training.trainer import resolved_params

    params = dict(recorded) if recorded is not None else resolved_params(method_config(cfg))
    params.pop("init_from", None)
    return params


def _seed_config(run: Run, seed: int, root: Path, overrides: Callable[[Any], Any] | None) -> Any:
    """The concrete config of ``run`` for ``seed`` in the study folder ``root`` (+ overrides)."""
    init_ckpt = None
    if run.init_from is not None:
        init_ckpt = str(root / run.init_from / f"seed{seed}" / "checkpoints" / "last.ckpt")
    cfg = with_seed(run, seed, str(root / run.key / f"seed{seed}"), init_ckpt)
    return overrides(cfg) if overrides is not None else cfg


def _map(
    fn: Callable[[Any], Any], tasks: list[tuple[Any, Any]], jobs: int, threads: int | None
) -> Iterator[tuple[Any, Any, float]]:
    """``(tag, fn(arg), seconds)`` for every ``(tag, arg)`` of ``tasks``, as each finishes.

    ``jobs <= 1``: in this process, with ``threads`` torch threads when given (the same per-run
    thread count a worker gets). Otherwise ``jobs`` spawned worker processes.
    """
    if jobs <= 1:
        if threads is not None:
            _init_worker(threads)
        for tag, arg in tasks:
            yield (tag, *_timed(fn, arg))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads,),
    ) as pool:
        futures = {pool.submit(_timed, fn, arg): tag for tag, arg in tasks}
        for fut in as_completed(futures):
            yield (futures[fut], *fut.result())


def _init_worker(threads: int | None) -> None:
    import os

    import torch

    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // 2))


def _timed(fn: Callable[[Any], dict[str, Any]], cfg: Any) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    return fn(cfg), time.perf_counter() - t0


def study_tasks(
    study: str,
    *,
    budget: str | Budget = "quick",
    out: str | Path = "results",
    seeds: tuple[int, ...] | None = None,
    only: tuple[str, ...] | None = None,
    overrides: Callable[[Any], Any] | None = None,
) -> list[tuple[Run, int, Any]]:
    """Every ``(run, seed, config)`` that :func:`run_study` trains, finished or not, in its order.

    Same arguments as :func:`run_study`. Each config writes to ``<out>/<study>/<run key>/seed<k>``
    and, for a run initialised from another, has ``params["init_from"]`` = that run's
    ``checkpoints/last.ckpt``; cells derived from a trained run (no training) are left out. Used by
    the SLURM launcher (``reproduce/launchers.py``), which needs the same tree as the local runner.
    """
    b = BUDGETS[budget] if isinstance(budget, str) else budget
    runs = [r for r in _select(study_runs(study, b), only, study) if r.derived_from is None]
    root = Path(out) / study
    tasks: list[tuple[Run, int, Any]] = []
    for seed in tuple(b.seeds if seeds is None else seeds):
        for run in runs:
            tasks.append((run, seed, _seed_config(run, seed, root, overrides)))
    return tasks
