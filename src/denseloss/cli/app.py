"""``denseloss <command>``: a small dispatcher that imports each sub-command lazily.

``denseloss --help`` imports nothing beyond the standard library, so it answers at once.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "run"]

# command -> (module, one-line help); each module exposes ``main(argv: list[str]) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("denseloss.cli.train", "train a method (--config, --print-config, flag overrides)"),
    "eval": ("denseloss.cli.evaluate", "evaluate a run's checkpoint; writes metrics and overlays"),
    "list": ("denseloss.cli.listing", "methods by supervision regime, data sets and models"),
    "data": ("denseloss.cli.data", "data tools: `data show builtin --regime uda --out grid.png`"),
    "bench": ("denseloss.cli.bench", "benchmarks: `bench losses` (time and memory vs CE)"),
    "reproduce": ("denseloss.cli.reproduce", "re-run the studies behind the README's tables"),
}

USAGE = (
    "usage: denseloss <command> [options]\n\ncommands:\n"
    + "\n".join(f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items())
    + "\n\n`denseloss <command> --help` shows the options of a command."
)


def run(argv: list[str]) -> int:
    """Run ``denseloss`` with ``argv`` (without the program name); returns the exit status.

    User errors (bad values, unknown names, missing files, a NaN loss) print one line on stderr
    and return 2 (usage) or 1 (run failure) instead of a traceback.
    """
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from denseloss import __version__

        print(f"denseloss {__version__}")
        return 0
    command, rest = argv[0], list(argv[1:])
    if command not in COMMANDS:
        print(f"denseloss: error: unknown command {command!r}.\n\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    try:
        return int(module.main(rest) or 0)
    except (ValueError, TypeError, KeyError) as err:
        print(f"denseloss {command}: error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FloatingPointError) as err:
        print(f"denseloss {command}: error: {err}", file=sys.stderr)
        return 1
