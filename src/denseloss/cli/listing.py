"""``denseloss list``: methods grouped by supervision regime (with defaults), data sets, models."""

from __future__ import annotations

import dataclasses
from typing import Any

from denseloss.cli.app import CliParser

__all__ = ["describe", "describe_configs", "main"]

REGIMES = ("full", "semi", "scribble", "uda")


def _registry(module: str, name: str) -> dict[str, Any] | str:
    import importlib

    try:
        return dict(getattr(importlib.import_module(module), name))
    except (ImportError, AttributeError) as err:
        return f"(unavailable: {err})"


def _defaults(cls: type) -> str:
    cfg = getattr(cls, "Config", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        return ""
    return ", ".join(f"{f.name}={_default(f)!r}" for f in dataclasses.fields(cfg))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "<required>"


def _segmenters() -> str:
    """``segmenters: a, b, …, old (alias of new)``; the mini networks' old names are aliases."""
    reg = _registry("denseloss.models", "SEGMENTERS")
    if isinstance(reg, str):
        return f"segmenters: {reg}"
    aliases = _registry("denseloss.models", "SEGMENTER_ALIASES")
    aliases = {} if isinstance(aliases, str) else aliases
    names = [n for n in reg if n not in aliases]
    names += [f"{a} (alias of {t})" for a, t in sorted(aliases.items())]
    return f"segmenters: {', '.join(names)}"


def describe() -> str:
    """The text ``denseloss list`` prints."""
    lines: list[str] = []
    methods = _registry("denseloss.methods", "METHODS")
    lines.append("methods (by supervision regime; `--params` overrides the defaults):")
    if isinstance(methods, str):
        lines.append(f"  {methods}")
    else:
        for regime in REGIMES:
            names = sorted(n for n, c in methods.items() if getattr(c, "regime", None) == regime)
            lines.append(f"  {regime}:")
            for name in names:
                cls = methods[name]
                tasks = ",".join(getattr(cls, "tasks", ("seg",)))
                lines.append(f"    {name:<20} tasks={tasks}  {_defaults(cls)}")
    for title, module, attr in (
        ("data sets", "denseloss.data", "DATASETS"),
        ("segmenters", "denseloss.models", "SEGMENTERS"),
        ("regressors", "denseloss.models", "REGRESSORS"),
        ("discriminators", "denseloss.models", "DISCRIMINATORS"),
        ("analyzers", "denseloss.models", "ANALYZERS"),
    ):
        if attr == "SEGMENTERS":
            lines.append(_segmenters())
            continue
        reg = _registry(module, attr)
        lines.append(f"{title}: {reg if isinstance(reg, str) else ', '.join(sorted(reg))}")
    return "\n".join(lines)


def describe_configs() -> str:
    """The text of ``denseloss list --configs``: each installed paper protocol and its number."""
    from denseloss.configs import list_configs

    head = "paper protocols (`denseloss train --config <name> --data.root ...`, docs/protocols.md):"
    lines = [head]
    for protocol in list_configs():
        lines.append(f"  {protocol.name:<40} {protocol.paper}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``denseloss list``."""
    parser = CliParser(prog="denseloss list", description=__doc__)
    parser.add_argument(
        "--configs", action="store_true", help="the installed paper protocols and their numbers"
    )
    args = parser.parse_args(argv)
    print(describe_configs() if args.configs else describe())
    return 0
