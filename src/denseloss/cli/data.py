"""``denseloss data show|check``: look at a data set, or validate it before training on it.

Examples::

    denseloss data show builtin --regime uda --out grid.png
    denseloss data show folder --root /data/mine --split val --out mine.png
    denseloss data check folder --root /data/mine                  # train, val and test splits
    denseloss data check cityscapes --root /data/cs --split val --kwargs '{"classes": 16}'

``check`` runs the validation ``denseloss train`` runs before step 1 (every file of every
sample: header, integrity, label mode and range, sizes) and prints per split the number of
samples, the keys present (label, scribble, depth, normal), the image sizes, the classes present
and the ignored fraction; each problem is one line naming the file. Exit status 2 when any
split has a problem.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from denseloss.cli.app import CliParser

__all__ = ["main"]


def _add_data_arguments(parser: CliParser) -> None:
    parser.add_argument("dataset", help="data set name (`denseloss list` shows them)")
    parser.add_argument("--root", default=None, help="data set root (not for builtin)")
    parser.add_argument("--kwargs", type=json.loads, default={}, help="JSON keyword arguments")
    parser.add_argument("--domain", default=None, help="built-in data: synthetic or real")


def _build(args: argparse.Namespace, split: str) -> Any:
    from denseloss.config.data import DataSource, check_source
    from denseloss.data import build_dataset

    kwargs, domain = dict(args.kwargs), args.domain
    if args.dataset == "builtin":
        domain = kwargs["domain"] = domain or kwargs.get("domain") or "synthetic"
    source = DataSource(name=args.dataset, root=args.root, domain=domain, kwargs=kwargs)
    check_source("", source, target=True)
    return build_dataset(args.dataset, root=args.root, split=split, **kwargs)


def main(argv: list[str]) -> int:
    """Entry point of ``denseloss data``."""
    parser = CliParser(prog="denseloss data", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True, parser_class=CliParser)
    show = sub.add_parser("show", help="write a PNG grid of samples")
    _add_data_arguments(show)
    show.add_argument("--split", default="train", help="split name (not for builtin uda)")
    show.add_argument("--regime", default="full", choices=["full", "semi", "scribble", "uda"])
    show.add_argument("--out", default="grid.png", help="PNG to write")
    show.add_argument("--size", type=int, default=64, help="built-in scene size in pixels")
    show.add_argument("--seed", type=int, default=0, help="built-in scene seed")
    show.add_argument("-n", type=int, default=4, help="samples (per domain)")
    check = sub.add_parser("check", help="validate every sample and summarise each split")
    _add_data_arguments(check)
    check.add_argument(
        "--split", nargs="+", default=["train", "val", "test"], help="split names to check"
    )
    check.add_argument("--max-errors", type=int, default=20, help="problems listed per split")
    args = parser.parse_args(argv)
    if args.action == "show":
        if args.dataset == "builtin" and not args.kwargs and args.root is None:
            from denseloss.data.show import show_builtin

            print(show_builtin(args.regime, args.out, size=args.size, seed=args.seed, n=args.n))
            return 0
        from denseloss.data.show import save_grid

        dataset = _build(args, args.split)
        print(save_grid({args.split: dataset}, args.out, n=args.n, regime=args.regime))
        return 0
    return _check(args)


def _check(args: argparse.Namespace) -> int:
    from denseloss.data.check import check_dataset, format_report
    from denseloss.data.errors import DataError

    reports, names, problems = [], (), 0
    for split in args.split:
        try:
            dataset = _build(args, split)
        except (FileNotFoundError, DataError) as error:
            print(f"  {split:<13} cannot be indexed: {' '.join(str(error).split())}")
            problems += 1
            continue
        names = names or tuple(getattr(dataset, "class_names", ()))
        report = check_dataset(
            dataset,
            role=split,
            max_errors=args.max_errors,
            progress=True,
        )
        problems += len(report.errors)
        reports.append(report)
    where = args.dataset + (f" at {args.root}" if args.root else "")
    classes = f"{len(names)} classes" + (f" ({', '.join(names)})" if names else "")
    print(format_report(f"{where}: {classes}", reports, names))
    print("OK: no problems found." if not problems else f"{problems} problem(s) found.")
    return 0 if not problems else 2
