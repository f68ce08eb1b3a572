"""Every regime on the user's own ``folder`` data, driven through ``denseloss train|eval``.

The UDA test would have caught the silent source-as-target bug: source and target images have
different flat colours, and a recording method asserts where every training and evaluation
image came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

import denseloss.methods as methods_pkg
from denseloss.cli.app import run
from tests.data import fixtures_builder as fb
from tests.training.tiny_method import TinyMethod

RED, BLUE = (220, 20, 20), (20, 20, 220)
SIZE = (16, 16)
FAST = [
    "--data.size", "16",
    "--data.batch_size", "2",
    "--data.eval_batch_size", "2",
    "--train.steps", "2",
    "--train.eval_every", "0",
    "--train.checkpoint_every", "0",
    "--train.progress", "false",
]  # fmt: skip


def _colour(images: torch.Tensor) -> str:
    """'red' or 'blue': which flat colour a batch of fixture images has (every image)."""
    r, b = images[:, 0].mean((1, 2)), images[:, 2].mean((1, 2))
    if bool((r > b + 0.3).all()):
        return "red"
    if bool((b > r + 0.3).all()):
        return "blue"
    return "mixed"


class RecordingUDA(TinyMethod):
    """Source-only CE through the UDA streams; records the colour of everything it sees."""

    name = "rec_uda"
    regime = "uda"
    seen: ClassVar[dict[str, list[Any]]] = {}

    def _batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        assert set(batch) == {"source", "target"}
        assert "label" not in batch["target"]  # the target's labels never reach training
        self.seen["source"].append(_colour(batch["source"]["image"]))
        self.seen["target"].append(_colour(batch["target"]["image"]))
        return batch["source"]

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        self.seen["eval"].append((_colour(image), image.shape[0]))
        return super().predict(image)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    registry = dict(methods_pkg.METHODS)
    registry["rec_uda"] = RecordingUDA
    monkeypatch.setattr(methods_pkg, "METHODS", registry)
    RecordingUDA.seen = {"source": [], "target": [], "eval": []}
    return RecordingUDA.seen


def _results(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / "results.json").read_text())


def test_uda_target_stream_and_evaluation_come_from_the_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recording: dict[str, list[Any]]
) -> None:
    src, tgt, out = tmp_path / "src", tmp_path / "tgt", tmp_path / "run"
    fb.build_regime_folder(src, colour=RED, size=SIZE)
    fb.build_regime_folder(tgt, colour=BLUE, splits={"train": 4, "val": 2, "test": 3}, size=SIZE)
    argv = ["train", "--method", "rec_uda", *FAST, "--train.out_dir", str(out),
            "--data.name", "folder", "--data.root", str(src),
            "--data.target.name", "folder", "--data.target.root", str(tgt)]  # fmt: skip
    assert run(argv) == 0, capsys.readouterr().err
    assert recording["source"] == ["red", "red"]
    assert recording["target"] == ["blue", "blue"]
    # final evaluation: the target's 2 val + 3 test images (batches 2 | 2, 1), all blue
    assert [c for c, _ in recording["eval"]] == ["blue"] * 3
    assert sum(n for _, n in recording["eval"]) == 5
    res = _results(out)
    assert res["eval_domain"] == f"folder:{tgt}"
    assert res["data"]["train"] == {"data_set": f"folder:{src}", "split": "train", "samples": 6}
    assert res["data"]["target_train"]["samples"] == 4
    capsys.readouterr()

    # `denseloss eval` scores the target by default, and any other data set on request
    recording["eval"].clear()
    assert run(["eval", "--run", str(out), "--split", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["data_set"] == f"folder:{tgt}"
    assert {c for c, _ in recording["eval"]} == {"blue"}
    recording["eval"].clear()
    assert run(["eval", "--run", str(out), "--split", "test", "--data.root", str(src)]) == 0
    cross = json.loads(capsys.readouterr().out)
    assert cross["data_set"] == f"folder:{src}"
    assert {c for c, _ in recording["eval"]} == {"red"}
    assert (out / "eval" / "eval_test-folder-src.json").is_file()
    assert (out / "eval" / "eval_test.json").is_file()  # the target's result is not replaced


def test_uda_on_a_layout_without_target_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recording: dict[str, list[Any]]
) -> None:
    fb.build_regime_folder(tmp_path / "src", colour=RED, size=SIZE)
    argv = ["train", "--method", "rec_uda", *FAST, "--data.name", "folder",
            "--data.root", str(tmp_path / "src"),
            "--train.out_dir", str(tmp_path / "r")]  # fmt: skip
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "data.target.name must be set" in err
    assert "\n" not in err
    same = [*argv, "--data.target.name", "folder", "--data.target.root", str(tmp_path / "src")]
    assert run(same) == 2
    assert "data.target must differ from the source" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("extra", "folder", "expected"),
    [
        pytest.param(["--method", "ce", "--model.name", "vit"], {}, {"samples": 6}, id="full"),
        pytest.param(
            ["--method", "ce_labeled_only", "--model.name", "vit"],
            {"labels": {"train_0", "train_3", "val_0", "val_1", "test_0", "test_1", "test_2"}},
            {"labeled": 2, "unlabeled": 4, "labeled_by": "label files present"},
            id="semi-label-files",
        ),
        pytest.param(
            ["--method", "pce", "--model.name", "vit"], {}, {"scribbles": "dataset"},
            id="scribble-files",
        ),
        pytest.param(
            ["--method", "pce", "--model.name", "vit", "--data.scribbles", "derived"],
            {"scribbles": False},
            {"scribbles": "derived"},
            id="scribble-derived",
        ),
        pytest.param(
            ["--method", "ce", "--task", "depth", "--model.name", "unet",
             "--model.kwargs", '{"widths": [4, 8]}'],
            {"labels": False, "scribbles": False, "depth": True},
            {"samples": 6},
            id="depth",
        ),
        pytest.param(
            ["--method", "ce", "--task", "normals", "--model.name", "unet",
             "--model.kwargs", '{"widths": [4, 8]}'],
            {"labels": False, "scribbles": False, "normals": True},
            {"samples": 6},
            id="normals",
        ),
    ],
)  # fmt: skip
def test_each_regime_trains_on_a_folder(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    folder: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    root, out = tmp_path / "data", tmp_path / "run"
    fb.build_regime_folder(root, colour=RED, size=SIZE, **folder)
    argv = ["train", *extra, *FAST, "--data.name", "folder", "--data.root", str(root),
            "--train.out_dir", str(out)]  # fmt: skip
    assert run(argv) == 0, capsys.readouterr().err
    res = _results(out)
    assert res["steps"] == 2
    recorded = {**res["data"], **res["data"]["train"]}
    assert {k: recorded[k] for k in expected} == expected
    assert res["eval_domain"] == f"folder:{root}"
    assert res["test"]  # evaluated on the folder's own test split


def test_semi_labelled_list_and_length_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, out = tmp_path / "data", tmp_path / "run"
    fb.build_regime_folder(root, colour=RED, size=SIZE, splits={"train": 8, "val": 2, "test": 2})
    listing = tmp_path / "labelled.txt"
    listing.write_text("train_1\ntrain_4\n")
    argv = ["train", "--method", "ce_labeled_only", "--model.name", "vit", *FAST,
            "--data.name", "folder", "--data.root", str(root), "--data.labeled_list", str(listing),
            "--data.train_length", "6", "--train.out_dir", str(out)]  # fmt: skip
    assert run(argv) == 0, capsys.readouterr().err
    data = _results(out)["data"]
    assert data["train"]["samples"] == 6  # capped at the first 6 of 8
    assert (data["labeled"], data["unlabeled"]) == (2, 4)
    assert data["labeled_by"] == f"list {listing}"
    listing.write_text("train_7\n")  # beyond the cap: not a training sample of this run
    assert run([*argv[:-1], str(tmp_path / "run2")]) == 2
    assert "train_7" in capsys.readouterr().err


def test_resize_trains_and_evaluates_mixed_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    fb.build_regime_folder(root, colour=RED, size=(20, 24))
    fb.write_rgb(root / "images" / "val_1.png", 3, size=(16, 16))  # another size in val
    fb.write_gray_png(root / "labels" / "val_1.png", torch.zeros(16, 16, dtype=torch.uint8).numpy())
    fb.write_gray_png(root / "scribbles" / "val_1.png", torch.zeros(16, 16).numpy())
    base = ["train", "--method", "ce", "--model.name", "vit", *FAST, "--data.name", "folder",
            "--data.root", str(root)]  # fmt: skip
    assert run([*base, "--train.out_dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "data.val_split images must share one size" in err
    assert "--data.resize" in err
    assert not (tmp_path / "a").exists()
    assert run([*base, "--data.resize", "[16, 16]", "--train.out_dir", str(tmp_path / "b")]) == 0
    assert _results(tmp_path / "b")["data"]["resize"] == [16, 16]
