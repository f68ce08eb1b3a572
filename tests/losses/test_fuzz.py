"""Fuzz of every public loss: edge inputs give finite values and gradients, or a clear error.

Each case is run on: every pixel valid, a single valid pixel, no valid pixel (must give exactly
0.0 attached to the graph), C = 1 and C = 2 classes (where the loss takes class scores), logits
of ±1e4, float16 / bfloat16 inputs, and a NaN input (refused, naming the argument, under
``check_finite_inputs``). Integer labels of every integer dtype give the int64 result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import denseloss.losses as L

N, H, W = 2, 6, 6


@dataclass
class Inputs:
    """One set of tensors every case draws from; ``valid`` is the region under test."""

    logits: torch.Tensor  # (N, C, H, W), requires grad
    labels: torch.Tensor  # (N, H, W) int64, 255 outside ``valid``
    valid: torch.Tensor  # (N, H, W) bool
    image: torch.Tensor  # (N, 3, H, W) in [0, 1]
    embeddings: torch.Tensor  # (N, 8, H, W), requires grad
    d_logits: torch.Tensor  # (N, 1, H, W), requires grad
    depth: torch.Tensor  # (N, 1, H, W) > 0, requires grad
    normals: torch.Tensor  # (N, 3, H, W), requires grad

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.float().softmax(1).to(self.logits.dtype)

    def leaves(self) -> list[torch.Tensor]:
        return [self.logits, self.embeddings, self.d_logits, self.depth, self.normals]


def make_inputs(
    classes: int, *, mode: str = "all", scale: float = 3.0, dtype: torch.dtype = torch.float32
) -> Inputs:
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(N, H, W, dtype=torch.bool)
    if mode == "none":
        valid[:] = False
    elif mode == "one":
        valid[:] = False
        valid[1, 2, 3] = True
    labels = torch.randint(0, classes, (N, H, W), generator=g)
    labels[~valid] = 255

    def leaf(*shape: int, positive: bool = False) -> torch.Tensor:
        x = torch.randn(*shape, generator=g) * scale
        x = x.abs() + 0.5 if positive else x
        return x.to(dtype).requires_grad_()

    return Inputs(
        logits=leaf(N, classes, H, W),
        labels=labels,
        valid=valid,
        image=torch.rand(N, 3, H, W, generator=g).to(dtype),
        embeddings=leaf(N, 8, H, W),
        d_logits=leaf(N, 1, H, W),
        depth=leaf(N, 1, H, W, positive=True),
        normals=leaf(N, 3, H, W),
    )


def _depth_target(x: Inputs) -> torch.Tensor:
    target = torch.rand(N, 1, H, W, generator=torch.Generator().manual_seed(1)) + 0.5
    return torch.where(x.valid[:, None], target, torch.zeros_like(target)).to(x.depth.dtype)


def _normal_target(x: Inputs) -> torch.Tensor:
    target = F.normalize(torch.randn(N, 3, H, W, generator=torch.Generator().manual_seed(2)), dim=1)
    return torch.where(x.valid[:, None], target, torch.zeros_like(target)).to(x.normals.dtype)


def _gated(x: Inputs) -> torch.Tensor:
    return L.gated_crf_loss(x.probs, {"rgb": x.image}, radius=2, valid_mask=x.valid)


# name -> the loss of one set of inputs (the name before "(" is the public function)
CASES: dict[str, Callable[[Inputs], torch.Tensor]] = {
    "cross_entropy": lambda x: L.cross_entropy(x.logits, x.labels),
    "partial_cross_entropy": lambda x: L.partial_cross_entropy(x.logits, x.labels),
    "entropy_loss": lambda x: L.entropy_loss(x.logits, valid_mask=x.valid),
    "max_square_loss": lambda x: L.max_square_loss(x.logits, valid_mask=x.valid),
    "max_square_loss(iw)": lambda x: L.max_square_loss(
        x.logits, valid_mask=x.valid, image_weighting=True
    ),
    "adversarial_loss": lambda x: L.adversarial_loss(x.d_logits, real=True, valid_mask=x.valid),
    "semi_supervised_loss": lambda x: L.semi_supervised_loss(
        x.logits, x.d_logits, threshold=0.0, valid_mask=x.valid
    ),
    "pne_loss": lambda x: L.pne_loss(x.embeddings, x.logits, x.labels, patch_size=4),
    "pixel_contrast_loss": lambda x: L.pixel_contrast_loss(
        x.embeddings, x.labels, x.logits.argmax(1), max_views=2, max_samples=16,
        generator=torch.Generator().manual_seed(0),
    ),
    "dense_crf_loss": lambda x: L.dense_crf_loss(x.probs, x.image * 255, valid_mask=x.valid),
    "gated_crf_loss": _gated,
    "dfr_loss": lambda x: L.dfr_loss(x.probs, x.image, x.embeddings, radius=2, valid_mask=x.valid),
    "feature_consistency_loss": lambda x: L.feature_consistency_loss(x.embeddings, x.labels),
    "structure_matching_loss": lambda x: L.structure_matching_loss(
        [x.embeddings], [x.embeddings.detach().flip(1)], valid_mask=x.valid
    ),
    "structure_hinge_loss": lambda x: L.structure_hinge_loss(
        [x.embeddings], [x.embeddings.flip(1)], valid_mask=x.valid
    ),
    "depth_loss(l1)": lambda x: L.depth_loss(x.depth, _depth_target(x), valid_mask=x.valid),
    "depth_loss(silog)": lambda x: L.depth_loss(
        x.depth, _depth_target(x), kind="silog", valid_mask=x.valid
    ),
    "normal_loss": lambda x: L.normal_loss(x.normals, _normal_target(x), valid_mask=x.valid),
}  # fmt: skip


def _check(value: torch.Tensor, x: Inputs) -> None:
    assert value.ndim == 0
    assert torch.isfinite(value), value
    if value.requires_grad:
        value.backward()
        for leaf in x.leaves():
            if leaf.grad is not None:
                assert torch.isfinite(leaf.grad).all()


def _unique(a: list[str]) -> list[str]:
    assert len(set(a)) == len(a)
    return a


def test_every_public_loss_is_fuzzed() -> None:
    functions = {n for n in L.__all__ if n[0].islower() and n.endswith("_loss")}
    functions |= {"cross_entropy", "partial_cross_entropy"}
    covered = {name.split("(")[0] for name in _unique(list(CASES))}
    assert functions - covered == set()


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("mode", ["all", "one", "none"])
def test_valid_regions(name: str, mode: str) -> None:
    x = make_inputs(3, mode=mode)
    value = CASES[name](x)
    if mode == "none":  # the documented contract: exactly 0.0, attached to the graph
        assert float(value.detach()) == 0.0
        assert value.requires_grad  # attached to the graph
    _check(value, x)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("classes", [1, 2])
def test_one_and_two_classes(name: str, classes: int) -> None:
    x = make_inputs(classes)
    if name == "entropy_loss" and classes == 1:
        assert float(CASES[name](x).detach()) == 0.0  # one class: p = 1 everywhere
    _check(CASES[name](x), x)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_huge_scores(name: str, scale: float) -> None:
    x = make_inputs(3, scale=scale)
    _check(CASES[name](x), x)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision(name: str, dtype: torch.dtype) -> None:
    x = make_inputs(3, dtype=dtype)
    value = CASES[name](x)
    reference = CASES[name](make_inputs(3))
    assert value.dtype == torch.float32  # reduced in float32
    _check(value, x)
    assert float(value.detach()) == pytest.approx(float(reference.detach()), rel=0.05, abs=0.05)


@pytest.mark.parametrize("name", list(CASES))
def test_nan_input_is_refused_by_name_when_checking(name: str) -> None:
    x = make_inputs(3)
    for leaf in (x.logits, x.embeddings, x.d_logits, x.depth, x.normals):
        with torch.no_grad():
            leaf[0, 0, 0, 0] = float("nan")
    function = name.split("(")[0]
    with (
        L.check_finite_inputs(),
        pytest.raises(ValueError, match=rf"^{function}: [\w\[\]]+ must be finite"),
    ):
        CASES[name](x)
    assert not L.set_check_finite(False)  # the block restored the default (off)


# (int8 cannot hold ignore_index = 255)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32])
@pytest.mark.parametrize(
    "name", ["cross_entropy", "partial_cross_entropy", "pne_loss", "feature_consistency_loss"]
)
def test_any_integer_label_dtype(name: str, dtype: torch.dtype) -> None:
    x = make_inputs(3, mode="one")
    expected = CASES[name](x)
    x.labels = x.labels.to(dtype)
    assert float(CASES[name](x).detach()) == pytest.approx(float(expected.detach()), abs=1e-6)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: L.self_produced_guidance(x.logits, x.logits, threshold=2.0), "threshold"),
        (lambda x: L.self_produced_guidance(x.logits, x.logits, ignore_index=1), "ignore_index"),
        (lambda x: L.normal_loss(x.normals[:, :2], x.normals[:, :2].detach()), "3 channels"),
        (lambda x: L.semi_supervised_loss(x.logits, x.d_logits, threshold=1.5), "threshold"),
        (lambda x: L.max_square_loss(x.logits, image_weighting=True, ratio=2.0), "ratio"),
        (lambda x: L.pne_loss(x.embeddings, x.logits, x.labels, temperature=0.0), "temperature"),
        (lambda x: L.depth_loss(x.depth, x.depth, kind="silog", silog_lambda=2.0), "silog_lambda"),
        (lambda x: L.feature_consistency_loss(x.embeddings, x.labels, margin=2.0), "margin"),
        (lambda x: L.structure_hinge_loss([x.embeddings], [x.embeddings], margin=0.0), "margin"),
        (lambda x: L.dense_crf_loss(x.probs, x.image * 255, sigma_rgb=0.0), "sigma_rgb"),
    ],
)  # fmt: skip
def test_out_of_range_hyperparameters_are_refused_by_name(
    call: Callable[[Inputs], torch.Tensor], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        call(make_inputs(3))
