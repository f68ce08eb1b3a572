"""``denseloss eval --run <dir> [--checkpoint f] [--split val|test] [--out dir]``."""

from __future__ import annotations

import argparse
import json

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Entry point of ``denseloss eval``: prints the metrics as JSON, writes overlays."""
    parser = argparse.ArgumentParser(prog="denseloss eval", description=__doc__)
    parser.add_argument("--run", help="run directory (config.yaml + checkpoints/last.ckpt)")
    parser.add_argument("--checkpoint", help="checkpoint file (default: the run's last.ckpt)")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--out", help="directory for eval_<split>.json and PNGs (<run>/eval)")
    parser.add_argument("--batches", type=int, default=None, help="evaluate at most N batches")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args(argv)
    if args.run is None and args.checkpoint is None:
        parser.error("one of --run or --checkpoint is required")
    from denseloss.training.evaluation import evaluate_run

    result = evaluate_run(
        args.run,
        checkpoint=args.checkpoint,
        split=args.split,
        out=args.out,
        max_batches=args.batches,
        accelerator=args.accelerator,
    )
    print(json.dumps(result, indent=2))
    return 0
