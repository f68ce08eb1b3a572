from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from denseloss.training.logging import RunLogger
from denseloss.viz.curves import plot_curves
from denseloss.viz.overlays import colorize, overlay, save_overlays, save_regression_panel

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def test_colorize_and_overlay_values() -> None:
    labels = torch.tensor([[0, 1], [2, 255]])
    rgb = colorize(labels, PALETTE)
    np.testing.assert_array_equal(rgb[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(rgb[1, 0], [0, 0, 1])
    np.testing.assert_array_equal(rgb[1, 1], [0, 0, 0])  # void is black
    image = torch.full((3, 2, 2), 0.5)
    out = overlay(image, labels, PALETTE, alpha=0.5)
    np.testing.assert_allclose(out[0, 0], [0.75, 0.25, 0.25])  # 0.5·0.5 + 0.5·(1, 0, 0)
    np.testing.assert_allclose(out[1, 1], [0.5, 0.5, 0.5])  # void shows the bare image
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, labels, PALETTE, alpha=2.0)


def test_save_overlays_and_regression_panels(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 16, 16, generator=g)
    labels = torch.randint(0, 3, (2, 16, 16), generator=g)
    logits = torch.randn(2, 3, 16, 16, generator=g)
    path = save_overlays(
        images,
        labels,
        logits,
        tmp_path / "seg.png",
        palette=PALETTE,
        extra_maps={"confidence": torch.rand(2, 1, 16, 16, generator=g)},
        scribbles=torch.where(labels > 1, labels, 255),
    )
    assert path.stat().st_size > 1000
    depth = torch.rand(2, 1, 16, 16, generator=g) + 0.5
    assert save_regression_panel(images, depth, depth * 1.1, tmp_path / "d.png", task="depth")
    normal = torch.nn.functional.normalize(torch.randn(2, 3, 16, 16, generator=g), dim=1)
    assert save_regression_panel(images, normal, normal, tmp_path / "n.png", task="normals")
    with pytest.raises(ValueError, match="images"):
        save_overlays(images[:, :1], labels, logits, tmp_path / "x.png", palette=PALETTE)
    with pytest.raises(ValueError, match="task"):
        save_regression_panel(images, depth, depth, tmp_path / "x.png", task="seg")


def test_plot_curves_from_logger(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, tensorboard=False)
    for step in range(1, 6):
        logger.log(step, {"loss/seg": 1.0 / step})
    logger.log(5, {"val/miou": 0.3})
    logger.close()
    assert plot_curves(tmp_path / "metrics.csv", tmp_path / "curves.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="path must be an existing file"):
        plot_curves(tmp_path / "absent.csv", tmp_path / "c.png")
