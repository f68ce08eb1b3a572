"""``denseloss train``: the command line derived from ``RunConfig`` (jsonargparse).

Examples::

    denseloss train --method maxsquare --train.steps 300 --data.size 64 \
        --params '{"lambda_target": 0.1}'
    denseloss train --config runs/x/config.yaml --train.resume runs/x
    denseloss train --method ce --print-config > run.yaml   # then: --config run.yaml
"""

from __future__ import annotations

import json
from typing import Any

from denseloss.config.schema import RunConfig, config_from_dict, config_to_dict, validate

__all__ = ["build_parser", "main", "parse_config"]


def build_parser() -> Any:
    """A jsonargparse parser whose flags are :class:`RunConfig`'s fields (``--train.steps``)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog="denseloss train",
        description="Train a method. Flags mirror denseloss.config.schema.RunConfig.",
        default_env=False,
        exit_on_error=False,
    )
    parser.add_argument("--config", action="config", help="YAML written by --print-config")
    parser.add_class_arguments(RunConfig, nested_key=None, fail_untyped=False)
    parser.add_argument(
        "--print-config",
        dest="print_resolved",
        action="store_true",
        help="print the resolved config as YAML and exit",
    )
    return parser


def parse_config(argv: list[str]) -> tuple[RunConfig, bool]:
    """Parse ``argv`` into a validated :class:`RunConfig`; also return whether to print it."""
    ns = build_parser().parse_args(argv).as_dict()
    ns.pop("config", None)
    ns.pop("__path__", None)
    print_resolved = bool(ns.pop("print_resolved", False))
    config = config_from_dict(ns)
    return validate(config), print_resolved


def main(argv: list[str]) -> int:
    """Entry point of ``denseloss train``."""
    import yaml

    config, print_resolved = parse_config(argv)
    if print_resolved:
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0
    from denseloss.training.trainer import train

    results = train(config)
    summary = {k: results[k] for k in ("out_dir", "steps", "images_per_s") if k in results}
    for split in ("val", "test"):
        metrics = results.get(split, {})
        summary[split] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    print(json.dumps(summary, indent=2))
    return 0
