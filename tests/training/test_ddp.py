"""2 CPU processes (gloo, ddp_spawn) = 1 process with the same global batch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from denseloss.config.schema import DataConfig, RunConfig, TrainConfig
from denseloss.training.checkpoint import load_checkpoint
from denseloss.training.trainer import train
from tests.training.tiny_method import TinyMethod


def test_two_cpu_processes_match_one_process(tmp_path: Path) -> None:
    # No augmentation, no void pixels and no dropout: each rank's mean CE is over equally many
    # valid pixels, so the DDP-averaged gradient equals the single-process gradient.
    data = DataConfig(
        size=32,
        train_length=16,
        val_length=6,
        test_length=6,
        batch_size=4,
        eval_batch_size=2,
        augment=False,
        kwargs={"void_border": False},
    )
    base = RunConfig(
        method="tiny",
        data=data,
        train=TrainConfig(steps=3, eval_every=0, log_every=1, checkpoint_every=0, progress=False),
        params={"dropout": 0.0},
    )

    def run(devices: int, batch_size: int, name: str) -> dict:
        cfg = dataclasses.replace(
            base,
            data=dataclasses.replace(data, batch_size=batch_size),
            train=dataclasses.replace(base.train, devices=devices, out_dir=str(tmp_path / name)),
        )
        results = train(cfg, method_cls=TinyMethod)
        return {"results": results, "state": load_checkpoint(tmp_path / name)["method"]}

    single = run(1, 4, "single")
    ddp = run(2, 2, "ddp")
    assert ddp["results"]["world_size"] == 2
    a, b = single["state"]["module/net"], ddp["state"]["module/net"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)
    # weights moved, so the comparison is not trivially between initialisations
    assert single["state"]["optimizer/net"]["state"]
    # evaluation sums per-rank metric states: every val/test sample counted exactly once
    for split in ("val", "test"):
        sa, sb = single["results"][split], ddp["results"][split]
        assert abs(sa["miou"] - sb["miou"]) < 1e-5
        assert abs(sa["pixel_acc"] - sb["pixel_acc"]) < 1e-6
