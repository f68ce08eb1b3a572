"""Tests of denseloss.losses.adversarial."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from denseloss.losses import (
    AdversarialLoss,
    SemiSupervisedLoss,
    adversarial_loss,
    semi_supervised_loss,
)
from tests.helpers import assert_close, random_batch


def d_map(n=2, h=4, w=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, h, w, generator=g, dtype=dtype) * 3


@pytest.mark.parametrize(
    ("reduction", "shape"), [("none", (2, 1, 4, 4)), ("mean", ()), ("sum", ())]
)
def test_adversarial_shapes(reduction, shape):
    assert adversarial_loss(d_map(), real=True, reduction=reduction).shape == shape


def test_adversarial_hand_value():
    # d = (0, ln 3): σ = (1/2, 3/4)
    # real: -(ln 1/2 + ln 3/4) / 2 = (0.693147 + 0.287682) / 2 = 0.490415
    # fake: -(ln 1/2 + ln 1/4) / 2 = (0.693147 + 1.386294) / 2 = 1.039721
    d = torch.tensor([[[[0.0, math.log(3.0)]]]], dtype=torch.float64)
    assert_close(adversarial_loss(d, real=True), 0.490415, atol=1e-6, rtol=0)
    assert_close(adversarial_loss(d, real=False), 1.039721, atol=1e-6, rtol=0)


@pytest.mark.parametrize("real", [True, False])
def test_adversarial_matches_bce(dtype, real):
    d = d_map(dtype=dtype)
    target = torch.full_like(d, float(real))
    assert_close(adversarial_loss(d, real=real), F.binary_cross_entropy_with_logits(d, target))


def test_adversarial_extreme_logits_finite():
    d = torch.tensor([[[[1e4, -1e4]]]], requires_grad=True)
    loss = adversarial_loss(d, real=True)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(d.grad).all()


def test_adversarial_mask_zero_gradient_and_empty():
    d = d_map().requires_grad_(True)
    mask = torch.rand(2, 4, 4) > 0.5
    adversarial_loss(d, real=True, valid_mask=mask).backward()
    assert torch.equal(d.grad[:, 0][~mask], torch.zeros(int((~mask).sum()), dtype=d.dtype))
    empty = adversarial_loss(d, real=False, valid_mask=torch.zeros_like(mask))
    assert empty.item() == 0.0
    assert empty.requires_grad


@pytest.mark.parametrize("real", [True, False])
def test_adversarial_gradcheck(real):
    d = d_map().requires_grad_(True)
    mask = torch.rand(2, 4, 4) > 0.3
    assert torch.autograd.gradcheck(lambda x: adversarial_loss(x, real=real, valid_mask=mask), (d,))


def test_adversarial_module_equals_function():
    d = d_map(dtype=torch.float32)
    module = AdversarialLoss(reduction="sum")
    assert_close(module(d, real=False), adversarial_loss(d, real=False, reduction="sum"))
    assert "sum" in repr(module)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(half):
    d = d_map(dtype=torch.float32)
    logits, _ = random_batch(c=5, dtype=torch.float32)
    out = adversarial_loss(d.to(half), real=True)
    assert torch.isfinite(out)
    torch.testing.assert_close(out, adversarial_loss(d, real=True), rtol=2e-2, atol=2e-2)
    semi = semi_supervised_loss(logits.to(half), d.to(half))
    assert torch.isfinite(semi)
    torch.testing.assert_close(semi, semi_supervised_loss(logits, d), rtol=3e-2, atol=3e-2)


def test_adversarial_errors():
    d = d_map(dtype=torch.float32)
    with pytest.raises(ValueError, match="d_logits"):
        adversarial_loss(d.expand(2, 2, 4, 4), real=True)
    with pytest.raises(ValueError, match="d_logits"):
        adversarial_loss(d[:, 0], real=True)
    with pytest.raises(TypeError, match="d_logits"):
        adversarial_loss(d.long(), real=True)
    with pytest.raises(TypeError, match="real"):
        adversarial_loss(d, real=1)
    with pytest.raises(ValueError, match="valid_mask"):
        adversarial_loss(d, real=True, valid_mask=torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction"):
        adversarial_loss(d, real=True, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        AdversarialLoss(reduction="avg")


def test_semi_hand_value():
    # pixel 0: logits (0, ln 3), argmax 1, p = 3/4 -> -ln(3/4) = 0.287682, σ(2) = 0.88 trusted
    # pixel 1: logits (0, 0), argmax 0, -ln(1/2) = 0.693147, σ(0) = 0.5 trusted
    # pixel 2: σ(-3) = 0.047 < 0.2 -> not trusted.  mean = (0.287682 + 0.693147) / 2 = 0.490415
    logits = torch.tensor([[[[0.0, 0.0, 9.0]], [[math.log(3.0), 0.0, 0.0]]]], dtype=torch.float64)
    d = torch.tensor([[[[2.0, 0.0, -3.0]]]], dtype=torch.float64)
    assert_close(semi_supervised_loss(logits, d), 0.490415, atol=1e-6, rtol=0)
    # threshold 0.6 keeps pixel 0 only
    assert_close(semi_supervised_loss(logits, d, threshold=0.6), 0.287682, atol=1e-6, rtol=0)


def test_semi_equals_cross_entropy_on_pseudo_labels(dtype):
    logits, _ = random_batch(dtype=dtype)
    d = d_map(dtype=dtype)
    pseudo = logits.argmax(1)
    pseudo[torch.sigmoid(d[:, 0]) <= 0.2] = 255
    expected = F.cross_entropy(logits, pseudo, ignore_index=255)
    assert_close(semi_supervised_loss(logits, d), expected)


def test_semi_no_gradient_to_discriminator_and_untrusted():
    logits, _ = random_batch()
    d = d_map()
    logits.requires_grad_(True)
    d.requires_grad_(True)
    loss = semi_supervised_loss(logits, d)
    loss.backward()
    assert d.grad is None
    untrusted = torch.sigmoid(d.detach()[:, 0]) <= 0.2
    assert untrusted.any()
    grad = logits.grad.permute(0, 2, 3, 1)[untrusted]
    assert torch.equal(grad, torch.zeros_like(grad))


def test_semi_nothing_trusted_gives_zero():
    logits, _ = random_batch()
    logits.requires_grad_(True)
    loss = semi_supervised_loss(logits, torch.full((2, 1, 4, 4), -50.0, dtype=torch.float64))
    assert loss.item() == 0.0
    assert loss.requires_grad


def test_semi_gradcheck():
    logits, _ = random_batch()
    logits.requires_grad_(True)
    d = d_map()
    assert torch.autograd.gradcheck(lambda x: semi_supervised_loss(x, d), (logits,))


def test_semi_module_and_errors():
    logits, _ = random_batch(dtype=torch.float32)
    d = d_map(dtype=torch.float32)
    module = SemiSupervisedLoss(threshold=0.3)
    assert_close(module(logits, d), semi_supervised_loss(logits, d, threshold=0.3))
    assert "threshold=0.3" in repr(module)
    with pytest.raises(ValueError, match="d_logits"):
        semi_supervised_loss(logits, d[:, :, :2])
    with pytest.raises(ValueError, match="d_logits"):
        semi_supervised_loss(logits, logits)
    with pytest.raises(TypeError, match="logits"):
        semi_supervised_loss(logits.long(), d)
    with pytest.raises(ValueError, match="threshold"):
        semi_supervised_loss(logits, d, threshold=2.0)
    with pytest.raises(ValueError, match="ignore_index"):
        semi_supervised_loss(logits, d, ignore_index=1)
    with pytest.raises(ValueError, match="threshold"):
        SemiSupervisedLoss(threshold=-1.0)
