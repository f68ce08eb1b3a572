"""Built-in SyntheticScenes: determinism, label/scribble/depth/normal contracts, domain shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denseloss.data import DATASETS, SyntheticScenes, build_dataset, show_builtin
from denseloss.data.synthetic import FLOOR, WALL


@pytest.fixture(scope="module")
def train() -> SyntheticScenes:
    return SyntheticScenes("train", size=48, length=16, seed=3)


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_class_attributes():
    assert SyntheticScenes.num_classes == len(SyntheticScenes.class_names) == 6
    assert len(SyntheticScenes.palette) == 6
    assert all(len(c) == 3 for c in SyntheticScenes.palette)
    assert SyntheticScenes.ignore_index == 255
    assert len(SyntheticScenes("train")) == 2000
    assert len(SyntheticScenes("val")) == len(SyntheticScenes("test")) == 200


def test_sample_contract(train):
    s = train[0]
    assert set(s) == {"image", "label", "scribble", "depth", "normal", "valid", "index"}
    assert s["image"].shape == (3, 48, 48)
    assert s["image"].dtype == torch.float32
    assert s["image"].min() >= 0
    assert s["image"].max() <= 1
    assert s["label"].dtype == s["scribble"].dtype == torch.int64
    assert s["depth"].shape == (1, 48, 48)
    assert s["normal"].shape == (3, 48, 48)
    assert s["valid"].dtype == torch.bool
    assert bool(s["valid"].all())
    assert int(s["index"]) == 0


def test_deterministic_and_cache_independent(train):
    fresh = SyntheticScenes("train", size=48, length=16, seed=3, cache=False)
    for i in (0, 5):
        assert _equal(train[i], fresh[i])
        assert _equal(train[i], train[i])  # second read comes from the cache
    assert not torch.equal(train[0]["image"], train[1]["image"])
    other_seed = SyntheticScenes("train", size=48, length=16, seed=4)
    assert not torch.equal(train[0]["image"], other_seed[0]["image"])


def test_cache_is_not_mutated_by_callers(train):
    s = train[2]
    s["label"].fill_(0)
    s["image"].zero_()
    assert train[2]["image"].max() > 0
    assert (train[2]["label"] != 0).any()


def test_splits_are_disjoint():
    def fingerprints(split: str) -> set[bytes]:
        ds = SyntheticScenes(split, size=32, length=12)
        return {ds[i]["image"].numpy().tobytes() for i in range(len(ds))}

    train, val, test = fingerprints("train"), fingerprints("val"), fingerprints("test")
    assert len(train) == 12  # all distinct within a split
    assert not train & val
    assert not train & test
    assert not val & test


def test_labels_range_and_void_band(train):
    seen = set()
    for i in range(len(train)):
        label = train[i]["label"]
        values = set(label.unique().tolist())
        assert values <= set(range(6)) | {255}
        assert {FLOOR, WALL} <= values
        seen |= values
    assert 255 in seen
    assert len(seen - {255}) >= 5
    no_void = SyntheticScenes("train", size=48, length=16, seed=3, void_border=False)
    assert not (no_void[0]["label"] == 255).any()
    band = train[0]["label"] == 255
    assert band.float().mean() < 0.1  # a thin band, not a region
    assert torch.equal(no_void[0]["label"][~band], train[0]["label"][~band])


def test_depth_and_normals_are_exact(train):
    rendered = train.render(0)
    for i in range(4):
        s = train[i]
        assert (s["depth"] > 0).all()
        torch.testing.assert_close(s["normal"].norm(dim=0), torch.ones(48, 48), atol=1e-5, rtol=0)
        floor = s["label"] == FLOOR
        assert (s["normal"][1][floor] < -0.8).all()  # camera y points down: the floor faces up
        assert (s["normal"][2][(s["label"] == FLOOR) | (s["label"] == WALL)] < 0).all()
    # Back-projected floor pixels lie on one plane whose normal is the reported normal.
    K = rendered["intrinsics"]
    v, u = np.mgrid[0:48, 0:48] + 0.5
    z = rendered["depth"].astype(np.float64)
    points = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], -1)
    floor = rendered["instance"] == 0
    n = rendered["normal"][floor].astype(np.float64)
    np.testing.assert_allclose(n, np.broadcast_to(n[0], n.shape), atol=1e-5)
    offsets = points[floor] @ n[0]
    np.testing.assert_allclose(offsets, offsets[0], atol=1e-4)
    assert 1.2 < abs(offsets[0]) < 2.0  # the camera height range (1.3, 1.9) up to float error


def test_scribbles_are_sparse_and_correct(train):
    fractions = []
    for i in range(len(train)):
        s = train[i]
        on = s["scribble"] != 255
        fractions.append(on.float().mean().item())
        assert torch.equal(s["scribble"][on], s["label"][on])
        assert len(s["scribble"][on].unique()) >= 3  # floor, wall and at least one object
    assert 0.01 <= float(np.mean(fractions)) <= 0.06
    again = SyntheticScenes("train", size=48, length=16, seed=3, cache=False)
    assert torch.equal(again[7]["scribble"], train[7]["scribble"])


def test_domain_shift():
    def stats(domain: str) -> tuple[np.ndarray, float]:
        ds = SyntheticScenes("train", domain=domain, size=48, length=12)
        per_class = [[] for _ in range(6)]
        roughness = []
        for i in range(len(ds)):
            s = ds[i]
            for c in range(6):
                mask = s["label"] == c
                if mask.any():
                    per_class[c].append(s["image"][:, mask].mean(1).numpy())
            roughness.append((s["image"][:, :, 1:] - s["image"][:, :, :-1]).abs().mean().item())
        return np.stack([np.mean(p, 0) for p in per_class]), float(np.mean(roughness))

    synthetic, rough_synthetic = stats("synthetic")
    real, rough_real = stats("real")
    shift = np.linalg.norm(synthetic - real, axis=1)
    assert (shift[2:] > 0.1).all(), shift  # every object class changes colour
    assert rough_real > 2 * rough_synthetic  # textures and sensor noise
    same = SyntheticScenes("train", domain="real", size=48, length=2)
    assert set(same[0]["label"].unique().tolist()) <= set(range(6)) | {255}


def test_registry_and_errors(tmp_path):
    assert isinstance(build_dataset("builtin", split="val", size=32, length=2), SyntheticScenes)
    assert DATASETS["builtin"](root=None, split="test", length=3).split == "test"
    with pytest.raises(ValueError, match="builtin"):
        build_dataset("nope")
    with pytest.raises(ValueError, match="split"):
        SyntheticScenes("training")
    with pytest.raises(ValueError, match="domain"):
        SyntheticScenes(domain="photo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        SyntheticScenes(size=8)
    with pytest.raises(IndexError, match="index"):
        SyntheticScenes(length=2)[2]


def test_show_builtin_writes_png(tmp_path):
    from PIL import Image

    out = show_builtin("uda", str(tmp_path / "grid.png"), size=32, n=2)
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[0] > 300
    assert image.shape[1] > 300
    assert image.std() > 20  # not blank
    with pytest.raises(ValueError, match="regime"):
        show_builtin("weak", str(tmp_path / "x.png"))
