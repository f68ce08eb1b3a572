"""Whole / slide / multiscale + flip evaluation (denseloss.training.inference).

Agreement: a pointwise (1×1 conv) network is translation-equivariant without context, so sliding
windows and whole-image inference must give the same scores, and flipping changes nothing; on a
constant image every scale gives the same probabilities. Disagreement: a 1×3 box filter (context
across window borders) and a two-scale average, each computed by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from denseloss.config.schema import EvalConfig, RunConfig, validate
from denseloss.training.inference import (
    evaluate_predictions,
    pad_to,
    predict_scores,
    slide_windows,
    subset_mious,
)


def pointwise(c: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(c, 3, 1, 1, generator=g)

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, weight)

    return predict


def box3(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W): horizontal 1×3 sum of channel 0, zero padding."""
    kernel = torch.ones(1, 1, 1, 3)
    return torch.nn.functional.conv2d(x[:, :1], kernel, padding=(0, 1))


def test_slide_equals_whole_for_a_pointwise_network() -> None:
    image = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(1))
    predict = pointwise()
    whole = predict_scores(predict, image, mode="whole")
    for crop, stride in (((16, 16), (10, 12)), ((37, 20), (37, 20)), ((64, 64), None)):
        slide = predict_scores(predict, image, mode="slide", crop=crop, stride=stride)
        torch.testing.assert_close(slide, whole, atol=1e-6, rtol=0)


def test_flip_and_multiscale_agree_where_they_must() -> None:
    predict = pointwise()
    image = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    probs = predict_scores(predict, image).softmax(1)
    flipped = predict_scores(predict, image, flip=True)  # f(flip(x)) flipped back = f(x)
    torch.testing.assert_close(flipped, probs, atol=1e-6, rtol=0)
    constant = torch.full((1, 3, 16, 24), 0.3)
    ms = predict_scores(predict, constant, mode="multiscale", scales=(0.5, 0.75, 1.5), flip=True)
    torch.testing.assert_close(ms, predict_scores(predict, constant).softmax(1), atol=1e-6, rtol=0)


def test_slide_differs_from_whole_by_hand() -> None:
    # channel 0 = [1, 2, 3, 4]; whole: box sums [0+1+2, 1+2+3, 2+3+4, 3+4+0] = [3, 6, 9, 7]
    image = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).repeat(1, 3, 1, 1)
    whole = predict_scores(box3, image)
    assert whole.flatten().tolist() == [3.0, 6.0, 9.0, 7.0]
    # windows [1, 2] and [3, 4] see zeros beyond their borders: [3, 3] and [7, 7]
    tiles = predict_scores(box3, image, mode="slide", crop=(1, 2), stride=(1, 2))
    assert tiles.flatten().tolist() == [3.0, 3.0, 7.0, 7.0]
    # stride 1: windows [1,2] [2,3] [3,4] -> [3,3] [5,5] [7,7]; means [3, (3+5)/2, (5+7)/2, 7]
    overlap = predict_scores(box3, image, mode="slide", crop=(1, 2), stride=(1, 1))
    assert overlap.flatten().tolist() == [3.0, 4.0, 6.0, 7.0]


def test_multiscale_differs_from_whole_by_hand() -> None:
    def two_class(x: torch.Tensor) -> torch.Tensor:  # logits [x_0, 0] per pixel
        return torch.cat([x[:, :1], torch.zeros_like(x[:, :1])], dim=1)

    image = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2).repeat(1, 3, 1, 1)
    out = predict_scores(two_class, image, mode="multiscale", scales=(0.5, 1.0))
    # scale 0.5: 1×2 -> 1×1 (bilinear, half-pixel centres: the mean, 1.0) -> p0 = σ(1) at both
    # pixels; scale 1: p0 = σ(0) = 0.5 and σ(2). Mean over the two scales:
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = [(sig(1) + 0.5) / 2, (sig(1) + sig(2)) / 2]
    torch.testing.assert_close(out[0, 0, 0], torch.tensor(expected), atol=1e-6, rtol=0)
    whole = predict_scores(two_class, image).softmax(1)[0, 0, 0]
    assert abs(float(whole[0]) - expected[0]) > 0.1


def test_whole_pads_with_the_mean_colour_and_crops_back() -> None:
    seen = []

    def record(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return x[:, :2]

    image = torch.rand(1, 3, 5, 7)
    out = predict_scores(record, image, crop=(8, 8))
    assert tuple(seen[0].shape[-2:]) == (8, 8)
    assert tuple(out.shape[-2:]) == (5, 7)
    pad = seen[0][0, :, 5:, :].reshape(3, -1)
    torch.testing.assert_close(pad, torch.tensor([0.485, 0.456, 0.406])[:, None].expand_as(pad))
    torch.testing.assert_close(out, image[:, :2])
    assert pad_to(image, (4, 4)) is image  # larger than the size: untouched


def test_scores_reach_the_label_resolution() -> None:
    image = torch.rand(1, 3, 8, 12)
    out = predict_scores(pointwise(), image, out_size=(16, 24))
    assert tuple(out.shape) == (1, 4, 16, 24)


def test_slide_windows_end_flush_with_the_border() -> None:
    assert slide_windows((10, 10), (4, 4), (3, 3)) == [(y, x) for y in (0, 3, 6) for x in (0, 3, 6)]
    assert slide_windows((4, 4), (4, 4), (2, 2)) == [(0, 0)]


class _Stub:
    """The part of a Method evaluation uses."""

    def __init__(self, predict) -> None:
        self.nets = {"net": torch.nn.Identity()}
        self.predict = predict

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self


def test_evaluate_scores_full_resolution_labels_and_subsets() -> None:
    # class 1 wins where channel 0 > 0.5; images 2×2 (batch of two sizes), labels 4×4 and 4×6
    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.full_like(x[:, :1], 0.5), x[:, :1]], dim=1)

    a = {"image": torch.ones(3, 2, 2), "label": torch.ones(4, 4, dtype=torch.int64)}
    b = {"image": torch.zeros(3, 2, 3), "label": torch.zeros(4, 6, dtype=torch.int64)}
    b["label"][0, 0] = 255
    out = evaluate_predictions(
        _Stub(predict),
        [[a, b]],
        task="seg",
        num_classes=3,
        protocol=EvalConfig(class_subsets={"first": ["zero"], "both": [0, "one"]}),
        class_names=("zero", "one", "two"),
    )
    # 16 + 23 labelled pixels, all right: IoU 1 for classes 0 and 1; class 2 absent
    assert out["miou"] == 1.0
    assert out["iou_per_class"]["one"] == 1.0
    assert math.isnan(out["iou_per_class"]["two"])
    assert out["first"] == 1.0
    assert out["both"] == 1.0
    with pytest.raises(ValueError, match="class_subsets"):
        subset_mious([1.0], {"x": ["nope"]}, ["zero"])


def test_eval_config_errors_name_the_field() -> None:
    for bad, match in (
        (EvalConfig(mode="slide"), "eval.crop"),
        (EvalConfig(scales=(0.5, 1.0)), "eval.scales"),
        (EvalConfig(mode="slide", crop=(8, 8), stride=(9, 4)), "eval.stride"),
        (EvalConfig(select="nope"), "eval.select"),
    ):
        with pytest.raises(ValueError, match=match):
            validate(RunConfig(eval=bad))
    with pytest.raises(ValueError, match="multiscale"):
        validate(RunConfig(method="ce", task="depth", eval=EvalConfig(flip=True)))
