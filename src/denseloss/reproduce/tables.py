"""A study's tables and figure: mean ± std over seeds per cell, as markdown and as a bar chart.

A cell is one (row, column) of a table, i.e. one run over its seeds; its mean and *sample* std
(n − 1) are what the README's "beats / level / below" reading compares (a method beats its
baseline where the difference of means exceeds both stds).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from denseloss.reproduce.studies import Budget, Run

__all__ = ["aggregate", "format_tables", "metric", "plot_study", "study_figure"]


def metric(res: dict[str, Any], key: str, split: str = "test") -> float:
    value = res.get(split, {}).get(key, float("nan"))
    return float(value) if isinstance(value, (int, float)) else float("nan")


def aggregate(
    runs: list[Run],
    results: dict[tuple[str, int], dict[str, Any]],
    seeds: tuple[int, ...],
    *,
    split: str = "test",
) -> dict[str, Any]:
    """Mean and sample std over seeds of each run's ``split`` metrics, grouped by table.

    Returns:
        ``{table: {"rows": [...], "cols": [...], "metrics": [...], "cells": {row: {col:
        {metric: {"mean", "std", "n", "values"}}}}}}``.
    """
    tables: dict[str, Any] = {}
    for run in runs:
        t = tables.setdefault(
            run.table,
            {"rows": [], "cols": [], "metrics": [list(m) for m in run.metrics], "cells": {}},
        )
        if run.row not in t["rows"]:
            t["rows"].append(run.row)
        if run.col not in t["cols"]:
            t["cols"].append(run.col)
        cell = {}
        for key, _, _ in run.metrics:
            values = [
                metric(results[(run.key, s)], key, split) for s in seeds if (run.key, s) in results
            ]
            values = [v for v in values if not math.isnan(v)]
            cell[key] = {
                "mean": statistics.fmean(values) if values else float("nan"),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "n": len(values),
                "values": values,
            }
        t["cells"].setdefault(run.row, {})[run.col] = cell
    return tables


def _fmt(cell: dict[str, Any], scale: float) -> str:
    if not cell["n"]:
        return "—"
    mean, std = cell["mean"] * scale, cell["std"] * scale
    # AbsRel 0.118 needs three decimals; percentages (mIoU 6.6 or 66.8) and degrees > 10 one
    digits = 3 if scale == 1.0 and abs(mean) < 10 else 1
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_tables(
    study: str,
    tables: dict[str, Any],
    budget: Budget,
    seeds: tuple[int, ...],
    *,
    split: str = "test",
) -> str:
    """Markdown: one table per (table, metric); mean ± std over seeds, best mean in bold."""
    lines = [
        f"### Study `{study}`" + (" (val split)" if split == "val" else ""),
        "",
        f"{split.capitalize()} split, mean ± std over seeds {list(seeds)}; {budget.steps} steps "
        f"({budget.adapt_steps} for runs initialised from another run), {budget.size}² images, "
        f"{budget.train_length} training scenes, batch {budget.batch_size}.",
        "",
    ]
    for name, t in tables.items():
        if len(t["rows"]) == 1 and len(t["metrics"]) > 1:
            lines += _transposed(name, t)
            continue
        for key, title, higher in t["metrics"]:
            scale = _scale(key)
            unit = " (%)" if scale == 100.0 else ""
            lines.append(f"**{name}: {title}{unit}** ({'higher' if higher else 'lower'} is better)")
            lines.append("")
            lines.append("| | " + " | ".join(t["cols"]) + " |")
            lines.append("|---" * (len(t["cols"]) + 1) + "|")
            for row in t["rows"]:
                cells = t["cells"].get(row, {})
                means = {c: cells[c][key]["mean"] for c in cells if cells[c][key]["n"]}
                best = (max if higher else min)(means, key=means.get) if means else None
                out = []
                for col in t["cols"]:
                    if col not in cells:
                        out.append("")
                        continue
                    text = _fmt(cells[col][key], scale)
                    out.append(f"**{text}**" if col == best else text)
                lines.append(f"| {row} | " + " | ".join(out) + " |")
            lines.append("")
    return "\n".join(lines)


def _scale(key: str) -> float:
    return 100.0 if key in _PERCENT else 1.0


_PERCENT = ("miou", "boundary_f1", "pixel_acc", "delta1", "delta2", "delta3")


def _transposed(name: str, t: dict[str, Any]) -> list[str]:
    """One-row tables with several metrics: methods as rows, metrics as columns."""
    row = t["rows"][0]
    cells = t["cells"].get(row, {})
    heads = [
        f"{title}{' (%)' if _scale(k) == 100 else ''} {'↑' if hi else '↓'}"
        for k, title, hi in t["metrics"]
    ]
    lines = [
        f"**{name}** ({row})",
        "",
        "| method | " + " | ".join(heads) + " |",
        "|---" * (len(heads) + 1) + "|",
    ]
    best = {}
    for key, _, higher in t["metrics"]:
        means = {c: cells[c][key]["mean"] for c in cells if cells[c][key]["n"]}
        best[key] = (max if higher else min)(means, key=means.get) if means else None
    for col in t["cols"]:
        if col not in cells:
            continue
        out = []
        for key, _, _ in t["metrics"]:
            text = _fmt(cells[col][key], _scale(key))
            out.append(f"**{text}**" if best[key] == col else text)
        lines.append(f"| {col} | " + " | ".join(out) + " |")
    return [*lines, ""]


def plot_study(tables: dict[str, Any], path: str | Path, *, title: str = "") -> Path:
    """Grouped bar chart of each table's first metric, with ±std error bars, saved to ``path``."""
    import matplotlib.pyplot as plt

    fig = study_figure(tables, title=title)
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def study_figure(tables: dict[str, Any], *, title: str = "") -> Any:
    """The :func:`plot_study` figure (a ``matplotlib.figure.Figure``; the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(tables)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 3.8), squeeze=False)
    for ax, (name, t) in zip(axes[0], tables.items()):
        key, mtitle, _ = t["metrics"][0]
        scale = _scale(key)  # the same units as the tables (mIoU in %)
        width = 0.8 / max(1, len(t["cols"]))
        for j, col in enumerate(t["cols"]):
            xs, ys, es = [], [], []
            for i, row in enumerate(t["rows"]):
                cell = t["cells"].get(row, {}).get(col)
                if cell and cell[key]["n"]:
                    xs.append(i + j * width)
                    ys.append(cell[key]["mean"] * scale)
                    es.append(cell[key]["std"] * scale)
            ax.bar(xs, ys, width, yerr=es, capsize=2, label=col)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(t["rows"]))], t["rows"])
        ax.set_ylabel(mtitle + (" (%)" if scale == 100.0 else ""))
        ax.set_title(f"{title}: {name}")
        # Below the axes, never over the bars: a study with many columns filled the plot area.
        ax.legend(
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.12),
            ncol=min(3, max(1, len(t["cols"]))),
            frameon=False,
        )
    return fig
