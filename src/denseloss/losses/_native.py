"""Optional compiled kernels for the pairwise losses, with pure-PyTorch fallbacks.

The local-window Potts energy (Gated CRF, DFR) and the permutohedral lattice (DenseCRF fast
path) are loops whose every step is a few flops: in PyTorch each step is a separate pass over
memory (and, for the lattice, a sort-based hash), which is why they cost 10-40× cross-entropy.
The C source in :mod:`denseloss.losses._native_src` fuses them. It is compiled on first use with
the system C compiler (``cc``, ``-O3 -march=native``, about 2 s) into a per-user cache
(``$XDG_CACHE_HOME/denseloss`` or ``~/.cache/denseloss``; keyed by the source, the flags and the
CPU) and loaded with ``ctypes``. ctypes releases the GIL, so the work is split over
``torch.get_num_threads()`` Python threads.

When no compiler is found, the compilation fails, the tensors are not on the CPU, or
``DENSELOSS_NATIVE=0`` is set, :func:`available` is False and the callers use their PyTorch
implementation (the same maths; ``tests/losses/test_pairwise.py`` checks that both agree in
float64). Nothing here is public.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from denseloss.losses._native_src import SOURCE

__all__ = ["MAX_MODALITIES", "available", "lattice_filter", "window_potts"]

MAX_MODALITIES = 64  # the window kernel's limit (a fixed-size array in the C source)

# No multiply-add contraction: the lattice build must take the PyTorch build's rank decisions
# (measured: contraction does not change the window kernels' speed).
_FLAGS = ("-O3", "-march=native", "-fPIC", "-fopenmp-simd", "-ffp-contract=off", "-std=gnu99")
_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None
_TRIED = False
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_PID = 0
#: Bytes the C side allocated itself (lattice hash tables and neighbour lists) in the last
#: lattice_filter call: invisible to torch's profiler, so the benchmark adds it.
LAST_C_BYTES = 0


class _Modality(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("channels", ctypes.c_int64),
        ("sh", ctypes.c_int64),
        ("sw", ctypes.c_int64),
        ("normalize", ctypes.c_int),
        ("use_dot", ctypes.c_int),
    ]


def _cpu_tag() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "denseloss"


def _compile(target: Path) -> None:
    """Compile SOURCE into ``target`` atomically (temp file + rename: safe across processes)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise OSError("no C compiler")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "kernels.c"
        src.write_text(SOURCE)
        out = Path(tmp) / target.name
        cmd = [cc, *_FLAGS, "-shared", str(src), "-o", str(out), "-lm"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        os.replace(out, target)


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, dbl = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    for t in ("float", "double"):
        fn = getattr(lib, f"window_{t}")
        fn.restype = dbl
        fn.argtypes = [p, p, p, i64, i64, i64, ctypes.c_int, p, ctypes.c_int, p, p, p]
        fn.argtypes += [ctypes.c_int, i64, i64, p]
        getattr(lib, f"lat_splat_{t}").argtypes = [p, p, i64, i64, i64, p]
        getattr(lib, f"lat_blur_{t}").argtypes = [p, p, p, i64, ctypes.c_int, i64, i64]
        getattr(lib, f"lat_slice_{t}").argtypes = [p, p, i64, dbl, i64, i64, p]
        getattr(lib, f"lat_blur_all_{t}").argtypes = [p, p, p, p, p, i64]
    for t in ("float", "double"):
        getattr(lib, f"lat_points_{t}").argtypes = [p, p, i64, i64, dbl, dbl, i64, i64]
        getattr(lib, f"lat_points_{t}").argtypes += [ctypes.c_int, p, p, p, p, p]
    lib.lat_index.restype = p
    lib.lat_index.argtypes = [i64, ctypes.c_int, p, p, p, p]
    lib.lat_bytes.restype = i64
    lib.lat_bytes.argtypes = [p]
    lib.lat_vertices.restype = i64
    lib.lat_vertices.argtypes = [p]
    lib.lat_free.argtypes = [p]


def _load() -> ctypes.CDLL | None:
    """The compiled library, or None (no compiler, failed build, or DENSELOSS_NATIVE=0)."""
    global _LIB, _TRIED
    if _TRIED:
        return _LIB
    with _LOCK:
        if _TRIED:
            return _LIB
        _TRIED = True
        if os.environ.get("DENSELOSS_NATIVE", "1") == "0":
            return None
        key = hashlib.sha256(
            "\n".join([SOURCE, " ".join(_FLAGS), _cpu_tag(), platform.machine()]).encode()
        ).hexdigest()[:16]
        target = _cache_dir() / f"pairwise_{key}.so"
        try:
            if not target.exists():
                _compile(target)
            lib = ctypes.CDLL(str(target))
            _declare(lib)
        except (OSError, subprocess.SubprocessError, AttributeError):
            return None
        _LIB = lib
        return lib


def available(*tensors: torch.Tensor) -> bool:
    """True when the compiled kernels can run on these tensors (CPU, float32/float64)."""
    for t in tensors:
        if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64):
            return False
    return _load() is not None


def _run(tasks: Sequence[Callable[[], object]]) -> list[object]:
    """Run ``tasks`` on ``torch.get_num_threads()`` threads (ctypes drops the GIL in C calls)."""
    global _POOL, _POOL_SIZE, _POOL_PID
    threads = max(1, torch.get_num_threads())
    if threads == 1 or len(tasks) <= 1:
        return [t() for t in tasks]
    with _LOCK:
        # A forked child inherits the pool object but not its threads: make a new one there.
        if _POOL is None or threads != _POOL_SIZE or os.getpid() != _POOL_PID:
            if _POOL is not None and os.getpid() == _POOL_PID:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(threads, thread_name_prefix="denseloss")
            _POOL_SIZE, _POOL_PID = threads, os.getpid()
        pool = _POOL
    return [f.result() for f in [pool.submit(t) for t in tasks]]


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def window_potts(
    probs: torch.Tensor,
    valid: torch.Tensor | None,
    modalities: Sequence[tuple[torch.Tensor, bool, bool]],
    weights: Sequence[float],
    inv_xy: Sequence[float],
    inv_mod: Sequence[Sequence[float]],
    radius: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """G and Σ_unordered K_ij (m_i + m_j) of the half-window Potts energy, in C.

    Args:
        probs: (N, C, H, W) float32/float64 probabilities.
        valid: (N, 1, H, W) of the same dtype in {0, 1}, or None.
        modalities: per modality ``(map (N, F, h', w') same dtype, normalize, use_dot)``; a map
            not at (H, W) is resampled bilinearly band by band, then L2-normalised if asked.
        weights: w_d per kernel; inv_xy: 1/σ_xy² per kernel (0 if unused); inv_mod[d][m]:
            1/σ² of modality m in kernel d (0 if unused).
        radius: window radius.

    Returns:
        (G, weight_sum): G (N, C, H, W) = Σ_j W_ij p_j with W_ij = K_ij (m_i + m_j), and the
        0-d tensor Σ over unordered pairs of W_ij.
    """
    lib = _load()
    assert lib is not None
    n, c, h, w = probs.shape
    dtype = probs.dtype
    ctype = "float" if dtype == torch.float32 else "double"
    fn = getattr(lib, f"window_{ctype}")
    p = probs.contiguous()
    v = None if valid is None else valid.to(dtype).contiguous()
    maps = [m.to(dtype).contiguous() for m, _, _ in modalities]
    grad = torch.zeros_like(p)
    num_d, num_m = len(weights), len(maps)
    kw = (ctypes.c_double * num_d)(*weights)
    kxy = (ctypes.c_double * num_d)(*inv_xy)
    kmod = (ctypes.c_double * max(num_d * num_m, 1))(*[x for row in inv_mod for x in row])
    per_image = []
    for b in range(n):
        mods = (_Modality * max(num_m, 1))()
        for q, (m, (_, normalize, use_dot)) in enumerate(zip(maps, modalities)):
            mods[q] = _Modality(
                m[b].data_ptr(), m.shape[1], m.shape[2], m.shape[3], int(normalize), int(use_dot)
            )
        per_image.append(mods)
    # Bands of >= radius rows: a band writes G only in its rows and the next band's first
    # `radius` rows, so all even bands can run at once, then all odd ones (no two tasks of a
    # phase touch the same rows).
    threads = max(1, torch.get_num_threads())
    rows = max(radius, -(-h // (4 * threads)), 1)
    bands = [(y, min(y + rows, h)) for y in range(0, h, rows)]
    # One scratch buffer per thread (band copies of the modalities + per-row distances),
    # allocated here so that PyTorch's memory accounting sees it.
    band_rows = min(rows + radius, h)
    work_size = sum((m.shape[1] + 1) * band_rows * w for m in maps) + (num_m + 2) * w
    pool: queue.SimpleQueue[torch.Tensor] = queue.SimpleQueue()
    for _ in range(min(threads, n * len(bands))):
        pool.put(torch.empty(work_size, dtype=dtype))

    def task(b: int, y0: int, y1: int) -> float:
        work = pool.get()
        try:
            vb = None if v is None else v[b].data_ptr()
            return fn(
                p[b].data_ptr(), vb, grad[b].data_ptr(), c, h, w, num_m, per_image[b], num_d,
                kw, kxy, kmod, radius, y0, y1, work.data_ptr(),
            )  # fmt: skip
        finally:
            pool.put(work)

    sums: list[float] = []
    for parity in (0, 1):
        tasks = [
            lambda b=b, y0=y0, y1=y1: task(b, y0, y1)
            for b in range(n)
            for k, (y0, y1) in enumerate(bands)
            if k % 2 == parity
        ]
        sums.extend(float(s) for s in _run(tasks))  # type: ignore[arg-type]
    return grad, torch.tensor(sum(sums), dtype=dtype, device=probs.device)


def lattice_filter(
    values: torch.Tensor,
    *,
    features: torch.Tensor | None = None,
    image: tuple[torch.Tensor, float, float] | None = None,
    scale: Sequence[float],
    offset: Sequence[float],
    gain: float,
) -> torch.Tensor:
    """Symmetrised permutohedral filter, in C: ½ gain Sᵀ(B_d⋯B_0 + B_0⋯B_d) S V per image.

    Args:
        values: (B, n, C) float32/float64.
        features: (B, n, d) float, already divided by their σ (converted to float64); or
        image: ``(img, σ_xy, σ_rgb)`` with img (B, 3, H, W), n = H·W, in the dtype of
            ``values``: the features (x/σ_xy, y/σ_xy, rgb/σ_rgb) are then computed on the fly
            (no (B, n, 5) tensor).
        scale, offset: the elevation's per-dimension scale and the fixed offset added first.
        gain: the output factor.

    Returns:
        (B, n, C) in the dtype of ``values``.
    """
    lib = _load()
    assert lib is not None
    bsz, n, _ = values.shape
    dtype = values.dtype
    ctype = "float" if dtype == torch.float32 else "double"
    vals = values.contiguous()
    out = torch.empty_like(vals)
    if features is not None:
        d = features.shape[2]
        feats = features.detach().to(torch.float64).contiguous()
        img, h, w, sxy, srgb = None, 0, 0, 1.0, 1.0
    else:
        assert image is not None
        img, sxy, srgb = image[0].detach().to(dtype).contiguous(), image[1], image[2]
        d, h, w, feats = 5, img.shape[2], img.shape[3], None
    sc = (ctypes.c_double * d)(*scale)
    off = (ctypes.c_double * d)(*offset)
    threads = max(1, torch.get_num_threads())
    # Per point: simplex corners, barycentric weights and the simplex itself, allocated through
    # PyTorch (so that its memory accounting sees them); the C side owns only the hash table
    # and the neighbour lists (reported in LAST_C_BYTES).
    vid = torch.empty(bsz, n, d + 1, dtype=torch.int32)
    bary = torch.empty(bsz, n, d + 1, dtype=torch.float64)
    key0 = torch.empty(bsz, n, d, dtype=torch.int32)
    rank = torch.empty(bsz, n, d, dtype=torch.int8)
    points = getattr(lib, f"lat_points_{ctype}")

    def phase1(b: int, i0: int, i1: int) -> None:
        fp = None if feats is None else feats[b].data_ptr()
        ip = None if img is None else img[b].data_ptr()
        points(
            fp, ip, h, w, sxy, srgb, i0, i1, d, sc, off,
            bary[b].data_ptr(), key0[b].data_ptr(), rank[b].data_ptr(),
        )  # fmt: skip

    _run(
        [
            lambda b=b, i0=i0, i1=i1: phase1(b, i0, i1)
            for b in range(bsz)
            for i0, i1 in _chunks(n, -(-threads // bsz))
        ]
    )
    lats = _run(
        [
            lambda b=b: lib.lat_index(
                n,
                d,
                key0[b].data_ptr(),
                rank[b].data_ptr(),
                bary[b].data_ptr(),
                vid[b].data_ptr(),
            )
            for b in range(bsz)
        ]
    )
    global LAST_C_BYTES
    try:
        if any(lat is None for lat in lats):
            raise MemoryError("dense_crf_loss: the permutohedral lattice could not be built.")
        LAST_C_BYTES = sum(int(lib.lat_bytes(lat)) for lat in lats)
        # With fewer images than threads, each image's points / vertices are split in parts.
        parts = -(-threads // bsz)
        for b, lat in enumerate(lats):
            _filter_one(lib, ctype, lat, vals[b], out[b], d, parts, gain)
    finally:
        for lat in lats:
            lib.lat_free(lat)
    return out


def _chunks(total: int, parts: int) -> list[tuple[int, int]]:
    step = max(1, -(-total // parts))
    return [(i, min(i + step, total)) for i in range(0, total, step)]


def _filter_one(
    lib: ctypes.CDLL,
    ctype: str,
    lat: int,
    vals: torch.Tensor,
    out: torch.Tensor,
    d: int,
    parts: int,
    gain: float,
) -> None:
    """Splat, blur both ways and slice one image's (n, C) values into ``out``."""
    splat = getattr(lib, f"lat_splat_{ctype}")
    blur_all = getattr(lib, f"lat_blur_all_{ctype}")
    slc = getattr(lib, f"lat_slice_{ctype}")
    n, chans = vals.shape
    verts = int(lib.lat_vertices(lat))
    points = _chunks(n, parts)
    # One splat buffer per part (no two threads add into the same rows); row `verts` stays 0:
    # absent blur neighbours read it.
    bufs = [vals.new_zeros(verts + 1, chans) for _ in points]
    _run(
        [
            lambda buf=buf, i0=i0, i1=i1: splat(lat, vals.data_ptr(), chans, i0, i1, buf.data_ptr())
            for buf, (i0, i1) in zip(bufs, points)
        ]
    )
    splatted = bufs[0]
    for buf in bufs[1:]:
        splatted.add_(buf)
    # The blur touches only the (few) vertices: one call, both orders, no barrier per direction.
    blurred = torch.empty_like(splatted)
    scratch = (torch.empty_like(splatted), torch.empty_like(splatted))
    blur_all(lat, splatted.data_ptr(), scratch[0].data_ptr(), scratch[1].data_ptr(),
             blurred.data_ptr(), chans)  # fmt: skip
    _run(
        [
            lambda i0=i0, i1=i1: slc(lat, blurred.data_ptr(), chans, gain, i0, i1, out.data_ptr())
            for i0, i1 in points
        ]
    )
