"""Tests of denseloss.losses.cross_entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from denseloss.losses import CrossEntropyLoss, cross_entropy, partial_cross_entropy
from tests.helpers import assert_close, random_batch


@pytest.mark.parametrize(("reduction", "shape"), [("none", (2, 4, 4)), ("mean", ()), ("sum", ())])
def test_shapes(reduction, shape):
    logits, labels = random_batch()
    assert cross_entropy(logits, labels, reduction=reduction).shape == shape


def test_hand_value():
    # pixel 0: logits (0, ln 3) -> p = (1/4, 3/4), label 1: -ln(3/4) = 0.287682
    # pixel 1: logits (0, 0) -> p = (1/2, 1/2), label 0: ln 2 = 0.693147
    # pixel 2: ignored.  mean = (0.287682 + 0.693147) / 2 = 0.490415
    logits = torch.tensor([[[[0.0, 0.0, 5.0]], [[math.log(3.0), 0.0, -5.0]]]], dtype=torch.float64)
    labels = torch.tensor([[[1, 0, 255]]])
    assert_close(cross_entropy(logits, labels), 0.490415, atol=1e-6, rtol=0)
    # class weights (1, 3): (3 * 0.287682 + 1 * 0.693147) / (3 + 1) = 0.389049
    w = torch.tensor([1.0, 3.0], dtype=torch.float64)
    assert_close(cross_entropy(logits, labels, weight=w), 0.389049, atol=1e-6, rtol=0)
    # sum: 0.287682 + 0.693147 = 0.980829
    assert_close(cross_entropy(logits, labels, reduction="sum"), 0.980829, atol=1e-6, rtol=0)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_matches_torch(dtype, reduction):
    logits, labels = random_batch(c=5, dtype=dtype)
    w = torch.rand(5, dtype=dtype) + 0.1
    ours = cross_entropy(logits, labels, weight=w, reduction=reduction)
    ref = F.cross_entropy(logits, labels, weight=w, ignore_index=255, reduction=reduction)
    assert_close(ours, ref)


def test_partial_on_full_labels_equals_torch(dtype):
    logits, labels = random_batch(dtype=dtype, ignore_frac=0.0)
    assert_close(partial_cross_entropy(logits, labels), F.cross_entropy(logits, labels))


def test_valid_mask_and_ignore_combine():
    logits, labels = random_batch(ignore_frac=0.0)
    mask = torch.rand(labels.shape) > 0.5
    masked = labels.clone()
    masked[~mask] = 255
    assert_close(cross_entropy(logits, labels, valid_mask=mask), cross_entropy(logits, masked))


def test_ignored_pixels_zero_gradient():
    logits, labels = random_batch()
    logits.requires_grad_(True)
    cross_entropy(logits, labels).backward()
    ignored = (labels == 255).unsqueeze(1).expand_as(logits)
    assert ignored.any()
    assert torch.equal(logits.grad[ignored], torch.zeros_like(logits.grad[ignored]))
    assert logits.grad[~ignored].abs().sum() > 0


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_all_ignored_is_zero_with_graph(reduction):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.full((2, 4, 4), 255)
    loss = cross_entropy(logits, labels, weight=torch.ones(3), reduction=reduction)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_gradcheck():
    logits, labels = random_batch(n=2, c=3, h=4, w=4)
    logits.requires_grad_(True)
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: cross_entropy(x, labels, weight=w), (logits,))


def test_module_equals_function_and_moves_buffer():
    logits, labels = random_batch(dtype=torch.float32)
    w = torch.tensor([0.5, 1.0, 2.0])
    module = CrossEntropyLoss(weight=w, reduction="sum")
    assert_close(module(logits, labels), cross_entropy(logits, labels, weight=w, reduction="sum"))
    assert module.to(torch.float64).weight.dtype == torch.float64
    assert "reduction='sum'" in repr(module)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(half):
    logits, labels = random_batch(c=19, h=8, w=8, dtype=torch.float32)
    ref = cross_entropy(logits, labels)
    out = cross_entropy(logits.to(half), labels)
    assert out.dtype == torch.float32
    assert torch.isfinite(out)
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)


def test_errors():
    logits, labels = random_batch(dtype=torch.float32)
    with pytest.raises(TypeError, match="labels"):
        cross_entropy(logits, labels.float())
    with pytest.raises(ValueError, match="labels"):
        cross_entropy(logits, torch.full_like(labels, 7))
    with pytest.raises(ValueError, match="labels"):
        cross_entropy(logits, labels[:, :2])
    with pytest.raises(ValueError, match="logits"):
        cross_entropy(logits[0], labels)
    with pytest.raises(TypeError, match="logits"):
        cross_entropy(logits.long(), labels)
    with pytest.raises(ValueError, match="weight"):
        cross_entropy(logits, labels, weight=torch.ones(4))
    with pytest.raises(ValueError, match="weight"):
        cross_entropy(logits, labels, weight=-torch.ones(3))
    with pytest.raises(TypeError, match="weight"):
        cross_entropy(logits, labels, weight=torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(logits, labels, reduction="avg")
    with pytest.raises(TypeError, match="valid_mask"):
        cross_entropy(logits, labels, valid_mask=torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="partial_cross_entropy: scribbles"):
        partial_cross_entropy(logits, torch.full_like(labels, 7))
    with pytest.raises(ValueError, match="weight"):
        CrossEntropyLoss(weight=-torch.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        CrossEntropyLoss(reduction="avg")


def test_validate_false_skips_label_range_check():
    logits, labels = random_batch(dtype=torch.float32)
    # Only the range check is skipped; shapes are still checked.
    labels = labels.clone()
    labels[labels == 255] = 0
    assert torch.isfinite(cross_entropy(logits, labels, validate=False))
