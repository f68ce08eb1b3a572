"""`denseloss reproduce --launcher slurm`: the job array is valid bash, its tasks run without SLURM.

Each task runs the real ``denseloss train --config ...`` in a subprocess, the way an array task
would (SLURM_ARRAY_TASK_ID set, no srun), and the results land where ``--tables-only`` reads.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from denseloss.cli.app import run
from denseloss.config.schema import config_to_dict, load_config
from denseloss.reproduce import Budget, run_study
from denseloss.reproduce.launchers import write_slurm_array
from denseloss.reproduce.runner import study_tasks

TINY = Budget(
    steps=2,
    adapt_steps=1,
    size=32,
    train_length=8,
    val_length=4,
    test_length=4,
    batch_size=2,
    seeds=(0,),
    fractions=(0.5,),
)


def _two_steps(cfg: Any) -> Any:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2, eval_batches=1))


def _task(script: Path, k: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC"))}
    env.update(SLURM_ARRAY_TASK_ID=str(k), OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)


def test_array_tasks_run_without_slurm_and_land_where_tables_only_reads(tmp_path: Path) -> None:
    out = tmp_path / "results"
    kw: dict[str, Any] = {"budget": TINY, "out": out, "only": ("maxsquare",)}
    written = write_slurm_array(["uda"], overrides=_two_steps, array_limit=2, **kw)
    script, submit = written["script"], written["submit"]
    for path in (script, submit):
        check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    # one task per (run, seed); the adapted run waits in a second wave for its source-only run
    assert [(t.run.key, t.seed, t.wave) for t in written["tasks"]] == [
        ("source_only", 0, 0),
        ("maxsquare", 0, 1),
    ]
    text = submit.read_text()
    assert "--array=0-0%2" in text
    assert "--array=1-1%2" in text
    assert "--dependency=afterok:$previous" in text
    # each task trains exactly the config the local launcher would train, in the same tree
    local = study_tasks("uda", overrides=_two_steps, **kw)
    assert [config_to_dict(load_config(t.config_path)) for t in written["tasks"]] == [
        config_to_dict(cfg) for _, _, cfg in local
    ]

    early = _task(script, 1)  # its init checkpoint does not exist yet
    assert early.returncode == 1
    assert "does not exist yet" in early.stderr
    assert _task(script, 2).returncode == 2  # out of range
    for k in (0, 1):
        done = _task(script, k)
        assert done.returncode == 0, done.stdout + done.stderr
    again = _task(script, 0)
    assert again.returncode == 0
    assert "finished earlier" in again.stdout
    for key in ("source_only", "maxsquare"):
        assert (out / "uda" / key / "seed0" / "results.json").is_file()
        assert load_config(out / "uda" / key / "seed0" / "config.yaml").train.steps == 2

    summary = run_study("uda", tables_only=True, overrides=_two_steps, log=lambda line: None, **kw)
    cells = summary["tables"]["seg"]["cells"]["synthetic→real"]
    for col in ("source_only", "maxsquare"):
        assert cells[col]["miou"]["n"] == 1
        assert 0.0 <= cells[col]["miou"]["mean"] <= 1.0


def test_cli_writes_the_array_with_the_run_layout_and_sbatch_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["reproduce", "uda", "--launcher", "slurm", "--out", str(tmp_path), "--seeds", "0",
            "--accelerator", "cuda", "--devices", "2", "--sbatch", "partition=gpu",
            "--sbatch", "time=12:00:00"]  # fmt: skip
    assert run(argv) == 0
    assert "submit:" in capsys.readouterr().out
    text = (tmp_path / "slurm" / "denseloss-array.sbatch").read_text()
    for line in ("--ntasks-per-node=2", "--gres=gpu:2", "--partition=gpu", "--time=12:00:00"):
        assert f"#SBATCH {line}\n" in text
    assert "--time=04:00:00" not in text  # the user's value replaces the default
    configs = sorted((tmp_path / "slurm" / "configs").glob("uda-*-seed0.yaml"))
    assert configs
    assert {load_config(c).train.devices for c in configs} == {2}
    assert not (tmp_path / "uda").exists()  # nothing was trained
    assert run([*argv[:6], "--sbatch", "partition"]) == 2  # a usage error, on one line
    assert "sbatch options must look like KEY=VALUE" in capsys.readouterr().err
