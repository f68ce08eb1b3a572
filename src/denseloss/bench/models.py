"""Cost of the papers' networks: forward + backward images/s and peak memory at the papers' crops.

One row per (network, crop, batch): a training-mode forward, cross-entropy on the logits upsampled
to the crop (plus the auxiliary classifier's, as the recipes add it), and the backward, timed over
``iterations`` after ``warmup`` untimed ones. Memory: on CUDA ``torch.cuda.max_memory_allocated``;
on the CPU the peak resident set size of a fresh process that runs only that row (so it includes
the ≈0.3 GiB of the PyTorch runtime, and the weights, gradients and activations of the row). Each
row runs in its own spawned process by default, for that reason and so one row's allocator state
does not slow the next.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["DEFAULT_ROWS", "Row", "bench_models", "bench_row", "run_bench"]


@dataclass(frozen=True)
class Row:
    """One benchmark row: a ``SEGMENTERS`` name at a crop (H, W) and batch size."""

    network: str
    height: int
    width: int
    batch: int
    kwargs: dict[str, Any] = field(default_factory=dict)  # factory overrides (tests: tiny nets)
    note: str = ""  # which paper / data set the crop is from


# The papers' crops: 321² VOC (AdvSemiSeg, DenseCRF loss), 512×1024 Cityscapes (MaxSquare's
# target, PNE), 320² for the ViTs (321 is not a multiple of the 16-pixel patch).
DEFAULT_ROWS: tuple[Row, ...] = (
    Row("deeplabv2_resnet101", 321, 321, 2, note="VOC (AdvSemiSeg)"),
    Row("deeplabv2_resnet101_multi", 512, 1024, 1, note="Cityscapes (MaxSquare)"),
    Row("deeplabv3plus_resnet50", 321, 321, 2, note="VOC"),
    Row("deeplabv3plus_resnet101", 512, 1024, 1, note="Cityscapes (PNE)"),
    Row("vit_s16", 320, 320, 2, note="VOC (DFR)"),
    Row("vit_b16", 320, 320, 2, note="VOC (DFR)"),
)


def _peak_rss_gib() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes)
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def bench_row(
    row: Row,
    *,
    iterations: int = 2,
    warmup: int = 1,
    device: str = "cpu",
    precision: str = "32-true",
    num_classes: int = 19,
) -> dict[str, Any]:
    """Time ``iterations`` forward + backward passes of ``row``; return its measurements.

    Returns:
        The row's fields plus ``params_m`` (millions), ``seconds_per_iter``, ``images_per_s``,
        ``cpu_seconds_per_iter`` (process CPU time, all threads), ``peak_gib`` and ``memory``
        (what ``peak_gib`` measures).
    """
    from denseloss.models import build_segmenter

    torch.manual_seed(0)
    dev = torch.device(device)
    net = build_segmenter(row.network, num_classes=num_classes, **row.kwargs).to(dev).train()
    params = sum(p.numel() for p in net.parameters())
    g = torch.Generator().manual_seed(0)
    image = torch.rand(row.batch, 3, row.height, row.width, generator=g).to(dev)
    label = torch.randint(0, num_classes, (row.batch, row.height, row.width), generator=g).to(dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def step() -> None:
        with autocast:
            out = net(image)
            logits = [out.logits] if out.aux_logits is None else [out.logits, out.aux_logits]
            size = (row.height, row.width)
            loss = sum(
                F.cross_entropy(F.interpolate(z.float(), size=size, mode="bilinear"), label)
                for z in logits
            )
        loss.backward()
        net.zero_grad(set_to_none=True)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = (time.perf_counter() - start) / max(1, iterations)
    # CPU time of all this process's threads: on a shared machine it is what the row costs, while
    # the wall time also counts the time other processes held the cores
    cpu_seconds = (time.process_time() - cpu_start) / max(1, iterations)
    if dev.type == "cuda":
        peak, memory = torch.cuda.max_memory_allocated(dev) / 2**30, "max_memory_allocated"
    else:
        peak, memory = _peak_rss_gib(), "peak RSS of the row's process"
    return {
        **asdict(row),
        "device": device,
        "precision": precision,
        "threads": torch.get_num_threads(),
        "params_m": params / 1e6,
        "seconds_per_iter": seconds,
        "cpu_seconds_per_iter": cpu_seconds,
        "images_per_s": row.batch / seconds,
        "peak_gib": peak,
        "memory": memory,
    }


def bench_models(
    rows: tuple[Row, ...] = DEFAULT_ROWS, *, isolate: bool = True, **kwargs: Any
) -> list[dict[str, Any]]:
    """:func:`bench_row` for each row, each in a fresh spawned process when ``isolate``.

    A row whose process dies (the kernel's out-of-memory killer) is reported with an ``error``
    and the other rows still run.
    """
    results = []
    for row in rows:
        if not isolate:
            results.append(bench_row(row, **kwargs))
            continue
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                results.append(pool.submit(bench_row, row, **kwargs).result())
        except BrokenProcessPool:
            results.append({**asdict(row), "error": "the row's process was killed (memory?)"})
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    """The results as a markdown table."""
    lines = [
        "| network | crop | batch | params (M) | s / iter | CPU-s / iter | images/s "
        "| peak memory (GiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            crop = f"{r['height']}×{r['width']} {r['note']}"
            lines.append(f"| `{r['network']}` | {crop} | {r['batch']} | {r['error']} |||||")
            continue
        lines.append(
            f"| `{r['network']}` | {r['height']}×{r['width']} {r['note']} | {r['batch']} | "
            f"{r['params_m']:.1f} | {r['seconds_per_iter']:.2f} | "
            f"{r['cpu_seconds_per_iter']:.2f} | {r['images_per_s']:.3g} | {r['peak_gib']:.2f} |"
        )
    return "\n".join(lines)


def run_bench(argv: list[str]) -> int:
    """``denseloss bench models [--networks a,b] [--iterations N] [--device cuda] ...``."""
    p = argparse.ArgumentParser(prog="denseloss bench models", description=__doc__)
    p.add_argument("--networks", default="", help="comma-separated subset of the default rows")
    p.add_argument("--iterations", type=int, default=2, help="timed forward+backward passes")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes first")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    p.add_argument("--in-process", action="store_true", help="no process per row (no RSS peak)")
    a = p.parse_args(argv)
    wanted = [n for n in a.networks.split(",") if n]
    rows = tuple(r for r in DEFAULT_ROWS if not wanted or r.network in wanted)
    if not rows:
        names = sorted({r.network for r in DEFAULT_ROWS})
        p.error(f"--networks must name rows among {names}; got {a.networks!r}")
    results = bench_models(
        rows,
        isolate=not a.in_process,
        iterations=a.iterations,
        warmup=a.warmup,
        device=a.device,
        precision=a.precision,
    )
    print(format_table(results))
    done = [r for r in results if "error" not in r]
    threads = done[0]["threads"] if done else torch.get_num_threads()
    memory = done[0]["memory"] if done else "-"
    print(
        f"\n{a.device}, {a.precision}, torch threads = {threads}, {a.warmup} warm-up + "
        f"{a.iterations} timed passes per row; memory = {memory}."
    )
    return 0
