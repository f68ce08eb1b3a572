"""Pixel contrastive losses; Wang et al., "Exploring Cross-Image Pixel Contrast for Semantic Segmentation", ICCV 2021, and the PNE loss of Wang et al. (``jingw193/PNE_Loss``)."""  # noqa: E501

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from denseloss._validation import check_float_tensor, check_labels, check_logits, check_tensor
from denseloss.losses._reduction import masked_reduce

__all__ = ["PixelContrastLoss", "PneLoss", "pixel_contrast_loss", "pne_loss"]

# Zero-norm embeddings would give 0/0 in the cosine; the reference has no guard (NaN), we clamp.
_NORM_EPS = 1e-12


# --------------------------------------------------------------------------- hyperparameter checks
def _check_int(func: str, name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{func}: {name} must be an int; got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}; got {value!r}.")


def _check_temperature(func: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{func}: {name} must be a float; got {type(value).__name__}.")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{func}: {name} must be a finite number > 0; got {value!r}.")


def _check_gate(func: str, gate: object) -> None:
    if (
        not isinstance(gate, Sequence)
        or len(gate) != 2
        or any(isinstance(g, bool) or not isinstance(g, int) for g in gate)
    ):
        raise TypeError(f"{func}: gate must be a pair of ints (min, max); got {gate!r}.")
    if not 0 <= gate[0] <= gate[1]:
        raise ValueError(f"{func}: gate must satisfy 0 <= gate[0] <= gate[1]; got {tuple(gate)}.")


def _check_pne_hyperparameters(
    func: str, patch_size: object, temperature: object, gate: object, ignore_index: object
) -> None:
    _check_int(func, "patch_size", patch_size, 1)
    _check_temperature(func, "temperature", temperature)
    _check_gate(func, gate)
    _check_int(func, "ignore_index", ignore_index, -(2**62))


def _check_contrast_hyperparameters(
    func: str,
    temperature: object,
    base_temperature: object,
    max_samples: object,
    max_views: object,
    ignore_index: object,
    generator: object,
) -> None:
    _check_temperature(func, "temperature", temperature)
    _check_temperature(func, "base_temperature", base_temperature)
    _check_int(func, "max_samples", max_samples, 1)
    _check_int(func, "max_views", max_views, 1)
    _check_int(func, "ignore_index", ignore_index, -(2**62))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{func}: generator must be a torch.Generator or None; got {type(generator).__name__}."
        )


def _check_batch(func: str, embeddings: torch.Tensor, other: torch.Tensor, name: str) -> None:
    if other.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"{func}: {name} must have batch size {embeddings.shape[0]} to match embeddings; "
            f"got shape {tuple(other.shape)}."
        )


# --------------------------------------------------------------------------------------- helpers
def _nearest_index(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """Source index of each output position of a ``mode="nearest"`` resize (PyTorch's rule)."""
    grid = torch.arange(in_size, dtype=torch.float32, device=device)[None, None]
    return F.interpolate(grid, size=out_size, mode="nearest")[0, 0].long()


def _resize_nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-resize the last two dims of ``x`` to ``size``, as ``F.interpolate`` would.

    Done by indexing, so integer maps stay exact and only the kept pixels are read.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    rows = _nearest_index(x.shape[-2], size[0], x.device)
    cols = _nearest_index(x.shape[-1], size[1], x.device)
    return x[..., rows[:, None], cols[None, :]]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _zero_like_graph(x: torch.Tensor) -> torch.Tensor:
    """0.0 that stays connected to ``x``'s graph (gradient exactly zero)."""
    return x.sum() * 0.0


def _rank_in_group(group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Raster-order rank of each element inside its group, and the group sizes.

    Args:
        group: (M,) long in [0, num_groups), aligned with pixels in ascending (raster) order.
        num_groups: number of groups G.

    Returns:
        ``rank`` (M,) long, 0 for the first pixel of its group, and ``counts`` (G,) long.
    """
    counts = torch.bincount(group, minlength=num_groups)
    order = torch.argsort(group, stable=True)  # stable keeps raster order inside a group
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(group)
    rank[order] = torch.arange(group.numel(), device=group.device) - starts[group[order]]
    return rank, counts


def _tiling(rank: torch.Tensor, count: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Multiplicity of item ``rank`` of a set of ``count`` items tiled cyclically to P.

    Tiling n items to P = ``patch_size`` (the whole set ⌊P/n⌋ times, then its first P mod n items;
    the first P items when n > P) repeats item r exactly ⌊P/n⌋ + [r < P mod n] times. A sum over
    the tiled set therefore equals a sum over the first min(n, P) items weighted by this
    multiplicity, which is how :func:`pne_loss` evaluates it.
    """
    return patch_size // count + (rank < patch_size % count).long()


def _starts_within(length: torch.Tensor, owner: torch.Tensor, num_owners: int) -> torch.Tensor:
    """Offset of each segment inside its owner when an owner's segments are laid end to end."""
    order = torch.argsort(owner, stable=True)
    cum = torch.cumsum(length[order], 0) - length[order]
    totals = torch.bincount(owner, weights=length, minlength=num_owners).long()
    owner_start = torch.cumsum(totals, 0) - totals
    start = torch.empty_like(length)
    start[order] = cum - owner_start[owner[order]]
    return start


# ------------------------------------------------------------------------------------------- PNE
def pne_loss(
    embeddings: torch.Tensor,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    patch_size: int = 100,
    temperature: float = 1.0,
    gate: tuple[int, int] = (0, 199),
    ignore_index: int = 255,
) -> torch.Tensor:
    r"""Positive-negative equal (PNE) contrastive loss, as its reference code computes it.

    Per image, with ŷ = argmax of ``logits`` and y the labels (both at the embeddings' size),
    for every class j present in y and every other class k: the anchors
    A_{j,k} = {ŷ = j, y = k} (misclassified pixels), the positives TT_k = {ŷ = y = k}, the
    negatives TT_j = {ŷ = y = j} (the anchors themselves when TT_j is empty). A pair is kept
    when |TT_k| > 0, |A| > 0 and gate[0] <= |A| <= gate[1]. Anchors, positives (with their
    weights) and negatives are each tiled cyclically, in raster order, to exactly P =
    ``patch_size`` items (the first P when there are more). For a tiled anchor a:

    .. math::

        \ell(a) = \log\Big(1 + \frac{\sum_{n=1}^{P} e^{\cos(a, n)/\tau}}
                                   {\sum_{p=1}^{P} w_p\, e^{\cos(a, p)/\tau}}\Big),
        \qquad
        L = \frac{\sum_{\text{pairs}} \sum_{a=1}^{P} \ell(a) \cdot \sum_{\text{pairs}} |A|}
                 {(K P)^2}

    with w_p = max_c softmax(logits)_p (detached), K the number of kept pairs and |A| each
    pair's full anchor count (even when |A| > P). Unlike pixel contrast, which samples anchors
    per class, PNE contrasts only the misclassified pixels, against equally many (P) positives
    of their true class and negatives of the class they were confused with.

    Gradient policy (the reference's): positives, negatives, their weights and the anchor's norm
    in the cosine are detached, so the gradient reaches ``embeddings`` only at anchor pixels,
    through the anchor's dot product; ``logits`` get no gradient (argmax and detached weights).

    Implementation: the cosines are computed once per distinct pixel of each pair (one batched
    matrix product over all pairs) and the tiling enters as integer multiplicities, which equals
    the reference's sum over tiled copies. Sums are taken in log space (log-sum-exp, softplus), so
    small temperatures do not overflow.

    Args:
        embeddings: (N, D, h, w) float, projection-head output (not normalised; the cosine
            normalises). Half precision is computed in float32.
        logits: (N, C, h', w') float, segmentation scores; nearest-resized to (h, w) when
            (h', w') != (h, w). Receive no gradient.
        labels: (N, H, W) int64 in [0, C) or ``ignore_index``; nearest-resized to (h, w).
        patch_size: P >= 1, the tiled length of every anchor/positive/negative set.
        temperature: τ > 0, divides the cosine (released Cityscapes config: 1).
        gate: (min, max) anchor counts of a kept pair; large error regions are ignored.
        ignore_index: label value that is never an anchor, positive or negative.

    Returns:
        Scalar tensor (float32 for half-precision input, else the input dtype), without the
        method's loss weight. No kept pair gives 0.0 attached to the graph (the reference returns
        (Σ embeddings − Σ logits)·1e-16 instead: tiny and non-zero).

    Raises:
        TypeError: ``embeddings``/``logits`` not floating point, ``labels`` not integer,
            hyperparameters of the wrong type.
        ValueError: wrong ranks, mismatched batch sizes, labels outside [0, C) that are not
            ``ignore_index``, ``patch_size`` < 1, ``temperature`` <= 0, bad ``gate``.

    Reference:
        ``wang2022pne`` (code: ``jingw193/PNE_Loss``, ``ReverseContrastiveLoss``).

    Example:
        >>> emb = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).reshape(1, 2, 1, 3)
        >>> logits = torch.tensor([[math.log(3), 0.0, 0.0], [0.0, 1.0, 1.0]]).reshape(1, 2, 1, 3)
        >>> labels = torch.tensor([[[0, 0, 1]]])  # pixel 1 (class 0) is predicted as class 1
        >>> # one anchor, cos(a, p) = 1 with w_p = 3/4, cos(a, n) = 0: log(1 + 1 / (0.75 e))
        >>> round(float(pne_loss(emb, logits, labels, patch_size=1)), 4)
        0.3991
    """
    func = "pne_loss"
    _check_pne_hyperparameters(func, patch_size, temperature, gate, ignore_index)
    check_float_tensor(func, "embeddings", embeddings, 4)
    check_logits(func, logits)
    check_tensor(func, "labels", labels, 3)
    _check_batch(func, embeddings, logits, "logits")
    _check_batch(func, embeddings, labels, "labels")
    check_labels(func, labels, logits.shape[1], ignore_index=ignore_index)

    batch, dim, height, width = embeddings.shape
    emb = embeddings.to(_compute_dtype(embeddings))
    emb_flat = emb.reshape(batch, dim, height * width)  # (N, D, h*w), a view

    with torch.no_grad():
        plan = _pne_plan(logits, labels, (height, width), patch_size, gate, ignore_index, emb.dtype)
    if plan is None:
        return _zero_like_graph(emb)

    area = height * width
    # (N, A, D), read by advanced indexing (no copy of the whole map); the gradient's only path.
    anchors = emb_flat[plan.anchor_table // area, :, plan.anchor_table % area]
    # The reference detaches the anchor's norm: the gradient flows through the dot product only.
    anchors = anchors / anchors.detach().norm(dim=-1, keepdim=True).clamp_min(_NORM_EPS)
    targets = emb_flat.detach()[plan.target_table // area, :, plan.target_table % area]  # (N, T, D)
    targets = targets / targets.norm(dim=-1, keepdim=True).clamp_min(_NORM_EPS)
    cosine = torch.bmm(anchors, targets.transpose(1, 2)) / temperature  # (N, A, T)
    per_anchor = cosine.reshape(-1, cosine.shape[-1])[plan.anchor_slot]  # (M, T)
    z_pos = per_anchor.gather(1, plan.pos_columns) + plan.pos_log_weight  # (M, W)
    z_neg = per_anchor.gather(1, plan.neg_columns) + plan.neg_log_weight
    # log(1 + S⁻/S⁺) with S = Σ (multiplicity · weight) e^{cos/τ}, in log space.
    ell = F.softplus(torch.logsumexp(z_neg, 1) - torch.logsumexp(z_pos, 1), threshold=30.0)
    total = masked_reduce(ell, None, "sum", weight=plan.anchor_mult.to(emb.dtype), func=func)
    return total * (plan.cross_len / float(plan.num_pairs * patch_size) ** 2)


class _PnePlan(NamedTuple):
    """Index tensors of one :func:`pne_loss` call (no gradient); M anchors, W = row width."""

    anchor_table: torch.Tensor  # (N, A) flat pixel index of each image's anchors (0 = padding)
    anchor_slot: torch.Tensor  # (M,) row of each anchor in the (N*A, T) cosine matrix
    anchor_mult: torch.Tensor  # (M,) tiling multiplicity of the anchor inside its pair
    target_table: torch.Tensor  # (N, T) flat pixel index of each image's target pixels
    pos_columns: torch.Tensor  # (M, W) columns of the anchor's positives in its image's targets
    pos_log_weight: torch.Tensor  # (M, W) log(multiplicity · confidence), -inf on padding
    neg_columns: torch.Tensor  # (M, W)
    neg_log_weight: torch.Tensor  # (M, W) log(multiplicity), -inf on padding
    num_pairs: int
    cross_len: float  # Σ over kept pairs of the full anchor count


def _pne_plan(
    logits: torch.Tensor,
    labels: torch.Tensor,
    size: tuple[int, int],
    patch_size: int,
    gate: tuple[int, int],
    ignore_index: int,
    dtype: torch.dtype,
) -> _PnePlan | None:
    """Find PNE's pairs, anchors, positives and negatives; None when no pair is kept.

    Layout: per image, the anchors of all kept pairs (first P of each pair, in raster order) form
    the rows and the member pixels of every set used as positives or negatives (first P of each)
    the columns of one cosine matrix, so all pairs share one batched matrix product and each set
    is gathered once, not once per pair.
    """
    batch, num_classes = logits.shape[:2]
    device = logits.device
    scores = _resize_nearest(logits.detach(), size)
    pred = scores.argmax(dim=1).reshape(-1)  # (N*h*w,)
    confidence = torch.softmax(scores.to(dtype), dim=1).amax(dim=1).reshape(-1)
    target = _resize_nearest(labels, size).reshape(-1)
    valid = target != ignore_index
    target = torch.where(valid, target, torch.zeros_like(target))
    area = size[0] * size[1]
    image = torch.arange(batch, device=device).repeat_interleave(area)
    class_key = image * num_classes + target  # (image, true class)
    present = torch.zeros(batch * num_classes, dtype=torch.bool, device=device)
    present[class_key[valid]] = True  # classes in each image's labels
    correct = valid & (pred == target)
    # Anchors: misclassified labelled pixels whose predicted class is in the image's labels.
    anchor = valid & ~correct & present[image * num_classes + pred]

    tt_pix = correct.nonzero().squeeze(1)  # TT_c, keyed (image, c)
    tt_key = class_key[tt_pix]
    tt_count = torch.bincount(tt_key, minlength=batch * num_classes)
    a_pix = anchor.nonzero().squeeze(1)  # A_{j,k}, keyed (image, j = predicted, k = true)
    a_keys, a_group, a_count = torch.unique(
        class_key[a_pix] * num_classes + pred[a_pix], return_inverse=True, return_counts=True
    )
    k_key = a_keys // num_classes
    j_key = (k_key // num_classes) * num_classes + a_keys % num_classes
    kept = (tt_count[k_key] > 0) & (a_count >= gate[0]) & (a_count <= gate[1])
    num_pairs = int(kept.sum())
    if num_pairs == 0:
        return None

    # Kept pairs renumbered 0..K-1; their anchors cut to the first P with tiling multiplicities.
    pair_id = torch.cumsum(kept.long(), 0) - 1
    a_sel = kept[a_group]
    a_pix, a_group = a_pix[a_sel], pair_id[a_group[a_sel]]
    j_key, k_key, a_count = j_key[kept], k_key[kept], a_count[kept]
    a_rank, _ = _rank_in_group(a_group, num_pairs)
    a_cut = a_rank < patch_size
    a_pix, a_group, a_rank = a_pix[a_cut], a_group[a_cut], a_rank[a_cut]
    a_mult = _tiling(a_rank, a_count[a_group], patch_size)

    # Target sets ("rows"): each TT set some pair uses, then, for pairs whose TT_j is empty, the
    # pair's own anchors (the reference's negatives in that case).
    used = torch.zeros(batch * num_classes, dtype=torch.bool, device=device)
    used[j_key] = True
    used[k_key] = True
    used &= tt_count > 0
    tt_row = torch.cumsum(used.long(), 0) - 1
    num_tt_rows = int(used.sum())
    tt_sel = used[tt_key]
    tt_pix, tt_group = tt_pix[tt_sel], tt_row[tt_key[tt_sel]]
    tt_rank, _ = _rank_in_group(tt_group, num_tt_rows)
    tt_cut = tt_rank < patch_size
    tt_pix, tt_group, tt_rank = tt_pix[tt_cut], tt_group[tt_cut], tt_rank[tt_cut]
    tt_mult = _tiling(tt_rank, tt_count[used][tt_group], patch_size)
    has_negatives = tt_count[j_key] > 0
    self_row = torch.cumsum((~has_negatives).long(), 0) - 1 + num_tt_rows  # per pair
    self_sel = ~has_negatives[a_group]
    num_rows = num_tt_rows + int((~has_negatives).sum())
    member_pix = torch.cat((tt_pix, a_pix[self_sel]))
    member_row = torch.cat((tt_group, self_row[a_group[self_sel]]))
    member_rank = torch.cat((tt_rank, a_rank[self_sel]))
    member_mult = torch.cat((tt_mult, a_mult[self_sel]))
    row_image = torch.zeros(num_rows, dtype=torch.long, device=device)
    row_image[member_row] = member_pix // area
    row_len = torch.bincount(member_row, minlength=num_rows)
    row_width = int(row_len.max())

    # Columns: rows of an image laid end to end; padding points at column 0 with weight 0.
    row_start = _starts_within(row_len, row_image, batch)
    member_col = row_start[member_row] + member_rank
    num_cols = int(torch.bincount(row_image, weights=row_len, minlength=batch).max())
    target_table = torch.zeros(batch, num_cols, dtype=torch.long, device=device)
    target_table[row_image[member_row], member_col] = member_pix
    row_cols = torch.zeros(num_rows, row_width, dtype=torch.long, device=device)
    row_cols[member_row, member_rank] = member_col
    row_mult = torch.zeros(num_rows, row_width, dtype=dtype, device=device)
    row_mult[member_row, member_rank] = member_mult.to(dtype)
    row_conf = torch.ones(num_rows, row_width, dtype=dtype, device=device)
    row_conf[member_row, member_rank] = confidence[member_pix]

    # Anchors of an image laid end to end (a_pix is ascending, so images are contiguous).
    a_image = a_pix // area
    a_per_image = torch.bincount(a_image, minlength=batch)
    a_col = (
        torch.arange(a_pix.numel(), device=device)
        - (torch.cumsum(a_per_image, 0) - a_per_image)[a_image]
    )
    anchor_table = torch.zeros(batch, int(a_per_image.max()), dtype=torch.long, device=device)
    anchor_table[a_image, a_col] = a_pix
    pos_row = tt_row[k_key][a_group]
    neg_row = torch.where(has_negatives, tt_row[j_key], self_row)[a_group]
    return _PnePlan(
        anchor_table=anchor_table,
        anchor_slot=a_image * anchor_table.shape[1] + a_col,
        anchor_mult=a_mult,
        target_table=target_table,
        pos_columns=row_cols[pos_row],
        pos_log_weight=(row_mult[pos_row] * row_conf[pos_row]).log(),
        neg_columns=row_cols[neg_row],
        neg_log_weight=row_mult[neg_row].log(),
        num_pairs=num_pairs,
        cross_len=float(a_count.sum()),
    )


class PneLoss(nn.Module):
    """Module form of :func:`pne_loss`. See `pne_loss`."""

    def __init__(
        self,
        *,
        patch_size: int = 100,
        temperature: float = 1.0,
        gate: tuple[int, int] = (0, 199),
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        _check_pne_hyperparameters("PneLoss", patch_size, temperature, gate, ignore_index)
        self.patch_size = patch_size
        self.temperature = float(temperature)
        self.gate = (int(gate[0]), int(gate[1]))
        self.ignore_index = ignore_index

    def forward(
        self, embeddings: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Return :func:`pne_loss` with this module's settings."""
        return pne_loss(
            embeddings,
            logits,
            labels,
            patch_size=self.patch_size,
            temperature=self.temperature,
            gate=self.gate,
            ignore_index=self.ignore_index,
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return (
            f"patch_size={self.patch_size}, temperature={self.temperature}, gate={self.gate}, "
            f"ignore_index={self.ignore_index}"
        )


# -------------------------------------------------------------------------------- pixel contrast
def _sample_views(
    target: torch.Tensor,
    pred: torch.Tensor,
    *,
    max_samples: int,
    max_views: int,
    ignore_index: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ContrastiveSeg's segmentation-aware hard anchor sampling, vectorised.

    Classes with more than ``max_views`` labelled pixels in an image are sampled;
    n_view = min(max_samples // #sampled (image, class), max_views) pixels each, n_view // 2 hard
    (y = c, ŷ ≠ c) and the rest easy (y = ŷ = c); when one side has fewer than n_view / 2 pixels,
    all of them are kept and the other side fills up to n_view. Each side is a uniform random
    subset (a random ranking drawn from ``generator``, as ``randperm(n)[:keep]`` would be).

    Args:
        target: (N, L) long labels at the embedding size.
        pred: (N, L) long predicted classes at the embedding size.
        max_samples: total anchor budget.
        max_views: per-(image, class) cap and minimum class size (exclusive).
        ignore_index: unlabelled value.
        generator: random source; None uses torch's global generator.

    Returns:
        ``index`` (M,) long flat pixel indices into (N*L,) and ``cls`` (M,) long their classes;
        both empty when no class qualifies.
    """
    device = target.device
    empty = torch.zeros(0, dtype=torch.long, device=device)
    batch, area = target.shape
    target, pred = target.reshape(-1), pred.reshape(-1)
    valid = target != ignore_index
    if not bool(valid.any()):
        return empty, empty
    num_classes = int(target[valid].max()) + 1
    image = torch.arange(batch, device=device).repeat_interleave(area)
    key = image * num_classes + torch.where(valid, target, torch.zeros_like(target))
    counts = torch.bincount(key[valid], minlength=batch * num_classes)
    sampled = counts > max_views
    total_classes = int(sampled.sum())
    n_view = min(max_samples // total_classes, max_views) if total_classes else 0
    if n_view == 0:
        return empty, empty

    pix = (valid & sampled[key]).nonzero().squeeze(1)
    group = key[pix]
    easy = pred[pix] == target[pix]
    num_easy = torch.bincount(group[easy], minlength=batch * num_classes)
    num_hard = counts - num_easy
    half = n_view / 2
    hard_keep = torch.where(
        (num_hard >= half) & (num_easy >= half),
        torch.full_like(counts, n_view // 2),
        torch.where(num_hard >= half, n_view - num_easy, num_hard),
    )
    easy_keep = n_view - hard_keep

    gen_device = generator.device if generator is not None else torch.device("cpu")
    priority = torch.rand(pix.numel(), generator=generator, device=gen_device).to(device)
    subgroup = group * 2 + easy.long()  # hard before easy inside a class, as the reference
    order = torch.argsort(priority)
    order = order[torch.argsort(subgroup[order], stable=True)]
    subgroup_sorted = subgroup[order]
    sub_counts = torch.bincount(subgroup_sorted, minlength=2 * batch * num_classes)
    starts = torch.cumsum(sub_counts, 0) - sub_counts
    rank = torch.arange(order.numel(), device=device) - starts[subgroup_sorted]
    quota = torch.where(easy[order], easy_keep[group[order]], hard_keep[group[order]])
    chosen = pix[order][rank < quota]
    return chosen, target[chosen]


def pixel_contrast_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    *,
    temperature: float = 0.1,
    base_temperature: float = 0.07,
    max_samples: int = 1024,
    max_views: int = 100,
    generator: torch.Generator | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    r"""Supervised pixel contrast with hard anchor sampling (ContrastiveSeg, without memory).

    Anchors are sampled per (image, class) (see below); every sampled pixel i is an anchor and
    every other sampled pixel of the same class (from any image) is a positive. With f the
    L2-normalised embeddings and l_ij = f_i·f_j / τ:

    .. math::

        \log p_{ij} = l_{ij} - \log\Big(e^{l_{ij}} + \sum_{k: y_k \ne y_i} e^{l_{ik}}\Big), \qquad
        L = -\frac{\tau}{\tau_{base}} \frac{1}{|\mathcal{A}|} \sum_{i \in \mathcal{A}}
            \frac{1}{|P_i|} \sum_{j \in P_i} \log p_{ij}

    where P_i are i's positives and 𝒜 the anchors with |P_i| > 0. Each positive gets its own
    denominator (itself plus all negatives), not SupCon's "all others" denominator: positives do
    not compete with each other, only with the other classes.

    Sampling (segmentation-aware, hard anchors): per image, the classes ≠ ``ignore_index`` with
    more than ``max_views`` pixels qualify; n_view = min(max_samples // #qualifying (image,
    class), max_views). Each takes n_view // 2 hard pixels (label c, prediction ≠ c) and the rest
    easy ones (label = prediction = c); if one kind has fewer than n_view / 2, all of it is taken
    and the other kind fills up. Subsets are uniform random draws from ``generator`` (the
    reference uses ``torch.randperm`` on the global generator).

    Embeddings are L2-normalised here (the reference normalises in its projection head;
    normalising twice is harmless). The reference subtracts a detached row maximum before the
    exponentials; log p is invariant to that shift, and this function uses log-sum-exp instead.

    Args:
        embeddings: (N, D, h, w) float, projection-head output. Half precision is computed in
            float32.
        labels: (N, H, W) int64 class indices >= 0 or ``ignore_index``; nearest-resized to (h, w).
        predictions: (N, H', W') int64 argmax class indices; nearest-resized to (h, w).
        temperature: τ > 0.
        base_temperature: τ_base > 0; the loss is scaled by τ / τ_base.
        max_samples: total number of anchors (budget shared by the qualifying classes), >= 1.
        max_views: per-(image, class) anchor cap and (exclusive) minimum class size, >= 1.
        generator: ``torch.Generator`` for the sampling; None uses the global generator.
        ignore_index: unlabelled value (the reference's ``ce_ignore_index``).

    Returns:
        Scalar tensor (float32 for half-precision input, else the input dtype). When no class
        qualifies, only one class is sampled, or no anchor has a positive (n_view = 1 with one
        image per class), the result is 0.0 attached to the graph (the reference raises or
        returns NaN there).

    Raises:
        TypeError: ``embeddings`` not floating point, ``labels``/``predictions`` not integer,
            hyperparameters or ``generator`` of the wrong type.
        ValueError: wrong ranks, mismatched batch sizes, negative labels other than
            ``ignore_index``, non-positive temperatures, ``max_samples``/``max_views`` < 1.

    Reference:
        ``wang2021exploring`` (code: ``tfzhou/ContrastiveSeg``, ``lib/loss/loss_contrast.py``).

    Example:
        >>> u0, h0, u1, h1 = [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 1.0]
        >>> emb = torch.tensor([u0, u0, h0, h0, u1, u1, h1, h1]).T.reshape(1, 2, 1, 8)
        >>> labels = torch.tensor([[[0, 0, 0, 0, 1, 1, 1, 1]]])
        >>> preds = torch.tensor([[[0, 0, 1, 1, 1, 1, 0, 0]]])  # 2 hard, 2 easy per class
        >>> loss = pixel_contrast_loss(emb, labels, preds, temperature=1.0, base_temperature=1.0,
        ...                            max_samples=4, max_views=3)  # one hard + one easy each
        >>> round(float(loss), 4)  # (log(2 + 1/e) + log(2 + e)) / 2 = (0.8619 + 1.5514) / 2
        1.2067
    """
    func = "pixel_contrast_loss"
    _check_contrast_hyperparameters(
        func, temperature, base_temperature, max_samples, max_views, ignore_index, generator
    )
    check_float_tensor(func, "embeddings", embeddings, 4)
    check_labels(func, labels, None, ignore_index=ignore_index)
    check_labels(func, predictions, None, ignore_index=None, name="predictions")
    _check_batch(func, embeddings, labels, "labels")
    _check_batch(func, embeddings, predictions, "predictions")
    negative = (labels < 0) & (labels != ignore_index)
    if bool(negative.any()):
        raise ValueError(
            f"{func}: labels must be >= 0 or equal ignore_index={ignore_index}; got min "
            f"{int(labels[negative].min())}."
        )

    batch, dim, height, width = embeddings.shape
    emb = embeddings.to(_compute_dtype(embeddings))
    emb_flat = emb.reshape(batch, dim, height * width)  # (N, D, h*w), a view
    with torch.no_grad():
        target = _resize_nearest(labels, (height, width)).reshape(batch, -1)
        pred = _resize_nearest(predictions, (height, width)).reshape(batch, -1)
        index, cls = _sample_views(
            target,
            pred,
            max_samples=max_samples,
            max_views=max_views,
            ignore_index=ignore_index,
            generator=generator,
        )
    if index.numel() == 0 or bool((cls == cls[0]).all()):
        return _zero_like_graph(emb)

    area = height * width
    feats = F.normalize(emb_flat[index // area, :, index % area], dim=1)  # (M, D)
    logits = feats @ feats.T / temperature  # (M, M)
    same = cls[:, None] == cls[None, :]
    positive = same & ~torch.eye(cls.numel(), dtype=torch.bool, device=cls.device)
    neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    # Every row has a negative here (at least two classes were sampled).
    lse_neg = torch.logsumexp(torch.where(same, neg_inf, logits), dim=1, keepdim=True)
    log_prob = logits - torch.logaddexp(logits, lse_neg)
    num_positive = positive.sum(dim=1)
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    mean_log_prob = torch.where(positive, log_prob, zero).sum(dim=1) / num_positive.clamp_min(1)
    per_anchor = -(temperature / base_temperature) * mean_log_prob
    return masked_reduce(per_anchor, num_positive > 0, "mean", func=func)


class PixelContrastLoss(nn.Module):
    """Module form of :func:`pixel_contrast_loss`. See `pixel_contrast_loss`.

    ``generator`` given here is used by every call unless ``forward`` gets its own.
    """

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        base_temperature: float = 0.07,
        max_samples: int = 1024,
        max_views: int = 100,
        generator: torch.Generator | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        _check_contrast_hyperparameters(
            "PixelContrastLoss",
            temperature,
            base_temperature,
            max_samples,
            max_views,
            ignore_index,
            generator,
        )
        self.temperature = float(temperature)
        self.base_temperature = float(base_temperature)
        self.max_samples = max_samples
        self.max_views = max_views
        self.generator = generator
        self.ignore_index = ignore_index

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        predictions: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Return :func:`pixel_contrast_loss` with this module's settings."""
        return pixel_contrast_loss(
            embeddings,
            labels,
            predictions,
            temperature=self.temperature,
            base_temperature=self.base_temperature,
            max_samples=self.max_samples,
            max_views=self.max_views,
            generator=generator if generator is not None else self.generator,
            ignore_index=self.ignore_index,
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return (
            f"temperature={self.temperature}, base_temperature={self.base_temperature}, "
            f"max_samples={self.max_samples}, max_views={self.max_views}, "
            f"ignore_index={self.ignore_index}"
        )
