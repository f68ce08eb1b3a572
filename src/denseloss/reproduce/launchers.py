"""Sweeps on a cluster: ``denseloss reproduce ... --launcher slurm`` writes a SLURM job array.

One array task per (study, run, seed). Task k runs exactly ``denseloss train --config
<out>/slurm/configs/<study>-<run key>-seed<k>.yaml``, the config the local launcher
(:func:`~denseloss.reproduce.runner.run_study`) would train, so results land in the same tree,
``<out>/<study>/<run key>/seed<k>/results.json``, where ``--tables-only`` (or a plain rerun,
which trains nothing that has finished) finds them.

Runs initialised from another run (UDA's adapted runs start from the same seed's source-only
checkpoint) must wait for it. Tasks are ordered in **waves** — wave 0 trains from scratch, wave
w starts from checkpoints of wave w − 1 — and ``submit.sh`` submits each wave as its own array
over a contiguous index range with ``--dependency=afterok:<previous wave>`` (and
``--kill-on-invalid-dep=yes``, so a failed wave cancels the next instead of leaving it pending).
One script serves every wave; a task also refuses to start while its init checkpoint is missing.

Files written under ``<out>/slurm/``: ``denseloss-array.sbatch``, ``submit.sh``, ``tasks.tsv``
(index, wave, study, run, seed, run directory) and ``configs/``.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from denseloss.config.schema import RunConfig, save_config
from denseloss.reproduce.runner import study_tasks
from denseloss.reproduce.studies import Budget, Run

__all__ = ["ArrayTask", "array_tasks", "write_slurm_array"]

SCRIPT = "denseloss-array.sbatch"
SUBMIT = "submit.sh"


@dataclass(frozen=True)
class ArrayTask:
    """One array task: a (study, run, seed) and the config its ``denseloss train`` reads."""

    study: str  # study name
    run: Run  # the run template
    seed: int  # training seed
    config: RunConfig  # the concrete config (out_dir = run directory)
    config_path: Path  # where that config is written
    wave: int  # 0 = trained from scratch; w = initialised from a run of wave w - 1


def _waves(runs: Sequence[Run]) -> dict[str, int]:
    """Depth of each run in its ``init_from`` chain (0 = no init)."""
    by_key = {r.key: r for r in runs}
    depth: dict[str, int] = {}
    for run in runs:
        d, dep = 0, run.init_from
        while dep is not None:
            d, dep = d + 1, by_key[dep].init_from if dep in by_key else None
        depth[run.key] = d
    return depth


def array_tasks(
    studies: Sequence[str],
    *,
    budget: str | Budget = "quick",
    out: str | Path,
    seeds: tuple[int, ...] | None = None,
    only: tuple[str, ...] | None = None,
    overrides: Callable[[Any], Any] | None = None,
) -> list[ArrayTask]:
    """The tasks of ``studies`` in array order: by wave, then study, seed and run (as run_study).

    ``out`` is made absolute, so the configs hold paths that do not depend on where a task starts.
    """
    root = Path(out).resolve()
    tasks: list[ArrayTask] = []
    for study in studies:
        listed = study_tasks(
            study, budget=budget, out=root, seeds=seeds, only=only, overrides=overrides
        )
        depth = _waves([run for run, _, _ in listed])
        for run, seed, cfg in listed:
            path = root / "slurm" / "configs" / f"{study}-{run.key}-seed{seed}.yaml"
            tasks.append(ArrayTask(study, run, seed, cfg, path, depth[run.key]))
    return sorted(tasks, key=lambda t: t.wave)  # stable: keeps study/seed/run order in a wave


def _directives(tasks: list[ArrayTask], log_dir: Path, sbatch: Sequence[str]) -> list[str]:
    """``#SBATCH`` lines: one node set per task sized from the configs, then the user's options."""
    layouts = {(t.config.train.devices, t.config.train.num_nodes) for t in tasks}
    if len(layouts) > 1:
        raise ValueError(
            "write_slurm_array: every run of one array must use the same train.devices and "
            f"train.num_nodes; got {sorted(layouts)}. Hint: write one array per layout."
        )
    devices, nodes = layouts.pop()
    options = {
        "job-name": "denseloss",
        "nodes": str(nodes),
        "ntasks-per-node": str(devices),  # srun starts one process per device (Fabric's SLURM)
        "cpus-per-task": "4",
        "time": "04:00:00",
        "output": str(log_dir / "%x-%A_%a.out"),
    }
    if any(t.config.train.accelerator == "cuda" for t in tasks):
        options["gres"] = f"gpu:{devices}"  # every process of a node sees the node's GPUs
    for item in sbatch:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9-]*", key) or "\n" in value:
            raise ValueError(
                f"write_slurm_array: sbatch options must look like KEY=VALUE (e.g. "
                f"partition=gpu, account=lab); got {item!r}."
            )
        options[key] = value
    return [f"#SBATCH --{k}={v}" for k, v in options.items()]


def _script(tasks: list[ArrayTask], directives: list[str], executable: str) -> str:
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        "# A denseloss job array (written by `denseloss reproduce ... --launcher slurm`).",
        f"# Submit every wave with `bash {SUBMIT}`; task k runs `denseloss train --config`",
        "# on the k-th config below (run one without SLURM: SLURM_ARRAY_TASK_ID=k bash <this>).",
        *directives,
        "set -euo pipefail",
        f"cd {q(str(Path.cwd()))}",
        f"DENSELOSS=${{DENSELOSS:-{q(executable)}}}",
        "CONFIGS=(",
        *(f"  {q(str(t.config_path))}  # {t.study} {t.run.key} seed {t.seed}" for t in tasks),
        ")",
        "RUN_DIRS=(",
        *(f"  {q(str(t.config.train.out_dir))}" for t in tasks),
        ")",
        "INIT_FROM=(",
        *(f"  {q(str(t.config.params.get('init_from') or ''))}" for t in tasks),
        ")",
        'task="${SLURM_ARRAY_TASK_ID:?set by sbatch --array (see submit.sh)}"',
        'if [ "$task" -lt 0 ] || [ "$task" -ge "${#CONFIGS[@]}" ]; then',
        '  echo "denseloss array: task must be in [0, ${#CONFIGS[@]}); got $task" >&2; exit 2',
        "fi",
        'if [ -f "${RUN_DIRS[$task]}/results.json" ]; then',
        '  echo "denseloss array: task $task finished earlier (${RUN_DIRS[$task]}), skipped"',
        "  exit 0",
        "fi",
        'init="${INIT_FROM[$task]}"',
        'if [ -n "$init" ] && [ ! -f "$init" ]; then',
        '  echo "denseloss array: task $task starts from $init, which does not exist yet" >&2',
        "  exit 1",
        "fi",
        'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
        "# under SLURM, srun starts train.devices × train.num_nodes processes (one per device)",
        'if [ -n "${SLURM_JOB_ID:-}" ]; then',
        '  exec srun "$DENSELOSS" train --config "${CONFIGS[$task]}"',
        "fi",
        'exec "$DENSELOSS" train --config "${CONFIGS[$task]}"',
    ]
    return "\n".join(lines) + "\n"


def _submit(tasks: list[ArrayTask], script: Path, array_limit: int | None, after: str) -> str:
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        "# Submit the job array wave by wave: wave w starts once every task of wave w-1 succeeded.",
        "set -euo pipefail",
        f"cd {q(str(Path.cwd()))}",
        "previous=",
    ]
    limit = f"%{array_limit}" if array_limit else ""
    for wave in sorted({t.wave for t in tasks}):
        ids = [i for i, t in enumerate(tasks) if t.wave == wave]
        span = f"{ids[0]}-{ids[-1]}"
        lines += [
            "dep=${previous:+--dependency=afterok:$previous --kill-on-invalid-dep=yes}",
            f"previous=$(sbatch --parsable --array={span}{limit} $dep {q(str(script))})",
            'previous="${previous%%;*}"',
            f'echo "wave {wave}: tasks {span} as job $previous"',
        ]
    lines.append(f"echo {q('when every task has finished: ' + after)}")
    return "\n".join(lines) + "\n"


def _tables_command(
    studies: Sequence[str],
    budget: str | Budget,
    out: Path,
    seeds: tuple[int, ...] | None,
    only: tuple[str, ...] | None,
) -> str:
    parts = ["denseloss", "reproduce", *studies, "--out", str(out)]
    if isinstance(budget, str):
        parts += ["--budget", budget]
    if seeds:
        parts += ["--seeds", *map(str, seeds)]
    if only:
        parts += ["--only", *only]
    return " ".join(map(shlex.quote, parts))


def write_slurm_array(
    studies: Sequence[str],
    *,
    budget: str | Budget = "quick",
    out: str | Path,
    seeds: tuple[int, ...] | None = None,
    only: tuple[str, ...] | None = None,
    overrides: Callable[[Any], Any] | None = None,
    sbatch: Sequence[str] = (),
    array_limit: int | None = None,
    executable: str | None = None,
) -> dict[str, Any]:
    """Write the configs, the array script and ``submit.sh`` of ``studies`` under ``<out>/slurm``.

    Args:
        studies, budget, out, seeds, only, overrides: as for ``run_study`` (the same tree).
        sbatch: extra or replacing ``#SBATCH`` options as ``KEY=VALUE`` (``partition=gpu``).
        array_limit: at most this many tasks of a wave at once (``--array=a-b%N``).
        executable: the ``denseloss`` command of the tasks (default: the one beside this
            Python, else ``denseloss``; ``DENSELOSS=...`` overrides it at run time).

    Returns:
        ``{"script", "submit", "tasks" (list of ArrayTask), "waves", "tables_command",
        "message"}`` (``message``: what to run next, for the CLI to print).

    Raises:
        ValueError: a malformed sbatch option, a non-positive array_limit, or runs of different
            process layouts (one array has one resource request).
    """
    if array_limit is not None and array_limit < 1:
        raise ValueError(f"write_slurm_array: array_limit must be >= 1; got {array_limit}.")
    root = Path(out).resolve()
    tasks = array_tasks(
        studies, budget=budget, out=root, seeds=seeds, only=only, overrides=overrides
    )
    if not tasks:
        raise ValueError(f"write_slurm_array: studies must have runs; got none for {studies}.")
    slurm = root / "slurm"
    (slurm / "logs").mkdir(parents=True, exist_ok=True)
    for task in tasks:
        task.config_path.parent.mkdir(parents=True, exist_ok=True)
        save_config(task.config, task.config_path)
    if executable is None:
        beside = Path(sys.executable).parent / "denseloss"
        executable = str(beside) if beside.is_file() else "denseloss"
    script = slurm / SCRIPT
    script.write_text(_script(tasks, _directives(tasks, slurm / "logs", sbatch), executable))
    after = _tables_command(studies, budget, root, seeds, only)
    submit = slurm / SUBMIT
    submit.write_text(_submit(tasks, script, array_limit, after))
    rows = ["index\twave\tstudy\trun\tseed\trun_dir"]
    rows += [
        f"{i}\t{t.wave}\t{t.study}\t{t.run.key}\t{t.seed}\t{t.config.train.out_dir}"
        for i, t in enumerate(tasks)
    ]
    (slurm / "tasks.tsv").write_text("\n".join(rows) + "\n")
    waves = len({t.wave for t in tasks})
    message = (
        f"denseloss reproduce: wrote {len(tasks)} array tasks in {waves} wave(s) to {script}\n"
        f"  submit:      bash {shlex.quote(str(submit))}\n"
        f"  one task:    SLURM_ARRAY_TASK_ID=0 bash {shlex.quote(str(script))}\n"
        f"  then tables: {after}"
    )
    return {
        "script": script,
        "submit": submit,
        "tasks": tasks,
        "waves": waves,
        "tables_command": after,
        "message": message,
    }
