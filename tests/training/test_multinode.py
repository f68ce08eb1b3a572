"""Multi-node DDP on Fabric: external launchers, SyncBatchNorm, resume on another process count.

The end-to-end test starts the real ``denseloss train`` command under ``torchrun`` as 2 "nodes"
× 1 process on 127.0.0.1 and as 1 node × 2 processes in ``fabric run``'s environment (what
``fabric run`` sets before it calls torchrun), both on gloo, and checks that both reach the same
weights as one process with the same global batch.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn

from denseloss.config.schema import DataConfig, RunConfig, TrainConfig, save_config
from denseloss.methods.base import ModelConfig
from denseloss.training.checkpoint import load_checkpoint
from denseloss.training.fabric_setup import (
    ExternalLaunch,
    SyncBatchNormDDPStrategy,
    build_fabric,
    detect_external_launch,
    leave_process_group,
    process_group_exists,
    rescale_stream_state,
    resolve_processes,
)
from denseloss.training.sync_batchnorm import GlooSyncBatchNorm, convert_sync_batchnorm
from denseloss.training.trainer import train
from tests.training.tiny_method import TinyMethod

_LAUNCH_VARS = ("TORCHELASTIC_RUN_ID", "LT_CLI_USED", "SLURM_NTASKS", "WORLD_SIZE", "RANK")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all bound at once, so two launch groups never share one.

    (Two separate bind-and-close calls may return the same port; two torchrun groups on one
    master port then meet in one store and a worker aborts.)
    """
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


# -- who started the processes ------------------------------------------------------------------
def test_launchers_are_detected_from_their_environment() -> None:
    assert detect_external_launch({}) is None
    torchrun = {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}
    assert detect_external_launch(torchrun) == ExternalLaunch("torchrun", 4, 2)
    assert detect_external_launch(torchrun).num_nodes == 2  # type: ignore[union-attr]
    fabric_run = detect_external_launch({**torchrun, "LT_CLI_USED": "1"})
    assert fabric_run is not None
    assert fabric_run.launcher == "fabric run"
    slurm = {"SLURM_NTASKS": "16", "SLURM_NTASKS_PER_NODE": "8(x2)", "SLURM_JOB_NAME": "j"}
    assert detect_external_launch(slurm) == ExternalLaunch("srun", 16, 8)
    # an interactive allocation is not a launch; a single sbatch task is one process
    assert detect_external_launch({**slurm, "SLURM_JOB_NAME": "interactive"}) is None
    assert detect_external_launch({"SLURM_NTASKS": "1"}) == ExternalLaunch("srun", 1, 1)
    with pytest.raises(ValueError, match="SLURM_NTASKS_PER_NODE"):
        detect_external_launch({"SLURM_NTASKS": "4"})


def test_the_launcher_fills_the_layout_and_contradictions_are_refused() -> None:
    launch = ExternalLaunch("torchrun", 16, 8)
    filled = resolve_processes(TrainConfig(), launch)
    assert (filled.devices, filled.num_nodes) == (8, 2)
    assert resolve_processes(TrainConfig(devices=8, num_nodes=2), launch) == filled
    with pytest.raises(ValueError, match=r"train\.devices must be 8 \(what torchrun started\)"):
        resolve_processes(TrainConfig(devices=4), launch)
    with pytest.raises(ValueError, match=r"train\.num_nodes must be 2"):
        resolve_processes(TrainConfig(num_nodes=4), launch)
    with pytest.raises(ValueError, match=r"train\.strategy must be 'auto' or 'ddp'"):
        resolve_processes(TrainConfig(strategy="ddp_spawn"), launch)
    with pytest.raises(ValueError, match=r"train\.num_nodes must be 1 when denseloss starts"):
        resolve_processes(TrainConfig(num_nodes=2), None)


def test_under_srun_fabric_uses_ddp_without_relaunching(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_fabric.plugins.environments import SLURMEnvironment

    slurm = {
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NNODES": "2",
        "SLURM_PROCID": "1",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NAME": "denseloss",
        "SLURM_NODELIST": "127.0.0.1",
    }
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    config = resolve_processes(TrainConfig(sync_bn=True), detect_external_launch())
    fabric = build_fabric(
        devices=config.devices, num_nodes=config.num_nodes, sync_bn=True, external=True
    )
    strategy = fabric.strategy
    assert isinstance(strategy, SyncBatchNormDDPStrategy)
    assert strategy._start_method == "popen"  # Fabric's script launcher, not spawn
    assert isinstance(strategy.cluster_environment, SLURMEnvironment)
    assert strategy.cluster_environment.creates_processes_externally  # so nothing is relaunched
    assert (fabric.world_size, fabric.global_rank, fabric.node_rank) == (2, 1, 1)


# -- SyncBatchNorm ------------------------------------------------------------------------------
def test_convert_keeps_tensors_and_keys_and_picks_the_class_per_device() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm1d(4)))
    params, keys = [id(p) for p in net.parameters()], list(net.state_dict())
    cpu = convert_sync_batchnorm(net, device_type="cpu")
    assert [type(m) for m in (cpu[1], cpu[2][0])] == [GlooSyncBatchNorm] * 2
    assert [id(p) for p in cpu.parameters()] == params
    assert list(cpu.state_dict()) == keys
    cuda = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(4)), device_type="cuda")
    assert type(cuda[0]) is nn.SyncBatchNorm


def _sync_bn_worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64) * 3 + 1
    w = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)  # a loss that is not symmetric
    mine = slice(2 * rank, 2 * rank + 2)
    results = {}
    for name, layer in (
        ("sync", GlooSyncBatchNorm.convert(nn.BatchNorm2d(3).double())),
        ("local", nn.BatchNorm2d(3).double()),
    ):
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        xr = x[mine].clone().requires_grad_(True)
        y = layer(xr)
        (y * w[mine]).sum().backward()
        grads = torch.cat([layer.weight.grad, layer.bias.grad])
        dist.all_reduce(grads)  # what DDP sums over ranks (before dividing by the world size)
        results[name] = {
            "y": y.detach(),
            "dx": xr.grad,
            "dwb": grads,
            "mean": layer.running_mean,
            "var": layer.running_var,
        }
    torch.save(results, f"{out}.{rank}")
    dist.destroy_process_group()


def test_gloo_sync_batchnorm_equals_batchnorm_on_the_global_batch(tmp_path: Path) -> None:
    out = str(tmp_path / "bn")
    torch.multiprocessing.start_processes(
        _sync_bn_worker, args=(str(tmp_path / "store"), out), nprocs=2, start_method="fork"
    )
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64) * 3 + 1).requires_grad_(True)
    w = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    y = bn(x)
    (y * w).sum().backward()
    sync = [r["sync"] for r in ranks]
    close = {"rtol": 0, "atol": 1e-12}
    torch.testing.assert_close(torch.cat([s["y"] for s in sync]), y.detach(), **close)
    torch.testing.assert_close(torch.cat([s["dx"] for s in sync]), x.grad, **close)
    torch.testing.assert_close(sync[0]["dwb"], torch.cat([bn.weight.grad, bn.bias.grad]), **close)
    torch.testing.assert_close(sync[1]["mean"], bn.running_mean, **close)
    torch.testing.assert_close(sync[1]["var"], bn.running_var, **close)
    # without synchronisation each rank normalises with its own half: clearly different
    local = torch.cat([r["local"]["y"] for r in ranks])
    assert (local - y.detach()).abs().max() > 1e-2


# -- resume on another process count ------------------------------------------------------------
def _tiny(tmp_path: Path, name: str, devices: int, batch: int, **train: Any) -> RunConfig:
    data = DataConfig(
        size=32,
        train_length=16,
        val_length=4,
        test_length=4,
        batch_size=batch,
        eval_batch_size=2,
        augment=False,
        kwargs={"void_border": False},
    )
    return RunConfig(
        method="tiny",
        data=data,
        train=TrainConfig(
            steps=4,
            eval_every=0,
            log_every=1,
            checkpoint_every=2,
            progress=False,
            devices=devices,
            strategy="ddp_fork",
            out_dir=str(tmp_path / name),
            **train,
        ),
        params={"dropout": 0.0},
    )


def test_resume_keeps_the_global_batch_on_another_process_count(tmp_path: Path) -> None:
    def net(run: str) -> dict[str, torch.Tensor]:
        return load_checkpoint(tmp_path / run)["method"]["module/net"]

    train(_tiny(tmp_path, "one", 1, 4), method_cls=TinyMethod)  # 4 steps, global batch 4
    train(_tiny(tmp_path, "two", 2, 2), method_cls=TinyMethod, stop_after=2)  # killed at step 2
    for name, devices, batch in (("same", 2, 2), ("fewer", 1, 4)):
        shutil.copytree(tmp_path / "two", tmp_path / name)
        cfg = _tiny(tmp_path, name, devices, batch, resume=str(tmp_path / name))
        results = train(cfg, method_cls=TinyMethod)
        assert results["steps"] == 4
        assert results["world_size"] == devices
        for key, value in net("one").items():
            torch.testing.assert_close(net(name)[key], value, rtol=0, atol=1e-6, msg=key)
    # a resume that changes the global batch is refused by the resume rules (run_dir.py)
    shutil.copytree(tmp_path / "two", tmp_path / "bad")
    bad = _tiny(tmp_path, "bad", 1, 2, resume=str(tmp_path / "bad"))
    with pytest.raises(ValueError, match=r"train\.devices 2 -> 1"):
        train(bad, method_cls=TinyMethod)


def test_stream_positions_are_rescaled_to_the_same_global_sample() -> None:
    # 2 ranks at position 6 consumed 12 global samples: 4 ranks continue at 3, 1 rank at 12
    saved = {"labeled": {"position": 6}, "gt": {"position": 6}}
    assert rescale_stream_state(saved, saved_world=2, world=4) == {
        "labeled": {"position": 3},
        "gt": {"position": 3},
    }
    assert rescale_stream_state({"position": 6}, saved_world=2, world=1) == {"position": 12}
    assert rescale_stream_state(saved, saved_world=2, world=2) is saved
    with pytest.raises(ValueError, match="must split evenly over 5 processes"):
        rescale_stream_state(saved, saved_world=2, world=5)


# -- end to end: torchrun, `fabric run` ---------------------------------------------------------
def _layout_config(tmp_path: Path, name: str, batch_size: int) -> Path:
    # No augmentation and no void pixels: every rank's mean CE has as many pixels, so averaging
    # over ranks is the mean over the global batch. BatchNorm is synchronised (train.sync_bn).
    config = RunConfig(
        method="ce",
        data=DataConfig(
            size=32,
            train_length=16,
            val_length=4,
            test_length=4,
            batch_size=batch_size,
            eval_batch_size=2,
            augment=False,
            kwargs={"void_border": False},
        ),
        model=ModelConfig(name="deeplabv2", kwargs={"widths": [4, 4, 8, 8]}),
        train=TrainConfig(
            steps=3,
            eval_every=0,
            log_every=1,
            checkpoint_every=0,
            progress=False,
            sync_bn=True,
            out_dir=str(tmp_path / name),
        ),
    )
    path = tmp_path / f"{name}.yaml"
    save_config(config, path)
    return path


def _torchrun(nnodes: int, rank: int, nproc: int, port: int, command: list[str], **env: str):
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        str(nnodes),
        "--node-rank",
        str(rank),
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        *command,
    ]
    return subprocess.Popen(
        args, env=_clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_two_nodes_and_fabric_run_match_one_process(tmp_path: Path) -> None:
    from denseloss.cli.app import run

    two_nodes = _layout_config(tmp_path, "two_nodes", 2)
    port, fabric_port = _free_ports(2)
    procs = [
        _torchrun(2, k, 1, port, ["-m", "denseloss.cli", "train", "--config", str(two_nodes)])
        for k in range(2)
    ]
    # `fabric run --accelerator cpu --devices 2 <script> ...` = these variables + torchrun
    script = str(Path(sys.executable).parent / "denseloss")
    fabric_env = {
        "LT_CLI_USED": "1",
        "LT_ACCELERATOR": "cpu",
        "LT_DEVICES": "2",
        "LT_NUM_NODES": "1",
    }
    fabric_cfg = _layout_config(tmp_path, "fabric_run", 2)
    procs.append(
        _torchrun(
            1, 0, 2, fabric_port, [script, "train", "--config", str(fabric_cfg)], **fabric_env
        )
    )
    assert run(["train", "--config", str(_layout_config(tmp_path, "single", 4))]) == 0
    logs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(logs)

    single = load_checkpoint(tmp_path / "single")["method"]
    for name, log, (devices, num_nodes) in (
        ("two_nodes", logs[0] + logs[1], (1, 2)),
        ("fabric_run", logs[2], (2, 1)),
    ):
        state = load_checkpoint(tmp_path / name)
        # the written config records the layout the launcher started
        assert (state["config"]["train"]["devices"], state["config"]["train"]["num_nodes"]) == (
            devices,
            num_nodes,
        )
        assert state["extra"]["world_size"] == 2
        for net, weights in single.items():
            if not net.startswith("module/"):
                continue
            for key, value in weights.items():  # weights and BatchNorm running statistics
                torch.testing.assert_close(
                    state["method"][net][key].float(), value.float(), rtol=0, atol=1e-6, msg=key
                )
        # only rank 0 wrote: one summary line, one TensorBoard file, no temporary files
        assert log.count("global batch 4") == 1, log
        assert len(list((tmp_path / name / "tb").iterdir())) == 1
        assert not list((tmp_path / name).rglob("*.tmp"))
        assert (tmp_path / name / "results.json").is_file()


def _leave_worker(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    before = process_group_exists()
    leave_process_group()  # both ranks meet at its barrier, then the group is gone
    Path(f"{out}.{rank}").write_text(f"{before} {process_group_exists()}")


def test_leave_process_group_tears_down_on_every_rank(tmp_path: Path) -> None:
    out = str(tmp_path / "left")
    torch.multiprocessing.start_processes(
        _leave_worker, args=(str(tmp_path / "store"), out), nprocs=2, start_method="fork"
    )
    assert [Path(f"{out}.{r}").read_text() for r in range(2)] == ["True False"] * 2
    assert not process_group_exists()
    leave_process_group()  # no group: nothing to do


def test_train_leaves_a_process_group_it_did_not_set_up(tiny_config: RunConfig, tmp_path) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        train(tiny_config, method_cls=TinyMethod)
        assert process_group_exists()  # the caller's group is the caller's
    finally:
        dist.destroy_process_group()
