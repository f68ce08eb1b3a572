"""``denseloss bench losses [...]``: forward+backward time and memory of the losses vs CE."""

from __future__ import annotations

import argparse

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Entry point of ``denseloss bench``; forwards the rest of ``argv`` to the benchmark."""
    parser = argparse.ArgumentParser(prog="denseloss bench", description=__doc__)
    parser.add_argument("target", choices=["losses"], help="what to benchmark")
    parser.parse_args(argv[:1])
    from denseloss.bench.losses import run_bench

    return int(run_bench(list(argv[1:])) or 0)
