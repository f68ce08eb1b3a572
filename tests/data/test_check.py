"""Eager validation (``check_dataset``, ``denseloss data check``), derived scribbles, views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from denseloss.cli.app import run
from denseloss.data.check import check_dataset, image_size
from denseloss.data.errors import DataError
from denseloss.data.io import read_index_png
from denseloss.data.layouts import FolderDataset
from denseloss.data.synthetic import SyntheticScenes
from denseloss.data.views import DatasetView, derive_scribbles, has_label, sample_id
from tests.data import fixtures_builder as fb


def test_report_counts_classes_and_ignore(tmp_path: Path) -> None:
    fb.build_regime_folder(tmp_path, colour=(50, 60, 70), splits={"train": 3}, size=(16, 16))
    report = check_dataset(FolderDataset(tmp_path, "train"), role="train", require=("label",))
    assert report.errors == []
    assert report.samples == 3
    assert report.keys == {"image": 3, "label": 3, "scribble": 3}
    assert dict(report.sizes) == {(16, 16): 3}
    # fixture labels: 8-px runs cycling 0, 1, 2 shifted by k; two void pixels per image
    labels = [read_index_png(tmp_path / "labels" / f"train_{k}.png") for k in range(3)]
    expected = np.bincount(np.concatenate([x[x != 255] for x in labels]), minlength=3)
    np.testing.assert_array_equal(report.class_pixels, expected)
    assert report.ignore_pixels == 6
    assert report.ignore_fraction == pytest.approx(6 / (3 * 256))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate-image", "cannot decode image"),
        ("truncate-jpeg", "JPEG is truncated"),
        ("label-range", "label values must be in [0, 3)"),
        ("label-size", "size must equal the image's (16, 16)"),
        ("label-rgb", "single-channel index PNG"),
    ],
)
def test_each_problem_names_the_file(tmp_path: Path, damage: str, message: str) -> None:
    fb.build_regime_folder(tmp_path, colour=(50, 60, 70), splits={"train": 2}, size=(16, 16))
    image, label = tmp_path / "images" / "train_1.png", tmp_path / "labels" / "train_1.png"
    bad = label
    if damage == "truncate-image":
        fb.truncate(image)
        bad = image
    elif damage == "truncate-jpeg":
        image.unlink()
        bad = tmp_path / "images" / "train_1.jpg"
        fb.write_rgb(bad, 0, size=(64, 64))  # big enough that the header survives the cut
        fb.truncate(bad, 0.9)
    elif damage == "label-range":
        fb.write_gray_png(label, np.full((16, 16), 7))
    elif damage == "label-size":
        fb.write_gray_png(label, np.zeros((16, 12)))
    else:
        fb.write_rgb(label, 0, size=(16, 16))
    report = check_dataset(FolderDataset(tmp_path, "train"), role="train")
    assert report.samples == 1
    assert len(report.errors) == 1
    assert str(bad) in report.errors[0]
    assert message in report.errors[0]


def test_image_size_reads_headers_only(tmp_path: Path) -> None:
    fb.write_rgb(tmp_path / "a.png", 0, size=(5, 7))
    fb.write_rgb(tmp_path / "b.jpg", 0, size=(6, 9))
    np.save(tmp_path / "c.npy", np.zeros((4, 3, 3), dtype=np.float32))
    assert [image_size(tmp_path / n) for n in ("a.png", "b.jpg", "c.npy")] == [
        (5, 7),
        (6, 9),
        (4, 3),
    ]
    with pytest.raises(FileNotFoundError, match=r"d\.png"):
        image_size(tmp_path / "d.png")


def test_data_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fb.build_regime_folder(tmp_path, colour=(50, 60, 70), size=(16, 16))
    assert run(["data", "check", "folder", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 classes (background, road, car)" in out
    train = next(line for line in out.splitlines() if line.strip().startswith("train"))
    assert "6 samples" in train
    assert "classes present: 3/3" in train
    assert "ignore: 0.8 %" in train  # 2 of 256 pixels per image
    assert out.strip().endswith("OK: no problems found.")
    fb.truncate(tmp_path / "labels" / "val_0.png")
    (tmp_path / "splits" / "test.txt").unlink()
    assert run(["data", "check", "folder", "--root", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert f"error: {tmp_path / 'labels' / 'val_0.png'}" in out
    assert "test          cannot be indexed" in out
    assert out.strip().endswith("2 problem(s) found.")


def test_builtin_is_counted_without_rendering() -> None:
    report = check_dataset(SyntheticScenes("val", size=16, length=5), role="val")
    assert report.samples == 5
    assert report.errors == []


def test_derived_scribbles_lie_on_the_label_and_are_deterministic() -> None:
    label = np.zeros((32, 32), dtype=np.int64)
    label[:, 16:] = 1
    label[10:20, 4:10] = 2
    label[0, :] = 255
    a = derive_scribbles(label, seed=0, index=3, width=2)
    b = derive_scribbles(label, seed=0, index=3, width=2)
    np.testing.assert_array_equal(a, b)
    on = a != 255
    assert set(np.unique(a[on]).tolist()) == {0, 1, 2}  # one stroke per region
    np.testing.assert_array_equal(a[on], label[on])  # every stroke pixel is correct
    assert not on[0].any()  # never on void
    assert 0 < on.mean() < 0.2
    assert not np.array_equal(a, derive_scribbles(label, seed=1, index=3, width=2))


def test_view_caps_resizes_and_keeps_attributes(tmp_path: Path) -> None:
    fb.build_regime_folder(
        tmp_path, colour=(50, 60, 70), splits={"train": 4}, labels={"train_0", "train_2"},
        size=(12, 16),
    )  # fmt: skip
    base = FolderDataset(tmp_path, "train")
    view = DatasetView(base, indices=[1, 2], size=(6, 8))
    assert len(view) == 2
    assert view.num_classes == 3
    assert view.class_names == base.class_names
    sample = view[1]
    assert sample["image"].shape == (3, 6, 8)
    assert sample["label"].shape == (6, 8)
    assert sample["label"].dtype == torch.int64
    assert [sample_id(view, i) for i in range(2)] == ["train_1", "train_2"]
    assert [has_label(view, i) for i in range(2)] == [False, True]
    assert "label" not in view[0]


def test_jpeg_label_is_refused(tmp_path: Path) -> None:
    fb.write_rgb(tmp_path / "x.jpg", 0)
    with pytest.raises(DataError, match=r"x\.jpg: label must be stored losslessly"):
        read_index_png(tmp_path / "x.jpg")
