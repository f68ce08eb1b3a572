"""Joint transforms: geometry of every key, padding, reproducibility, no in-place edits."""

from __future__ import annotations

import pytest
import torch

from denseloss.data import (
    ColorJitter,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    SyntheticScenes,
)


@pytest.fixture(scope="module")
def sample() -> dict[str, torch.Tensor]:
    return SyntheticScenes("val", size=32, length=1)[0]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pipeline() -> Compose:
    return Compose(
        [
            RandomScale(0.75, 1.5),
            RandomCrop(28),
            RandomHorizontalFlip(),
            ColorJitter(0.3, 0.3, 0.3),
        ]
    )


def test_flip_mirrors_every_key_and_negates_normal_x(sample):
    out = RandomHorizontalFlip(p=1.0)(sample, _gen())
    for key in ("image", "label", "scribble", "depth", "valid"):
        assert torch.equal(out[key], sample[key].flip(-1)), key
    assert torch.equal(out["normal"][0], -sample["normal"][0].flip(-1))
    assert torch.equal(out["normal"][1:], sample["normal"][1:].flip(-1))
    assert torch.equal(out["index"], sample["index"])
    assert RandomHorizontalFlip(p=0.0)(sample, _gen())["image"] is sample["image"]


def test_crop_padding_is_marked_invalid(sample):
    out = RandomCrop(40)(sample, _gen(1))
    assert out["image"].shape == (3, 40, 40)
    assert out["valid"].shape == (40, 40)
    pad = ~out["valid"]
    assert int(pad.sum()) == 40 * 40 - 32 * 32
    assert (out["label"][pad] == 255).all()
    assert (out["scribble"][pad] == 255).all()
    assert (out["depth"][0][pad] == 0).all()
    assert (out["normal"][:, pad] == 0).all()
    assert (out["image"][:, pad] == 0).all()
    assert torch.equal(out["label"][out["valid"]], sample["label"].flatten())  # nothing lost
    assert out["label"].dtype == torch.int64
    assert out["valid"].dtype == torch.bool


def test_crop_without_padding_is_a_window(sample):
    out = RandomCrop((20, 24))(sample, _gen(2))
    assert out["valid"].all()
    assert out["label"].shape == (20, 24)
    # find the window: the depth map is continuous, so its top-left value pins the offset
    hits = (sample["depth"][0] == out["depth"][0, 0, 0]).nonzero()
    top, left = hits[0].tolist()
    assert torch.equal(out["normal"], sample["normal"][:, top : top + 20, left : left + 24])
    no_valid = {k: v for k, v in sample.items() if k != "valid"}
    assert RandomCrop(40)(no_valid, _gen())["valid"].sum() == 32 * 32


def test_scale_resamples_consistently(sample):
    out = RandomScale(1.5, 1.5)(sample, _gen())
    assert out["image"].shape == (3, 48, 48)
    assert out["label"].shape == (48, 48)
    assert set(out["label"].unique().tolist()) <= set(sample["label"].unique().tolist())
    assert set(out["depth"].unique().tolist()) <= set(sample["depth"].unique().tolist())
    norm = out["normal"].norm(dim=0)
    torch.testing.assert_close(norm, torch.ones_like(norm), atol=1e-5, rtol=0)
    assert out["valid"].dtype == torch.bool
    assert out["scribble"].dtype == torch.int64
    assert out["image"].min() >= 0
    assert out["image"].max() <= 1
    small = RandomScale(0.5, 0.5)(sample, _gen())
    assert small["depth"].shape == (1, 16, 16)


def test_color_jitter_touches_only_the_image(sample):
    out = ColorJitter(0.4, 0.4, 0.4)(sample, _gen())
    assert not torch.equal(out["image"], sample["image"])
    assert out["image"].min() >= 0
    assert out["image"].max() <= 1
    for key in ("label", "depth", "normal", "scribble", "valid"):
        assert out[key] is sample[key]
    assert torch.equal(ColorJitter()(sample, _gen())["image"], sample["image"])  # identity


def test_normalize(sample):
    out = Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(sample)
    torch.testing.assert_close(out["image"], sample["image"] * 2 - 1)


def test_reproducible_from_the_generator_only(sample):
    torch.manual_seed(123)
    a = _pipeline()(sample, _gen(7))
    torch.manual_seed(456)  # the global RNG must not matter
    b = _pipeline()(sample, _gen(7))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    outputs = [_pipeline()(sample, _gen(s))["image"] for s in range(4)]
    assert any(not torch.equal(outputs[0], o) for o in outputs[1:])


def test_input_is_not_modified(sample):
    before = {k: v.clone() for k, v in sample.items()}
    _pipeline()(sample, _gen(3))
    RandomHorizontalFlip(p=1.0)(sample, _gen())
    for key, value in before.items():
        assert torch.equal(sample[key], value), key


def test_errors(sample):
    with pytest.raises(TypeError, match="generator"):
        RandomHorizontalFlip()(sample, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_scale"):
        RandomScale(2.0, 1.0)
    with pytest.raises(ValueError, match="size"):
        RandomCrop((0, 4))
    with pytest.raises(ValueError, match="brightness"):
        ColorJitter(brightness=1.5)
    with pytest.raises(ValueError, match="image"):
        RandomCrop(4)({"label": sample["label"]}, _gen())
    with pytest.raises(ValueError, match="std"):
        Normalize(std=(1.0, 0.0, 1.0))
