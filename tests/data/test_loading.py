"""Streams: resumable sampler, worker-independent batches, DDP shares, paired streams, splits."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import Dataset

from denseloss.data import (
    Compose,
    InfiniteSampler,
    PairedStream,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    SyntheticScenes,
    labeled_split,
    make_eval_loader,
    make_stream,
)


class Toy(Dataset):
    """Sample i has image = i everywhere and a label, for cheap stream checks."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "image": torch.full((3, 4, 4), float(i)),
            "label": torch.full((4, 4), i % 3, dtype=torch.int64),
            "index": torch.tensor(i),
        }


def _take(iterator, k: int) -> list:
    return list(itertools.islice(iterator, k))


def test_sampler_epochs_are_permutations():
    draws = _take(iter(InfiniteSampler(7, seed=1)), 21)
    assert [d for _, d in draws] == list(range(21))
    epochs = [sorted(i for i, _ in draws[e * 7 : (e + 1) * 7]) for e in range(3)]
    assert all(e == list(range(7)) for e in epochs)
    assert [i for i, _ in draws[:7]] != [i for i, _ in draws[7:14]]  # reshuffled per epoch
    assert _take(iter(InfiniteSampler(7, seed=1)), 21) == draws
    assert _take(iter(InfiniteSampler(7, seed=2)), 21) != draws


def test_sampler_resume_skips_exactly():
    full = _take(iter(InfiniteSampler(5, seed=3)), 17)
    first = InfiniteSampler(5, seed=3)
    _take(iter(first), 6)
    state = first.state_dict()
    assert state["position"] == 6
    resumed = InfiniteSampler(5, seed=3)
    resumed.load_state_dict(state)
    assert _take(iter(resumed), 11) == full[6:]
    with pytest.raises(ValueError, match="seed"):
        InfiniteSampler(5, seed=4).load_state_dict(state)


def test_ddp_ranks_partition_the_global_stream():
    world = 3
    global_stream = _take(iter(InfiniteSampler(10, seed=0)), 30)
    shares = [
        _take(iter(InfiniteSampler(10, seed=0, rank=r, world_size=world)), 10) for r in range(3)
    ]
    ids = [d for share in shares for _, d in share]
    assert sorted(ids) == list(range(30))  # covered, no overlap
    for r, share in enumerate(shares):
        assert share == global_stream[r::world]
    with pytest.raises(ValueError, match="rank"):
        InfiniteSampler(10, seed=0, rank=3, world_size=3)


def _aug() -> Compose:
    return Compose([RandomScale(0.8, 1.25), RandomCrop(24), RandomHorizontalFlip()])


def _assert_batches_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), key


@pytest.fixture(scope="module")
def scenes() -> SyntheticScenes:
    return SyntheticScenes("val", size=24, length=10)


def test_batches_do_not_depend_on_num_workers(scenes):
    kw = {"batch_size": 3, "seed": 5, "transform": _aug()}
    zero = _take(make_stream(scenes, num_workers=0, **kw), 5)
    two = _take(make_stream(scenes, num_workers=2, **kw), 5)
    _assert_batches_equal(zero, two)
    assert zero[0]["image"].shape == (3, 3, 24, 24)


def test_stream_resume_is_bit_exact(scenes):
    kw = {"batch_size": 4, "seed": 2, "transform": _aug()}
    full = _take(make_stream(scenes, **kw), 6)
    first = make_stream(scenes, **kw)
    _take(first, 2)
    state = first.state_dict()
    assert state == {"position": 8}
    resumed = make_stream(scenes, **kw)
    resumed.load_state_dict(state)
    _assert_batches_equal(_take(resumed, 4), full[2:])
    _assert_batches_equal(_take(make_stream(scenes, start=8, **kw), 4), full[2:])


def test_stream_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    next(make_stream(Toy(5), batch_size=2, seed=0))
    assert torch.equal(torch.rand(3), expected)


def test_drop_keys_and_ddp_stream():
    batch = next(make_stream(Toy(6), batch_size=2, seed=0, drop_keys=("label",)))
    assert "label" not in batch
    assert "image" in batch
    single = _take(make_stream(Toy(6), batch_size=1, seed=0), 6)
    ranks = [
        _take(make_stream(Toy(6), batch_size=1, seed=0, rank=r, world_size=2), 3) for r in (0, 1)
    ]
    interleaved = [b["index"] for pair in zip(*ranks) for b in pair]
    assert torch.equal(torch.cat(interleaved), torch.cat([b["index"] for b in single]))
    with pytest.raises(TypeError, match="drop_keys"):
        make_stream(Toy(2), batch_size=1, seed=0, drop_keys="label")


def test_paired_stream_cycles_and_resumes():
    def paired() -> PairedStream:
        return PairedStream(
            {
                "labeled": make_stream(Toy(2), batch_size=2, seed=0),
                "unlabeled": make_stream(Toy(9), batch_size=3, seed=1, drop_keys=("label",)),
            }
        )

    full = _take(paired(), 6)
    assert set(full[0]) == {"labeled", "unlabeled"}
    assert "label" not in full[0]["unlabeled"]
    labeled_seen = torch.cat([b["labeled"]["index"] for b in full])
    assert sorted(labeled_seen.tolist()) == [0] * 6 + [1] * 6  # the short stream cycled
    first = paired()
    _take(first, 4)
    assert first.position == {"labeled": 8, "unlabeled": 12}
    resumed = paired()
    resumed.load_state_dict(first.state_dict())
    for x, y in zip(_take(resumed, 2), full[4:]):
        for name in x:
            _assert_batches_equal([x[name]], [y[name]])
    finite = PairedStream({"a": [1, 2], "b": make_stream(Toy(3), batch_size=1, seed=0)})
    assert [p["a"] for p in _take(finite, 5)] == [1, 2, 1, 2, 1]


def test_eval_loader_shares():
    ds = Toy(7)
    ordered = torch.cat([b["index"] for b in make_eval_loader(ds, 3)])
    assert ordered.tolist() == list(range(7))
    shares = [
        torch.cat([b["index"] for b in make_eval_loader(ds, 2, rank=r, world_size=3)]).tolist()
        for r in range(3)
    ]
    assert sorted(i for s in shares for i in s) == list(range(7))  # every sample once, no padding


@pytest.mark.parametrize(
    ("fraction", "expected"), [(1 / 8, 5), (1 / 4, 10), (1 / 2, 20), (1.0, 40)]
)
def test_labeled_split_sizes(fraction, expected):
    labeled, unlabeled = labeled_split(Toy(40), fraction, seed=0)
    assert len(labeled) == expected
    assert len(unlabeled) == 40 - expected
    assert not set(labeled.indices) & set(unlabeled.indices)
    assert sorted([*labeled.indices, *unlabeled.indices]) == list(range(40))
    assert labeled_split(Toy(40), fraction, seed=0)[0].indices == labeled.indices


def test_labeled_split_nested_and_errors():
    eighth, _ = labeled_split(Toy(64), 1 / 8, seed=3)
    half, _ = labeled_split(Toy(64), 1 / 2, seed=3)
    assert set(eighth.indices) <= set(half.indices)
    assert labeled_split(Toy(64), 1 / 8, seed=4)[0].indices != eighth.indices
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            labeled_split(Toy(4), bad)
