from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import denseloss.methods as methods_pkg
from denseloss.cli.app import run
from denseloss.config.schema import load_config
from tests.training.tiny_method import TinyMethod

TINY = [
    "--method", "tiny",
    "--data.size", "32",
    "--data.train_length", "32",
    "--data.val_length", "4",
    "--data.test_length", "4",
    "--data.batch_size", "2",
    "--train.steps", "3",
    "--train.eval_every", "2",
    "--train.log_every", "1",
    "--train.progress", "false",
]  # fmt: skip


@pytest.fixture
def tiny_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = dict(getattr(methods_pkg, "METHODS", {}))
    registry["tiny"] = TinyMethod
    monkeypatch.setattr(methods_pkg, "METHODS", registry, raising=False)


def test_help_is_fast_and_lists_commands() -> None:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "denseloss.cli", "--help"], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "eval", "list", "data", "bench", "reproduce"):
        assert command in proc.stdout
    # lazy imports: no torch in `--help` (torch alone takes seconds to import)
    probe = (
        "import sys; from denseloss.cli.app import run; run(['--help']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
    assert out.strip().endswith("False")
    assert elapsed < 10


def test_unknown_command_and_method_errors(
    capsys: pytest.CaptureFixture[str], tiny_registered: None
) -> None:
    assert run(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert run(["train", "--method", "nope", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "method must be one of" in err
    assert "tiny" in err


def test_unknown_param_lists_valid_keys(
    capsys: pytest.CaptureFixture[str], tiny_registered: None
) -> None:
    assert run(["train", "--method", "tiny", "--params", '{"lamda": 1}', "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "unknown ['lamda']" in err
    assert "width, dropout, nan_at" in err


def test_print_config_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_registered: None
) -> None:
    argv = ["train", *TINY, "--params", '{"width": 4}', "--print-config"]
    assert run(argv) == 0
    first = capsys.readouterr().out
    assert yaml.safe_load(first)["params"] == {"width": 4}
    assert yaml.safe_load(first)["train"]["steps"] == 3
    path = tmp_path / "run.yaml"
    path.write_text(first)
    assert run(["train", "--config", str(path), "--print-config"]) == 0
    assert capsys.readouterr().out == first
    # a flag after --config overrides the file
    assert run(["train", "--config", str(path), "--train.steps", "7", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["steps"] == 7


def test_list_groups_methods_by_regime(
    capsys: pytest.CaptureFixture[str], tiny_registered: None
) -> None:
    assert run(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    full = lines.index("  full:")
    semi = lines.index("  semi:")
    tiny = next(i for i, line in enumerate(lines) if line.strip().startswith("tiny "))
    assert full < tiny < semi
    assert "width=8" in lines[tiny]
    datasets = next(line for line in lines if line.startswith("data sets:"))
    assert "builtin" in datasets.removeprefix("data sets: ").split(", ")


def test_train_then_eval_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_registered: None
) -> None:
    out_dir = tmp_path / "run"
    assert run(["train", *TINY, "--train.out_dir", str(out_dir)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3
    assert 0.0 <= summary["val"]["miou"] <= 1.0
    for name in ("config.yaml", "metrics.csv", "results.json", "curves.png"):
        assert (out_dir / name).is_file(), name
    assert load_config(out_dir / "config.yaml").train.out_dir == str(out_dir)

    assert run(["eval", "--run", str(out_dir), "--split", "test"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 3
    # the eval of the final checkpoint reproduces the test metrics the trainer reported
    assert result["metrics"]["miou"] == pytest.approx(summary["test"]["miou"], abs=1e-12)
    picture = Path(result["pictures"][0])
    assert picture.is_file()
    assert picture.stat().st_size > 1000
    assert (out_dir / "eval" / "eval_test.json").is_file()


def test_eval_protocol_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_registered: None
) -> None:
    """``--eval.*`` replaces the run's protocol and writes beside, not over, its own scores."""
    out_dir = tmp_path / "run"
    assert run(["train", *TINY, "--train.out_dir", str(out_dir)]) == 0
    capsys.readouterr()
    assert run(["eval", "--run", str(out_dir), "--split", "test"]) == 0
    whole = json.loads(capsys.readouterr().out)
    # one scale, no flip: the same predictions as the whole image
    argv = ["--eval.mode", "multiscale", "--eval.scales", "1.0", "--eval.flip", "false"]
    assert run(["eval", "--run", str(out_dir), "--split", "test", *argv]) == 0
    single = json.loads(capsys.readouterr().out)
    assert single["eval"]["mode"] == "multiscale"
    assert single["eval"]["scales"] == [1.0]
    assert single["metrics"]["miou"] == pytest.approx(whole["metrics"]["miou"], abs=1e-12)
    argv = ["--eval.mode", "multiscale", "--eval.scales", "0.5", "1.0", "--eval.flip", "true"]
    assert run(["eval", "--run", str(out_dir), "--split", "test", *argv]) == 0
    flipped = json.loads(capsys.readouterr().out)
    assert flipped["eval"]["flip"] is True
    assert flipped["eval"]["scales"] == [0.5, 1.0]
    names = sorted(p.name for p in (out_dir / "eval").glob("eval_*.json"))
    assert names == [
        "eval_test-multiscale0.5_1-flip.json",
        "eval_test-multiscale1.json",
        "eval_test.json",
    ]
    assert json.loads((out_dir / "eval" / "eval_test.json").read_text())["eval"]["mode"] == "whole"
    # a bad value names the flag
    assert run(["eval", "--run", str(out_dir), "--eval.flip", "maybe"]) == 2
    assert "--eval.flip" in capsys.readouterr().err
    assert run(["eval", "--run", str(out_dir), "--eval.mode", "tiles"]) == 2
    assert "--eval.mode" in capsys.readouterr().err


def test_eval_missing_run_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["eval", "--run", str(tmp_path / "absent")]) == 2  # a usage error: bad path
    err = capsys.readouterr().err
    assert "path must be" in err
    assert str(tmp_path / "absent") in err
