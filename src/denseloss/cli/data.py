"""``denseloss data show builtin --regime uda --out grid.png``: look at the built-in data."""

from __future__ import annotations

import argparse

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Entry point of ``denseloss data``."""
    parser = argparse.ArgumentParser(prog="denseloss data", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="write a PNG grid of samples")
    show.add_argument("dataset", choices=["builtin"], help="data set (only the built-in one)")
    show.add_argument("--regime", default="full", choices=["full", "semi", "scribble", "uda"])
    show.add_argument("--out", default="grid.png", help="PNG to write")
    show.add_argument("--size", type=int, default=64, help="scene size in pixels")
    show.add_argument("--seed", type=int, default=0, help="scene seed")
    show.add_argument("-n", type=int, default=4, help="scenes per domain")
    args = parser.parse_args(argv)
    from denseloss.data.show import show_builtin

    path = show_builtin(args.regime, args.out, size=args.size, seed=args.seed, n=args.n)
    print(path)
    return 0
