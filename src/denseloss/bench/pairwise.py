"""Pairwise-loss tables of ``denseloss bench losses``: scaling in pixels and classes, and the
accuracy of the DenseCRF fast path against the exact dense value.

- :func:`scaling_rows`: gated_crf, dfr and dense_crf(fast) at 1×21×S² for S in 128…1024 and at
  1×C×256² for C in 19, 60, 150 (rows of :func:`denseloss.bench.losses.bench_losses`, so each
  is paired with its own cross-entropy); :func:`format_scaling` adds the time per megapixel,
  which stays flat when the cost is linear in pixels.
- :func:`accuracy_rows`: fast / exact value and the cosine between their gradients, per size
  (64², 128², 256²) and photograph, rloss's σ's (xy 100, rgb 15), C = 21, softmax of standard
  normal logits; with pydensecrf installed, also its (unnormalised) value / exact.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import torch

from denseloss.bench import peers as P

__all__ = ["accuracy_rows", "format_accuracy", "format_scaling", "scaling_rows"]

SCALING_LOSSES = ("gated_crf", "dfr", "dense_crf(fast)")
ACCURACY_SIZES = (64, 128, 256)
ACCURACY_PHOTOS = 4


def scaling_rows(
    sizes: Sequence[int], classes: Sequence[int], repeats: int
) -> list[dict[str, Any]]:
    """Rows of the scaling table (time and memory, each paired with CE)."""
    from denseloss.bench.losses import bench_losses

    side = min(256, max(sizes))
    shapes = [(1, 21, s, s) for s in sizes] + [(1, c, side, side) for c in classes if c != 21]
    return bench_losses(shapes, repeats=repeats, losses=list(SCALING_LOSSES))


def format_scaling(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: per loss and shape, ms, ms per megapixel, ×CE and peak MB."""
    lines = [
        "| loss | logits shape | time (ms) | ms / Mpx | time / CE | peak (MB) | peak / logits |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["loss"] == "cross_entropy" and r["status"] != "ok":
            continue
        n, _, h, w = (int(v) for v in r["shape"].split("x"))
        if r["status"] != "ok":
            lines.append(f"| {r['loss']} | {r['shape']} | – | – | – | – | {r['status']} |")
            continue
        mpx = n * h * w / 1e6
        lines.append(
            f"| {r['loss']} | {r['shape']} | {r['time_ms']:.1f} | {r['time_ms'] / mpx:.0f} "
            f"| {r['time_ratio']:.3g} | {r['peak_mb']:.1f} | {r['logits_ratio']:.3g} |"
        )
    return "\n".join(lines)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.reshape(1, -1), b.reshape(1, -1)))


def accuracy_rows(
    sizes: Sequence[int] = ACCURACY_SIZES, photos: int = ACCURACY_PHOTOS
) -> list[dict[str, Any]]:
    """fast / exact (value and gradient cosine) per size and photograph; see the module doc."""
    from denseloss.losses.pairwise import dense_crf_loss

    rows = []
    have_peer = P.pydensecrf_available()
    for size in sizes:
        for i in range(photos):
            g = torch.Generator().manual_seed(i)
            logits = torch.randn(1, 21, size, size, generator=g)
            image = P.photographs(i + 1, size, size)[0][i : i + 1]
            values, grads = {}, {}
            for method in ("exact", "fast"):
                z = logits.clone().requires_grad_(True)
                loss = dense_crf_loss(z.softmax(1), image, method=method)
                loss.backward()
                values[method], grads[method] = float(loss.detach()), z.grad
            peer = float(P.pydensecrf_loss(logits.softmax(1), image)) if have_peer else None
            rows.append(
                {
                    "size": size,
                    "photo": P._PHOTOS[i % len(P._PHOTOS)],
                    "fast_over_exact": values["fast"] / values["exact"],
                    "grad_cosine": _cosine(grads["fast"], grads["exact"]),
                    "pydensecrf_over_exact": None if peer is None else peer / values["exact"],
                }
            )
    return rows


def format_accuracy(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: per size, min / median / max of fast / exact, min gradient cosine, peer."""
    lines = [
        "| size | photos | fast / exact (min, median, max) | gradient cosine (min) "
        "| pydensecrf / exact (median) |",
        "|---|---:|---|---:|---:|",
    ]
    for size in sorted({r["size"] for r in rows}):
        rs = [r for r in rows if r["size"] == size]
        ratio = [r["fast_over_exact"] for r in rs]
        peer = [r["pydensecrf_over_exact"] for r in rs if r["pydensecrf_over_exact"] is not None]
        peer_txt = f"{statistics.median(peer):.3f}" if peer else "–"
        lines.append(
            f"| {size}² | {len(rs)} | {min(ratio):.3f}, {statistics.median(ratio):.3f}, "
            f"{max(ratio):.3f} | {min(r['grad_cosine'] for r in rs):.4f} | {peer_txt} |"
        )
    return "\n".join(lines)
