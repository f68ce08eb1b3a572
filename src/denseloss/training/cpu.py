"""CPU threads: how many this process may use, and a default that never oversubscribes them.

torch's default intra-op thread count is the number of CPUs OpenMP sees, which ignores a
container's CPU quota: on a 2-CPU cgroup of a 64-core host it starts 64 threads and runs many
times slower (100 training steps of the README's run: 88 s by default, 6.3 s with one thread on
a 2-core machine shared with another job). ``train.threads`` sets the count explicitly; left
unset, the count is capped at the CPUs this process may use divided among the run's processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["available_cpus", "configure_threads"]


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2/v1 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(count, quota) if quota else count)


def _cgroup_quota() -> int | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return max(1, int(int(text[0]) / int(text[1])))
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return max(1, quota // period)
    except (OSError, ValueError):
        pass
    return None


def configure_threads(requested: int | None, processes: int = 1) -> int:
    """Set torch's intra-op threads of this process; returns the count in use.

    Args:
        requested: ``train.threads``; ``None`` keeps torch's current count (a caller such as
            ``denseloss reproduce`` may have set it) unless it exceeds ``available_cpus() //
            processes``, the share of this machine's CPUs of each of the run's processes.
        processes: processes of the run on this machine.
    """
    if requested is not None:
        torch.set_num_threads(int(requested))
        return int(requested)
    share = max(1, available_cpus() // max(1, processes))
    if torch.get_num_threads() > share:
        torch.set_num_threads(share)
    return torch.get_num_threads()
