"""Tests of denseloss.losses.structure."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from denseloss.losses import (
    StructureHingeLoss,
    StructureMatchingLoss,
    structure_hinge_loss,
    structure_matching_loss,
)
from tests.helpers import assert_close


def feats(seed=0, dtype=torch.float64, sizes=((4, 8, 8), (6, 4, 4))):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, h, w, generator=g, dtype=dtype) for c, h, w in sizes]


def test_hand_value_match_and_hinge():
    # layer 1, two pixels: pixel 0 a = (1, 0), b = (0, 2) -> (0, 1): d = 1 + 1 = 2
    #                      pixel 1 a = (3, 4) -> (.6, .8), b = (6, 8) -> same: d = 0
    # layer 2, one pixel:  a = (1, 1) -> (.7071, .7071), b = (1, 0): d = 0.085786 + 0.5 = 0.585786
    # match = mean(2, 0) + 0.585786 = 1.585786
    # hinge (margin 0.8) = mean(max(0, 0.8 - 2), 0.8 - 0) + (0.8 - 0.585786) = 0.4 + 0.214214
    a = [
        torch.tensor([[[[1.0, 3.0]], [[0.0, 4.0]]]], dtype=torch.float64),
        torch.tensor([[[[1.0]], [[1.0]]]], dtype=torch.float64),
    ]
    b = [
        torch.tensor([[[[0.0, 6.0]], [[2.0, 8.0]]]], dtype=torch.float64),
        torch.tensor([[[[1.0]], [[0.0]]]], dtype=torch.float64),
    ]
    d2 = (1 - 1 / math.sqrt(2)) ** 2 + 0.5
    assert_close(structure_matching_loss(a, b), 1.0 + d2)
    assert_close(structure_hinge_loss(a, b), 0.4 + (0.8 - d2))


def test_matches_cosine_identity(dtype):
    # ‖â - b̂‖² = 2 - 2 cos(a, b)
    a, b = feats(0, dtype), feats(1, dtype)
    expected = sum((2 - 2 * F.cosine_similarity(x, y, dim=1)).mean() for x, y in zip(a, b))
    assert_close(structure_matching_loss(a, b), expected)


def test_scale_invariance_and_identity():
    a = feats()
    assert_close(structure_matching_loss(a, [3.0 * x for x in a]), 0.0)
    # identical features: d = 0, hinge = margin per layer
    assert_close(structure_hinge_loss(a, a, margin=0.5), 1.0)


def test_valid_mask_resized_per_layer_and_zero_gradient():
    a = [x.requires_grad_(True) for x in feats()]
    b = feats(1)
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    mask[:, :, :4] = False  # left half invalid at full res; left half of 4x4 layer invalid too
    loss = structure_matching_loss(a, b, valid_mask=mask)
    loss.backward()
    assert torch.equal(a[0].grad[..., :4], torch.zeros_like(a[0].grad[..., :4]))
    assert torch.equal(a[1].grad[..., :2], torch.zeros_like(a[1].grad[..., :2]))
    assert a[1].grad[..., 2:].abs().sum() > 0
    expected = sum(
        (2 - 2 * F.cosine_similarity(x[..., w // 2 :], y[..., w // 2 :], dim=1)).mean()
        for x, y, w in zip(a, b, (8, 4))
    )
    assert_close(loss, expected)


def test_mask_cell_with_any_invalid_pixel_is_invalid():
    a = [x.requires_grad_(True) for x in feats(sizes=((4, 4, 4),))]
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    mask[:, 0, 0] = False  # one pixel of the first 2x2 cell
    structure_hinge_loss(a, feats(1, sizes=((4, 4, 4),)), valid_mask=mask).backward()
    assert torch.equal(a[0].grad[:, :, 0, 0], torch.zeros(2, 4, dtype=torch.float64))


def test_all_invalid_is_zero_with_graph():
    a = [x.requires_grad_(True) for x in feats()]
    empty = torch.zeros(2, 8, 8, dtype=torch.bool)
    for fn in (structure_matching_loss, structure_hinge_loss):
        loss = fn(a, feats(1), valid_mask=empty)
        assert loss.item() == 0.0
        assert loss.requires_grad


def test_gradcheck():
    a = [x.requires_grad_(True) for x in feats(sizes=((3, 4, 4), (2, 2, 2)))]
    b = [x.requires_grad_(True) for x in feats(1, sizes=((3, 4, 4), (2, 2, 2)))]
    mask = torch.rand(2, 4, 4) > 0.3

    def match(a0, a1, b0, b1):
        return structure_matching_loss([a0, a1], [b0, b1], valid_mask=mask)

    def hinge(a0, a1, b0, b1):
        return structure_hinge_loss([a0, a1], [b0, b1], margin=2.5)

    assert torch.autograd.gradcheck(match, (*a, *b))
    assert torch.autograd.gradcheck(hinge, (*a, *b))


def test_modules_equal_functions():
    a, b = feats(0, torch.float32), feats(1, torch.float32)
    assert_close(StructureMatchingLoss()(a, b), structure_matching_loss(a, b))
    module = StructureHingeLoss(margin=1.2)
    assert_close(module(a, b), structure_hinge_loss(a, b, margin=1.2))
    assert "margin=1.2" in repr(module)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(half):
    a, b = feats(0, torch.float32), feats(1, torch.float32)
    out = structure_matching_loss([x.to(half) for x in a], [x.to(half) for x in b])
    assert torch.isfinite(out)
    torch.testing.assert_close(out, structure_matching_loss(a, b), rtol=2e-2, atol=2e-2)
    hinge = structure_hinge_loss([x.to(half) for x in a], [x.to(half) for x in b])
    torch.testing.assert_close(hinge, structure_hinge_loss(a, b), rtol=2e-2, atol=2e-2)


def test_errors():
    a, b = feats(), feats(1)
    with pytest.raises(TypeError, match="features_pred"):
        structure_matching_loss(a[0], b)
    with pytest.raises(TypeError, match="features_gt"):
        structure_matching_loss(a, [])
    with pytest.raises(ValueError, match="features_gt"):
        structure_matching_loss(a, b[:1])
    with pytest.raises(ValueError, match=r"features_gt\[1\]"):
        structure_matching_loss(a, [b[0], b[1][:, :2]])
    with pytest.raises(ValueError, match=r"features_pred\[0\]"):
        structure_matching_loss([a[0][0], a[1]], b)
    with pytest.raises(TypeError, match=r"features_neg\[0\]"):
        structure_hinge_loss(a, [b[0].long(), b[1]])
    with pytest.raises(TypeError, match="valid_mask"):
        structure_matching_loss(a, b, valid_mask=torch.ones(2, 8, 8))
    with pytest.raises(ValueError, match="valid_mask"):
        structure_matching_loss(a, b, valid_mask=torch.ones(3, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="margin"):
        structure_hinge_loss(a, b, margin=0.0)
    with pytest.raises(ValueError, match="margin"):
        StructureHingeLoss(margin=-1.0)
