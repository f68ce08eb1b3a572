"""Tests for denseloss.losses.contrastive: the PNE loss and ContrastiveSeg's pixel contrast."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.gradcheck import GradcheckError

from denseloss.losses.contrastive import (
    PixelContrastLoss,
    PneLoss,
    _sample_views,
    pixel_contrast_loss,
    pne_loss,
)
from tests.helpers import assert_close

E = math.e


# ----------------------------------------------------------------------------------------- inputs
def _row(values: list[list[float]]) -> torch.Tensor:
    """Per-pixel vectors of a 1-row image -> (1, D, 1, W)."""
    t = torch.tensor(values, dtype=torch.float64)  # (W, D)
    return t.T.reshape(1, t.shape[1], 1, t.shape[0]).contiguous()


def _scene(
    seed: int, *, n: int = 2, c: int = 5, size: int = 12, label_scale: int = 2,
    never_right: bool = True,
):  # fmt: skip
    """Blocky labels at label_scale x the embedding size, noisy logits, random embeddings.

    With ``never_right``, class c-1 is in the labels but never predicted where it is true, so its
    TT set is empty and its pairs use their anchors as negatives.
    """
    g = torch.Generator().manual_seed(seed)
    big = size * label_scale
    blocks = torch.randint(0, c, (n, size // 3, size // 3), generator=g)
    labels = blocks.repeat_interleave(3 * label_scale, 1).repeat_interleave(3 * label_scale, 2)
    labels[torch.rand(n, big, big, generator=g) < 0.05] = 255
    small = labels[:, ::label_scale, ::label_scale]
    onehot = F.one_hot(small.clamp(max=c - 1), c).permute(0, 3, 1, 2).double()
    logits = 1.5 * onehot + torch.randn(n, c, size, size, generator=g, dtype=torch.float64)
    if never_right:
        logits[:, c - 1] -= 10.0 * (small == c - 1).double()
    emb = torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)
    return emb, logits, labels


# ---------------------------------------------------------- PNE: independent loop reference
def _tile(items: list[int], p: int) -> list[int]:
    return items * (p // len(items)) + items[: p % len(items)]


def pne_reference(emb, logits, labels, *, patch_size, temperature, gate, ignore_index=255):
    """METHODS.md §2.1 as plain loops over images, pairs and anchors. Returns (loss, stats)."""
    n_img, dim, h, w = emb.shape
    lab = F.interpolate(labels[:, None].double(), size=(h, w), mode="nearest")[:, 0].long()
    scores = F.interpolate(logits.detach(), size=(h, w), mode="nearest")
    pred, conf = scores.argmax(1), torch.softmax(scores, 1).amax(1)
    pairs, stats = [], {"truncated": 0, "gated": 0, "self_negatives": 0}
    for b in range(n_img):
        y, yh = lab[b].flatten().tolist(), pred[b].flatten().tolist()
        pixels = range(h * w)
        for j in sorted(set(y) - {ignore_index}):
            tt_j = [i for i in pixels if y[i] == j and yh[i] == j]
            confused = {y[i] for i in pixels if yh[i] == j and y[i] != j} - {ignore_index}
            for k in sorted(confused):
                anchors = [i for i in pixels if yh[i] == j and y[i] == k]
                tt_k = [i for i in pixels if y[i] == k and yh[i] == k]
                if not tt_k:
                    continue
                if not gate[0] <= len(anchors) <= gate[1]:
                    stats["gated"] += 1
                    continue
                stats["truncated"] += len(anchors) > patch_size
                stats["self_negatives"] += not tt_j
                negatives = tt_j if tt_j else anchors
                pairs.append((b, anchors, tt_k, negatives))
    if not pairs:
        return None, stats
    total = emb.new_zeros(())
    for b, anchors, positives, negatives in pairs:
        f = emb[b].reshape(dim, h * w)
        fd = f.detach()
        pos, neg = _tile(positives, patch_size), _tile(negatives, patch_size)
        weights = conf[b].flatten()[pos]
        for a in _tile(anchors, patch_size):
            anchor_norm = f[:, a].detach().norm()
            cos_pos = (f[:, a] @ fd[:, pos]) / (anchor_norm * fd[:, pos].norm(dim=0))
            cos_neg = (f[:, a] @ fd[:, neg]) / (anchor_norm * fd[:, neg].norm(dim=0))
            s_pos = (torch.exp(cos_pos / temperature) * weights).sum()
            s_neg = torch.exp(cos_neg / temperature).sum()
            total = total + torch.log(1 + s_neg / s_pos)
    cross_len = sum(len(p[1]) for p in pairs)
    return total * cross_len / (len(pairs) * patch_size) ** 2, stats


# -------------------------------------------------------------------------------- PNE: values
def _hand_case():
    # pixels:   0        1        2        3 (anchor)  4       5
    emb = _row([[1, 0], [0, 1], [-1, 0], [2, 0], [0, 3], [-1, 0]])
    labels = torch.tensor([[[0, 0, 0, 0, 1, 1]]])
    # max softmax: pixel 0 -> 3/4, pixel 1 -> 4/5, pixel 2 -> 3/4; pixels 3-5 predict class 1.
    l3, l4 = math.log(3), math.log(4)
    logits = _row([[l3, 0], [l4, 0], [l3, 0], [0, 1], [0, 1], [0, 1]])
    return emb, logits, labels


def test_pne_output_is_scalar(dtype):
    emb, logits, labels = _scene(0)
    out = pne_loss(emb.to(dtype), logits.to(dtype), labels, patch_size=5, gate=(0, 50))
    assert out.shape == ()
    assert out.dtype == dtype


def test_pne_hand_computed_with_cyclic_tiling(device):
    emb, logits, labels = (t.to(device) for t in _hand_case())
    # One pair (j=1 predicted, k=0 true): anchor {3}; positives TT_0 = {0,1,2} tiled to P=4 as
    # [0,1,2,0]; negatives TT_1 = {4,5} tiled as [4,5,4,5]. Cosines with the anchor (2,0):
    # e0 -> 1, e1 -> 0, e2 -> -1, e4 -> 0, e5 -> -1.
    # S+ = 2*(3/4)*e + (4/5)*1 + (3/4)/e = 4.07742 + 0.8 + 0.27591 = 5.15333
    # S- = 2*1 + 2/e = 2.73576;  l = log(1 + S-/S+) = log(1.53087) = 0.42584
    # L = (4 tiled anchors * l) * cross_len 1 / (count 1 * P 4)^2 = l / 4 = 0.10646
    s_pos = 2 * 0.75 * E + 0.8 + 0.75 / E
    s_neg = 2 + 2 / E
    expected = math.log(1 + s_neg / s_pos) / 4
    assert expected == pytest.approx(0.1064593, abs=1e-7)
    assert_close(pne_loss(emb, logits, labels, patch_size=4).cpu(), expected)
    # temperature divides the cosine: tau = 0.5 doubles every exponent.
    s_pos = 2 * 0.75 * E**2 + 0.8 + 0.75 / E**2
    s_neg = 2 + 2 / E**2
    out = pne_loss(emb, logits, labels, patch_size=4, temperature=0.5)
    assert_close(out.cpu(), math.log(1 + s_neg / s_pos) / 4)


def test_pne_truncation_keeps_full_anchor_count_in_normaliser():
    # Three identical anchors (pixels 1-3, true 0, predicted 1), P = 2: only the first two
    # are tiled, but cross_len counts all 3: L = (2 * l) * 3 / (1 * 2)^2 = 1.5 * l.
    # l = log(1 + e^0 / (3/4 * e^1)) with positive pixel 0 (cos 1) and negative pixel 4 (cos 0).
    emb = _row([[1, 0], [1, 0], [1, 0], [1, 0], [0, 1]])
    labels = torch.tensor([[[0, 0, 0, 0, 1]]])
    logits = _row([[math.log(3), 0], [0, 1], [0, 1], [0, 1], [0, 1]])
    ell = math.log(1 + 1 / (0.75 * E))
    assert_close(pne_loss(emb, logits, labels, patch_size=2), 1.5 * ell)
    # gate=(0, 2) drops the pair (3 anchors > 2): no pair -> 0
    assert float(pne_loss(emb, logits, labels, patch_size=2, gate=(0, 2))) == 0.0


def test_pne_negatives_fall_back_to_anchors():
    # Class 1 is in the labels (pixel 2) but never correctly predicted: TT_1 is empty, so the
    # pair (j=1, k=0) with anchor {1} uses the anchor itself as negative: cos(a, a) = 1.
    # Positive pixel 0 = (0, 1) has cos 0 and weight 3/4:  L = l = log(1 + e / (3/4)) = 1.53134
    # (pixel 2, predicted 0 but labelled 1, has no positives TT_1 and is skipped).
    emb = _row([[0, 1], [1, 0], [5, 5]])
    labels = torch.tensor([[[0, 0, 1]]])
    logits = _row([[math.log(3), 0], [0, 1], [1, 0]])
    assert_close(pne_loss(emb, logits, labels, patch_size=1), math.log(1 + E / 0.75))


@pytest.mark.parametrize(
    ("seed", "classes", "size", "kw"),
    [
        (0, 5, 12, {"patch_size": 5, "temperature": 0.7, "gate": (2, 9)}),
        (3, 5, 12, {"patch_size": 5, "temperature": 0.7, "gate": (2, 9)}),
        (1, 8, 15, {"patch_size": 3, "temperature": 0.2, "gate": (1, 6)}),
    ],
)
def test_pne_matches_loop_reference(seed, classes, size, kw, device):
    emb, logits, labels = _scene(seed, c=classes, size=size)
    emb = emb.requires_grad_()
    expected, stats = pne_reference(emb, logits, labels, **kw)
    # the inputs exercise every branch: n > P, gated-out pairs, negatives := anchors
    assert stats["truncated"] > 0
    assert stats["gated"] > 0
    assert stats["self_negatives"] > 0
    (grad_expected,) = torch.autograd.grad(expected, emb)
    emb_d = emb.detach().to(device).requires_grad_()
    out = pne_loss(emb_d, logits.to(device), labels.to(device), **kw)
    (grad,) = torch.autograd.grad(out, emb_d)
    assert_close(out.cpu(), expected.detach())
    assert_close(grad.cpu(), grad_expected)


def test_pne_logits_at_label_resolution_are_resized():
    emb, logits, labels = _scene(3)
    big_logits = logits.repeat_interleave(2, 2).repeat_interleave(2, 3)
    kw = {"patch_size": 4, "gate": (0, 99)}
    assert_close(pne_loss(emb, big_logits, labels, **kw), pne_loss(emb, logits, labels, **kw))


# ------------------------------------------------------------------- PNE: gradients, invariants
def test_pne_gradient_only_at_anchor_pixels():
    emb, logits, labels = _scene(4)
    emb.requires_grad_()
    logits.requires_grad_()
    pne_loss(emb, logits, labels, patch_size=100, gate=(0, 199)).backward()
    assert logits.grad is None  # argmax and detached confidences only
    small = labels[:, ::2, ::2]
    pred = logits.detach().argmax(1)
    present = torch.stack([torch.isin(pred[b], small[b][small[b] != 255]) for b in range(2)])
    correct = (small != 255) & (pred == small)
    has_positives = torch.stack([torch.isin(small[b], small[b][correct[b]]) for b in range(2)])
    anchor = (small != 255) & (pred != small) & present & has_positives
    grad_norm = emb.grad.norm(dim=1)
    assert anchor.any()
    assert (~anchor).sum() > 0
    assert torch.all(grad_norm[~anchor] == 0)  # positives, negatives, ignored: exactly zero
    assert torch.all(grad_norm[anchor] > 0)


def test_pne_gradcheck_anchor_directions():
    # Positives, negatives and the anchor norm are detached, so the gradient is the derivative
    # with those held fixed. Check it with gradcheck on a parameterisation in which they ARE
    # fixed: only the anchors vary, and only in direction (norm 2). (No class lacks correct
    # pixels here, so no anchor doubles as a negative.)
    emb, logits, labels = _scene(5, n=1, c=3, size=6, never_right=False)
    small = labels[:, ::2, ::2]
    pred = logits.argmax(1)
    anchor = ((small != 255) & (pred != small)).flatten()
    assert anchor.sum() >= 2
    base = emb.permute(0, 2, 3, 1).reshape(-1, 3)
    idx = anchor.nonzero().squeeze(1)
    directions = base[idx].clone().requires_grad_()

    def f(v):
        rows = base.index_put((idx,), 2.0 * F.normalize(v, dim=1))
        e = rows.reshape(1, 6, 6, 3).permute(0, 3, 1, 2)
        return pne_loss(e, logits, labels, patch_size=3, temperature=0.5)

    assert float(f(directions).detach()) > 0
    assert torch.autograd.gradcheck(f, (directions,))


def test_pne_detach_is_active():
    # Without the detach pattern this would be an ordinary smooth function and pass gradcheck.
    emb, logits, labels = _scene(5, n=1, c=3, size=6)
    emb.requires_grad_()
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(
            lambda e: pne_loss(e, logits, labels, patch_size=3), (emb,), fast_mode=True
        )


def test_pne_invariants():
    emb, logits, labels = _scene(6)
    kw = {"patch_size": 6, "gate": (0, 99)}
    ref = pne_loss(emb, logits, labels, **kw)
    # cosine: per-pixel positive scaling changes nothing
    scale = torch.rand(2, 1, 12, 12, dtype=torch.float64) + 0.5
    assert_close(pne_loss(emb * scale, logits, labels, **kw), ref)
    # ignored pixels are never anchors, positives or negatives
    ignored = (labels[:, ::2, ::2] == 255)[:, None]
    assert ignored.any()
    noisy = torch.where(ignored, torch.randn_like(emb), emb)
    assert_close(pne_loss(noisy, logits, labels, **kw), ref)
    # renaming the classes consistently in labels and logits
    perm = torch.tensor([3, 0, 4, 1, 2])
    relabelled = torch.where(labels == 255, labels, perm[labels.clamp(max=4)])
    shuffled = torch.empty_like(logits)
    shuffled[:, perm] = logits
    assert_close(pne_loss(emb, shuffled, relabelled, **kw), ref)


def test_pne_no_pair_is_zero_with_graph():
    emb, _, labels = _scene(7)
    small = labels[:, ::2, ::2]
    perfect = F.one_hot(small.clamp(max=4), 5).permute(0, 3, 1, 2).double() * 5
    emb.requires_grad_()
    out = pne_loss(emb, perfect, labels)
    assert float(out.detach()) == 0.0
    out.backward()
    assert torch.all(emb.grad == 0)
    all_ignored = torch.full_like(labels, 255)
    assert float(pne_loss(emb, perfect, all_ignored).detach()) == 0.0


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_pne_half_precision_close_to_float32(half):
    emb, logits, labels = _scene(8)
    kw = {"patch_size": 8, "gate": (0, 99), "temperature": 0.5}
    ref = pne_loss(emb.float(), logits.float(), labels, **kw)
    out = pne_loss(emb.to(half), logits.to(half), labels, **kw)
    assert out.dtype == torch.float32
    assert torch.isfinite(out)
    torch.testing.assert_close(out, ref, rtol=3e-2, atol=1e-3)


def test_pne_module_equals_function():
    emb, logits, labels = _scene(9)
    kw = {"patch_size": 7, "temperature": 0.3, "gate": (1, 30), "ignore_index": 255}
    module = PneLoss(**kw)
    assert_close(module(emb, logits, labels), pne_loss(emb, logits, labels, **kw))
    assert "patch_size=7" in repr(module)
    assert "gate=(1, 30)" in repr(module)


# --------------------------------------------------------------------------------- PNE: errors
def _ok():
    emb, logits, labels = _scene(0)
    return emb, logits, labels


@pytest.mark.parametrize(
    ("mutate", "exc", "match"),
    [
        (lambda e, lo, la: (e[0], lo, la), ValueError, "embeddings must be 4-D"),
        (lambda e, lo, la: (e, lo[0], la), ValueError, "logits must be 4-D"),
        (lambda e, lo, la: (e, lo, la[:, None]), ValueError, "labels must be 3-D"),
        (lambda e, lo, la: (e.long(), lo, la), TypeError, "embeddings must be a floating"),
        (lambda e, lo, la: (e, lo, la.double()), TypeError, "labels must be an integer"),
        (lambda e, lo, la: (e[:1], lo, la), ValueError, "logits must have batch size 1"),
        (lambda e, lo, la: (e, lo, la[:1]), ValueError, "labels must have batch size 2"),
        (lambda e, lo, la: (e, lo, la.masked_fill(la == 0, 7)), ValueError, r"labels must be in"),
    ],
)
def test_pne_bad_tensors(mutate, exc, match):
    emb, logits, labels = mutate(*_ok())
    with pytest.raises(exc, match=match):
        pne_loss(emb, logits, labels)


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"patch_size": 0}, ValueError, "patch_size must be >= 1"),
        ({"patch_size": 2.0}, TypeError, "patch_size must be an int"),
        ({"temperature": 0.0}, ValueError, "temperature must be a finite number > 0"),
        ({"temperature": float("nan")}, ValueError, "temperature must be a finite"),
        ({"temperature": "1"}, TypeError, "temperature must be a float"),
        ({"gate": (5, 2)}, ValueError, "gate must satisfy"),
        ({"gate": (-1, 2)}, ValueError, "gate must satisfy"),
        ({"gate": (1, 2, 3)}, TypeError, "gate must be a pair of ints"),
        ({"gate": (0.5, 2)}, TypeError, "gate must be a pair of ints"),
        ({"ignore_index": None}, TypeError, "ignore_index must be an int"),
    ],
)
def test_pne_bad_hyperparameters(kw, exc, match):
    with pytest.raises(exc, match=match):
        pne_loss(*_ok(), **kw)
    with pytest.raises(exc, match=match):
        PneLoss(**kw)


# ------------------------------------------------------------------------ pixel contrast: values
def _contrast_case():
    # class 0: easy pixels 0-1 = u0, hard pixels 2-3 = h0; class 1: easy 4-5 = u1, hard 6-7 = h1
    u0, h0, u1, h1 = [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 1.0]
    emb = _row([u0, u0, h0, h0, u1, u1, h1, h1])
    labels = torch.tensor([[[0, 0, 0, 0, 1, 1, 1, 1]]])
    preds = torch.tensor([[[0, 0, 1, 1, 1, 1, 0, 0]]])
    return emb, labels, preds


def test_pixel_contrast_hand_computed(device):
    emb, labels, preds = (t.to(device) for t in _contrast_case())
    # 4 pixels per class > max_views 3; n_view = min(4 // 2, 3) = 2: one hard + one easy each,
    # so the views are {u0, h0, u1, h1} whichever pixels are drawn. Dot products:
    # u0.h0 = 0, u0.u1 = -1, u0.h1 = 0, h0.u1 = 0, h0.h1 = 1, u1.h1 = 0.
    # anchor u0: positive h0 (0), negatives u1 (-1), h1 (0): -log p = log(1 + 1/e + 1)
    # anchor h0: positive u0 (0), negatives u1 (0), h1 (1):  -log p = log(1 + 1 + e)
    # u1, h1 mirror u0, h0.  L = (tau/tau_b) * (log(2 + 1/e) + log(2 + e)) / 2 = 1.20666 (tau=1)
    kw = {"max_samples": 4, "max_views": 3}
    out = pixel_contrast_loss(emb, labels, preds, temperature=1.0, base_temperature=1.0, **kw)
    assert_close(out.cpu(), (math.log(2 + 1 / E) + math.log(2 + E)) / 2)
    # tau = 0.1, tau_b = 0.07: exponents are dot / 0.1
    out = pixel_contrast_loss(emb, labels, preds, temperature=0.1, base_temperature=0.07, **kw)
    a = math.log(1 + math.exp(-10) + 1) + math.log(1 + 1 + math.exp(10))
    assert_close(out.cpu(), 0.1 / 0.07 * a / 2)


def test_pixel_contrast_output_dtype(dtype):
    emb, labels, preds = _contrast_case()
    out = pixel_contrast_loss(emb.to(dtype), labels, preds, max_samples=4, max_views=3)
    assert out.shape == ()
    assert out.dtype == dtype


def _contrast_scene(seed: int):
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 4, (2, 4, 4), generator=g)
    labels = blocks.repeat_interleave(6, 1).repeat_interleave(6, 2)  # (2, 24, 24)
    labels[torch.rand(2, 24, 24, generator=g) < 0.1] = 255
    preds = torch.where(torch.rand(2, 12, 12, generator=g) < 0.7, labels[:, ::2, ::2], 0) % 255
    emb = torch.randn(2, 5, 12, 12, generator=g, dtype=torch.float64)
    return emb, labels, preds


def _contrast_reference(feats, cls, temperature, base_temperature):
    """ContrastiveSeg's _contrastive written out as the reference does (row max, masks)."""
    f = F.normalize(feats, dim=1)
    mask = (cls[:, None] == cls[None, :]).double()
    logits = f @ f.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    neg_mask = 1 - mask
    mask = mask * (1 - torch.eye(len(cls), dtype=torch.float64))
    neg = (torch.exp(logits) * neg_mask).sum(1, keepdim=True)
    log_prob = logits - torch.log(torch.exp(logits) + neg)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    return -(temperature / base_temperature) * mean_log_prob_pos.mean()


def test_pixel_contrast_matches_reference_formula():
    emb, labels, preds = _contrast_scene(0)
    kw = {"max_samples": 40, "max_views": 6}
    target = labels[:, ::2, ::2].reshape(2, -1)
    index, cls = _sample_views(
        target, preds.reshape(2, -1), ignore_index=255,
        generator=torch.Generator().manual_seed(3), **kw,
    )  # fmt: skip
    assert len(set(cls.tolist())) >= 3
    feats = emb.permute(0, 2, 3, 1).reshape(-1, 5)[index]
    expected = _contrast_reference(feats, cls, 0.1, 0.07)
    out = pixel_contrast_loss(emb, labels, preds, generator=torch.Generator().manual_seed(3), **kw)
    assert_close(out, expected)


def test_sample_views_counts_and_fallbacks():
    # image 0: class 0 has 10 pixels (1 hard), class 1 has 10 pixels (0 easy), class 2 has 3
    # pixels (<= max_views: not sampled). n_view = min(8 // 2, 5) = 4.
    target = torch.tensor([[0] * 10 + [1] * 10 + [2] * 3 + [255] * 2])
    pred = torch.tensor([[1] + [0] * 9 + [0] * 10 + [2] * 3 + [0] * 2])
    index, cls = _sample_views(
        target, pred, max_samples=8, max_views=5, ignore_index=255,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert sorted(cls.tolist()) == [0] * 4 + [1] * 4
    hard = pred[0, index] != target[0, index]
    # class 0: too few hard -> the 1 hard pixel + 3 easy; class 1: no easy -> 4 hard
    assert hard[cls == 0].sum() == 1
    assert 0 in index.tolist()
    assert hard[cls == 1].all()
    assert len(set(index.tolist())) == 8


def test_pixel_contrast_determinism_with_generator():
    emb, labels, preds = _contrast_scene(1)
    kw = {"max_samples": 30, "max_views": 5}

    def run(seed):
        return pixel_contrast_loss(
            emb, labels, preds, generator=torch.Generator().manual_seed(seed), **kw
        )

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    # the global RNG is untouched when a generator is given
    state = torch.get_rng_state()
    run(2)
    assert torch.equal(torch.get_rng_state(), state)


def test_pixel_contrast_gradcheck():
    emb, labels, preds = _contrast_scene(2)
    emb = emb[:, :3, :6, :6].contiguous().requires_grad_()
    labels, preds = labels[:, :12, :12], preds[:, :6, :6]

    def f(e):  # a fresh generator per call: every evaluation samples the same views
        g = torch.Generator().manual_seed(0)
        return pixel_contrast_loss(e, labels, preds, max_samples=12, max_views=3, generator=g)

    assert float(f(emb).detach()) > 0
    assert torch.autograd.gradcheck(f, (emb,))


def test_pixel_contrast_degenerate_cases_are_zero_with_graph():
    emb, labels, preds = _contrast_case()
    emb.requires_grad_()
    # no class has more than max_views pixels
    out = pixel_contrast_loss(emb, labels, preds, max_views=4)
    assert float(out.detach()) == 0.0
    out.backward()
    assert torch.all(emb.grad == 0)
    # one class only
    one = torch.zeros_like(labels)
    assert float(pixel_contrast_loss(emb, one, preds, max_views=3).detach()) == 0.0
    # n_view = 1 with one image: no anchor has a positive (the reference gives NaN)
    assert (
        float(pixel_contrast_loss(emb, labels, preds, max_samples=2, max_views=3).detach()) == 0.0
    )
    # all ignored
    assert float(pixel_contrast_loss(emb, torch.full_like(labels, 255), preds).detach()) == 0.0


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_pixel_contrast_half_precision_close_to_float32(half):
    emb, labels, preds = _contrast_scene(3)
    kw = {"max_samples": 40, "max_views": 6}
    ref = pixel_contrast_loss(
        emb.float(), labels, preds, generator=torch.Generator().manual_seed(0), **kw
    )
    out = pixel_contrast_loss(
        emb.to(half), labels, preds, generator=torch.Generator().manual_seed(0), **kw
    )
    assert out.dtype == torch.float32
    assert torch.isfinite(out)
    torch.testing.assert_close(out, ref, rtol=3e-2, atol=1e-3)


def test_pixel_contrast_module_equals_function():
    emb, labels, preds = _contrast_scene(4)
    kw = {"temperature": 0.2, "base_temperature": 0.1, "max_samples": 30, "max_views": 5}
    module = PixelContrastLoss(generator=torch.Generator().manual_seed(5), **kw)
    expected = pixel_contrast_loss(
        emb, labels, preds, generator=torch.Generator().manual_seed(5), **kw
    )
    assert_close(module(emb, labels, preds), expected)
    g = torch.Generator().manual_seed(5)
    assert_close(module(emb, labels, preds, generator=g), expected)
    assert "max_views=5" in repr(module)


@pytest.mark.parametrize(
    ("mutate", "exc", "match"),
    [
        (lambda e, la, p: (e[0], la, p), ValueError, "embeddings must be 4-D"),
        (lambda e, la, p: (e, la[0], p), ValueError, "labels must be 3-D"),
        (lambda e, la, p: (e, la, p[None]), ValueError, "predictions must be 3-D"),
        (lambda e, la, p: (e.long(), la, p), TypeError, "embeddings must be a floating"),
        (lambda e, la, p: (e, la.float(), p), TypeError, "labels must be an integer"),
        (lambda e, la, p: (e, la, p.float()), TypeError, "predictions must be an integer"),
        (lambda e, la, p: (e, la[:1], p), ValueError, "labels must have batch size 2"),
        (lambda e, la, p: (e, la, p[:1]), ValueError, "predictions must have batch size 2"),
        (lambda e, la, p: (e, la - 1, p), ValueError, r"labels must be >= 0 or equal ignore"),
    ],
)
def test_pixel_contrast_bad_tensors(mutate, exc, match):
    emb, labels, preds = mutate(*_contrast_scene(0))
    with pytest.raises(exc, match=match):
        pixel_contrast_loss(emb, labels, preds)


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"temperature": 0}, ValueError, "temperature must be a finite number > 0"),
        ({"base_temperature": -1.0}, ValueError, "base_temperature must be a finite"),
        ({"temperature": None}, TypeError, "temperature must be a float"),
        ({"max_samples": 0}, ValueError, "max_samples must be >= 1"),
        ({"max_views": 0}, ValueError, "max_views must be >= 1"),
        ({"max_views": 2.5}, TypeError, "max_views must be an int"),
        ({"generator": 0}, TypeError, "generator must be a torch.Generator"),
    ],
)
def test_pixel_contrast_bad_hyperparameters(kw, exc, match):
    with pytest.raises(exc, match=match):
        pixel_contrast_loss(*_contrast_scene(0), **kw)
    with pytest.raises(exc, match=match):
        PixelContrastLoss(**kw)
