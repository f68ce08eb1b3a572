from __future__ import annotations

from pathlib import Path

import pytest

from denseloss.config.schema import DataConfig, RunConfig, TrainConfig


@pytest.fixture
def tiny_config(tmp_path: Path) -> RunConfig:
    """A run on 32² built-in scenes that takes a second or two on the CPU."""
    return RunConfig(
        method="tiny",
        data=DataConfig(size=32, train_length=64, val_length=8, test_length=8, batch_size=4),
        train=TrainConfig(
            steps=6,
            eval_every=3,
            log_every=1,
            checkpoint_every=3,
            out_dir=str(tmp_path / "run"),
            progress=False,
        ),
    )
