"""Tests of denseloss.losses.max_square."""

from __future__ import annotations

import math

import pytest
import torch

from denseloss.losses import (
    MaxSquareLoss,
    SelfProducedGuidance,
    max_square_loss,
    self_produced_guidance,
)
from tests.helpers import assert_close, random_batch


@pytest.mark.parametrize("image_weighting", [False, True])
@pytest.mark.parametrize(("reduction", "shape"), [("none", (2, 4, 4)), ("mean", ()), ("sum", ())])
def test_shapes(reduction, shape, image_weighting):
    logits, _ = random_batch()
    out = max_square_loss(logits, reduction=reduction, image_weighting=image_weighting)
    assert out.shape == shape


def test_hand_value():
    # pixel 0: p = (1/4, 3/4): Σp² = 1/16 + 9/16 = 10/16 = 0.625
    # pixel 1: p = (1/2, 1/2): Σp² = 0.5
    # L = -(0.625 + 0.5) / (2 * 2) = -0.28125
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), 0.0]]]], dtype=torch.float64)
    assert_close(max_square_loss(logits), -0.28125)
    # reference code (ZJULearning) = this / C = -0.140625
    ref = -(logits.softmax(1) ** 2).mean() / 2
    assert_close(max_square_loss(logits) / 2, ref)


def test_hand_value_image_weighting():
    # argmax: pixel 0 -> class 1, pixel 1 (tie) -> class 0; n_1 = n_0 = 1, N = 2, ratio 0.5:
    # w = 1 / max(1^0.5 * 2^0.5, 1) = 1/sqrt(2) for both pixels
    # L = -(1/2) * (0.625 + 0.5) / sqrt(2) / B(=1) = -0.397748
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), 0.0]]]], dtype=torch.float64)
    out = max_square_loss(logits, image_weighting=True, ratio=0.5)
    assert_close(out, -0.5 * 1.125 / math.sqrt(2.0))
    # reference IW value = -Σ w p² / (B C) = this * 2 / C
    w = 1 / math.sqrt(2.0)
    ref = -(w * logits.softmax(1) ** 2).sum() / 2
    assert_close(out * 2 / 2, ref)


def test_gradient_wrt_probabilities():
    # dL/dp = u = -p/|Ω| at valid pixels (0 elsewhere); through the softmax Jacobian
    # diag(p) - p pᵀ the logits gradient is p * (u - Σ_c p_c u_c).
    logits, labels = random_batch()
    mask = labels != 255
    logits.requires_grad_(True)
    max_square_loss(logits, valid_mask=mask).backward()
    p = logits.detach().softmax(1)
    u = -p / mask.sum() * mask.unsqueeze(1)
    assert_close(logits.grad, p * (u - (p * u).sum(1, keepdim=True)))


def test_image_weighting_batch_equals_mean_of_single_images(dtype):
    logits, labels = random_batch(n=3, c=4, h=5, w=5, dtype=dtype)
    mask = labels != 255
    batch = max_square_loss(logits, valid_mask=mask, image_weighting=True)
    singles = [
        max_square_loss(logits[i : i + 1], valid_mask=mask[i : i + 1], image_weighting=True)
        for i in range(3)
    ]
    assert_close(batch, torch.stack(singles).mean())


def test_ratio_zero_weights_by_image_size():
    # ratio 0: w = 1/N_b, so the weighted loss is the per-image mean averaged over images.
    logits, _ = random_batch()
    expected = (-0.5 * (logits.softmax(1) ** 2).sum(1)).mean(dim=(1, 2)).mean()
    assert_close(max_square_loss(logits, image_weighting=True, ratio=0.0), expected)


@pytest.mark.parametrize("image_weighting", [False, True])
def test_ignored_zero_gradient_and_all_ignored(image_weighting):
    logits, labels = random_batch()
    logits.requires_grad_(True)
    mask = labels != 255
    max_square_loss(logits, valid_mask=mask, image_weighting=image_weighting).backward()
    grad = logits.grad.permute(0, 2, 3, 1)[~mask]
    assert torch.equal(grad, torch.zeros_like(grad))
    empty = max_square_loss(
        logits, valid_mask=torch.zeros_like(mask), image_weighting=image_weighting
    )
    assert empty.item() == 0.0
    assert empty.requires_grad


@pytest.mark.parametrize("image_weighting", [False, True])
def test_gradcheck(image_weighting):
    logits, labels = random_batch()
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: max_square_loss(x, valid_mask=labels != 255, image_weighting=image_weighting),
        (logits,),
    )


def test_module_equals_function():
    logits, _ = random_batch(dtype=torch.float32)
    module = MaxSquareLoss(image_weighting=True, ratio=0.3)
    assert_close(module(logits), max_square_loss(logits, image_weighting=True, ratio=0.3))
    assert "ratio=0.3" in repr(module)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("image_weighting", [False, True])
def test_half_precision_close_to_float32(half, image_weighting):
    logits, _ = random_batch(c=19, h=8, w=8, dtype=torch.float32)
    out = max_square_loss(logits.to(half), image_weighting=image_weighting)
    assert torch.isfinite(out)
    ref = max_square_loss(logits, image_weighting=image_weighting)
    torch.testing.assert_close(out, ref, rtol=3e-2, atol=3e-2)


def test_errors():
    logits, _ = random_batch(dtype=torch.float32)
    with pytest.raises(ValueError, match="logits"):
        max_square_loss(logits[0])
    with pytest.raises(TypeError, match="logits"):
        max_square_loss(logits.long())
    with pytest.raises(TypeError, match="valid_mask"):
        max_square_loss(logits, valid_mask=torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="ratio"):
        max_square_loss(logits, ratio=1.5)
    with pytest.raises(TypeError, match="ratio"):
        max_square_loss(logits, ratio="0.2")
    with pytest.raises(ValueError, match="reduction"):
        max_square_loss(logits, reduction="avg")
    with pytest.raises(ValueError, match="ratio"):
        MaxSquareLoss(ratio=-0.1)


def test_self_produced_guidance():
    # main: pixel 0 p_max = σ(4) = 0.982 > 0.95 -> kept; pixel 1 both uniform -> ignore;
    # aux: pixel 2 confident in class 1 (p = 0.993); average there favours class 1 -> 1.
    main = torch.tensor([[[[4.0, 0.0, 0.5]], [[0.0, 0.0, 0.0]]]], requires_grad=True)
    aux = torch.tensor([[[[0.0, 0.0, 0.0]], [[0.0, 0.0, 5.0]]]])
    out = self_produced_guidance(main, aux)
    assert out.tolist() == [[[0, 255, 1]]]
    assert out.dtype == torch.int64
    assert not out.requires_grad
    assert torch.equal(SelfProducedGuidance(threshold=0.95)(main, aux), out)
    assert self_produced_guidance(main, aux, threshold=0.999, ignore_index=-1).tolist() == [
        [[-1, -1, -1]]
    ]
    with pytest.raises(ValueError, match="aux_logits"):
        self_produced_guidance(main, aux[:, :, :, :2])
    with pytest.raises(TypeError, match="main_logits"):
        self_produced_guidance(main.long(), aux)
