"""Forward+backward time and peak memory of every loss, as ratios to cross-entropy.

Each loss is timed alone (not added to a cross-entropy): its forward and its backward into the
leaf tensors it reads (logits, discriminator map, embeddings, deep features), on the same inputs
and in the same process as the cross-entropy it is compared with.

**Same state for every ratio.** On this CPU the cost of a step depends on the allocator's state
(a cross-entropy run right after a large loss can take a third of its cold time), so no ratio
uses a CE timed elsewhere: every round times CE immediately before each contender, rounds are
repeated ``repeats`` times (after one warm-up of each), and a ratio is the median over rounds of
the paired ratios. A peer's "time / denseloss" pairs it with the denseloss row of the same round.
After every call the torch thread count is restored (a C++ peer using OpenMP may change it).

**Peak memory** comes from ``torch.profiler`` (``profile_memory=True``): the maximum of the CPU
allocator's "Total Allocated" counter during one un-timed forward+backward minus its value at the
start (inputs allocated beforehand are not counted; gradients and saved activations are). The
compiled kernels allocate their scratch through PyTorch, except the lattice's hash table, whose
size they report and which is added; a C++ peer's own allocations are invisible (shown as –).

A row that does no work (a loss of exactly 0 with no gradient, e.g. ``pixel_contrast`` when no
class has enough pixels at the embedding size) is reported as skipped, not timed.
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
from dataclasses import dataclass
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from denseloss import losses as L
from denseloss.bench import peers as P

__all__ = ["CASES", "PEERS", "bench_losses", "format_table", "run_bench"]

DEFAULT_SHAPES: tuple[tuple[int, int, int, int], ...] = ((8, 19, 256, 256), (2, 19, 512, 512))
PAIRWISE_SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (1, 21, 256, 256),
    (2, 21, 256, 256),
    (1, 21, 512, 512),
    (2, 21, 512, 512),
)
QUICK_SHAPES: tuple[tuple[int, int, int, int], ...] = ((2, 19, 32, 32),)
SCALING_SIZES = (128, 256, 512, 1024)
SCALING_CLASSES = (19, 60, 150)
PAIRWISE_LOSSES = (
    "gated_crf",
    "gated_crf(r=2)",
    "dfr",
    "dfr(r=2)",
    "dfr(product)",
    "dense_crf(fast)",
)
EMBED_DIM = 256  # PNE / pixel-contrast projection width
EMBED_STRIDE = 8  # embeddings at 1/8 of the logits' resolution
DEEP_DIM = 64  # feature-consistency head width (DFR)
LABEL_GRID = 3  # labels: a LABEL_GRID² grid of random classes per image (regions, not noise)

Inputs = dict[str, torch.Tensor]
LossCall = Callable[[Inputs], torch.Tensor | float]


def _inputs(shape: Sequence[int], seed: int = 0) -> Inputs:
    """Random logits, region labels (10 % ignore), photographs, D map, embeddings, deep map."""
    n, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, c, (n, 1, LABEL_GRID, LABEL_GRID), generator=g).float()
    labels = torch.nn.functional.interpolate(coarse, size=(h, w), mode="nearest")[:, 0].long()
    labels[torch.rand(n, h, w, generator=g) < 0.1] = 255
    hs, ws = max(h // EMBED_STRIDE, 1), max(w // EMBED_STRIDE, 1)
    logits = torch.randn(n, c, h, w, generator=g)
    image, _ = P.photographs(n, h, w)
    return {
        "logits": logits.requires_grad_(True),
        "labels": labels,
        "predictions": logits.detach().argmax(1),
        "image": image,  # [0, 255]
        "d_logits": torch.randn(n, 1, h, w, generator=g).requires_grad_(True),
        "embeddings": torch.randn(n, EMBED_DIM, hs, ws, generator=g).requires_grad_(True),
        "deep_features": torch.randn(n, DEEP_DIM, hs, ws, generator=g).requires_grad_(True),
    }


def _gated_crf(x: Inputs, radius: int = 5) -> torch.Tensor:
    return L.gated_crf_loss(x["logits"].softmax(1), {"rgb": x["image"] / 255.0}, radius=radius)


def _dfr(x: Inputs, radius: int = 5, combine: str = "sum") -> torch.Tensor:
    probs = x["logits"].softmax(1)
    return L.dfr_loss(probs, x["image"] / 255.0, x["deep_features"], radius=radius, combine=combine)


def _pixel_contrast(x: Inputs) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return L.pixel_contrast_loss(x["embeddings"], x["labels"], x["predictions"], generator=g)


def _valid(x: Inputs) -> torch.Tensor:
    return x["labels"] != 255


def _gated_unfold(x: Inputs) -> torch.Tensor:
    return P.gated_crf_unfold(x["logits"].softmax(1), x["image"] / 255.0)


def _pydensecrf(x: Inputs) -> torch.Tensor:
    return P.pydensecrf_loss(x["logits"].softmax(1), x["image"])


@dataclass(frozen=True)
class Case:
    """A benchmark row: ``call(inputs)`` → loss (a tensor to backward, or a float for a peer
    without autograd). ``peer_of`` names the denseloss row a peer is compared with;
    ``skip(shape)`` returns a reason not to run it at that shape, or None."""

    name: str
    call: LossCall
    peer_of: str | None = None
    skip: Callable[[Sequence[int]], str | None] | None = None
    memory_visible: bool = True


def _no_pydensecrf(shape: Sequence[int]) -> str | None:
    if P.pydensecrf_available():
        return None
    return "not available: pydensecrf is not installed (see docs/bench_losses.md)"


def _unfold_too_big(shape: Sequence[int]) -> str | None:
    need = P.unfold_bytes(tuple(shape), 5)
    if need <= P.UNFOLD_MAX_BYTES:
        return None
    return f"skipped: unfold tensors would need {need / 2**30:.1f} GiB"


#: denseloss's rows, in table order; cross_entropy is the reference.
CASES: tuple[Case, ...] = (
    Case("cross_entropy", lambda x: L.cross_entropy(x["logits"], x["labels"])),
    Case("max_square", lambda x: L.max_square_loss(x["logits"], valid_mask=_valid(x))),
    Case(
        "max_square(image_weighting)",
        lambda x: L.max_square_loss(x["logits"], valid_mask=_valid(x), image_weighting=True),
    ),
    Case("entropy", lambda x: L.entropy_loss(x["logits"], valid_mask=_valid(x))),
    Case(
        "adversarial",
        lambda x: L.adversarial_loss(x["d_logits"], real=True, valid_mask=_valid(x)),
    ),
    Case("semi_supervised", lambda x: L.semi_supervised_loss(x["logits"], x["d_logits"])),
    Case("pne", lambda x: L.pne_loss(x["embeddings"], x["logits"], x["labels"])),
    Case("pixel_contrast", _pixel_contrast),
    Case("gated_crf", _gated_crf),
    Case("gated_crf(r=2)", lambda x: _gated_crf(x, 2)),
    Case("dfr", _dfr),
    Case("dfr(r=2)", lambda x: _dfr(x, 2)),
    # the dfr recipe's kernel (k_s · k_d, chosen on val in the scribble study)
    Case("dfr(product)", lambda x: _dfr(x, combine="product")),
    Case(
        "dense_crf(fast)",
        lambda x: L.dense_crf_loss(x["logits"].softmax(1), x["image"], method="fast"),
    ),
)

#: Peer rows (``--peers``), each printed after its denseloss row.
PEERS: tuple[Case, ...] = (
    Case("max_square[reference]", lambda x: P.max_square_reference(x["logits"]), "max_square"),
    Case(
        "max_square(image_weighting)[reference]",
        lambda x: P.iw_max_square_reference(x["logits"], x["logits"].shape[1]),
        "max_square(image_weighting)",
    ),
    Case("entropy[ADVENT]", lambda x: P.advent_entropy(x["logits"]), "entropy"),
    Case("gated_crf[unfold]", _gated_unfold, "gated_crf", _unfold_too_big),
    Case("dense_crf[pydensecrf]", _pydensecrf, "dense_crf(fast)", _no_pydensecrf, False),
)


def _run_once(case: Case, x: Inputs, threads: int) -> torch.Tensor | float:
    for t in x.values():
        t.grad = None
    try:
        loss = case.call(x)
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.backward()
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return loss


def _timed(case: Case, x: Inputs, threads: int) -> float:
    start = time.perf_counter()
    _run_once(case, x, threads)
    return (time.perf_counter() - start) * 1e3


def _no_work(loss: torch.Tensor | float, x: Inputs) -> bool:
    """A loss of exactly 0 that sent no gradient anywhere: the call returned early."""
    if float(loss.detach() if isinstance(loss, torch.Tensor) else loss) != 0.0:
        return False
    return all(t.grad is None or not bool(t.grad.any()) for t in x.values() if t.requires_grad)


def _peak_bytes(case: Case, x: Inputs, threads: int) -> int:
    """Peak of bytes allocated during one forward+backward, from the profiler's memory events."""
    from denseloss.losses import _native

    _native.LAST_C_BYTES = 0
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _run_once(case, x, threads)
    extra = _native.LAST_C_BYTES
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
        return extra
    # The allocator's counter is process-wide: subtract its value before the first event.
    start = memory[0]["Total Allocated"] - memory[0]["Bytes"]
    return max(0, max(m["Total Allocated"] for m in memory) - start) + extra


def _row(name: str, label: str, peer_of: str | None) -> dict[str, Any]:
    return {
        "loss": name,
        "shape": label,
        "peer_of": peer_of,
        "status": "ok",
        "time_ms": None,
        "time_ratio": None,
        "vs_denseloss": None,
        "peak_mb": None,
        "memory_ratio": None,
        "logits_ratio": None,
    }


def _bench_shape(
    shape: Sequence[int], cases: Sequence[Case], repeats: int, threads: int
) -> list[dict[str, Any]]:
    """All rows of one shape; see the module docstring for the pairing of CE and contenders."""
    x = _inputs(shape)
    logits_mb = x["logits"].numel() * x["logits"].element_size() / 2**20
    label = "x".join(str(s) for s in shape)
    ce = CASES[0]
    rows: dict[str, dict[str, Any]] = {}
    live: list[Case] = []
    for case in [ce, *[c for c in cases if c.name != ce.name]]:
        row = rows[case.name] = _row(case.name, label, case.peer_of)
        reason = case.skip(shape) if case.skip else None
        if reason is None:
            try:
                loss = _run_once(case, x, threads)  # warm-up: lazy imports, compilation, caches
                if _no_work(loss, x):
                    reason = "skipped: no work at this size (loss 0, no gradient)"
            except ImportError as exc:
                reason = f"not available: {exc}"
            except Exception as exc:  # a row, not a crash: the table must still print
                reason = f"error: {type(exc).__name__}: {exc}"
        if reason is None:
            live.append(case)
        else:
            row["status"] = reason
    times: dict[str, list[float]] = {c.name: [] for c in live}
    ratios: dict[str, list[float]] = {c.name: [] for c in live}
    versus: dict[str, list[float]] = {c.name: [] for c in live}
    for _ in range(repeats):
        this_round: dict[str, float] = {}
        for case in live:
            ce_ms = _timed(ce, x, threads)  # CE in the state each contender finds
            ms = ce_ms if case is ce else _timed(case, x, threads)
            this_round[case.name] = ms
            times[case.name].append(ms)
            ratios[case.name].append(ms / ce_ms)
            if case.peer_of in this_round:
                versus[case.name].append(ms / this_round[case.peer_of])
    ce_mb = None
    for case in live:
        row = rows[case.name]
        mb = _peak_bytes(case, x, threads) / 2**20 if case.memory_visible else None
        if case is ce:
            ce_mb = mb
        row.update(
            time_ms=statistics.median(times[case.name]),
            time_ratio=1.0 if case is ce else statistics.median(ratios[case.name]),
            vs_denseloss=statistics.median(versus[case.name]) if versus[case.name] else None,
            peak_mb=mb,
            memory_ratio=mb / ce_mb if mb is not None and ce_mb else None,
            logits_ratio=mb / logits_mb if mb is not None else None,
        )
    return list(rows.values())


def bench_losses(
    shapes: Sequence[Sequence[int]] = DEFAULT_SHAPES,
    repeats: int = 5,
    losses: Sequence[str] | None = None,
    *,
    peers: bool = False,
) -> list[dict[str, Any]]:
    """Benchmark losses (and peers) against ``cross_entropy`` on the same logits.

    Args:
        shapes: logits shapes (N, C, H, W) to run.
        repeats: timed rounds (median reported), after one warm-up run of each row.
        losses: names from :data:`CASES` to run (``cross_entropy`` always runs); None = all.
        peers: also run the :data:`PEERS` of the selected losses, each after its row.

    Returns:
        One dict per (shape, row): ``loss``, ``shape`` (str), ``peer_of`` (None for denseloss
        rows), ``status`` ("ok", "not available: ...", "skipped: ...", "error: ..."),
        ``time_ms``, ``time_ratio`` (to CE, paired per round), ``vs_denseloss`` (a peer's time
        over its denseloss row's, paired), ``peak_mb``, ``memory_ratio`` (to CE's peak) and
        ``logits_ratio`` (peak over the logits' size); numbers are None unless "ok".

    Raises:
        ValueError: an unknown loss name, ``repeats`` < 1 or a shape that is not 4 integers.
    """
    names = [c.name for c in CASES]
    wanted = names if losses is None else ["cross_entropy", *[n for n in losses if n in names]]
    unknown = [n for n in (losses or []) if n not in names]
    if unknown:
        raise ValueError(f"bench_losses: losses must be in {names}; got {unknown}.")
    if repeats < 1:
        raise ValueError(f"bench_losses: repeats must be >= 1; got {repeats}.")
    order: list[Case] = []
    for case in CASES:
        if case.name in wanted:
            order.append(case)
            order.extend(p for p in PEERS if peers and p.peer_of == case.name)
    threads = torch.get_num_threads()
    rows: list[dict[str, Any]] = []
    for shape in shapes:
        if len(shape) != 4:
            raise ValueError(f"bench_losses: shapes must be (N, C, H, W); got {tuple(shape)}.")
        rows.extend(_bench_shape(shape, order, repeats, threads))
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render :func:`bench_losses` rows as a markdown table."""
    lines = [
        "| loss | logits shape | time (ms) | time / CE | time / denseloss | peak (MB) | peak / CE "
        "| peak / logits | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        note = "" if r["status"] == "ok" else r["status"].replace("|", "/").replace("\n", " ")
        if r["status"] == "ok" and r["peer_of"] and r["peak_mb"] is None:
            note = "C++ allocations not visible to the profiler"
        lines.append(
            f"| {r['loss']} | {r['shape']} | {_fmt(r['time_ms'], '.1f')} "
            f"| {_fmt(r['time_ratio'], '.3g')} | {_fmt(r['vs_denseloss'], '.3g')} "
            f"| {_fmt(r['peak_mb'], '.1f')} | {_fmt(r['memory_ratio'], '.3g')} "
            f"| {_fmt(r['logits_ratio'], '.3g')} | {note} |"
        )
    return "\n".join(lines)


def machine_description() -> str:
    """One line: CPU, torch threads, load, torch and Python versions, compiled kernels."""
    from denseloss.losses import _native

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    native = "compiled kernels on" if _native.available(torch.zeros(1)) else "PyTorch kernels"
    return (
        f"{cpu}; {os.cpu_count()} CPUs visible, torch threads {torch.get_num_threads()}; "
        f"load average {load:.2f}; torch {torch.__version__}; Python "
        f"{platform.python_version()}; {native}"
    )


def run_bench(args: list[str]) -> int:
    """``denseloss bench losses [--quick] [--peers] [--scaling] [--accuracy] [--repeats N]
    [--losses a,b] [--output FILE]``.

    Prints markdown tables — all losses at :data:`DEFAULT_SHAPES`, the pairwise losses at
    :data:`PAIRWISE_SHAPES`, and on request the scaling and DenseCRF accuracy tables — followed
    by the machine line (and writes them to ``--output``); returns the exit code.
    """
    parser = argparse.ArgumentParser(
        prog="denseloss bench losses",
        description="Forward+backward time and peak memory of each loss as ratios to "
        "cross-entropy measured in the same state (peak memory via torch.profiler).",
    )
    parser.add_argument("--quick", action="store_true", help=f"small shapes {QUICK_SHAPES}")
    parser.add_argument("--peers", action="store_true", help="also run the peer implementations")
    parser.add_argument("--scaling", action="store_true", help="pairwise scaling in pixels / C")
    parser.add_argument("--accuracy", action="store_true", help="DenseCRF fast vs exact table")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per row (median)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for the run (default: as set)"
    )
    parser.add_argument("--losses", type=str, default=None, help="comma-separated case names")
    parser.add_argument("--output", type=str, default=None, help="also write the tables here")
    ns = parser.parse_args(args)
    if ns.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {ns.repeats}")
    if ns.threads is not None and ns.threads < 1:
        parser.error(f"--threads must be >= 1; got {ns.threads}")
    saved = torch.get_num_threads()
    if ns.threads is not None:
        torch.set_num_threads(ns.threads)
    try:
        return _run_sections(ns)
    finally:
        torch.set_num_threads(saved)


def _run_sections(ns: argparse.Namespace) -> int:
    from denseloss.bench import pairwise

    losses = None if ns.losses is None else [s.strip() for s in ns.losses.split(",") if s.strip()]
    main_shapes = QUICK_SHAPES if ns.quick else DEFAULT_SHAPES
    pair_shapes = QUICK_SHAPES if ns.quick else PAIRWISE_SHAPES
    selected_pairwise = [n for n in PAIRWISE_LOSSES if losses is None or n in losses]
    sections = []
    rows = bench_losses(main_shapes, repeats=ns.repeats, losses=losses, peers=ns.peers)
    sections.append("### All losses\n\n" + format_table(rows))
    if selected_pairwise:
        rows = bench_losses(
            pair_shapes, repeats=ns.repeats, losses=selected_pairwise, peers=ns.peers
        )
        title = "### Pairwise losses" + ("" if ns.quick else ", C = 21")
        sections.append(title + "\n\n" + format_table(rows))
    if ns.scaling:
        sizes, classes = ((32, 64), (19,)) if ns.quick else (SCALING_SIZES, SCALING_CLASSES)
        rows = pairwise.scaling_rows(sizes, classes, ns.repeats)
        sections.append("### Scaling (pixels, classes)\n\n" + pairwise.format_scaling(rows))
    if ns.accuracy:
        sizes = (16, 32) if ns.quick else pairwise.ACCURACY_SIZES
        rows = pairwise.accuracy_rows(sizes, 2 if ns.quick else pairwise.ACCURACY_PHOTOS)
        sections.append("### DenseCRF fast / exact\n\n" + pairwise.format_accuracy(rows))
    _, photo_source = P.photographs(4, 8, 8)
    notes = [f"Images for the CRF rows: {photo_source}."]
    if ns.peers and not P.pydensecrf_available():
        notes.append("pydensecrf peer skipped: not installed (see docs/bench_losses.md).")
    text = "\n\n".join(sections) + "\n\n" + " ".join(notes)
    text += f"\n\nMachine: {machine_description()}\n"
    print(text)
    if ns.output:
        with open(ns.output, "w") as f:
            f.write(text)
    return 0
