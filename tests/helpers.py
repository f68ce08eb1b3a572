"""Test helpers: tolerances per dtype, tiny batches."""

from __future__ import annotations

import torch

TOL = {
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (3e-2, 3e-2),
    torch.float32: (1e-5, 1e-6),
    torch.float64: (1e-10, 1e-12),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor | float, **kw: float) -> None:
    """torch.testing.assert_close with this project's per-dtype tolerances."""
    if not isinstance(expected, torch.Tensor):
        expected = torch.tensor(expected, dtype=actual.dtype)
    rtol, atol = TOL.get(actual.dtype, (1e-5, 1e-6))
    kw.setdefault("rtol", rtol)
    kw.setdefault("atol", atol)
    torch.testing.assert_close(actual, expected.to(actual.dtype), **kw)


def random_batch(
    n: int = 2,
    c: int = 3,
    h: int = 4,
    w: int = 4,
    *,
    dtype: torch.dtype = torch.float64,
    ignore_frac: float = 0.2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C, H, W) and labels (N, H, W) with about ``ignore_frac`` pixels = 255."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    labels = torch.randint(0, c, (n, h, w), generator=g)
    labels[torch.rand(n, h, w, generator=g) < ignore_frac] = 255
    return logits, labels
