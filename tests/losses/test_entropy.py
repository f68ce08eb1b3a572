"""Tests of denseloss.losses.entropy."""

from __future__ import annotations

import math

import pytest
import torch

from denseloss.losses import EntropyLoss, entropy_loss
from tests.helpers import assert_close, random_batch


@pytest.mark.parametrize(("reduction", "shape"), [("none", (2, 4, 4)), ("mean", ()), ("sum", ())])
def test_shapes(reduction, shape):
    logits, _ = random_batch()
    assert entropy_loss(logits, reduction=reduction).shape == shape


def test_hand_value():
    # pixel 0: logits (0, ln 3) -> p = (1/4, 3/4):
    #   H = -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.346574 + 0.215762 = 0.562335
    # pixel 1: uniform over 2: H = ln 2 = 0.693147.  mean = 0.627741
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), 0.0]]]], dtype=torch.float64)
    assert_close(entropy_loss(logits), 0.627741, atol=1e-6, rtol=0)
    # normalised by ln 2: 0.627741 / 0.693147 = 0.905639
    assert_close(entropy_loss(logits, normalize=True), 0.905639, atol=1e-6, rtol=0)


def test_matches_direct_formula(dtype):
    logits, _ = random_batch(dtype=dtype)
    p = logits.softmax(1)
    assert_close(entropy_loss(logits, reduction="none"), -(p * p.log()).sum(1))


def test_saturated_logits_stay_finite():
    logits = torch.tensor([[[[0.0]], [[200.0]]]], requires_grad=True)  # p underflows to 0
    loss = entropy_loss(logits)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


def test_masked_pixels_zero_gradient_and_empty_mask():
    logits, labels = random_batch()
    logits.requires_grad_(True)
    mask = labels != 255
    entropy_loss(logits, valid_mask=mask).backward()
    assert torch.equal(
        logits.grad.permute(0, 2, 3, 1)[~mask],
        torch.zeros(int((~mask).sum()), 3, dtype=torch.float64),
    )
    empty = entropy_loss(logits, valid_mask=torch.zeros_like(mask))
    assert empty.item() == 0.0
    assert empty.requires_grad


def test_gradcheck():
    logits, labels = random_batch()
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: entropy_loss(x, valid_mask=labels != 255, normalize=True), (logits,)
    )


def test_module_equals_function():
    logits, _ = random_batch(dtype=torch.float32)
    module = EntropyLoss(normalize=True, reduction="sum")
    assert_close(module(logits), entropy_loss(logits, normalize=True, reduction="sum"))
    assert "normalize=True" in repr(module)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(half):
    logits, _ = random_batch(c=19, h=8, w=8, dtype=torch.float32)
    out = entropy_loss(logits.to(half))
    assert torch.isfinite(out)
    torch.testing.assert_close(out, entropy_loss(logits), rtol=2e-2, atol=2e-2)


def test_errors():
    logits, _ = random_batch(dtype=torch.float32)
    with pytest.raises(ValueError, match="logits"):
        entropy_loss(logits[0])
    with pytest.raises(TypeError, match="logits"):
        entropy_loss(logits.long())
    with pytest.raises(ValueError, match="logits"):
        entropy_loss(logits[:, :1], normalize=True)
    with pytest.raises(ValueError, match="valid_mask"):
        entropy_loss(logits, valid_mask=torch.ones(2, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction"):
        entropy_loss(logits, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        EntropyLoss(reduction="avg")
