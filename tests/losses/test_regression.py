"""Tests of denseloss.losses.regression."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from denseloss.losses import DepthLoss, NormalLoss, depth_loss, normal_loss
from tests.helpers import assert_close


def depth_pair(n=2, h=4, w=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(n, 1, h, w, generator=g, dtype=dtype) * 5 + 0.5
    target = torch.rand(n, 1, h, w, generator=g, dtype=dtype) * 5 + 0.5
    target[torch.rand(n, 1, h, w, generator=g) < 0.25] = 0.0  # missing depth
    return pred, target


def normal_pair(n=2, h=4, w=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(n, 3, h, w, generator=g, dtype=dtype)
    target = F.normalize(torch.randn(n, 3, h, w, generator=g, dtype=dtype), dim=1)
    target[:, :, 0, 0] = 0.0  # missing normal
    return pred, target


@pytest.mark.parametrize("kind", ["l1", "l2"])
@pytest.mark.parametrize(("reduction", "shape"), [("none", (2, 4, 4)), ("mean", ()), ("sum", ())])
def test_depth_shapes(kind, reduction, shape):
    pred, target = depth_pair()
    assert depth_loss(pred, target, kind=kind, reduction=reduction).shape == shape


@pytest.mark.parametrize(("reduction", "shape"), [("none", (2,)), ("mean", ()), ("sum", ())])
def test_silog_shapes(reduction, shape):
    pred, target = depth_pair()
    assert depth_loss(pred, target, kind="silog", reduction=reduction).shape == shape


def test_depth_hand_values():
    # valid pixels: (pred, target) = (1, 2), (3, 2); third has target 0 (missing), fourth NaN
    pred = torch.tensor([[[1.0, 3.0, 7.0, 1.0]]], dtype=torch.float64)
    target = torch.tensor([[[2.0, 2.0, 0.0, math.nan]]], dtype=torch.float64)
    # l1 = (1 + 1) / 2 = 1;  l2 = (1 + 1) / 2 = 1
    assert_close(depth_loss(pred, target), 1.0)
    assert_close(depth_loss(pred, target, kind="l2"), 1.0)
    # silog: g = (ln 1/2, ln 3/2) = (-0.693147, 0.405465)
    #   mean g² = (0.480453 + 0.164402) / 2 = 0.322427; mean g = -0.143841, squared 0.020690
    #   λ = 0.5: 0.322427 - 0.010345 = 0.312082
    g = torch.tensor([math.log(0.5), math.log(1.5)], dtype=torch.float64)
    expected = (g**2).mean() - 0.5 * g.mean() ** 2
    assert_close(depth_loss(pred, target, kind="silog"), expected)
    assert abs(float(expected) - 0.312082) < 1e-6


def test_silog_scale_invariant_with_lambda_one():
    pred, target = depth_pair()
    a = depth_loss(pred, target, kind="silog", silog_lambda=1.0)
    b = depth_loss(pred * 3.7, target, kind="silog", silog_lambda=1.0)
    assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_silog_mean_is_over_images_with_valid_pixels():
    pred, target = depth_pair()
    target[1] = 0.0
    per_image = depth_loss(pred, target, kind="silog", reduction="none")
    assert per_image[1].item() == 0.0
    assert_close(depth_loss(pred, target, kind="silog"), per_image[0])


@pytest.mark.parametrize("kind", ["l1", "l2", "silog"])
def test_depth_invalid_zero_gradient_and_empty(kind):
    pred, target = depth_pair()
    target[0, 0, 0, 0] = -1.0
    pred.requires_grad_(True)
    mask = torch.rand(2, 4, 4) > 0.2
    depth_loss(pred, target, kind=kind, valid_mask=mask).backward()
    invalid = (target[:, 0] <= 0) | ~mask
    assert torch.equal(pred.grad[:, 0][invalid], torch.zeros(int(invalid.sum()), dtype=pred.dtype))
    empty = depth_loss(pred, torch.zeros_like(target), kind=kind)
    assert empty.item() == 0.0
    assert empty.requires_grad


@pytest.mark.parametrize("kind", ["l1", "l2", "silog"])
def test_depth_gradcheck(kind):
    pred, target = depth_pair()
    pred = pred + 0.05  # keep |pred - target| away from the L1 kink
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: depth_loss(x, target, kind=kind), (pred,))


def test_depth_accepts_3d_and_4d(dtype):
    pred, target = depth_pair(dtype=dtype)
    assert_close(depth_loss(pred, target), depth_loss(pred[:, 0], target[:, 0]))


@pytest.mark.parametrize(("reduction", "shape"), [("none", (2, 4, 4)), ("mean", ()), ("sum", ())])
def test_normal_shapes(reduction, shape):
    pred, target = normal_pair()
    assert normal_loss(pred, target, reduction=reduction).shape == shape


def test_normal_hand_value():
    # pixel 0: same direction -> 0; pixel 1: opposite -> 2; pixel 2: orthogonal -> 1;
    # pixel 3: target all zero -> ignored.  mean = (0 + 2 + 1) / 3 = 1
    pred = torch.tensor(
        [[[[2.0, 1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]]]],
        dtype=torch.float64,
    )
    target = torch.tensor(
        [[[[1.0, -1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]]]],
        dtype=torch.float64,
    )
    assert_close(normal_loss(pred, target), 1.0)
    assert_close(normal_loss(pred, target, reduction="sum"), 3.0)


def test_normal_invalid_zero_gradient_and_empty():
    pred, target = normal_pair()
    pred.requires_grad_(True)
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    mask[:, 3, 3] = False
    normal_loss(pred, target, valid_mask=mask).backward()
    assert torch.equal(pred.grad[:, :, 0, 0], torch.zeros(2, 3, dtype=pred.dtype))
    assert torch.equal(pred.grad[:, :, 3, 3], torch.zeros(2, 3, dtype=pred.dtype))
    empty = normal_loss(pred, torch.zeros_like(target))
    assert empty.item() == 0.0
    assert empty.requires_grad


def test_normal_gradcheck():
    pred, target = normal_pair()
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: normal_loss(x, target), (pred,))


def test_modules_equal_functions():
    pred, target = depth_pair(dtype=torch.float32)
    module = DepthLoss(kind="silog", silog_lambda=0.85)
    assert_close(module(pred, target), depth_loss(pred, target, kind="silog", silog_lambda=0.85))
    assert "silog" in repr(module)
    npred, ntarget = normal_pair(dtype=torch.float32)
    assert_close(
        NormalLoss(reduction="sum")(npred, ntarget), normal_loss(npred, ntarget, reduction="sum")
    )


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["l1", "l2", "silog"])
def test_half_precision_close_to_float32(half, kind):
    pred, target = depth_pair(dtype=torch.float32)
    out = depth_loss(pred.to(half), target.to(half), kind=kind)
    assert torch.isfinite(out)
    ref = depth_loss(pred.to(half).float(), target.to(half).float(), kind=kind)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)  # only the storage is half
    torch.testing.assert_close(out, depth_loss(pred, target, kind=kind), rtol=5e-2, atol=5e-2)
    npred, ntarget = normal_pair(dtype=torch.float32)
    nout = normal_loss(npred.to(half), ntarget.to(half))
    assert torch.isfinite(nout)
    torch.testing.assert_close(nout, normal_loss(npred, ntarget), rtol=2e-2, atol=2e-2)


def test_errors():
    pred, target = depth_pair(dtype=torch.float32)
    with pytest.raises(ValueError, match="target"):
        depth_loss(pred, target[:, :, :2])
    with pytest.raises(ValueError, match="pred"):
        depth_loss(pred.expand(2, 3, 4, 4), target)
    with pytest.raises(ValueError, match="pred"):
        depth_loss(pred[0, 0], target)
    with pytest.raises(TypeError, match="target"):
        depth_loss(pred, target.long())
    with pytest.raises(ValueError, match="kind"):
        depth_loss(pred, target, kind="huber")
    with pytest.raises(ValueError, match="silog_lambda"):
        depth_loss(pred, target, kind="silog", silog_lambda=2.0)
    with pytest.raises(ValueError, match="min_depth"):
        depth_loss(pred, target, kind="silog", min_depth=0.0)
    with pytest.raises(TypeError, match="valid_mask"):
        depth_loss(pred, target, valid_mask=torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="valid_mask"):
        depth_loss(pred, target, valid_mask=torch.ones(2, 4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction"):
        depth_loss(pred, target, reduction="avg")
    with pytest.raises(ValueError, match="kind"):
        DepthLoss(kind="huber")
    npred, ntarget = normal_pair(dtype=torch.float32)
    with pytest.raises(ValueError, match="target"):
        normal_loss(npred, ntarget[:, :2])
    with pytest.raises(ValueError, match="pred"):
        normal_loss(npred[0], ntarget)
    with pytest.raises(TypeError, match="pred"):
        normal_loss(npred.long(), ntarget)
    with pytest.raises(ValueError, match="valid_mask"):
        normal_loss(npred, ntarget, valid_mask=torch.ones(2, 4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction"):
        NormalLoss(reduction="avg")
