"""No run is overwritten; ``train --resume <run>`` continues with the run's own config; Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import denseloss.methods as methods_pkg
from denseloss.cli.app import run
from denseloss.config.schema import load_config
from denseloss.training.checkpoint import atomic_save, load_checkpoint
from denseloss.training.run_dir import run_state
from tests.training.tiny_method import TinyMethod

TINY = [
    "--method", "tiny",
    "--data.size", "16",
    "--data.train_length", "8",
    "--data.val_length", "2",
    "--data.test_length", "2",
    "--data.batch_size", "2",
    "--train.eval_every", "0",
    "--train.checkpoint_every", "1",
    "--train.progress", "false",
]  # fmt: skip


@pytest.fixture(autouse=True)
def tiny_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = dict(methods_pkg.METHODS)
    registry["tiny"] = TinyMethod
    monkeypatch.setattr(methods_pkg, "METHODS", registry)


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    # the one error line is the last; Fabric's process summary may precede it
    assert err, "no error printed"
    assert err[-1].startswith("denseloss "), err
    return err[-1]


def test_a_run_folder_is_never_reused_by_a_new_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run(["train", *TINY, "--train.steps", "2", "--train.out_dir", str(out)]) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    # the easy mistake: --config of an old run, which holds its out_dir
    assert run(["train", "--config", str(out / "config.yaml"), "--train.seed", "1"]) == 2
    line = _err_line(capsys)
    assert "train.out_dir must not hold a run" in line
    assert f"--resume {out}" in line
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    assert run_state(out) == "finished"


def test_resume_uses_the_runs_config_and_refuses_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from denseloss.training.trainer import train

    out = tmp_path / "run"
    assert run(["train", *TINY, "--train.steps", "4", "--print-config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    config["train"]["out_dir"] = str(out)
    from denseloss.config.schema import config_from_dict

    assert train(config_from_dict(config), stop_after=2)["stopped_at"] == 2  # "killed" at step 2
    assert run_state(out) == "resumable"
    # a changed hyperparameter is refused, naming it
    assert run(["train", "--resume", str(out), "--optim.lr", "0.5"]) == 2
    line = _err_line(capsys)
    assert "optim.lr 0.01 -> 0.5" in line
    assert "--train.allow_config_change" in line
    # the run's own config: no --config, no method flag, nothing else needed
    assert run(["train", "--resume", str(out), "--train.progress", "false"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 4
    assert load_config(out / "config.yaml").method == "tiny"
    records = [json.loads(x) for x in (out / "resumes.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2
    assert records[-1]["changed"]["train.resume"] == [None, str(out)]
    # an explicit change is accepted and recorded
    argv = ["train", "--train.resume", str(out), "--train.steps", "5",
            "--train.allow_config_change", "true"]  # fmt: skip
    assert run(argv) == 0
    capsys.readouterr()
    records = [json.loads(x) for x in (out / "resumes.jsonl").read_text().splitlines()]
    assert records[-1]["changed"]["train.steps"] == [4, 5]
    assert load_checkpoint(out)["step"] == 5


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_corrupt_checkpoint_is_one_line_without_unsafe_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    out = tmp_path / "run"
    assert run(["train", *TINY, "--train.steps", "1", "--train.out_dir", str(out)]) == 0
    capsys.readouterr()
    ckpt = out / "checkpoints" / "last.ckpt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"")
    for argv in (["eval", "--run", str(out)], ["train", "--resume", str(out)]):
        assert run(argv) == 2
        line = _err_line(capsys)
        assert f"{ckpt} is not a denseloss checkpoint" in line
        assert "weights_only" not in line


def test_stale_temp_files_of_a_killed_save_are_removed(tmp_path: Path) -> None:
    dest = tmp_path / "checkpoints" / "last.ckpt"
    dest.parent.mkdir()
    stale = dest.parent / ".last.ckpt.abc123.tmp"
    stale.write_bytes(b"")  # what SIGKILL during a save leaves
    atomic_save({"x": torch.ones(1)}, dest)
    assert not stale.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["last.ckpt"]


def test_ctrl_c_keeps_a_checkpoint_and_says_how_to_resume(tmp_path: Path) -> None:
    """A real SIGINT to a real ``denseloss train`` process (the README's entry point)."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "denseloss.cli", "train", "--method", "ce",
            "--model.name", "vit", "--data.size", "16", "--data.batch_size", "2",
            "--data.train_length", "8", "--train.steps", "100000", "--train.eval_every", "0",
            "--train.checkpoint_every", "0", "--train.log_every", "1", "--train.threads", "1",
            "--train.out_dir", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 240
    csv = out / "metrics.csv"
    while time.monotonic() < deadline and proc.poll() is None:
        if csv.is_file() and len(csv.read_text().splitlines()) >= 3:  # header + 2 steps
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("denseloss train: error: train: interrupted after step")
    assert f"--resume {out}" in line
    step = load_checkpoint(out)["step"]
    assert f"after step {step};" in line
    assert int(csv.read_text().splitlines()[-1].split(",")[0]) == step  # logs match the weights
    assert "Traceback" not in err


def test_a_run_stopped_before_any_checkpoint_is_not_offered_for_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("step\n1\n")  # what a run killed before its first save left
    assert run_state(out) == "stale"
    assert run(["train", *TINY, "--train.steps", "1", "--train.out_dir", str(out)]) == 2
    line = _err_line(capsys)
    assert "holds no checkpoint, so there is nothing to resume" in line
    assert "--resume" not in line


def test_threads_default_never_exceeds_this_process_cpus() -> None:
    from denseloss.training.cpu import available_cpus, configure_threads

    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 == torch.get_num_threads()
        torch.set_num_threads(available_cpus() + 7)  # what torch picks on a quota'd container
        assert configure_threads(None, processes=1) == available_cpus()
        torch.set_num_threads(1)  # a caller's own choice below the cap is kept
        assert configure_threads(None, processes=2) == 1
    finally:
        torch.set_num_threads(before)


def test_data_show_reads_any_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.data import fixtures_builder as fb

    fb.build_regime_folder(tmp_path / "d", colour=(9, 9, 9), depth=True, size=(16, 16))
    png = tmp_path / "grid.png"
    argv = ["data", "show", "folder", "--root", str(tmp_path / "d"), "--split", "val",
            "--out", str(png), "-n", "2"]  # fmt: skip
    assert run(argv) == 0
    assert capsys.readouterr().out.strip() == str(png)
    assert png.stat().st_size > 1000


def test_results_record_the_precision_and_threads_that_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", *TINY, "--train.steps", "1", "--train.precision", "16-mixed",
            "--train.accelerator", "cpu", "--train.out_dir", str(out)]  # fmt: skip
    assert run(argv) == 0
    capsys.readouterr()
    results = json.loads((out / "results.json").read_text())
    assert results["precision"] == "bf16-mixed"  # CPU autocast has no float16
    assert results["threads"] == torch.get_num_threads()
    assert load_config(out / "config.yaml").train.precision == "16-mixed"  # what was asked
