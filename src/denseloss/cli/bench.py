"""``denseloss bench losses|trainer|models [...]``: loss costs vs CE; trainer vs a bare loop;
the papers' networks (images/s and peak memory at the papers' crops)."""

from __future__ import annotations

from denseloss.cli.app import CliParser

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Entry point of ``denseloss bench``; forwards the rest of ``argv`` to the benchmark."""
    parser = CliParser(prog="denseloss bench", description=__doc__)
    parser.add_argument("target", choices=["losses", "trainer", "models"], help="what to benchmark")
    target = parser.parse_args(argv[:1]).target
    if target == "models":
        from denseloss.bench.models import run_bench as run_models_bench

        return int(run_models_bench(list(argv[1:])) or 0)
    if target == "trainer":
        from denseloss.bench.trainer import run_bench as run_trainer_bench

        return int(run_trainer_bench(list(argv[1:])) or 0)
    from denseloss.bench.losses import run_bench

    return int(run_bench(list(argv[1:])) or 0)
