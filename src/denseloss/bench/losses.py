"""Forward+backward time and peak memory of every loss, as ratios to cross-entropy.

Each loss is timed alone (not added to a cross-entropy): its forward and its backward into the
leaf tensors it reads (logits, discriminator map, embeddings, deep features), on the same inputs
and in the same process as the cross-entropy it is compared with. Time is the median of
``repeats`` runs after one warm-up run. Peak memory is measured with ``torch.profiler``
(``profile_memory=True``): the maximum over the run of the profiler's "Total Allocated" counter of
the CPU allocator minus its value at the start, i.e. the peak of the bytes *allocated during*
forward+backward (inputs allocated beforehand are not counted; gradients and saved activations
are). It is measured in a separate, un-timed run so the profiler does not distort the times.

Losses written in other modules (contrastive, pairwise) are imported lazily; a row says "not
available" when the import fails and "error" when the call raises.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

__all__ = ["CASES", "bench_losses", "format_table", "run_bench"]

DEFAULT_SHAPES: tuple[tuple[int, int, int, int], ...] = ((8, 19, 256, 256), (2, 19, 512, 512))
QUICK_SHAPES: tuple[tuple[int, int, int, int], ...] = ((2, 19, 32, 32),)
EMBED_DIM = 256  # PNE / pixel-contrast projection width
EMBED_STRIDE = 8  # embeddings at 1/8 of the logits' resolution
DEEP_DIM = 64  # feature-consistency head width (DFR)
DENSE_CRF_MAX_PIXELS = 256 * 256  # dense_crf fast only up to 256²

Inputs = dict[str, torch.Tensor]
LossCall = Callable[[Inputs], torch.Tensor]


def _inputs(shape: Sequence[int], seed: int = 0) -> Inputs:
    """Random logits, labels (10 % ignore), image, discriminator map, embeddings, deep features."""
    n, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n, h, w), generator=g)
    labels[torch.rand(n, h, w, generator=g) < 0.1] = 255
    hs, ws = max(h // EMBED_STRIDE, 1), max(w // EMBED_STRIDE, 1)
    logits = torch.randn(n, c, h, w, generator=g)
    return {
        "logits": logits.requires_grad_(True),
        "labels": labels,
        "predictions": logits.detach().argmax(1),
        "image": torch.rand(n, 3, h, w, generator=g),
        "d_logits": torch.randn(n, 1, h, w, generator=g).requires_grad_(True),
        "embeddings": torch.randn(n, EMBED_DIM, hs, ws, generator=g).requires_grad_(True),
        "deep_features": torch.randn(n, DEEP_DIM, hs, ws, generator=g).requires_grad_(True),
    }


def _cross_entropy(x: Inputs) -> torch.Tensor:
    from denseloss.losses.cross_entropy import cross_entropy

    return cross_entropy(x["logits"], x["labels"])


def _max_square(x: Inputs) -> torch.Tensor:
    from denseloss.losses.max_square import max_square_loss

    return max_square_loss(x["logits"], valid_mask=x["labels"] != 255)


def _max_square_iw(x: Inputs) -> torch.Tensor:
    from denseloss.losses.max_square import max_square_loss

    return max_square_loss(x["logits"], valid_mask=x["labels"] != 255, image_weighting=True)


def _entropy(x: Inputs) -> torch.Tensor:
    from denseloss.losses.entropy import entropy_loss

    return entropy_loss(x["logits"], valid_mask=x["labels"] != 255)


def _adversarial(x: Inputs) -> torch.Tensor:
    from denseloss.losses.adversarial import adversarial_loss

    return adversarial_loss(x["d_logits"], real=True, valid_mask=x["labels"] != 255)


def _semi_supervised(x: Inputs) -> torch.Tensor:
    from denseloss.losses.adversarial import semi_supervised_loss

    return semi_supervised_loss(x["logits"], x["d_logits"])


def _pne(x: Inputs) -> torch.Tensor:
    from denseloss.losses.contrastive import pne_loss

    return pne_loss(x["embeddings"], x["logits"], x["labels"])


def _pixel_contrast(x: Inputs) -> torch.Tensor:
    from denseloss.losses.contrastive import pixel_contrast_loss

    g = torch.Generator().manual_seed(0)
    return pixel_contrast_loss(x["embeddings"], x["labels"], x["predictions"], generator=g)


def _gated_crf(x: Inputs) -> torch.Tensor:
    from denseloss.losses.pairwise import gated_crf_loss

    return gated_crf_loss(x["logits"].softmax(1), {"rgb": x["image"]})


def _dfr(x: Inputs) -> torch.Tensor:
    from denseloss.losses.pairwise import dfr_loss

    return dfr_loss(x["logits"].softmax(1), x["image"] * 255.0, x["deep_features"])


def _dense_crf_fast(x: Inputs) -> torch.Tensor:
    from denseloss.losses.pairwise import dense_crf_loss

    return dense_crf_loss(x["logits"].softmax(1), x["image"] * 255.0, method="fast")


#: (name, call, max pixels per image or None) in table order; cross_entropy is the reference.
CASES: tuple[tuple[str, LossCall, int | None], ...] = (
    ("cross_entropy", _cross_entropy, None),
    ("max_square", _max_square, None),
    ("max_square(image_weighting)", _max_square_iw, None),
    ("entropy", _entropy, None),
    ("adversarial", _adversarial, None),
    ("semi_supervised", _semi_supervised, None),
    ("pne", _pne, None),
    ("pixel_contrast", _pixel_contrast, None),
    ("gated_crf", _gated_crf, None),
    ("dfr", _dfr, None),
    ("dense_crf(fast)", _dense_crf_fast, DENSE_CRF_MAX_PIXELS),
)


def _run_once(call: LossCall, x: Inputs) -> None:
    for t in x.values():
        t.grad = None
    loss = call(x)
    loss.backward()


def _time_ms(call: LossCall, x: Inputs, repeats: int) -> float:
    _run_once(call, x)  # warm-up (lazy imports, allocator, one-off dispatch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _run_once(call, x)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _peak_bytes(call: LossCall, x: Inputs) -> int:
    """Peak of bytes allocated during one forward+backward, from the profiler's memory events."""
    for t in x.values():
        t.grad = None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _run_once(call, x)
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.remove(path)
    memory = [e["args"] for e in events if e.get("name") == "[memory]"]
    if not memory:
        return 0
    # The allocator's counter is process-wide: subtract its value before the first event.
    start = memory[0]["Total Allocated"] - memory[0]["Bytes"]
    return max(0, max(m["Total Allocated"] for m in memory) - start)


def bench_losses(
    shapes: Sequence[Sequence[int]] = DEFAULT_SHAPES,
    repeats: int = 5,
    losses: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Benchmark every loss against ``cross_entropy`` on the same logits.

    Args:
        shapes: logits shapes (N, C, H, W) to run.
        repeats: timed runs per loss (median reported), after one warm-up run.
        losses: names from :data:`CASES` to run (``cross_entropy`` always runs); None = all.

    Returns:
        One dict per (shape, loss): ``loss``, ``shape`` (str), ``status`` ("ok", "not
        available: ...", "skipped: ...", "error: ..."), ``time_ms``, ``time_ratio``,
        ``peak_mb``, ``memory_ratio`` (to cross-entropy's peak) and ``logits_ratio`` (peak over
        the size of the logits tensor); numbers are None unless the status is "ok".

    Raises:
        ValueError: an unknown loss name, ``repeats`` < 1 or a shape that is not 4 integers.
    """
    names = [name for name, _, _ in CASES]
    wanted = (
        names if losses is None else ["cross_entropy", *[n for n in losses if n != "cross_entropy"]]
    )
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise ValueError(f"bench_losses: losses must be in {names}; got {unknown}.")
    if repeats < 1:
        raise ValueError(f"bench_losses: repeats must be >= 1; got {repeats}.")
    rows: list[dict[str, Any]] = []
    for shape in shapes:
        if len(shape) != 4:
            raise ValueError(f"bench_losses: shapes must be (N, C, H, W); got {tuple(shape)}.")
        x = _inputs(shape)
        logits_mb = x["logits"].numel() * x["logits"].element_size() / 2**20
        label = "x".join(str(s) for s in shape)
        ref_ms: float | None = None
        ref_mb: float | None = None
        for name, call, max_pixels in CASES:
            if name not in wanted:
                continue
            row: dict[str, Any] = {
                "loss": name,
                "shape": label,
                "status": "ok",
                "time_ms": None,
                "time_ratio": None,
                "peak_mb": None,
                "memory_ratio": None,
                "logits_ratio": None,
            }
            rows.append(row)
            if max_pixels is not None and shape[2] * shape[3] > max_pixels:
                row["status"] = f"skipped: only run up to {max_pixels} pixels per image"
                continue
            try:
                ms = _time_ms(call, x, repeats)
                mb = _peak_bytes(call, x) / 2**20
            except ImportError as exc:
                row["status"] = f"not available: {exc}"
                continue
            except Exception as exc:  # a row, not a crash: the table must still print
                row["status"] = f"error: {type(exc).__name__}: {exc}"
                continue
            if name == "cross_entropy":
                ref_ms, ref_mb = ms, mb
            row.update(
                time_ms=ms,
                peak_mb=mb,
                time_ratio=ms / ref_ms if ref_ms else None,
                memory_ratio=mb / ref_mb if ref_mb else None,
                logits_ratio=mb / logits_mb,
            )
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render :func:`bench_losses` rows as a markdown table."""
    lines = [
        "| loss | logits shape | time (ms) | time / CE | peak (MB) | peak / CE | peak / logits "
        "| note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        note = "" if r["status"] == "ok" else r["status"].replace("|", "/").replace("\n", " ")
        lines.append(
            f"| {r['loss']} | {r['shape']} | {_fmt(r['time_ms'], '.1f')} "
            f"| {_fmt(r['time_ratio'], '.3g')} | {_fmt(r['peak_mb'], '.1f')} "
            f"| {_fmt(r['memory_ratio'], '.3g')} | {_fmt(r['logits_ratio'], '.3g')} | {note} |"
        )
    return "\n".join(lines)


def machine_description() -> str:
    """One line: CPU, torch threads, torch and Python versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}; {os.cpu_count()} CPUs visible, torch threads {torch.get_num_threads()}; "
        f"torch {torch.__version__}; Python {platform.python_version()}"
    )


def run_bench(args: list[str]) -> int:
    """``denseloss bench losses [--quick] [--repeats N] [--losses a,b] [--output FILE]``.

    Prints the markdown table (and writes it to ``--output`` when given); returns the exit code.
    """
    parser = argparse.ArgumentParser(
        prog="denseloss bench losses",
        description="Forward+backward time and peak memory of each loss as ratios to "
        "cross-entropy (peak memory via torch.profiler profile_memory=True).",
    )
    parser.add_argument("--quick", action="store_true", help=f"small shapes {QUICK_SHAPES}")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per loss (median)")
    parser.add_argument("--losses", type=str, default=None, help="comma-separated case names")
    parser.add_argument("--output", type=str, default=None, help="also write the table here")
    ns = parser.parse_args(args)
    if ns.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {ns.repeats}")
    shapes = QUICK_SHAPES if ns.quick else DEFAULT_SHAPES
    losses = None if ns.losses is None else [s.strip() for s in ns.losses.split(",") if s.strip()]
    rows = bench_losses(shapes, repeats=ns.repeats, losses=losses)
    table = format_table(rows)
    text = f"{table}\n\nMachine: {machine_description()}\n"
    print(text)
    if ns.output:
        with open(ns.output, "w") as f:
            f.write(text)
    return 0
