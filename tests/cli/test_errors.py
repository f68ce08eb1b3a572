"""Every user mistake at the command line gives one line naming what is wrong, and status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from denseloss.cli.__main__ import main
from tests.data import fixtures_builder as fb


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("errors")
    fb.build_regime_folder(root / "plain", colour=(9, 9, 9), scribbles=False, size=(16, 16))
    broken = root / "broken"
    fb.build_regime_folder(broken, colour=(9, 9, 9), size=(16, 16))
    fb.truncate(broken / "images" / "test_2.png")  # the last file the run would read
    jpeg = root / "jpeg"
    fb.build_regime_folder(jpeg, colour=(9, 9, 9), size=(16, 16))
    (jpeg / "labels" / "val_1.png").unlink()
    fb.write_rgb(jpeg / "labels" / "val_1.jpg", 1, size=(16, 16))
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text("method: [unclosed\n")
    return {"plain": root / "plain", "broken": broken, "jpeg": jpeg, "run": run}


FAST = ["--data.size", "16", "--train.steps", "1", "--train.progress", "false"]

CASES = [
    # parse errors
    ("unknown-flag", ["train", "--nope", "1"], "--nope"),
    ("bad-int", ["train", "--train.steps", "abc"], "--train.steps"),
    ("bad-precision", ["train", "--train.precision", "8bit"], "--train.precision"),
    ("bad-json", ["train", "--params", "{bad"], "--params"),
    ("missing-config", ["train", "--config", "/nonexistent/run.yaml"], "/nonexistent/run.yaml"),
    ("old-flag", ["train", "--data.target_domain", "real"], "--data.target_domain"),
    ("eval-missing-flag", ["eval"], "--run or --checkpoint"),
    ("eval-bad-split", ["eval", "--run", "x", "--split", "train"], "--split"),
    ("data-missing-arg", ["data", "check"], "dataset"),
    ("list-unknown-flag", ["list", "--bogus"], "--bogus"),
    ("reproduce-bad-flag", ["reproduce", "--budget", "huge"], "--budget"),
    # values refused before training
    ("param-type", ["train", "--method", "maxsquare", "--params", '{"lambda_target": "abc"}'],
     "params['lambda_target'] must be float"),
    ("folder-no-root", ["train", "--data.name", "folder"], "data.root must be set"),
    ("no-such-root", ["train", "--data.name", "folder", "--data.root", "/nonexistent/data"],
     "/nonexistent/data"),
    ("domain-off-builtin", ["train", "--data.name", "folder", "--data.root", "{plain}",
     "--data.domain", "real"], "data.domain applies to the built-in data only"),
    ("target-not-uda", ["train", "--data.target.name", "folder"], "data.target applies to UDA"),
    ("data-root-builtin", ["train", "--data.root", "{plain}"], "data.root must be unset"),
    ("threads", ["train", "--train.threads", "0"], "train.threads"),
    # data checked eagerly: before step 1, naming the file
    ("no-scribbles", ["train", "--method", "pce", "--data.name", "folder", "--data.root",
     "{plain}", *FAST], "has no scribble"),
    ("corrupt-test-image", ["train", "--data.name", "folder", "--data.root", "{broken}", *FAST],
     "test_2.png"),
    ("jpeg-label", ["train", "--data.name", "folder", "--data.root", "{jpeg}", *FAST],
     "val_1.jpg: label must be stored losslessly"),
    ("missing-split", ["train", "--data.name", "folder", "--data.root", "{plain}",
     "--data.test_split", "holdout", *FAST], "data.test_split='holdout'"),
    ("eval-bad-config", ["eval", "--run", "{run}"], "config.yaml"),
    ("train-bad-config", ["train", "--config", "{run}/config.yaml"], "config.yaml"),
    ("data-show-no-root", ["data", "show", "folder"], "root must be set"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_line_naming_the_argument(
    argv: list[str],
    expected: str,
    folders: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, path in folders.items():
        argv = [a.replace("{" + name + "}", str(path)) for a in argv]
    if argv[0] == "train":
        argv += ["--train.out_dir", str(tmp_path / "out")]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"denseloss {argv[0]}: error: ")
    assert expected in lines[0]
    assert out == ""
    assert not (tmp_path / "out" / "checkpoints").exists()  # nothing was trained


def test_the_installed_command_reports_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "denseloss.cli", "train", "--train.steps", "abc"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "denseloss train: error: --train.steps: expected int. Got value: abc"
    ]


def test_help_lists_the_methods_and_one_print_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "maxsquare_iw_multi" in out  # the --method help lists the choices
    assert "--print-config" in out
    assert "--print_config" not in out
    assert "--resume" in out
