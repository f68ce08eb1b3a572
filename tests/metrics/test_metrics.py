"""Metrics against independent NumPy computations and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from denseloss.metrics import BoundaryF1, ConfusionMatrix, DepthMetrics, NormalMetrics


def _np_miou(pred: np.ndarray, target: np.ndarray, c: int, ignore: int = 255) -> tuple[float, list]:
    keep = target != ignore
    ious = []
    for k in range(c):
        inter = np.sum((pred == k) & (target == k) & keep)
        union = np.sum(((pred == k) | (target == k)) & keep)
        ious.append(inter / union if union else float("nan"))
    present = [x for x in ious if not math.isnan(x)]
    return float(np.mean(present)), ious


def test_confusion_matches_numpy_over_batches():
    g = torch.Generator().manual_seed(1)
    cm = ConfusionMatrix(5)
    preds, targets = [], []
    for _ in range(3):
        p = torch.randint(0, 5, (2, 7, 9), generator=g)
        t = torch.randint(0, 5, (2, 7, 9), generator=g)
        t[torch.rand(2, 7, 9, generator=g) < 0.2] = 255
        cm.update(p, t)
        preds.append(p.numpy())
        targets.append(t.numpy())
    miou, ious = _np_miou(np.concatenate(preds), np.concatenate(targets), 5)
    out = cm.compute()
    assert out["miou"] == pytest.approx(miou)
    np.testing.assert_allclose(out["iou"], ious)
    keep = np.concatenate(targets) != 255
    acc = np.mean(np.concatenate(preds)[keep] == np.concatenate(targets)[keep])
    assert out["pixel_acc"] == pytest.approx(acc)


def test_confusion_dataset_level_not_per_image_mean():
    # image 1: 1 pixel of class 1 predicted right; image 2: 3 pixels of class 1, 1 right.
    # dataset IoU_1 = 2 / 4 = 0.5, the per-image mean would be (1 + 1/3) / 2 = 0.667.
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[[1]]]), torch.tensor([[[1]]]))
    cm.update(torch.tensor([[[1, 0, 0]]]), torch.tensor([[[1, 1, 1]]]))
    assert cm.compute()["iou"][1] == pytest.approx(0.5)


def test_confusion_absent_class_and_perfect():
    cm = ConfusionMatrix(3)
    y = torch.tensor([[[0, 1, 1]]])
    cm.update(y, y)
    out = cm.compute()
    assert out["miou"] == 1.0
    assert math.isnan(out["iou"][2])


def test_confusion_errors():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="pred must have"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="pred"):
        cm.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"pred must be in \[0, 3\)"):
        cm.update(torch.full((1, 2, 2), 3), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


def test_confusion_state_sum_equals_joint_update():
    a, b, joint = ConfusionMatrix(3), ConfusionMatrix(3), ConfusionMatrix(3)
    p1, t1 = torch.tensor([[[0, 1, 2]]]), torch.tensor([[[0, 2, 2]]])
    p2, t2 = torch.tensor([[[1, 1, 0]]]), torch.tensor([[[1, 0, 0]]])
    a.update(p1, t1)
    b.update(p2, t2)
    joint.update(torch.cat([p1, p2]), torch.cat([t1, t2]))
    a.load_state(a.state() + b.state())
    assert a.compute() == joint.compute()


def _np_boundary_f1(pred: np.ndarray, target: np.ndarray, c: int, tol: int) -> float:
    """Independent reference with scipy.ndimage (4-neighbour erosion, square dilation)."""
    valid = target != 255
    cross = ndimage.generate_binary_structure(2, 1)
    square = np.ones((2 * tol + 1, 2 * tol + 1), bool)
    counts = np.zeros((4, c))
    for img in range(pred.shape[0]):
        for k in range(c):

            def bnd(lab: np.ndarray, k: int = k) -> np.ndarray:
                m = lab == k
                er = ndimage.binary_erosion(m, cross, border_value=1)
                return m & ~er

            bp = bnd(pred[img]) & valid[img]
            bg = bnd(target[img]) & valid[img]
            dg = ndimage.binary_dilation(bg, square) if tol else bg
            dp = ndimage.binary_dilation(bp, square) if tol else bp
            counts[:, k] += [np.sum(bp & dg), bp.sum(), np.sum(bg & dp), bg.sum()]
    f1s = []
    for k in range(c):
        if counts[1, k] + counts[3, k] == 0:
            continue
        p = counts[0, k] / max(counts[1, k], 1)
        r = counts[2, k] / max(counts[3, k], 1)
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    return float(np.mean(f1s))


@pytest.mark.parametrize("tol", [0, 1, 2])
def test_boundary_f1_matches_scipy_reference(tol):
    g = torch.Generator().manual_seed(3)
    # blocky maps so boundaries are meaningful
    t = torch.randint(0, 3, (2, 4, 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    p = t.clone()
    p[:, 5:9, 3:12] = (p[:, 5:9, 3:12] + 1) % 3
    t[0, 0, :] = 255
    bf = BoundaryF1(3, tolerance=tol)
    bf.update(p, t)
    assert bf.compute()["boundary_f1"] == pytest.approx(
        _np_boundary_f1(p.numpy(), t.numpy(), 3, tol)
    )


def test_boundary_f1_shift_within_tolerance():
    t = torch.zeros(1, 10, 10, dtype=torch.long)
    t[:, :, 5:] = 1
    p = torch.zeros_like(t)
    p[:, :, 6:] = 1  # boundary shifted by one pixel
    strict, loose = BoundaryF1(2, tolerance=0), BoundaryF1(2, tolerance=1)
    strict.update(p, t)
    loose.update(p, t)
    assert loose.compute()["boundary_f1"] == 1.0
    assert strict.compute()["boundary_f1"] < 0.6


def test_depth_metrics_against_numpy():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 1, 5, 5, generator=g) * 4 + 0.5
    target = torch.rand(2, 1, 5, 5, generator=g) * 4 + 0.5
    target[0, 0, 0, :] = 0  # invalid
    m = DepthMetrics()
    m.update(pred[:1], target[:1])
    m.update(pred[1:], target[1:])
    out = m.compute()
    p, t = pred.numpy(), target.numpy()
    v = t > 0
    p, t = p[v].astype(np.float64), t[v].astype(np.float64)
    ratio = np.maximum(p / t, t / p)
    assert out["abs_rel"] == pytest.approx(np.mean(np.abs(p - t) / t))
    assert out["sq_rel"] == pytest.approx(np.mean((p - t) ** 2 / t))
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((p - t) ** 2)))
    assert out["rmse_log"] == pytest.approx(np.sqrt(np.mean((np.log(p) - np.log(t)) ** 2)))
    for k in (1, 2, 3):
        assert out[f"delta{k}"] == pytest.approx(np.mean(ratio < 1.25**k))


def test_depth_metrics_errors_and_empty():
    m = DepthMetrics()
    with pytest.raises(ValueError, match="pred must have"):
        m.update(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 3))
    m.update(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert m.compute()["rmse"] == 0.0


def test_normal_metrics_against_numpy():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 6, 6, generator=g)
    target = torch.nn.functional.normalize(torch.randn(2, 3, 6, 6, generator=g), dim=1)
    target[1, :, 0, 0] = 0
    m = NormalMetrics()
    m.update(pred, target)
    out = m.compute()
    p = pred.numpy().transpose(0, 2, 3, 1).reshape(-1, 3).astype(np.float64)
    t = target.numpy().transpose(0, 2, 3, 1).reshape(-1, 3).astype(np.float64)
    v = np.abs(t).sum(1) > 0
    p, t = p[v], t[v]
    cos = np.sum(p * t, 1) / np.linalg.norm(p, axis=1) / np.linalg.norm(t, axis=1)
    ang = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert out["mean"] == pytest.approx(np.mean(ang))
    assert out["median"] == pytest.approx(np.median(ang), abs=0.02)
    for thr in (11.25, 22.5, 30):
        assert out[f"within_{thr}"] == pytest.approx(100 * np.mean(ang < thr))


def test_normal_metrics_state_roundtrip_and_errors():
    m = NormalMetrics()
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        m.update(torch.ones(1, 2, 2, 2), torch.ones(1, 2, 2, 2))
    g = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    m.update(g, g)
    m2 = NormalMetrics()
    m2.load_state(m.state() * 2)
    assert m2.compute()["mean"] == pytest.approx(0.0, abs=1e-6)
    assert m2.compute()["within_11.25"] == 100.0
