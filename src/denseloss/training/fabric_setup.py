"""Build the Lightning Fabric engine from a ``TrainConfig``: processes, strategy, precision, SyncBN.

Who starts the processes decides the strategy:

* **denseloss itself** (a plain ``denseloss train``): ``devices > 1`` gives DDP launched with
  ``ddp_spawn`` on the CPU (gloo; works from Python, tests and the CLI alike) and ``ddp`` on CUDA
  (NCCL; Fabric re-runs the command once per device). ``num_nodes`` must be 1.
* **an external launcher** — ``torchrun`` (TorchElastic: ``TORCHELASTIC_RUN_ID``, ``WORLD_SIZE``,
  ``LOCAL_WORLD_SIZE``), ``fabric run`` (torchrun plus ``LT_CLI_USED=1``) or ``srun`` (SLURM:
  ``SLURM_NTASKS``, ``SLURM_NTASKS_PER_NODE``): every process already exists, so the strategy is
  ``ddp`` (Fabric's subprocess launcher, which starts nothing when the cluster environment creates
  the processes) and the layout comes from the launcher. ``train.devices`` / ``train.num_nodes``
  left at 1 are filled in from it (so the same command runs on any layout); other values must
  match it.

``train.sync_bn`` converts every BatchNorm to SyncBatchNorm when there is more than one process,
so the statistics are those of the global batch: ``torch.nn.SyncBatchNorm`` on CUDA and, because
PyTorch's kernel is GPU-only, ``sync_batchnorm.GlooSyncBatchNorm`` on the CPU (same maths).

On the CPU only bfloat16 autocast exists, so ``16-mixed`` is mapped to ``bf16-mixed`` there.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from lightning_fabric.strategies import DDPStrategy
from torch import nn

from denseloss.config.schema import TrainConfig
from denseloss.training.sync_batchnorm import convert_sync_batchnorm

__all__ = [
    "ExternalLaunch",
    "SyncBatchNormDDPStrategy",
    "build_fabric",
    "detect_external_launch",
    "launch",
    "leave_process_group",
    "print_process_summary",
    "process_group_exists",
    "rescale_stream_state",
    "resolve_accelerator",
    "resolve_processes",
]

_START_METHODS = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork"}


def resolve_accelerator(accelerator: str) -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is visible, else ``"cpu"``; others pass through."""
    if accelerator not in ("cpu", "cuda", "auto"):
        raise ValueError(
            "resolve_accelerator: accelerator must be 'cpu', 'cuda' or 'auto'; "
            f"got {accelerator!r}."
        )
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "resolve_accelerator: accelerator must be 'cpu' or 'auto' on a machine without CUDA; "
            "got 'cuda'."
        )
    return accelerator


# -- who started the processes ------------------------------------------------------------------
@dataclass(frozen=True)
class ExternalLaunch:
    """Processes started outside denseloss: by which launcher, and how many."""

    launcher: str  # "torchrun", "fabric run" or "srun" (for messages)
    world_size: int  # processes in all
    processes_per_node: int  # processes on each node

    @property
    def num_nodes(self) -> int:
        """``world_size / processes_per_node``."""
        return self.world_size // self.processes_per_node


def _env_int(environ: Mapping[str, str], key: str, launcher: str) -> int:
    match = re.match(r"\d+", environ.get(key, ""))  # SLURM writes e.g. "8(x2)" per node
    if match is None or int(match.group()) < 1:
        raise ValueError(
            f"detect_external_launch: {key} must be a positive int under {launcher}; "
            f"got {environ.get(key)!r}."
        )
    return int(match.group())


def detect_external_launch(environ: Mapping[str, str] | None = None) -> ExternalLaunch | None:
    """The launcher that started this process, read from its environment; ``None`` if none.

    The detection is Fabric's (``TorchElasticEnvironment`` first, as torchrun may run inside a
    SLURM allocation, then ``SLURMEnvironment``, which ignores jobs named "bash"/"interactive").

    Raises:
        ValueError: the launcher's variables are inconsistent (e.g. SLURM without
            ``SLURM_NTASKS_PER_NODE`` for more than one task).
    """
    env = os.environ if environ is None else environ
    if env.get("TORCHELASTIC_RUN_ID") is not None:
        name = "fabric run" if env.get("LT_CLI_USED") == "1" else "torchrun"
        world, per_node = _env_int(env, "WORLD_SIZE", name), _env_int(env, "LOCAL_WORLD_SIZE", name)
    elif "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        name = "srun"
        world = _env_int(env, "SLURM_NTASKS", name)
        if world > 1 and "SLURM_NTASKS_PER_NODE" not in env:
            raise ValueError(
                f"detect_external_launch: SLURM_NTASKS_PER_NODE must be set for {world} SLURM "
                "tasks; got only SLURM_NTASKS. Hint: use `#SBATCH --ntasks-per-node=<GPUs per "
                "node>` instead of --ntasks."
            )
        per_node = _env_int(env, "SLURM_NTASKS_PER_NODE", name) if world > 1 else 1
    else:
        return None
    if world % per_node:
        raise ValueError(
            f"detect_external_launch: the world size must be a multiple of the processes per "
            f"node under {name}; got {world} and {per_node}."
        )
    return ExternalLaunch(name, world, per_node)


def resolve_processes(train: TrainConfig, launch: ExternalLaunch | None) -> TrainConfig:
    """``train`` with ``devices`` / ``num_nodes`` as the launcher started them.

    Without a launcher the config is returned as is (``num_nodes`` must then be 1). Under one,
    a value left at 1 is taken from the launcher and any other value must equal it, so a saved
    ``config.yaml`` records the layout that actually ran (resume compares against it).

    Raises:
        ValueError: ``num_nodes > 1`` with no launcher, a value that contradicts the launcher,
            or a spawning strategy under a launcher.
    """
    if launch is None:
        if train.num_nodes != 1:
            raise ValueError(
                f"train: train.num_nodes must be 1 when denseloss starts the processes itself; "
                f"got {train.num_nodes}. Hint: start every node with torchrun, srun or "
                "`fabric run` (docs/scaling.md)."
            )
        return train
    devices = launch.processes_per_node if train.devices == 1 else train.devices
    num_nodes = launch.num_nodes if train.num_nodes == 1 else train.num_nodes
    for name, value, actual in (
        ("train.devices", devices, launch.processes_per_node),
        ("train.num_nodes", num_nodes, launch.num_nodes),
    ):
        if value != actual:
            raise ValueError(
                f"train: {name} must be {actual} (what {launch.launcher} started) or 1 (take it "
                f"from {launch.launcher}); got {value}."
            )
    if launch.world_size > 1 and train.strategy not in ("auto", "ddp"):
        raise ValueError(
            f"train: train.strategy must be 'auto' or 'ddp' under {launch.launcher}, which has "
            f"already started every process; got {train.strategy!r}."
        )
    return dataclasses.replace(train, devices=devices, num_nodes=num_nodes)


def print_process_summary(world_size: int, num_nodes: int, batch_size: int) -> None:
    """One line on stderr: processes, per-process batch and global batch (call on rank 0)."""
    per_node = world_size // max(1, num_nodes)
    layout = f"{num_nodes} nodes × {per_node} processes" if num_nodes > 1 else ""
    procs = f"{world_size} process{'es' if world_size > 1 else ''}"
    print(
        f"denseloss: {procs}{f' ({layout})' if layout else ''}; batch {batch_size} per process, "
        f"global batch {batch_size * world_size} (batch_size × devices × num_nodes)",
        file=sys.stderr,
        flush=True,
    )


# -- the engine ---------------------------------------------------------------------------------
def build_fabric(
    *,
    accelerator: str = "cpu",
    devices: int = 1,
    num_nodes: int = 1,
    precision: str = "32-true",
    strategy: str = "auto",
    sync_bn: bool = False,
    external: bool = False,
) -> Any:
    """A ``lightning.fabric.Fabric`` for the given processes and precision (not launched yet).

    Args:
        accelerator: "cpu", "cuda" or "auto".
        devices: processes per node; DDP when ``devices · num_nodes > 1``.
        num_nodes: machines.
        precision: "32-true", "bf16-mixed" or "16-mixed" (→ "bf16-mixed" on the CPU).
        strategy: "auto" (``ddp`` under an external launcher, else ``ddp_spawn`` on the CPU and
            ``ddp`` on CUDA), or an explicit "ddp_spawn", "ddp_fork" (CPU, POSIX: no re-import in
            the children, much faster start) or "ddp".
        sync_bn: convert BatchNorm layers to SyncBatchNorm when there is more than one process.
        external: the processes were started by torchrun / srun / ``fabric run``.
    """
    from lightning_fabric import Fabric

    acc = resolve_accelerator(accelerator)
    for name, value in (("devices", devices), ("num_nodes", num_nodes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"build_fabric: {name} must be a positive int; got {value!r}.")
    if precision not in ("32-true", "bf16-mixed", "16-mixed"):
        raise ValueError(
            "build_fabric: precision must be '32-true', 'bf16-mixed' or '16-mixed'; "
            f"got {precision!r}."
        )
    if acc == "cpu" and precision == "16-mixed":
        precision = "bf16-mixed"
    if strategy not in ("auto", "ddp_spawn", "ddp_fork", "ddp"):
        raise ValueError(
            "build_fabric: strategy must be 'auto', 'ddp_spawn', 'ddp_fork' or 'ddp'; "
            f"got {strategy!r}."
        )
    if devices * num_nodes == 1:
        return Fabric(accelerator=acc, devices=1, strategy="auto", precision=precision)
    if external:
        if strategy not in ("auto", "ddp"):
            raise ValueError(
                "build_fabric: strategy must be 'auto' or 'ddp' when an external launcher "
                f"started the processes; got {strategy!r}."
            )
        strategy = "ddp"
    elif strategy == "auto":
        strategy = "ddp_spawn" if acc == "cpu" else "ddp"
    chosen: Any = (
        SyncBatchNormDDPStrategy(start_method=_START_METHODS[strategy]) if sync_bn else strategy
    )
    return Fabric(
        accelerator=acc, devices=devices, num_nodes=num_nodes, strategy=chosen, precision=precision
    )


def launch(fabric: Any, function: Callable[..., Any], *args: Any) -> Any:
    """``fabric.launch(function, *args)``, or ``function(fabric, *args)`` under ``fabric run``.

    ``fabric run`` sets ``LT_CLI_USED=1``; Fabric then sets the process group up in its
    constructor and refuses ``launch``. Under torchrun / srun, ``launch`` starts no process (the
    cluster environment creates them) and just calls ``function`` here.
    """
    if os.environ.get("LT_CLI_USED") == "1":
        return function(fabric, *args)
    return fabric.launch(function, *args)


def process_group_exists() -> bool:
    """Whether a ``torch.distributed`` default process group is set up in this process."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def leave_process_group() -> None:
    """Wait for every rank, then tear the default process group down (no-op without one).

    Ranks finish at different moments (rank 0 still writes results and plots while the others
    are done); a rank whose interpreter exits with gloo's threads still alive can abort
    ("terminate called without an active exception") and take the job down with it. Called
    only on the way out of a successful run, so every rank reaches the barrier.
    """
    if not process_group_exists():
        return
    if torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()
    torch.distributed.destroy_process_group()


# -- SyncBatchNorm --------------------------------------------------------------------------------
class SyncBatchNormDDPStrategy(DDPStrategy):
    """Fabric's DDP strategy, converting BatchNorm to SyncBatchNorm before wrapping a module.

    Lightning's Trainer does the same (its ``sync_batchnorm`` flag); Fabric has no such flag, and
    converting here catches every module a method sets up (segmenter, discriminator, ...).
    """

    def setup_module(self, module: nn.Module) -> Any:
        """Convert, then wrap in ``DistributedDataParallel``."""
        return super().setup_module(
            convert_sync_batchnorm(module, device_type=self.root_device.type)
        )


# -- resuming on another number of processes -----------------------------------------------------
def rescale_stream_state(state: Any, *, saved_world: int, world: int) -> Any:
    """Stream positions of a checkpoint written by ``saved_world`` processes, for ``world``.

    Rank r of W takes global draws r, r + W, ... of one stream (``data/loading.py``); its
    position p counts the samples it consumed, so the global stream has consumed p·W samples and,
    with b samples per rank, step s's global batch is the block [s·B, (s+1)·B), B = b·W. Giving
    each of W' ranks the position p·W / W' continues that global stream at the same sample: with
    the same global batch (b' = B / W') the resumed run sees exactly the batches it would have
    seen; with another global batch (which ``train.allow_config_change`` must allow) it still
    skips and repeats nothing.

    Args:
        state: ``stream.state_dict()`` as saved by rank 0: ``{"position": p}``, or one such dict
            per named stream.
        saved_world: processes of the saved run.
        world: processes of the resumed run.

    Returns:
        The state with every position rescaled (the same object when the count is unchanged).

    Raises:
        ValueError: a position p·W that does not split evenly over ``world`` processes.

    Example:
        >>> rescale_stream_state({"source": {"position": 8}}, saved_world=2, world=4)
        {'source': {'position': 4}}
    """
    if saved_world == world or not isinstance(state, dict):
        return state
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key != "position":
            out[key] = rescale_stream_state(value, saved_world=saved_world, world=world)
            continue
        consumed = int(value) * saved_world
        if consumed % world:
            raise ValueError(
                f"resume: the checkpoint's {consumed} training samples ({value} on each of "
                f"{saved_world} processes) must split evenly over {world} processes; got a "
                f"remainder of {consumed % world}. Hint: resume on {saved_world} processes, or "
                "keep data.batch_size × processes as in the checkpoint."
            )
        out[key] = consumed // world
    return out
