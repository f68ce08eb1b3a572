"""Semi-supervised streams at the labelled-fraction extremes."""

from __future__ import annotations

from denseloss.config.schema import DataConfig
from denseloss.training.streams import build_train_data


def test_full_fraction_has_no_unlabeled_stream():
    cfg = DataConfig(size=32, train_length=4, batch_size=2, labeled_fraction=1.0)
    batch = next(build_train_data(cfg, "semi").stream)
    assert set(batch) == {"labeled", "gt"}


def test_fraction_splits_labels_and_drops_them_from_unlabeled():
    cfg = DataConfig(size=32, train_length=8, batch_size=2, labeled_fraction=0.25)
    batch = next(build_train_data(cfg, "semi").stream)
    assert set(batch) == {"labeled", "unlabeled", "gt"}
    assert "label" in batch["labeled"]
    assert "label" not in batch["unlabeled"]
