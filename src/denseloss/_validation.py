"""Shared argument checks with uniform wording.

Every message follows ``"<func>: <arg> must be <expected>; got <actual>."`` so a user can find
the offending argument at once. ``ValueError`` for values and shapes, ``TypeError`` for dtypes.

Non-finite inputs: by default a NaN or inf in a loss's input propagates to its output, as in
PyTorch (checking costs a pass over the tensor and, on a GPU, a device sync per call). With
:func:`check_finite_inputs` (a context manager), :func:`set_check_finite` or the environment
variable ``DENSELOSS_CHECK_FINITE=1``, every floating-point tensor a loss receives is checked,
and a non-finite one raises ``ValueError`` naming the loss and the argument.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import torch

__all__ = [
    "check_choice",
    "check_finite",
    "check_finite_inputs",
    "check_float_tensor",
    "check_labels",
    "check_logits",
    "check_mask",
    "check_positive",
    "check_probabilities",
    "check_same_spatial",
    "check_tensor",
    "set_check_finite",
]

_CHECK_FINITE = os.environ.get("DENSELOSS_CHECK_FINITE", "") not in ("", "0")


def set_check_finite(enabled: bool) -> bool:
    """Turn the finiteness check of loss inputs on or off; returns the previous setting."""
    global _CHECK_FINITE
    previous, _CHECK_FINITE = _CHECK_FINITE, bool(enabled)
    return previous


@contextlib.contextmanager
def check_finite_inputs(enabled: bool = True) -> Iterator[None]:
    """Within the block, losses refuse NaN/inf inputs with a ``ValueError`` naming them.

    Example:
        >>> from denseloss.losses import cross_entropy
        >>> logits = torch.full((1, 2, 1, 1), float("nan"))
        >>> with check_finite_inputs():
        ...     cross_entropy(logits, torch.zeros(1, 1, 1, dtype=torch.long))
        Traceback (most recent call last):
        ...
        ValueError: cross_entropy: logits must be finite; got 2 NaN and 0 inf values. ...
    """
    previous = set_check_finite(enabled)
    try:
        yield
    finally:
        set_check_finite(previous)


def check_finite(func: str, name: str, x: torch.Tensor) -> None:
    """When the check is on (module docstring), a floating-point ``x`` must be all finite."""
    if not _CHECK_FINITE or not x.is_floating_point() or x.numel() == 0:
        return
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    nan = int(torch.isnan(x).sum())
    raise ValueError(
        f"{func}: {name} must be finite; got {nan} NaN and {int((~finite).sum()) - nan} inf "
        "values. Hint: the step before produced them (learning rate, log of 0, 0/0)."
    )


def check_tensor(func: str, name: str, x: object, ndim: int | Sequence[int] | None = None) -> None:
    """Raise ``TypeError`` unless ``x`` is a tensor, ``ValueError`` unless it has ``ndim`` dims.

    Also applies :func:`check_finite` (a no-op unless the check is on).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{func}: {name} must be a torch.Tensor; got {type(x).__name__}.")
    if ndim is None:
        check_finite(func, name, x)
        return
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{func}: {name} must be {want}; got shape {tuple(x.shape)}.")
    check_finite(func, name, x)


def check_float_tensor(
    func: str, name: str, x: object, ndim: int | Sequence[int] | None = None
) -> None:
    """Like :func:`check_tensor`, and the dtype must be floating point."""
    check_tensor(func, name, x, ndim)
    assert isinstance(x, torch.Tensor)  # for type checkers only; check_tensor raised otherwise
    if not x.is_floating_point():
        raise TypeError(f"{func}: {name} must be a floating-point tensor; got dtype {x.dtype}.")


def check_logits(func: str, logits: object, name: str = "logits") -> None:
    """``logits`` must be a float tensor of shape (N, C, H, W) with C >= 1."""
    check_float_tensor(func, name, logits, 4)
    assert isinstance(logits, torch.Tensor)
    if logits.shape[1] < 1:
        raise ValueError(
            f"{func}: {name} must have at least one class channel; got shape {tuple(logits.shape)}."
        )


def check_probabilities(
    func: str, probs: object, name: str = "probs", *, atol: float = 1e-3
) -> None:
    """``probs`` must be (N, C, H, W) float, in [0, 1], summing to 1 over C."""
    check_float_tensor(func, name, probs, 4)
    assert isinstance(probs, torch.Tensor)
    p = probs.detach()
    if p.numel() == 0:
        return
    lo, hi = float(p.min()), float(p.max())
    if lo < -atol or hi > 1 + atol:
        raise ValueError(
            f"{func}: {name} must be probabilities in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]. "
            "Hint: pass softmax(logits, dim=1), not raw logits."
        )
    total = p.float().sum(dim=1)
    err = float((total - 1).abs().max())
    if err > atol * max(1, p.shape[1]):
        raise ValueError(
            f"{func}: {name} must sum to 1 over the class dimension (dim=1); got a maximum "
            f"deviation of {err:.3g}. Hint: pass softmax(logits, dim=1)."
        )


def check_labels(
    func: str,
    labels: object,
    num_classes: int | None = None,
    *,
    ignore_index: int | None = 255,
    name: str = "labels",
    like: torch.Tensor | None = None,
) -> None:
    """``labels`` must be (N, H, W) int64 with values in [0, C) or ``ignore_index``.

    When ``like`` (N, C, H, W) is given, the batch and spatial sizes must match it.
    """
    check_tensor(func, name, labels, 3)
    assert isinstance(labels, torch.Tensor)
    if labels.dtype in (torch.bool,) or labels.is_floating_point() or labels.is_complex():
        raise TypeError(
            f"{func}: {name} must be an integer tensor (torch.int64); got dtype {labels.dtype}. "
            "Hint: use labels.long()."
        )
    if like is not None and (
        labels.shape[0] != like.shape[0] or labels.shape[1:] != like.shape[2:]
    ):
        raise ValueError(
            f"{func}: {name} must have shape (N, H, W) = {(like.shape[0], *like.shape[2:])} to "
            f"match the input; got {tuple(labels.shape)}."
        )
    if num_classes is None or labels.numel() == 0:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        offending = labels[bad]
        ign = f" or equal ignore_index={ignore_index}" if ignore_index is not None else ""
        raise ValueError(
            f"{func}: {name} must be in [0, {num_classes}){ign}; got values in "
            f"[{int(offending.min())}, {int(offending.max())}]. Hint: check the dataset's class "
            "mapping."
        )


def check_mask(
    func: str,
    mask: object,
    like: torch.Tensor,
    name: str = "valid_mask",
    *,
    spatial_only: bool = True,
) -> None:
    """``mask`` must be a bool tensor of shape (N, H, W) matching ``like`` (N, *, H, W)."""
    check_tensor(func, name, mask, 3)
    assert isinstance(mask, torch.Tensor)
    if mask.dtype != torch.bool:
        raise TypeError(f"{func}: {name} must be a bool tensor; got dtype {mask.dtype}.")
    want = (like.shape[0], *like.shape[2:]) if spatial_only else tuple(like.shape)
    if tuple(mask.shape) != tuple(want):
        raise ValueError(f"{func}: {name} must have shape {tuple(want)}; got {tuple(mask.shape)}.")


def check_same_spatial(
    func: str, a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str
) -> None:
    """``a`` and ``b`` must share batch size and trailing (H, W)."""
    if a.shape[0] != b.shape[0] or a.shape[-2:] != b.shape[-2:]:
        raise ValueError(
            f"{func}: {name_b} must have batch size and spatial size {(a.shape[0], *a.shape[-2:])} "
            f"to match {name_a}; got shape {tuple(b.shape)}."
        )


def check_choice(func: str, name: str, value: object, choices: Sequence[object]) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{func}: {name} must be one of {list(choices)}; got {value!r}.")


def check_positive(func: str, name: str, value: float, *, allow_zero: bool = False) -> None:
    """``value`` must be > 0 (or >= 0 with ``allow_zero``)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        want = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{func}: {name} must be {want}; got {value!r}.")
