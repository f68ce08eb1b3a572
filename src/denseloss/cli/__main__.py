"""Entry point of the ``denseloss`` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``denseloss <command> ...``; sub-commands are imported lazily (fast ``--help``)."""
    from denseloss.cli.app import run

    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
