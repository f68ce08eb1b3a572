"""Loss and metric curves from a run's ``metrics.csv`` (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from denseloss.training.logging import read_metrics_csv

__all__ = ["plot_curves"]


def plot_curves(metrics_csv: str | Path, path: str | Path) -> Path:
    """Plot every ``loss/*`` column (left) and every ``val/*`` / ``test/*`` metric (right).

    Args:
        metrics_csv: a run's ``metrics.csv`` (``step`` column plus named scalars).
        path: PNG to write.

    Returns:
        The written path.

    Raises:
        FileNotFoundError: ``metrics_csv`` does not exist.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics_csv(metrics_csv)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k != "step" and k not in keys]
    panels = {
        "losses": [k for k in keys if k.startswith("loss/")],
        "metrics": [k for k in keys if k.startswith(("val/", "test/"))],
    }
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (title, names) in zip(axes, panels.items()):
        for name in names:
            pts = [(r["step"], r[name]) for r in rows if name in r]
            if not pts:
                continue
            xs, ys = zip(*pts)
            style = "o-" if len(pts) < 30 else "-"
            ax.plot(xs, ys, style, label=name, markersize=3, linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        if names:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
