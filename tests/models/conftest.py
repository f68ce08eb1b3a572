"""Model tests run their tiny networks on one intra-op thread.

At batch 2 and 64² each op takes microseconds, so OpenMP synchronisation between threads costs more
than it saves, and on a loaded machine (parallel test workers) it costs seconds per forward. The
previous setting is restored afterwards, so other test packages are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
