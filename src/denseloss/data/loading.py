"""Deterministic, resumable data streams: samplers, augmented views, paired streams, splits.

The training stream of a run is a pure function of ``(dataset, seed, batch_size, transform,
rank, world_size)`` and one integer, its *position* (samples this rank has consumed):

* :class:`InfiniteSampler` yields ``(index, draw_id)`` forever; epoch ``e`` of the global stream
  is ``numpy.random.default_rng([seed, e]).permutation(n)``, and rank ``r`` of ``world_size``
  takes global draws ``r, r + world_size, ...`` (the DDP share, no overlap, no padding).
* :class:`Augmented` applies the transform with a generator seeded from ``(seed, draw_id)``, so
  a sample's augmentation does not depend on which worker process made it.
* :func:`make_stream` wraps both in a DataLoader; its ``position`` counts batches *consumed*
  (not prefetched), so ``state_dict()`` taken at any step resumes bit-for-bit, with any
  ``num_workers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from denseloss.data.sample import Sample

__all__ = [
    "Augmented",
    "InfiniteSampler",
    "PairedIterator",
    "PairedStream",
    "Stream",
    "labeled_split",
    "make_eval_loader",
    "make_loader",
    "make_stream",
]


def _check_int(func: str, name: str, value: object, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{func}: {name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _check_rank(func: str, rank: object, world_size: object) -> tuple[int, int]:
    world_size = _check_int(func, "world_size", world_size, 1)
    rank = _check_int(func, "rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"{func}: rank must be in [0, world_size={world_size}); got {rank}.")
    return rank, world_size


def _mix(*values: int) -> int:
    """A 63-bit seed derived from integers (NumPy SeedSequence hashing)."""
    state = np.random.SeedSequence(list(values)).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class InfiniteSampler(Sampler):
    """Endless ``(index, draw_id)`` pairs; resumable from the number drawn.

    Args:
        n: data set length (>= 1).
        seed: permutation seed (epoch ``e`` uses ``default_rng([seed, e])``).
        shuffle: permute each epoch; ``False`` cycles ``0..n-1``.
        rank: this process's rank; it takes global draws ``rank + k * world_size``.
        world_size: number of processes.
        start: draws this rank has already made (resume position).

    ``draw_id`` is the index in the *global* stream, unique across ranks, used to seed
    augmentation. Iterating again continues from the current position.

    Example:
        >>> s = InfiniteSampler(3, seed=0, shuffle=False)
        >>> it = iter(s)
        >>> [next(it) for _ in range(4)]
        [(0, 0), (1, 1), (2, 2), (0, 3)]
        >>> s.state_dict()["position"]
        4
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
    ) -> None:
        self.n = _check_int("InfiniteSampler", "n", n, 1)
        self.seed = _check_int("InfiniteSampler", "seed", seed, 0)
        self.rank, self.world_size = _check_rank("InfiniteSampler", rank, world_size)
        self.shuffle = bool(shuffle)
        self.position = _check_int("InfiniteSampler", "start", start, 0)
        self._epoch = -1
        self._perm: np.ndarray | None = None

    def _index(self, draw: int) -> int:
        if not self.shuffle:
            return draw % self.n
        epoch = draw // self.n
        if self._perm is None or epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._epoch = epoch
        return int(self._perm[draw % self.n])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        while True:
            draw = self.rank + self.position * self.world_size
            self.position += 1
            yield self._index(draw), draw

    def state_dict(self) -> dict[str, int]:
        """``{"position", "seed", "n", "rank", "world_size"}``; only ``position`` changes."""
        return {
            "position": self.position,
            "seed": self.seed,
            "n": self.n,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue from ``state["position"]``; ``seed``/``n``, when present, must match."""
        for key in ("seed", "n"):
            if key in state and int(state[key]) != getattr(self, key):
                raise ValueError(
                    f"InfiniteSampler.load_state_dict: state[{key!r}] must equal "
                    f"{getattr(self, key)}; got {state[key]}. Hint: resume with the same data "
                    "set and seed."
                )
        self.position = _check_int("InfiniteSampler.load_state_dict", "position",
                                   state["position"], 0)  # fmt: skip


class Augmented(Dataset):
    """Map-style view whose item ``(index, draw_id)`` is ``transform(dataset[index], g)``.

    ``g`` is a fresh ``torch.Generator`` seeded from ``(seed, draw_id)``: the same draw gives the
    same augmentation in any worker. Keys in ``drop_keys`` are removed before the sample leaves
    the worker (e.g. ``"label"`` on a UDA target stream, so a method can never read it).

    Args:
        dataset: map-style data set of sample dicts.
        transform: joint transform ``t(sample, generator)`` or ``None``.
        seed: augmentation seed.
        drop_keys: sample keys to remove.
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable[[Sample, torch.Generator], Sample] | None = None,
        seed: int = 0,
        drop_keys: Sequence[str] = (),
    ) -> None:
        if transform is not None and not callable(transform):
            raise TypeError(f"Augmented: transform must be callable; got {type(transform)}.")
        if isinstance(drop_keys, str):
            raise TypeError(
                f"Augmented: drop_keys must be a sequence of key names; got the string "
                f"{drop_keys!r}. Hint: use ({drop_keys!r},)."
            )
        self.dataset = dataset
        self.transform = transform
        self.seed = _check_int("Augmented", "seed", seed, 0)
        self.drop_keys = tuple(drop_keys)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int] | int) -> Sample:
        index, draw_id = key if isinstance(key, tuple) else (key, key)
        sample = self.dataset[index]
        if self.transform is not None:
            generator = torch.Generator().manual_seed(_mix(self.seed, int(draw_id)))
            sample = self.transform(sample, generator)
        if self.drop_keys:
            sample = {k: v for k, v in sample.items() if k not in self.drop_keys}
        return sample


class Stream:
    """Infinite iterator of collated batches with a resumable ``position``.

    Built by :func:`make_stream`. ``position`` is the number of samples this rank has consumed
    (batches returned by ``next`` times ``batch_size``); DataLoader prefetching does not move it.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        seed: int,
        transform: Callable[[Sample, torch.Generator], Sample] | None,
        num_workers: int,
        start: int,
        rank: int,
        world_size: int,
        drop_keys: Sequence[str],
        shuffle: bool,
    ) -> None:
        func = "make_stream"
        self.batch_size = _check_int(func, "batch_size", batch_size, 1)
        self.seed = _check_int(func, "seed", seed, 0)
        self.num_workers = _check_int(func, "num_workers", num_workers, 0)
        self.rank, self.world_size = _check_rank(func, rank, world_size)
        self.shuffle = bool(shuffle)
        self.position = _check_int(func, "start", start, 0)
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError(f"{func}: dataset must not be empty; got length 0.")
        self.dataset = Augmented(dataset, transform, self.seed, drop_keys)
        self._iterator: Iterator[Any] | None = None

    def _start(self) -> Iterator[Any]:
        sampler = InfiniteSampler(
            len(self.dataset),
            seed=self.seed,
            shuffle=self.shuffle,
            rank=self.rank,
            world_size=self.world_size,
            start=self.position,
        )
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
            # own generator: building the loader must not consume the global torch RNG, which
            # would make a resumed run's model RNG differ from the uninterrupted one
            generator=torch.Generator().manual_seed(self.seed),
        )
        return iter(loader)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._iterator is None:
            self._iterator = self._start()
        batch = next(self._iterator)
        self.position += self.batch_size
        return batch

    def state_dict(self) -> dict[str, int]:
        """``{"position": samples consumed by this rank}``."""
        return {"position": self.position}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Jump to ``state["position"]``; the next batch is the one the saved run saw next."""
        self.position = _check_int("Stream.load_state_dict", "position", state["position"], 0)
        self.close()

    def close(self) -> None:
        """Shut the worker processes down; the next ``next()`` restarts at ``position``."""
        self._iterator = None

    def __repr__(self) -> str:
        return (
            f"Stream(n={len(self.dataset)}, batch_size={self.batch_size}, seed={self.seed}, "
            f"position={self.position}, rank={self.rank}/{self.world_size})"
        )


def make_stream(
    dataset: Dataset,
    *,
    batch_size: int,
    seed: int,
    transform: Callable[[Sample, torch.Generator], Sample] | None = None,
    num_workers: int = 0,
    start: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_keys: Sequence[str] = (),
    shuffle: bool = True,
) -> Stream:
    """An infinite, deterministic, resumable stream of collated batches.

    Args:
        dataset: map-style data set of sample dicts.
        batch_size: samples per batch (per rank).
        seed: seeds both the epoch permutations and the augmentation.
        transform: joint transform ``t(sample, generator)``, or ``None``.
        num_workers: DataLoader worker processes; the batches do not depend on it.
        start: resume position (samples already consumed by this rank).
        rank: this process's rank.
        world_size: number of processes; ranks take disjoint strided shares of one global stream.
        drop_keys: keys removed from every sample (e.g. ``("label",)`` for a UDA target).
        shuffle: permute each epoch.

    Returns:
        A :class:`Stream`; ``next(stream)`` is a dict of batched tensors.

    Example:
        >>> from denseloss.data.synthetic import SyntheticScenes
        >>> s = make_stream(SyntheticScenes("val", size=16, length=3), batch_size=2, seed=0)
        >>> tuple(next(s)["image"].shape), s.position
        ((2, 3, 16, 16), 2)
    """
    return Stream(
        dataset,
        batch_size=batch_size,
        seed=seed,
        transform=transform,
        num_workers=num_workers,
        start=start,
        rank=rank,
        world_size=world_size,
        drop_keys=drop_keys,
        shuffle=shuffle,
    )


class PairedStream:
    """Zip named infinite streams: ``next`` gives ``{name: next(stream)}``.

    Each child advances independently, so a short data set simply cycles faster than a long one
    (labelled + unlabelled, source + target). A child without ``state_dict`` that runs out (e.g.
    a finite DataLoader) is restarted with ``iter``.

    Args:
        streams: ``{"labeled": s1, "unlabeled": s2, ...}`` or ``{"source": ..., "target": ...}``.
    """

    def __init__(self, streams: Mapping[str, Iterable[Any]]) -> None:
        if not isinstance(streams, Mapping) or not streams:
            raise ValueError(
                f"PairedStream: streams must be a non-empty mapping name -> stream; got "
                f"{type(streams).__name__}."
            )
        self.streams = dict(streams)
        self._iterators = {name: iter(s) for name, s in self.streams.items()}

    def __iter__(self) -> PairedStream:
        return self

    def __next__(self) -> dict[str, Any]:
        out = {}
        for name, iterator in self._iterators.items():
            try:
                out[name] = next(iterator)
            except StopIteration:
                self._iterators[name] = iterator = iter(self.streams[name])
                out[name] = next(iterator)
        return out

    @property
    def position(self) -> dict[str, int]:
        """Each child's position (children without one are left out)."""
        return {n: s.position for n, s in self.streams.items() if hasattr(s, "position")}

    def state_dict(self) -> dict[str, dict[str, int]]:
        """``{name: child.state_dict()}`` for the children that have one."""
        return {n: s.state_dict() for n, s in self.streams.items() if hasattr(s, "state_dict")}

    def load_state_dict(self, state: Mapping[str, Mapping[str, int]]) -> None:
        """Restore each named child; unknown names raise ``ValueError``."""
        unknown = set(state) - set(self.streams)
        if unknown:
            raise ValueError(
                f"PairedStream.load_state_dict: state keys must be among {sorted(self.streams)}; "
                f"got {sorted(unknown)}."
            )
        for name, child_state in state.items():
            self.streams[name].load_state_dict(child_state)  # type: ignore[attr-defined]
            self._iterators[name] = iter(self.streams[name])


# The names used in docs/architecture.md.
make_loader = make_stream
PairedIterator = PairedStream


def make_eval_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A finite, ordered loader over this rank's share ``rank, rank + world_size, ...``.

    Unlike ``DistributedSampler`` the shares are not padded with repeats, so summing per-rank
    confusion matrices counts every sample exactly once.
    """
    batch_size = _check_int("make_eval_loader", "batch_size", batch_size, 1)
    num_workers = _check_int("make_eval_loader", "num_workers", num_workers, 0)
    rank, world_size = _check_rank("make_eval_loader", rank, world_size)
    n = len(dataset)  # type: ignore[arg-type]
    view = dataset if world_size == 1 else Subset(dataset, range(rank, n, world_size))
    return DataLoader(
        view,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
    )


def labeled_split(dataset: Dataset, fraction: float, *, seed: int = 0) -> tuple[Subset, Subset]:
    """Split into a labelled part of ``round(fraction * n)`` (>= 1) samples and the rest.

    The labelled indices are a prefix of one seeded permutation, so with the same seed the
    1/8 split is contained in the 1/4 split, which is contained in the 1/2 split. Both index lists
    are sorted.

    Args:
        dataset: map-style data set.
        fraction: labelled fraction in (0, 1]; 1.0 leaves the unlabelled part empty.
        seed: permutation seed.

    Returns:
        ``(labeled, unlabeled)`` :class:`torch.utils.data.Subset` objects.

    Raises:
        ValueError: ``fraction`` outside (0, 1] or an empty data set.

    Example:
        >>> lab, unlab = labeled_split(list(range(16)), 1 / 8, seed=0)
        >>> len(lab), len(unlab)
        (2, 14)
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"labeled_split: fraction must be a float; got {type(fraction).__name__}.")
    if not 0 < fraction <= 1:
        raise ValueError(f"labeled_split: fraction must be in (0, 1]; got {fraction!r}.")
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("labeled_split: dataset must not be empty; got length 0.")
    seed = _check_int("labeled_split", "seed", seed, 0)
    count = min(n, max(1, round(fraction * n)))
    perm = np.random.default_rng([seed]).permutation(n)
    labeled = sorted(int(i) for i in perm[:count])
    unlabeled = sorted(int(i) for i in perm[count:])
    return Subset(dataset, labeled), Subset(dataset, unlabeled)
