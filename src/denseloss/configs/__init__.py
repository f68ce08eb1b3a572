"""The papers' protocols, one YAML file per experiment, installed with the package.

Each file (``<family>/<name>.yaml``) is a complete ``denseloss train --config`` file — no
inheritance — whose leading comment block says what it reproduces::

    # experiment: AdvSemiSeg — PASCAL VOC 2012 aug, 1/8 labelled, +L_adv+L_semi
    # paper: 69.5 mIoU [paper] Hung et al., BMVC 2018, Table 1 ...
    # code: the authors' files the values come from
    # layout: the data layout(s) it reads
    # weights: the --model.weights file to pass
    # run: the command (data roots are the only thing to fill in)
    # deviations: where it differs from the paper or the code, and why
    #   (indented comment lines continue the previous key)

``denseloss train --config advsemiseg/voc-1_8-advsemi`` finds an installed file by name;
``denseloss list --configs`` prints them all with the paper's number. ``docs/protocols.md``
holds the same table with the reasons for each deviation.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CONFIG_ROOT",
    "HEADER_KEYS",
    "Protocol",
    "list_configs",
    "read_header",
    "resolve_config",
]

CONFIG_ROOT = Path(__file__).resolve().parent
HEADER_KEYS = ("experiment", "paper", "code", "layout", "weights", "run", "deviations")


@dataclass(frozen=True)
class Protocol:
    """One installed config: its name (``family/name``), file and header fields."""

    name: str
    path: Path
    header: dict[str, str] = field(default_factory=dict)

    @property
    def paper(self) -> str:
        """The paper's number for this experiment, as the header states it."""
        return self.header.get("paper", "")


def read_header(path: str | Path) -> dict[str, str]:
    """The ``# key: value`` lines before the first YAML line (continuations joined by a space).

    Raises:
        ValueError: a header key outside :data:`HEADER_KEYS`, naming the file.
    """
    out: dict[str, str] = {}
    key = None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line[1:]
        if text.startswith("   ") and key is not None:
            out[key] += " " + text.strip()
            continue
        name, sep, value = text.strip().partition(":")
        if not sep or name not in HEADER_KEYS:
            raise ValueError(
                f"read_header: {path}: header lines must be '# <key>: <text>' with key in "
                f"{list(HEADER_KEYS)}; got {line!r}."
            )
        key = name
        out[key] = value.strip()
    return out


def list_configs() -> list[Protocol]:
    """Every installed config, sorted by name."""
    return [
        Protocol(path.relative_to(CONFIG_ROOT).with_suffix("").as_posix(), path, read_header(path))
        for path in sorted(CONFIG_ROOT.rglob("*.yaml"))
    ]


def resolve_config(name: str) -> Path:
    """The file ``denseloss train --config name`` reads: an existing path, else an installed name.

    ``name`` may carry the ``.yaml`` suffix or not (``advsemiseg/voc-1_8-advsemi``).

    Raises:
        FileNotFoundError: neither a file nor an installed config; the message lists the
            closest installed names.
    """
    path = Path(name)
    if path.is_file():
        return path
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    candidate = CONFIG_ROOT / f"{stem}.yaml"
    if candidate.is_file():
        return candidate
    names = [p.name for p in list_configs()]
    close = difflib.get_close_matches(stem, names, n=3, cutoff=0.5)
    hint = f" Closest: {', '.join(close)}." if close else ""
    raise FileNotFoundError(
        f"--config {name}: must be a YAML file or an installed config name; got neither.{hint} "
        "Hint: `denseloss list --configs` lists the installed ones."
    )
