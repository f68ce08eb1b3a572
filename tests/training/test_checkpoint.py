from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from denseloss.training.checkpoint import atomic_save, load_checkpoint, resolve_checkpoint
from denseloss.training.seeding import get_rng_state, seed_everything, set_rng_state


def _ckpt(step: int) -> dict:
    return {
        "format": 1,
        "step": step,
        "method": {"module/net": {"w": torch.full((3,), float(step))}},
        "rng": get_rng_state(),
        "streams": {"position": 4 * step},
        "config": {"method": "tiny"},
    }


def test_atomic_save_failure_leaves_previous_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    atomic_save(_ckpt(3), path)
    before = path.read_bytes()

    def broken_save(obj: object, f: object) -> None:
        f.write(b"partial garbage")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save(_ckpt(4), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 3
    assert list(path.parent.iterdir()) == [path], "temporary file left behind"


def test_atomic_save_never_unlinks_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    atomic_save(_ckpt(1), path)
    calls: list[str] = []
    real_replace = __import__("os").replace

    def spy_unlink(p: object, *a: object, **k: object) -> None:
        calls.append(str(p))

    monkeypatch.setattr("os.unlink", spy_unlink)
    monkeypatch.setattr("os.remove", spy_unlink)
    monkeypatch.setattr("os.replace", lambda s, d: (calls.append("replace"), real_replace(s, d)))
    atomic_save(_ckpt(2), path)
    assert calls == ["replace"]
    assert load_checkpoint(path)["step"] == 2


def test_checkpoint_loads_with_weights_only_and_restores_rng(tmp_path: Path) -> None:
    seed_everything(5)
    path = atomic_save(_ckpt(7), tmp_path / "last.ckpt")
    expected = (torch.rand(2), np.random.rand(2), random.random())
    seed_everything(99)
    set_rng_state(load_checkpoint(path)["rng"])  # torch.load(weights_only=True) inside
    got = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(expected[0], got[0])
    np.testing.assert_array_equal(expected[1], got[1])
    assert expected[2] == got[2]


def test_resolve_and_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoints/last\.ckpt"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="path must be"):
        resolve_checkpoint(tmp_path / "nope.ckpt")
    atomic_save({"step": 1}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="denseloss checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")
