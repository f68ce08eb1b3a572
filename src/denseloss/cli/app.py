"""``denseloss <command>``: a small dispatcher that imports each sub-command lazily.

``denseloss --help`` imports nothing beyond the standard library, so it answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

__all__ = ["COMMANDS", "CliParser", "UsageError", "run"]

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


class UsageError(ValueError):
    """A command line that cannot be parsed (unknown flag, bad value, missing argument)."""


class CliParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors raise :class:`UsageError` instead of exiting.

    argparse prints a usage block and the error on two or more lines; :func:`run` prints the
    error alone, as one line, and exits with status 2.
    """

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        """Raise :class:`UsageError` with argparse's message."""
        raise UsageError(message)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, KeyError):  # str(KeyError('x')) is "'x'": say what it is
        text = f"missing key {text}"
    return text or type(error).__name__


def run(argv: list[str]) -> int:
    """Run ``denseloss`` with ``argv`` (without the program name); returns the exit status.

    Errors print one line on stderr instead of a traceback (``DENSELOSS_DEBUG=1`` shows it):

    * 2 — usage: a bad flag or value, an unknown name, a missing or invalid file (data,
      config, checkpoint), a run folder that already holds a run;
    * 1 — the run failed: a NaN/inf loss (the last good checkpoint is kept), an OS error;
    * 130 — interrupted with Ctrl-C (the message says which checkpoint was kept).
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
    except Exception as error:
        if os.environ.get("DENSELOSS_DEBUG") == "1":
            raise
        status = _status(error)
        if status is None:
            raise
        print(f"denseloss {command}: error: {_one_line(error)}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        if os.environ.get("DENSELOSS_DEBUG") == "1":
            raise
        print(f"denseloss {command}: interrupted.", file=sys.stderr)
        return 130


def _status(error: BaseException) -> int | None:
    """Exit status of an error :func:`run` reports in one line; ``None``: a bug, show it all."""
    from_module = type(error).__module__
    if type(error).__name__ == "TrainingInterruptedError":
        return 130
    if isinstance(error, FloatingPointError):  # NonFiniteLossError
        return 1
    if isinstance(error, (ValueError, TypeError, KeyError, FileNotFoundError)):
        return 2
    if isinstance(error, (PermissionError, IsADirectoryError, NotADirectoryError)):
        return 2
    if isinstance(error, OSError) and not from_module.startswith("torch"):
        return 1
    return None
