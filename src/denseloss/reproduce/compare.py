"""A study's fresh tables beside the committed reference, with the cells that disagree marked.

``denseloss reproduce`` trains into its own output folder (``runs/reproduce/<budget>``) and then
reads the reference summary committed under ``results/<budget>/<study>/summary.json``. A cell is
marked when its mean differs from the reference mean by more than 2 standard deviations, the
larger of the two runs' seed spreads, floored at 0.5 % of the reference mean (two 3-seed runs on
the same CPU often agree to the last digit, where a zero spread would flag any rounding).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["compare_tables", "load_reference"]


def load_reference(path: str | Path) -> dict[str, Any] | None:
    """The ``tables`` of a reference ``summary.json`` (None when the file does not exist)."""
    p = Path(path)
    if not p.is_file():
        return None
    return json.loads(p.read_text()).get("tables")


def _cells(tables: dict[str, Any]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    out = {}
    for name, t in tables.items():
        for row, cols in t["cells"].items():
            for col, metrics in cols.items():
                for key, cell in metrics.items():
                    out[(name, row, col, key)] = cell
    return out


def compare_tables(
    study: str, ours: dict[str, Any], reference: dict[str, Any], *, n_std: float = 2.0
) -> tuple[str, int]:
    """Markdown of every cell present in both: ours, the reference, the difference, a flag.

    Returns:
        ``(markdown, number of flagged cells)``.
    """
    mine, ref = _cells(ours), _cells(reference)
    lines = [
        f"#### `{study}` against the committed reference",
        "",
        "| table | row | column | metric | this run | reference | Δ | |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    flagged = 0
    for k in mine:
        if k not in ref or not mine[k]["n"] or not ref[k]["n"]:
            continue
        a, b = mine[k], ref[k]
        delta = a["mean"] - b["mean"]
        spread = max(a["std"], b["std"], 0.005 * abs(b["mean"]))
        bad = math.isfinite(delta) and abs(delta) > n_std * spread
        flagged += bad
        lines.append(
            f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {a['mean']:.4g} ± {a['std']:.2g} | "
            f"{b['mean']:.4g} ± {b['std']:.2g} | {delta:+.3g} | {'**> 2 std**' if bad else ''} |"
        )
    if len(lines) == 4:
        lines.append("| (no cell in common) | | | | | | | |")
    return "\n".join(lines) + "\n", flagged
