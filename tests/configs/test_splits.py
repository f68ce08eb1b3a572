"""Semi splits: seeded, written by each run, read back (denseloss and UniMatch formats)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from denseloss.config.schema import DataConfig
from denseloss.data.errors import DataError
from denseloss.training.streams import (
    build_split,
    read_split_list,
    semi_split,
    source_of,
    write_split,
)
from tests.data.fixtures_builder import build_regime_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[DataConfig, object, list[str]]:
    root = tmp_path_factory.mktemp("semi")
    stems = build_regime_folder(
        root, colour=(90, 40, 10), splits={"train": 16, "val": 2, "test": 2}
    )
    cfg = DataConfig(name="folder", root=str(root), labeled_fraction=0.25, seed=3)
    return cfg, build_split(cfg, source_of(cfg), "train"), stems["train"]


def test_fraction_split_is_reproducible_from_its_seed(folder) -> None:
    cfg, train, _ = folder
    first = semi_split(cfg, train)
    assert semi_split(cfg, train)[:2] == first[:2]  # same seed, same split
    assert len(first[0]) == 4
    assert sorted(first[0] + first[1]) == list(range(16))
    other = semi_split(dataclasses.replace(cfg, seed=4), train)
    assert other[0] != first[0]


def test_written_split_reads_back_to_the_same_subsets(folder, tmp_path: Path) -> None:
    cfg, train, stems = folder
    labeled, unlabeled, how = semi_split(cfg, train)
    ids = {"labeled": [stems[i] for i in labeled], "unlabeled": [stems[i] for i in unlabeled]}
    lab_path, _unlab_path = write_split(tmp_path, ids, how)
    assert read_split_list(lab_path) == ids["labeled"]
    again = semi_split(dataclasses.replace(cfg, labeled_list=str(lab_path), seed=99), train)
    assert again[:2] == (labeled, unlabeled)


def test_unimatch_lists_are_read_as_given(folder, tmp_path: Path) -> None:
    cfg, train, stems = folder
    (tmp_path / "labeled.txt").write_text(
        "".join(f"images/{s}.png labels/{s}.png\n" for s in stems[:3])
    )
    (tmp_path / "unlabeled.txt").write_text("".join(f"images/{s}.png\n" for s in stems[5:9]))
    labeled, unlabeled, how = semi_split(
        dataclasses.replace(cfg, labeled_list=str(tmp_path / "labeled.txt")), train
    )
    assert (labeled, unlabeled) == ([0, 1, 2], [5, 6, 7, 8])
    assert "unlabeled.txt" in how
    (tmp_path / "unlabeled.txt").write_text(f"images/{stems[1]}.png\n")
    with pytest.raises(DataError, match="must not repeat labelled samples"):
        semi_split(dataclasses.replace(cfg, labeled_list=str(tmp_path / "labeled.txt")), train)
    (tmp_path / "labeled.txt").write_text("images/nope.png labels/nope.png\n")
    with pytest.raises(DataError, match="unknown, first 'nope'"):
        semi_split(dataclasses.replace(cfg, labeled_list=str(tmp_path / "labeled.txt")), train)
